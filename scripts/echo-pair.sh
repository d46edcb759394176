# Shared by demo.sh and test.sh: run an echo server, point an echo client
# at the port it prints, stop the server with a signal, and record PASS only
# if both exit 0. Callers set logdir, and may read results, n_pass, n_fail.
# shellcheck shell=bash

results=()
n_pass=0
n_fail=0
server_pid=""

record() { # record NAME PASS|FAIL [why]
  local line="$2 $1${3:+ ($3)}"
  results+=("$line")
  echo "$line"
  if [ "$2" = PASS ]; then n_pass=$((n_pass + 1)); else n_fail=$((n_fail + 1)); fi
}

# run_pair NAME SIGNAL SERVER... -- CLIENT... (PORT in CLIENT is replaced).
# SIGNAL:any stops the server with SIGNAL and ignores its exit status, for
# a server with no handler for it (the tutorial's): the client's checks
# decide.
run_pair() {
  local name="$1" stopsig="${2%:any}" any_exit=0
  [ "$2" != "$stopsig" ] && any_exit=1
  shift 2
  local server=() client=() port="" rc_client rc_server i
  while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do server+=("$1"); shift; done
  shift
  client=("$@")
  local base="${name// /_}"
  base="${base//\//_}"
  local slog="$logdir/$base.server.log" clog="$logdir/$base.client.log"

  say "$name"
  echo "server: ${server[*]}"
  timeout --kill-after=10 600 "${server[@]}" >"$slog" 2>&1 &
  server_pid=$!
  for i in $(seq 1 300); do # up to 30 s (a cold Wine start takes about 1 s)
    port="$(grep -m1 'listening on' "$slog" 2>/dev/null | grep -oE '[0-9]+' | tail -n 1)"
    [ -n "$port" ] && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$port" ]; then
    sed 's/^/  server| /' "$slog"
    kill -KILL "$server_pid" 2>/dev/null; wait "$server_pid" 2>/dev/null
    server_pid=""
    record "$name" FAIL "server did not print 'listening on PORT'"
    return
  fi
  client=("${client[@]/#PORT/$port}")
  echo "client: ${client[*]}"
  timeout --kill-after=10 300 "${client[@]}" >"$clog" 2>&1
  rc_client=$?
  sed 's/^/  client| /' "$clog"

  kill "-$stopsig" "$server_pid" 2>/dev/null
  for i in $(seq 1 200); do # up to 20 s
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$server_pid" 2>/dev/null; then
    kill -KILL "$server_pid" 2>/dev/null
    wait "$server_pid" 2>/dev/null
    rc_server="did not stop on SIG$stopsig"
  else
    wait "$server_pid"
    rc_server=$?
    [ "$any_exit" -eq 1 ] && rc_server=0
  fi
  server_pid=""
  sed 's/^/  server| /' "$slog"

  if [ "$rc_client" -eq 0 ] && [ "$rc_server" = 0 ]; then
    record "$name" PASS
  else
    record "$name" FAIL "client exit $rc_client, server exit $rc_server"
  fi
}

# Kills a server left running (for the caller's EXIT trap).
kill_server() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
}
