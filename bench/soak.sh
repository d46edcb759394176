#!/usr/bin/env bash
# bench/soak.sh: the echo example under a long, mixed load, watched for
# errors and for memory that keeps growing.
#
#   bash bench/soak.sh                 # 10 minutes on epoll
#   MINUTES=0.34 SAMPLE=5 bash bench/soak.sh   # a 20-second smoke
#
# One examples/echo_server (release build, --mem-stats 1) serves, at once
# and for the whole run, three bench/loadgen clients, each checking every
# echoed byte:
#   echo    pingpong: ECHO_CONNS connections, 512-byte round trips
#   churn   connect: CHURN_CONNS loops of connect, 100 bytes, echo, close
#   stream  stream: STREAM_CONNS connections, 16 KiB chunks, 256 KiB in flight
# Every SAMPLE seconds the server's RSS (/proc) and the bytes the library
# holds (its mem: line on SIGUSR2) are sampled into a table. Once the
# clients are done and the server has sat idle for a few seconds, it is
# sampled once more, then stopped with SIGINT.
#
# Verdict (last line: PASS soak ... or FAIL soak ...):
#   - no errors: every client exits 0 with ok=1 (no byte lost, corrupted
#     or stalled for 10 s), the server stays up, reports no failed call
#     and exits 0;
#   - RSS settles: after the warm-up (the first fifth of the run, at least
#     one sample), no sample exceeds the warm-up's highest by more than
#     SLACK_KB.
#
# Environment:
#   MINUTES=10  SAMPLE=30 (seconds)  BACKEND=epoll  MODE=completion
#   ECHO_CONNS=50  CHURN_CONNS=4  STREAM_CONNS=8  SLACK_KB=8192
#   SERVER_ARGS="" (more echo_server options)  NICE=10 (the soak's processes
#   run at this niceness, so the machine stays usable)
#   CPORT_BUILD=build/release (built if needed)  SKIP_BUILD=1
#   OUT=file   also write the table and the verdict there
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${CPORT_BUILD:-$ROOT/build/release}
MINUTES=${MINUTES:-10}
SAMPLE=${SAMPLE:-30}
BACKEND=${BACKEND:-epoll}
MODE=${MODE:-completion}
ECHO_CONNS=${ECHO_CONNS:-50}
CHURN_CONNS=${CHURN_CONNS:-4}
STREAM_CONNS=${STREAM_CONNS:-8}
SLACK_KB=${SLACK_KB:-8192}
SERVER_ARGS=${SERVER_ARGS:-}
NICE=${NICE:-10}
OUT=${OUT:-}

if [ "${SKIP_BUILD:-0}" != 1 ] && [ "$BUILD" = "$ROOT/build/release" ]; then
  (cd "$ROOT" && { [ -f build/release/build.ninja ] || cmake --preset release >/dev/null; } &&
    cmake --build --preset release --target echo_server cport_loadgen >/dev/null) ||
    { echo "soak.sh: build failed"; exit 2; }
fi
server_bin="$BUILD/echo_server"
loadgen_bin="$BUILD/loadgen"
for b in "$server_bin" "$loadgen_bin"; do
  [ -x "$b" ] || { echo "soak.sh: $b missing"; exit 2; }
done
secs=$(awk -v m="$MINUTES" 'BEGIN { s = int(m * 60 + 0.5); print (s < 1 ? 1 : s) }')

work=$(mktemp -d)
server_pid=""
client_pids=()
cleanup() {
  local p
  for p in "${client_pids[@]}"; do kill "$p" 2>/dev/null; done
  [ -n "$server_pid" ] && kill -KILL "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
trap 'echo interrupted; exit 130' INT TERM

lines=()
say() { lines+=("$1"); printf '%s\n' "$1"; }

log="$work/server.log"
# shellcheck disable=SC2086 # SERVER_ARGS is a list of words
nice -n "$NICE" "$server_bin" --port 0 --backend "$BACKEND" --mode "$MODE" --mem-stats 1 \
  $SERVER_ARGS >"$log" 2>&1 &
server_pid=$!
port=""
for _ in $(seq 1 100); do
  port=$(grep -m1 'listening on' "$log" 2>/dev/null | grep -oE '[0-9]+' | tail -n 1)
  [ -n "$port" ] && break
  sleep 0.05
done
[ -n "$port" ] || { sed 's/^/  server| /' "$log"; echo "FAIL soak: the server did not start"; exit 1; }

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
lib_kb() { # asks the server for its mem: line; prints the library's KiB
  local before after
  before=$(grep -c '^mem: ' "$log")
  kill -USR2 "$server_pid" 2>/dev/null
  for _ in $(seq 1 40); do
    after=$(grep -c '^mem: ' "$log")
    [ "$after" -gt "$before" ] && break
    sleep 0.05
  done
  grep '^mem: ' "$log" | tail -n 1 | sed -E 's/.*lib_bytes=(-?[0-9]+).*/\1/' |
    awk '{ printf "%d", $1 / 1024 }'
}

start_rss=$(rss_kb "$server_pid")
start_lib=$(lib_kb)
say "soak: echo_server --backend $BACKEND --mode $MODE${SERVER_ARGS:+ $SERVER_ARGS}, ${secs} s, sampled every ${SAMPLE} s"
say "  clients: echo pingpong x$ECHO_CONNS (512 B), churn connect x$CHURN_CONNS (100 B), stream x$STREAM_CONNS (16 KiB chunks, 256 KiB window)"
say "$(printf '  %6s %9s %8s %7s' t_s rss_kb lib_kb cpu_%)"
say "$(printf '  %6d %9d %8d %7s' 0 "$start_rss" "$start_lib" -)"

run_client() { # NAME ARGS...
  local name=$1
  shift
  nice -n "$NICE" "$loadgen_bin" --port "$port" --secs "$secs" --timeout 10 "$@" \
    >"$work/$name.out" 2>"$work/$name.err" &
  client_pids+=($!)
}
run_client echo --mode pingpong --conns "$ECHO_CONNS" --size 512
run_client churn --mode connect --conns "$CHURN_CONNS" --size 100
run_client stream --mode stream --conns "$STREAM_CONNS" --size 16384 --window 262144

t0=$SECONDS
samples=()
hz=$(getconf CLK_TCK)
last_ticks=$(cpu_ticks "$server_pid")
last_t=$SECONDS
while :; do
  sleep "$SAMPLE"
  t=$((SECONDS - t0))
  kill -0 "$server_pid" 2>/dev/null || break
  running=0
  for p in "${client_pids[@]}"; do kill -0 "$p" 2>/dev/null && running=1; done
  [ "$running" -eq 1 ] || break
  r=$(rss_kb "$server_pid")
  l=$(lib_kb)
  ticks=$(cpu_ticks "$server_pid")
  cpu=$(awk -v d=$((ticks - last_ticks)) -v s=$((SECONDS - last_t)) -v hz="$hz" \
    'BEGIN { printf "%.0f", (s > 0 ? 100 * d / hz / s : 0) }')
  last_ticks=$ticks
  last_t=$SECONDS
  samples+=("$t $r")
  say "$(printf '  %6d %9d %8d %7s' "$t" "$r" "$l" "$cpu")"
done

fail=0
why=()
for i in "${!client_pids[@]}"; do
  wait "${client_pids[$i]}"
  rc=$?
  name=$(echo echo churn stream | cut -d' ' -f$((i + 1)))
  res=$(cat "$work/$name.out" 2>/dev/null)
  say "  $name: ${res:-no result} (exit $rc)"
  if [ "$rc" -ne 0 ] || ! grep -q 'ok=1' <<<"$res"; then
    fail=1
    why+=("$name client failed: $(tail -n 3 "$work/$name.err" | tr '\n' ' ')")
  fi
done
client_pids=()

if ! kill -0 "$server_pid" 2>/dev/null; then
  fail=1
  why+=("the server died")
else
  sleep 3
  r=$(rss_kb "$server_pid")
  l=$(lib_kb)
  say "$(printf '  %6s %9d %8d %7s' idle "$r" "$l" -)"
  kill -INT "$server_pid"
  wait "$server_pid"
  src=$?
  server_pid=""
  [ "$src" -eq 0 ] || { fail=1; why+=("server exit $src"); }
fi
errs=$(grep -E '^echo_server: ' "$log" | grep -cvE 'connections accepted|still holds')
if [ "$errs" -gt 0 ]; then
  fail=1
  why+=("the server reported $errs failed calls: $(grep -E '^echo_server: ' "$log" | grep -vE 'connections accepted|still holds' | head -n 3 | tr '\n' ' ')")
fi

# RSS settles: nothing after the warm-up above the warm-up's peak + slack.
n=${#samples[@]}
if [ "$n" -lt 2 ]; then
  fail=1
  why+=("only $n samples: run longer than SAMPLE")
  verdict_rss="too few samples"
else
  warm=$(( (n + 4) / 5 ))
  peak=0
  for ((i = 0; i < warm; i++)); do
    v=${samples[$i]#* }
    [ "$v" -gt "$peak" ] && peak=$v
  done
  worst=0
  for ((i = warm; i < n; i++)); do
    v=${samples[$i]#* }
    [ "$v" -gt "$worst" ] && worst=$v
  done
  verdict_rss="RSS warm-up peak ${peak} KiB, later peak ${worst} KiB (bound +${SLACK_KB} KiB)"
  if [ "$worst" -gt $((peak + SLACK_KB)) ]; then
    fail=1
    why+=("RSS grew past the bound: $verdict_rss")
  fi
fi

if [ "$fail" -eq 0 ]; then
  say "PASS soak: $BACKEND $MODE, ${secs} s, no errors, $verdict_rss"
else
  sed 's/^/  server| /' "$log" | grep -v '^  server| mem: ' | tail -n 20
  say "FAIL soak: $BACKEND $MODE, ${secs} s: ${why[*]}"
fi
if [ -n "$OUT" ]; then printf '%s\n' "${lines[@]}" >"$OUT"; fi
exit "$fail"
