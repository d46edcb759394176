#!/usr/bin/env bash
# Hostile peers against the echo example (issue 16): the attacks of
# test/hostile/hostile.c, on every backend and mode, with the server watched
# from outside. Run by scripts/test.sh (one summary row per cell); by hand:
#
#   bash scripts/hostile.sh                          # every cell
#   bash scripts/hostile.sh linux:io_uring:select    # one cell
#   bash scripts/hostile.sh wine:completion          # echo_server.exe under Wine
#
# Cells: linux:epoll:completion linux:epoll:select linux:io_uring:completion
# linux:io_uring:select (build/debug/echo_server: ASan + UBSan watch every
# attack, and LeakSanitizer the exit), wine:completion wine:select
# (build/mingw/echo_server.exe under cmake/wine-run.sh, with a persistent
# wineserver, started here if none runs; smaller counts). A Linux cell
# may name a variant of the server: linux:io_uring:completion:defer
# (--defer 1), linux:io_uring:select:single (--single-thread 1); none of
# them is in the default set. Environment:
# CPORT_HOSTILE_SEED (default 1: the runs are reproducible), CPORT_WINEPREFIX.
#
# Attacks (hostile.c says exactly what each does and checks):
#   slowloris  1,000 connections (Wine: 100), one byte per second each, 6 s
#   rst        2,000 connections (Wine: 200) reset before they are accepted
#   noread     20 connections (Wine: 10) that fill the server and never read
#   halfclose  200 connections (Wine: 50), random payloads, then SHUT_WR
#   random     100 connections (Wine: 30), random binary payloads and splits
#   emfile     300 connections to a server whose RLIMIT_NOFILE is 128
#              (prlimit); Linux only (below)
# Asserted for each, on top of hostile's own checks (no lost, extra or
# corrupted byte; a normal client still served; near-zero CPU while the
# server is stalled or full):
#   - no leaked descriptor: once the attack's clients are gone, the server
#     has as many open descriptors as before it (waited for up to 5 s:
#     closes are asynchronous);
#   - bounded memory: the server's RSS, sampled every 0.1 s during the
#     attack, stays under RSS before + 64 KiB per attacking connection (the
#     example keeps one 64 KiB buffer per connection) + a slack (Linux:
#     32 MiB, for ASan's quarantine, capped at 16 MiB here with
#     ASAN_OPTIONS, and its allocator; Wine: 64 MiB). A server that buffered
#     what noread's connections push (about 6 MB each on this kernel)
#     would be far over;
#   - CPU while stalled (hostile --watch): at most 5% of a CPU while noread
#     holds the server full and while emfile holds it out of descriptors;
#     at most 20% while slowloris trickles its 1,000 bytes a second (ASan
#     costs a few percent; a spinning loop is 100%);
#   - the server exits 0 on SIGINT afterwards (under ASan: no leak).
# Under Wine the sockets are the wineserver's: a Windows socket never closed
# keeps a descriptor open in the wineserver, so the descriptor check counts
# the wineserver's and the program's; CPU is the program's plus the
# wineserver's (the wineserver polls the sockets); RSS is the program's.
# emfile is skipped under Wine: a Windows process has no descriptor limit to
# lower, and lowering the wineserver's would fail every Wine process's
# calls, not the server's accepts.
#
# Exit status 0 if every cell passed, 1 otherwise. The last line of each
# cell is "PASS|FAIL hostile: CELL (...)".
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root" || exit 2
dbg="$root/build/debug"
win="$root/build/mingw"
seed="${CPORT_HOSTILE_SEED:-1}"
export CPORT_WINEPREFIX="${CPORT_WINEPREFIX:-${HOME:-/root}/.cache/cport/wineprefix}"
work="$(mktemp -d)"
server_pid=""   # what we started (timeout, or wine-run.sh -> timeout)
watch_pid=""    # the server process itself (under Wine: the .exe's)
sampler_pid=""
started_wineserver=0

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  [ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -KILL "$server_pid" 2>/dev/null
    wait "$server_pid" 2>/dev/null
  fi
  [ "$started_wineserver" -eq 1 ] && bash cmake/wine-run.sh --stop-server
  rm -rf "$work"
}
trap cleanup EXIT
trap 'echo "interrupted"; exit 130' INT TERM

cell_fail=0
check() { # check PASS|FAIL WHAT
  echo "  $1 $2"
  [ "$1" = PASS ] || cell_fail=1
}

nfds() { # descriptors of the given processes, together
  local n=0 p
  for p in "$@"; do n=$((n + $(find "/proc/$p/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l))); done
  echo "$n"
}
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# The wineserver of our prefix: its working directory is the prefix's
# server directory, .../server-DEV-INODE (the prefix's, in hex).
wineserver_pid() {
  local dir p
  dir="server-$(stat -c '%D' "$CPORT_WINEPREFIX" 2>/dev/null)-$(printf '%x' "$(stat -c '%i' "$CPORT_WINEPREFIX" 2>/dev/null)")"
  for p in /proc/[0-9]*; do
    case "$(readlink "$p/exe" 2>/dev/null)" in
      */wineserver*) case "$(readlink "$p/cwd" 2>/dev/null)" in */"$dir") echo "${p#/proc/}"; return 0 ;; esac ;;
    esac
  done
  return 1
}

# The process below $1 whose command line names $2 (the .exe under Wine).
find_descendant() {
  local pid="$1" pat="$2" c
  # shellcheck disable=SC2013 # the file is one line of numbers
  for c in $(cat "/proc/$pid/task/"*/children 2>/dev/null); do
    if tr '\0' ' ' <"/proc/$c/cmdline" 2>/dev/null | grep -q -- "$pat"; then echo "$c"; return 0; fi
    find_descendant "$c" "$pat" && return 0
  done
  return 1
}

# start_server LOG CMD...: sets server_pid and port, or returns 1.
start_server() {
  local log="$1"
  shift
  "$@" >"$log" 2>&1 &
  server_pid=$!
  port=""
  for _ in $(seq 1 300); do # up to 30 s (a cold Wine start takes seconds)
    port="$(grep -m1 'listening on' "$log" 2>/dev/null | grep -oE '[0-9]+' | tail -n 1)"
    [ -n "$port" ] && return 0
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  sed 's/^/  server| /' "$log"
  return 1
}

stop_server() { # stop_server LOG: SIGINT, must exit 0 within 20 s
  local log="$1" rc
  kill -INT "$server_pid" 2>/dev/null
  for _ in $(seq 1 200); do
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$server_pid" 2>/dev/null; then
    kill -KILL "$server_pid" 2>/dev/null
    wait "$server_pid" 2>/dev/null
    check FAIL "server exits on SIGINT (it did not stop)"
  else
    wait "$server_pid"
    rc=$?
    if [ "$rc" -eq 0 ]; then
      check PASS "server exits 0 on SIGINT"
    else
      check FAIL "server exits 0 on SIGINT (exit $rc)"
      grep -E 'ERROR|SUMMARY|runtime error' "$log" | head -n 20 | sed 's/^/  server| /'
    fi
  fi
  server_pid=""
}

# attack NAME CONNS SLACK_KB FD_PIDS -- HOSTILE_ARGS...: one attack on the
# running server (port, watch_pid), with the checks above.
attack() {
  local name="$1" conns="$2" slack="$3" fdp="$4" fd0 fd1 rss0 peak bound rc line
  shift 5
  read -r -a fdpids <<<"$fdp"
  fd0=$(nfds "${fdpids[@]}")
  rss0=$(rss_kb "$watch_pid")
  (
    p=0
    while :; do
      r=$(rss_kb "$watch_pid")
      # Written whole, then renamed: killed between the truncation and the
      # write, a plain redirection left the file empty (a peak of "").
      [ "${r:-0}" -gt "$p" ] && p=$r && echo "$p" >"$work/peak.new" && mv -f "$work/peak.new" "$work/peak"
      sleep 0.1
    done
  ) &
  sampler_pid=$!
  line=$(timeout --kill-after=10 180 "$hostile" --port "$port" --seed "$seed" "$@" 2>"$work/err")
  rc=$?
  kill "$sampler_pid" 2>/dev/null
  wait "$sampler_pid" 2>/dev/null
  sampler_pid=""
  peak=$(cat "$work/peak" 2>/dev/null || echo 0)
  rm -f "$work/peak"
  echo "  hostile: $line"
  sed 's/^/  hostile| /' "$work/err"
  if [ "$rc" -eq 0 ]; then
    check PASS "$name: every byte echoed and checked"
  else
    check FAIL "$name: hostile exit $rc"
  fi
  fd1=$(nfds "${fdpids[@]}")
  for _ in $(seq 1 50); do
    [ "$fd1" -le "$fd0" ] && break
    sleep 0.1
    fd1=$(nfds "${fdpids[@]}")
  done
  if [ "$fd1" -le "$fd0" ]; then
    check PASS "$name: descriptors $fd0 before, $fd1 after"
  else
    check FAIL "$name: descriptors $fd0 before, $fd1 after (leaked)"
  fi
  bound=$((rss0 + conns * 64 + slack))
  if [ "$peak" -le "$bound" ]; then
    check PASS "$name: RSS ${rss0} KiB before, peak ${peak} KiB (bound ${bound} KiB)"
  else
    check FAIL "$name: RSS ${rss0} KiB before, peak ${peak} KiB (over the bound, ${bound} KiB)"
  fi
  # hostile's line, for the summary: bytes and CPU
  summary+=" $name $(grep -oE '(^| )bytes=[0-9]+' <<<"$line" | tr -d ' ')"
  summary+="$(grep -oE 'cpu_pct=[0-9.]+' <<<"$line" | sed 's/^/,/')"
}

linux_cell() { # linux_cell BACKEND MODE [ECHO_SERVER_OPTION VALUE]...
  local b="$1" m="$2" log="$work/server.log"
  shift 2
  hostile="$dbg/hostile"
  local srv=("$dbg/echo_server" --port 0 --backend "$b" --mode "$m" "$@")
  export ASAN_OPTIONS="quarantine_size_mb=16:detect_leaks=1:abort_on_error=1"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
  if ! start_server "$log" timeout --kill-after=10 600 "${srv[@]}"; then
    check FAIL "server did not print 'listening on PORT'"
    return
  fi
  watch_pid=$(find_descendant "$server_pid" echo_server) || watch_pid=$server_pid
  local s=(--watch "$watch_pid" --timeout 20)
  attack slowloris 1000 32768 "$watch_pid" -- --mode slowloris --conns 1000 --secs 6 "${s[@]}" --max-cpu 20
  attack rst 2000 32768 "$watch_pid" -- --mode rst --conns 2000 "${s[@]}"
  attack noread 20 32768 "$watch_pid" -- --mode noread --conns 20 --secs 2 "${s[@]}" --max-cpu 5
  attack halfclose 200 32768 "$watch_pid" -- --mode halfclose --conns 200 "${s[@]}"
  attack random 100 32768 "$watch_pid" -- --mode random --conns 100 "${s[@]}"
  stop_server "$log"
  # emfile: a server of its own, with 128 descriptors at most.
  if ! start_server "$log" timeout --kill-after=10 600 prlimit --nofile=128:128 "${srv[@]}"; then
    check FAIL "server (RLIMIT_NOFILE 128) did not print 'listening on PORT'"
    return
  fi
  watch_pid=$(find_descendant "$server_pid" echo_server) || watch_pid=$server_pid
  s=(--watch "$watch_pid" --timeout 20)
  attack emfile 300 32768 "$watch_pid" -- --mode emfile --conns 300 --secs 2 "${s[@]}" --max-cpu 5
  stop_server "$log"
}

wine_cell() { # wine_cell MODE
  local m="$1" log="$work/server.log" ws
  hostile="$win/hostile"
  [ -x "$hostile" ] || hostile="$dbg/hostile"
  if ! ws=$(wineserver_pid); then
    bash cmake/wine-run.sh --start-server
    started_wineserver=1
    ws=$(wineserver_pid) || { check FAIL "no wineserver for $CPORT_WINEPREFIX"; return; }
  fi
  if ! start_server "$log" bash cmake/wine-run.sh "$win/echo_server.exe" --port 0 --mode "$m"; then
    check FAIL "echo_server.exe did not print 'listening on PORT'"
    return
  fi
  watch_pid=$(find_descendant "$server_pid" echo_server.exe) || {
    check FAIL "cannot find the echo_server.exe process"
    stop_server "$log"
    return
  }
  local s=(--watch "$watch_pid,$ws" --timeout 30)
  attack slowloris 100 65536 "$watch_pid $ws" -- --mode slowloris --conns 100 --secs 6 "${s[@]}" --max-cpu 20
  attack rst 200 65536 "$watch_pid $ws" -- --mode rst --conns 200 "${s[@]}"
  attack noread 10 65536 "$watch_pid $ws" -- --mode noread --conns 10 --secs 2 "${s[@]}" --max-cpu 5
  attack halfclose 50 65536 "$watch_pid $ws" -- --mode halfclose --conns 50 "${s[@]}"
  attack random 30 65536 "$watch_pid $ws" -- --mode random --conns 30 --bytes 262144 "${s[@]}"
  echo "  SKIP emfile: no descriptor limit to lower under Wine (see the top of this script)"
  stop_server "$log"
}

cells=("$@")
if [ "${#cells[@]}" -eq 0 ]; then
  cells=(linux:epoll:completion linux:epoll:select linux:io_uring:completion linux:io_uring:select)
  [ -f "$win/echo_server.exe" ] && cells+=(wine:completion wine:select)
fi
failed=0
for cell in "${cells[@]}"; do
  t0=$SECONDS
  cell_fail=0
  summary=""
  echo "==> hostile: ${cell//:/ }"
  case "$cell" in
    linux:*:*)
      IFS=: read -r _ b m extra <<<"$cell"
      opts=()
      case "${extra:-}" in
        "") ;;
        defer) opts=(--defer 1) ;;
        single) opts=(--single-thread 1) ;;
        *) check FAIL "unknown variant $extra" ;;
      esac
      if [ ! -x "$dbg/echo_server" ] || [ ! -x "$dbg/hostile" ]; then
        check FAIL "build/debug has no echo_server or hostile"
      elif [ "$cell_fail" -eq 0 ]; then
        linux_cell "$b" "$m" "${opts[@]}"
      fi ;;
    wine:*)
      if [ ! -f "$win/echo_server.exe" ]; then
        check FAIL "build/mingw has no echo_server.exe"
      else
        wine_cell "${cell#wine:}"
      fi ;;
    *) check FAIL "unknown cell $cell" ;;
  esac
  verdict=PASS
  [ "$cell_fail" -eq 0 ] || { verdict=FAIL; failed=1; }
  echo "$verdict hostile: ${cell//:/ } ($((SECONDS - t0)) s;$summary)"
done
exit "$failed"
