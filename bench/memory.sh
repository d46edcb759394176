#!/usr/bin/env bash
# bench/memory.sh: what the echo example's memory costs, and whether it
# comes back. For each backend (and mode) it starts a fresh
# examples/echo_server (release build) with --mem-stats 1, which counts
# every byte the library takes from the allocator (a counting allocator
# installed with cport_set_allocator) and prints a line with the process's
# RSS and those bytes on SIGUSR2. Then, BURSTS times over:
#
#   1. bench/loadgen --mode idle opens CONNS connections and holds them;
#      once the server holds them all (its descriptors say so), the server
#      is sampled: RSS and library bytes with CONNS idle connections;
#   2. the load generator checks each still echoes one byte and closes
#      them all; once the server has let every descriptor go and sat idle
#      for SETTLE seconds, it is sampled again: RSS after close.
#
# Reported per backend and burst: RSS at start, with the connections open,
# per idle connection (whole process, and the library's own share), and
# after close. The verdict: every load generator run clean, the server
# exiting 0, and RSS after close settling: the last burst's at most
# BOUND_KB over the first one's (it must not grow burst after burst), and
# so must the library's own bytes after close. When RSS grows but the
# library's bytes do not, the memory is freed heap the C library keeps
# (glibc: see bench/results/memory.txt); --trim-idle 1 hands it back.
#
# Environment:
#   BACKENDS="epoll io_uring"   MODES="completion" (or "completion select")
#   CONNS=10000  BURSTS=4  HOLD=6 (seconds loadgen holds the connections)
#   SETTLE=1.5 (seconds idle before the after-close sample)
#   BOUND_KB=1024  SERVER_ARGS="" (more echo_server options: --trim-idle 1)
#   CPORT_BUILD=build/release (built if needed)  SKIP_BUILD=1
#   OUT=file     also write the table there
#
# Exit status: 0 every cell passed; 1 a failed run or a cell over its
# bound; 2 a build or usage problem.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${CPORT_BUILD:-$ROOT/build/release}
BACKENDS=${BACKENDS:-epoll io_uring}
MODES=${MODES:-completion}
CONNS=${CONNS:-10000}
BURSTS=${BURSTS:-4}
HOLD=${HOLD:-6}
SETTLE=${SETTLE:-1.5}
BOUND_KB=${BOUND_KB:-1024}
SERVER_ARGS=${SERVER_ARGS:-}
OUT=${OUT:-}

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  if [ "$BUILD" = "$ROOT/build/release" ]; then
    (cd "$ROOT" && { [ -f build/release/build.ninja ] || cmake --preset release >/dev/null; } &&
      cmake --build --preset release --target echo_server cport_loadgen >/dev/null) ||
      { echo "memory.sh: build failed"; exit 2; }
  fi
fi
server_bin="$BUILD/echo_server"
loadgen_bin="$BUILD/loadgen"
for b in "$server_bin" "$loadgen_bin"; do
  [ -x "$b" ] || { echo "memory.sh: $b missing"; exit 2; }
done
ulimit -n "$(ulimit -Hn)" 2>/dev/null
if [ "$(ulimit -n)" -lt $((CONNS + 64)) ]; then
  echo "memory.sh: descriptor limit $(ulimit -n) is below CONNS + 64"; exit 2
fi

work=$(mktemp -d)
server_pid=""
lg_pid=""
cleanup() {
  [ -n "$lg_pid" ] && kill "$lg_pid" 2>/dev/null
  [ -n "$server_pid" ] && kill -KILL "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
trap 'echo interrupted; exit 130' INT TERM

nfds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }

# sample LOG: asks the server for a mem: line, prints "rss_kb lib_bytes".
sample() {
  local log=$1 before after
  before=$(grep -c '^mem: ' "$log")
  kill -USR2 "$server_pid"
  for _ in $(seq 1 50); do # the server looks at the flag at least every 100 ms
    after=$(grep -c '^mem: ' "$log")
    [ "$after" -gt "$before" ] && break
    sleep 0.05
  done
  grep '^mem: ' "$log" | tail -n 1 |
    sed -E 's/.*rss_kb=([0-9]+) lib_bytes=(-?[0-9]+).*/\1 \2/'
}

# wait_fds PID OP N SECS: until the process's descriptor count OP N.
wait_fds() {
  local pid=$1 op=$2 n=$3 end=$((SECONDS + $4)) c
  while [ $SECONDS -lt $end ]; do
    c=$(nfds "$pid")
    if [ "$op" = ge ] && [ "$c" -ge "$n" ]; then return 0; fi
    if [ "$op" = le ] && [ "$c" -le "$n" ]; then return 0; fi
    sleep 0.1
  done
  return 1
}

fail=0
rows=()
say() { printf '%s\n' "$*"; }
row() { rows+=("$1"); say "$1"; }

row "$(printf '%-9s %-10s %5s %9s %9s %8s %9s %10s %9s %9s' backend mode burst \
  start_kb open_kb kib/conn lib_b/conn lib_open_kb closed_kb lib_cl_kb)"
for backend in $BACKENDS; do
  for mode in $MODES; do
    log="$work/server-$backend-$mode.log"
    # shellcheck disable=SC2086 # SERVER_ARGS is a list of words
    "$server_bin" --port 0 --backend "$backend" --mode "$mode" --mem-stats 1 $SERVER_ARGS \
      >"$log" 2>&1 &
    server_pid=$!
    port=""
    for _ in $(seq 1 100); do
      port=$(grep -m1 'listening on' "$log" 2>/dev/null | grep -oE '[0-9]+' | tail -n 1)
      [ -n "$port" ] && break
      sleep 0.05
    done
    if [ -z "$port" ]; then
      say "FAIL $backend $mode: the server did not start"; sed 's/^/  | /' "$log"; fail=1
      kill -KILL "$server_pid" 2>/dev/null; server_pid=""; continue
    fi
    sleep 0.3
    read -r start_kb start_lib < <(sample "$log")
    base_fds=$(nfds "$server_pid")
    first_closed=""
    last_closed=""
    first_lib=""
    last_lib=""
    cell_ok=1
    for burst in $(seq 1 "$BURSTS"); do
      "$loadgen_bin" --port "$port" --mode idle --conns "$CONNS" --secs "$HOLD" --timeout 30 \
        >"$work/lg.out" 2>"$work/lg.err" &
      lg_pid=$!
      if ! wait_fds "$server_pid" ge $((base_fds + CONNS)) 60; then
        say "FAIL $backend $mode burst $burst: the server never held $CONNS connections"
        cell_ok=0
      fi
      sleep 1
      read -r open_kb open_lib < <(sample "$log")
      wait "$lg_pid"
      lg_rc=$?
      lg_pid=""
      if [ "$lg_rc" -ne 0 ] || ! grep -q 'ok=1' "$work/lg.out"; then
        say "FAIL $backend $mode burst $burst: loadgen: $(cat "$work/lg.out" "$work/lg.err")"
        cell_ok=0
      fi
      wait_fds "$server_pid" le "$base_fds" 30 ||
        { say "FAIL $backend $mode burst $burst: descriptors left open"; cell_ok=0; }
      sleep "$SETTLE"
      read -r closed_kb closed_lib < <(sample "$log")
      [ -z "$first_closed" ] && first_closed=$closed_kb
      last_closed=$closed_kb
      [ -z "$first_lib" ] && first_lib=$closed_lib
      last_lib=$closed_lib
      row "$(awk -v b="$backend" -v m="$mode" -v n="$burst" -v s="$start_kb" -v o="$open_kb" \
        -v sl="$start_lib" -v ol="$open_lib" -v c="$closed_kb" -v cl="$closed_lib" -v k="$CONNS" \
        'BEGIN { printf "%-9s %-10s %5d %9d %9d %8.2f %9.0f %10.0f %9d %9.0f", b, m, n, s, o,
                 (o - s) / k, (ol - sl) / k, ol / 1024, c, cl / 1024 }')"
    done
    kill -INT "$server_pid"
    wait "$server_pid"
    src=$?
    server_pid=""
    [ "$src" -eq 0 ] || { say "FAIL $backend $mode: server exit $src"; cell_ok=0; }
    grow=$((last_closed - first_closed))
    if [ "$grow" -gt "$BOUND_KB" ]; then
      say "FAIL $backend $mode: RSS after close grew ${grow} KiB over $BURSTS bursts (bound ${BOUND_KB} KiB)"
      if [ "$((${last_lib:-0} - ${first_lib:-0}))" -le 0 ]; then
        # What bench/results/memory.txt found on io_uring: freed heap that
        # glibc keeps (a tcache entry pins the heap's top), not the library.
        say "  the library's bytes after close did not grow (${first_lib} -> ${last_lib}): the growth is freed" \
          "memory the C library keeps; SERVER_ARGS=\"--trim-idle 1\" gives it back (see bench/results/memory.txt)"
      fi
      cell_ok=0
    fi
    lib_grow=$(((${last_lib:-0} - ${first_lib:-0}) / 1024))
    if [ "$lib_grow" -gt "$BOUND_KB" ]; then
      say "FAIL $backend $mode: the library's bytes after close grew ${lib_grow} KiB over $BURSTS bursts"
      cell_ok=0
    fi
    if [ "$cell_ok" -eq 1 ]; then
      say "PASS $backend $mode: after-close RSS ${first_closed} -> ${last_closed} KiB over $BURSTS bursts"
    else
      fail=1
      sed 's/^/  server| /' "$log" | tail -n 20
    fi
  done
done

if [ -n "$OUT" ]; then printf '%s\n' "${rows[@]}" >"$OUT"; fi
exit "$fail"
