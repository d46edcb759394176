#!/usr/bin/env bash
# TLS interop of the cport examples with the `openssl` command, both ways,
# on loopback:
#
#   bash scripts/tls-interop.sh [BUILD_DIR]     (default build/debug)
#   WIN_BUILD=build/mingw bash scripts/tls-interop.sh build/debug
#                                               (and the Windows build under Wine: (c))
#
# BUILD_DIR holds tls_echo_server and tls_echo_client; the certificates are
# made into BUILD_DIR/tls-certs by scripts/tls-certs.sh. For every mode
# (completion, select) and backend ($BACKENDS, default "epoll io_uring"):
#
# (a) cport server, openssl client: tls_echo_server against
#     `openssl s_client -CAfile ca.pem -verify_return_error -servername
#     localhost -quiet -no_ign_eof`, which sends one line from its stdin; the
#     line must come back on its stdout. -no_ign_eof (-quiet implies
#     -ign_eof) makes s_client send close_notify and exit 0 when its stdin
#     ends, which happens once the echo was seen, so the server's
#     close_notify path runs too. Also: an s_client that trusts another CA
#     must fail, the server must log the reason and keep serving (a good
#     client afterwards still gets its echo), and with --ca the server
#     requires a client certificate (s_client -cert client.pem passes,
#     none fails).
#
# (b) openssl server, cport client: `openssl s_server` has no echo mode
#     (-rev reverses lines), so its stdin and stdout are looped through a
#     FIFO: what it decrypts goes to stdout, comes back on stdin and is
#     sent back, which is an echo. -quiet keeps everything else off stdout
#     (and turns off s_server's one-letter stdin commands); -naccept 1
#     makes it exit after the one connection. The client's messages are
#     printable lines, sent one at a time, and stay well under the FIFO's
#     64 KiB (s_server reads and writes the FIFO from one thread, so a
#     message that filled it would stall). s_server prints no port with
#     -quiet: it listens on port 0 and the port is read from
#     /proc/net/tcp{,6} via its socket's inode. Also: TLS 1.2 forced on the
#     server side, ALPN, and an expired server certificate, which the cport
#     client must refuse with exit 1 and a reason.
#
# Every process runs under `timeout`, every wait is bounded. One PASS or
# FAIL line per check; exit 0 only if all passed.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$root/build/debug}"
build="$(cd "$build" && pwd)" || { echo "FAIL no build directory $1"; exit 2; }
server_bin="$build/tls_echo_server"
client_bin="$build/tls_echo_client"
for b in "$server_bin" "$client_bin"; do
  [ -x "$b" ] || { echo "FAIL $b is not built"; exit 2; }
done
command -v openssl >/dev/null || { echo "FAIL no openssl command"; exit 2; }
read -r -a backends <<<"${BACKENDS:-epoll io_uring}"
modes=(completion select)

certs="$build/tls-certs"
bash "$root/scripts/tls-certs.sh" "$certs" >/dev/null 2>&1 || { echo "FAIL tls-certs.sh"; exit 2; }
work="$(mktemp -d "${TMPDIR:-/tmp}/cport-tls-interop.XXXXXX")"

n_pass=0
n_fail=0
server_pid=""
peer_pid=""

cleanup() {
  local p
  for p in "$server_pid" "$peer_pid"; do
    [ -n "$p" ] && kill -KILL "$p" 2>/dev/null
  done
  exec 3>&- 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

pass() {
  echo "PASS $1"
  n_pass=$((n_pass + 1))
}

fail() { # fail NAME WHY [LOG...]
  local name="$1" why="$2" f
  shift 2
  echo "FAIL $name ($why)"
  for f in "$@"; do [ -s "$f" ] && sed "s#^#  $(basename "$f")| #" "$f"; done
  n_fail=$((n_fail + 1))
}

# ---------------------------------------------------------------------------
# (a) tls_echo_server against openssl s_client
# ---------------------------------------------------------------------------

# start_server LOG ARGS...: starts tls_echo_server, sets server_pid and
# port from its "listening on HOST:PORT" line. Returns 1 if none came.
start_server() {
  local log="$1"
  shift
  timeout --kill-after=5 300 "$server_bin" --cert "$certs/server.pem" --key "$certs/server.key" \
    --port 0 "$@" >"$log" 2>&1 &
  server_pid=$!
  port=""
  for _ in $(seq 1 100); do # up to 10 s
    port="$(grep -m1 '^listening on ' "$log" 2>/dev/null | tr -d '\r' | grep -oE '[0-9]+$')"
    [ -n "$port" ] && return 0
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  return 1
}

# stop_server: SIGTERM, wait up to 10 s; returns its exit status (or 124).
stop_server() {
  local rc
  kill -TERM "$server_pid" 2>/dev/null
  for _ in $(seq 1 100); do
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$server_pid" 2>/dev/null; then
    kill -KILL "$server_pid" 2>/dev/null
    wait "$server_pid" 2>/dev/null
    server_pid=""
    return 124
  fi
  wait "$server_pid"
  rc=$?
  server_pid=""
  return "$rc"
}

# s_client_echo OUT ERR LINE [s_client options...]: sends LINE, keeps its
# stdin open until LINE came back (at most 10 s), then ends it. Returns
# s_client's exit status.
s_client_echo() {
  local out="$1" err="$2" line="$3"
  shift 3
  : >"$out"
  : >"$err"
  # shellcheck disable=SC2094 # the writer watches s_client's output on purpose
  {
    printf '%s\n' "$line"
    for _ in $(seq 1 100); do
      grep -qxF "$line" "$out" 2>/dev/null && break
      grep -q ':error:' "$err" 2>/dev/null && break # s_client failed: no echo will come
      sleep 0.1
    done
  } | timeout --kill-after=5 20 openssl s_client -connect "127.0.0.1:$port" \
    -CAfile "$certs/ca.pem" -verify_return_error -servername localhost -quiet -no_ign_eof \
    "$@" >"$out" 2>"$err"
}

run_server_side() { # run_server_side MODE BACKEND
  local mode="$1" backend="$2" tag="a server=cport($1,$2) client=openssl"
  local slog="$work/server.$1.$2.log" out="$work/sc.out" err="$work/sc.err" rc line

  if ! start_server "$slog" --mode "$mode" --backend "$backend"; then
    fail "$tag: start" "no 'listening on' line" "$slog"
    [ -n "$server_pid" ] && stop_server
    return
  fi

  line="hello from s_client over $mode/$backend $RANDOM"
  s_client_echo "$out" "$err" "$line"
  rc=$?
  if [ "$rc" -eq 0 ] && grep -qxF "$line" "$out"; then
    pass "$tag: echo"
  else
    fail "$tag: echo" "s_client exit $rc, echo $(grep -cxF "$line" "$out")" "$out" "$err" "$slog"
  fi

  s_client_echo "$out" "$err" "must not pass" -CAfile "$certs/other-ca.pem"
  rc=$?
  if [ "$rc" -ne 0 ] && ! grep -qxF "must not pass" "$out" &&
    grep -q "handshake: TLS failed" "$slog"; then
    pass "$tag: untrusted CA refused by s_client, server logs: $(grep -m1 -o 'handshake: .*' "$slog")"
  else
    fail "$tag: untrusted CA" "s_client exit $rc" "$out" "$err" "$slog"
  fi

  line="still serving after a failed handshake $RANDOM"
  s_client_echo "$out" "$err" "$line"
  rc=$?
  if [ "$rc" -eq 0 ] && grep -qxF "$line" "$out"; then
    pass "$tag: still serving after a failed handshake"
  else
    fail "$tag: still serving" "s_client exit $rc" "$out" "$err" "$slog"
  fi

  stop_server
  rc=$?
  if [ "$rc" -eq 0 ]; then pass "$tag: server exit 0"; else fail "$tag: server exit" "$rc" "$slog"; fi

  # The server asks for a client certificate (--ca).
  slog="$work/server-mtls.$mode.$backend.log"
  if ! start_server "$slog" --mode "$mode" --backend "$backend" --ca "$certs/ca.pem"; then
    fail "$tag: start with --ca" "no 'listening on' line" "$slog"
    [ -n "$server_pid" ] && stop_server
    return
  fi
  line="client certificate $RANDOM"
  s_client_echo "$out" "$err" "$line" -cert "$certs/client.pem" -key "$certs/client.key"
  rc=$?
  if [ "$rc" -eq 0 ] && grep -qxF "$line" "$out" && grep -q "peer=CN=cport test client" "$slog"; then
    pass "$tag: client certificate required and accepted"
  else
    fail "$tag: client certificate" "s_client exit $rc" "$out" "$err" "$slog"
  fi
  s_client_echo "$out" "$err" "no certificate"
  if ! grep -qxF "no certificate" "$out" && grep -q "no certificate" "$slog"; then
    pass "$tag: no client certificate refused: $(grep -m1 -o 'handshake: .*' "$slog")"
  else
    fail "$tag: no client certificate" "echoed or not logged" "$out" "$err" "$slog"
  fi
  stop_server
  rc=$?
  if [ "$rc" -eq 0 ]; then pass "$tag: --ca server exit 0"; else fail "$tag: --ca server exit" "$rc" "$slog"; fi
}

# ---------------------------------------------------------------------------
# (b) tls_echo_client against openssl s_server, looped through a FIFO
# ---------------------------------------------------------------------------

# listen_port PID: the TCP port PID listens on, from /proc (empty if none).
listen_port() {
  local pid="$1" fd link inodes=" " hex
  for fd in /proc/"$pid"/fd/*; do
    link="$(readlink "$fd" 2>/dev/null)" || continue
    case "$link" in socket:\[*\]) inodes+="${link//[^0-9]/} " ;; esac
  done
  hex="$(awk -v inodes="$inodes" \
    'FNR > 1 && $4 == "0A" && index(inodes, " " $10 " ") { split($2, a, ":"); print a[2]; exit }' \
    /proc/net/tcp /proc/net/tcp6 2>/dev/null)"
  [ -n "$hex" ] && echo $((16#$hex))
}

# start_s_server LOG ARGS...: s_server with stdin and stdout looped through
# a FIFO; sets peer_pid (the openssl process) and port.
start_s_server() {
  local log="$1" tpid
  shift
  exec 3>&- 2>/dev/null
  rm -f "$work/loop"
  mkfifo "$work/loop"
  exec 3<>"$work/loop" # read-write: opening never blocks, and never sees EOF
  timeout --kill-after=5 60 openssl s_server -accept 0 -naccept 1 -quiet "$@" <&3 >&3 2>"$log" &
  tpid=$!
  peer_pid=$tpid
  port=""
  for _ in $(seq 1 100); do # up to 10 s
    local child
    child="$(pgrep -P "$tpid" 2>/dev/null | head -n 1)"
    [ -n "$child" ] && port="$(listen_port "$child")"
    [ -n "$port" ] && return 0
    kill -0 "$tpid" 2>/dev/null || break
    sleep 0.1
  done
  return 1
}

# wait_peer: waits up to 15 s for s_server to exit; returns its status.
wait_peer() {
  local rc
  for _ in $(seq 1 150); do
    kill -0 "$peer_pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$peer_pid" 2>/dev/null; then
    kill -KILL "$peer_pid" 2>/dev/null
    wait "$peer_pid" 2>/dev/null
    peer_pid=""
    return 124
  fi
  wait "$peer_pid"
  rc=$?
  peer_pid=""
  exec 3>&-
  return "$rc"
}

# client_case NAME EXPECT(ok|fail) GREP S_SERVER_ARGS... -- CLIENT_ARGS...
client_case() {
  local name="$1" expect="$2" want="$3" rc prc
  shift 3
  local sargs=() cargs=()
  while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do sargs+=("$1"); shift; done
  shift
  cargs=("$@")
  local plog="$work/s_server.log" cout="$work/client.out" cerr="$work/client.err"
  if ! start_s_server "$plog" "${sargs[@]}"; then
    fail "$name" "s_server did not listen" "$plog"
    [ -n "$peer_pid" ] && wait_peer
    return
  fi
  timeout --kill-after=5 30 "$client_bin" --port "$port" --ca "$certs/ca.pem" "${cargs[@]}" \
    >"$cout" 2>"$cerr"
  rc=$?
  if [ "$expect" = fail ] || [ "$rc" -ne 0 ]; then
    kill -TERM "$peer_pid" 2>/dev/null # it may still wait for its one connection to end
  fi
  wait_peer
  prc=$?
  if [ "$expect" = ok ]; then
    if [ "$rc" -eq 0 ] && grep -q '^OK ' "$cout" && grep -q -- "$want" "$cout" && [ "$prc" -eq 0 ]; then
      pass "$name: $(head -n 1 "$cout")"
    else
      fail "$name" "client exit $rc, s_server exit $prc" "$cout" "$cerr" "$plog"
    fi
  else
    if [ "$rc" -eq 1 ] && grep -q '^FAIL' "$cout" && grep -q -- "$want" "$cerr"; then
      pass "$name: refused: $(head -n 1 "$cerr")"
    else
      fail "$name" "client exit $rc, expected 1 with '$want'" "$cout" "$cerr" "$plog"
    fi
  fi
}

run_client_side() { # run_client_side MODE BACKEND
  local mode="$1" backend="$2" tag="b server=openssl client=cport($1,$2)"
  local common=(--mode "$mode" --backend "$backend")
  local srv=(-cert "$certs/server.pem" -key "$certs/server.key")
  client_case "$tag: echo" ok "version=TLSv1.3" "${srv[@]}" -- \
    "${common[@]}" --host localhost --count 50 --size 4000
  client_case "$tag: TLS 1.2 + ALPN" ok "version=TLSv1.2 .*alpn=echo" "${srv[@]}" -tls1_2 \
    -alpn echo -- "${common[@]}" --count 20 --size 1000 --alpn h2,echo
  client_case "$tag: expired certificate" fail "expired" -cert "$certs/expired.pem" \
    -key "$certs/expired.key" -- "${common[@]}" --host localhost --count 1
}

for mode in "${modes[@]}"; do
  for backend in "${backends[@]}"; do
    run_server_side "$mode" "$backend"
    run_client_side "$mode" "$backend"
  done
done

# ---------------------------------------------------------------------------
# (c) the Windows build under Wine (WIN_BUILD=build/mingw): its client, on
# the build's default engine, against s_server, and its server on OpenSSL
# (Wine 8's Schannel has no server role) against s_client.
# ---------------------------------------------------------------------------

run_wine() { # run_wine MODE
  local mode="$1" tag="c (Windows build under Wine, $1)" out="$work/sc.out" err="$work/sc.err"
  local slog="$work/wine-server.$1.log" line rc
  local srv=(-cert "$certs/server.pem" -key "$certs/server.key")
  client_bin="$work/wine-client"
  client_case "$tag server=openssl client=tls_echo_client.exe: echo" ok "^OK" "${srv[@]}" -tls1_2 -- \
    --mode "$mode" --host 127.0.0.1 --server-name localhost --count 20 --size 1000
  client_case "$tag server=openssl client=tls_echo_client.exe: expired certificate" fail "expired" \
    -cert "$certs/expired.pem" -key "$certs/expired.key" -- \
    --mode "$mode" --host 127.0.0.1 --server-name localhost --count 1
  server_bin="$work/wine-server"
  if ! start_server "$slog" --mode "$mode" --host 127.0.0.1; then
    fail "$tag server=tls_echo_server.exe: start" "no 'listening on' line" "$slog"
  else
    line="hello from s_client to Wine, $mode $RANDOM"
    s_client_echo "$out" "$err" "$line"
    rc=$?
    if [ "$rc" -eq 0 ] && grep -qxF "$line" "$out"; then
      pass "$tag server=tls_echo_server.exe --engine openssl client=openssl: echo"
    else
      fail "$tag server=tls_echo_server.exe: echo" "s_client exit $rc" "$out" "$err" "$slog"
    fi
  fi
  # Wine ends a program on SIGTERM without its console handler: its exit
  # status says nothing here.
  [ -n "$server_pid" ] && { stop_server || true; }
}

if [ -n "${WIN_BUILD:-}" ]; then
  win="$(cd "$WIN_BUILD" && pwd)"
  printf '#!/bin/sh\nexec bash "%s/cmake/wine-run.sh" "%s/tls_echo_client.exe" "$@"\n' \
    "$root" "$win" >"$work/wine-client"
  printf '#!/bin/sh\nexec bash "%s/cmake/wine-run.sh" "%s/tls_echo_server.exe" --engine openssl "$@"\n' \
    "$root" "$win" >"$work/wine-server"
  chmod +x "$work/wine-client" "$work/wine-server"
  for mode in "${modes[@]}"; do run_wine "$mode"; done
fi

echo "tls-interop: $n_pass passed, $n_fail failed"
[ "$n_fail" -eq 0 ]
