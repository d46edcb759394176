#!/usr/bin/env bash
# bench/work.sh: cport's worker pool and background lookups against
# libuv's uv_queue_work and uv_getaddrinfo.
#
# Runs bench/work (cport: cport_work, cport_resolve) and bench/uv_work
# (libuv) side by side, each scenario in a fresh process, in interleaved
# rounds (every scenario and implementation once, then again; the order of
# the two implementations alternates between rounds), and prints one table
# of medians. A pool needs CPUs of its own: each program is pinned to the
# CPU set CPUS (default "0,1"; empty: not pinned), with the same pool size
# for both (POOL: cport's threadpool_size, libuv's UV_THREADPOOL_SIZE).
# Each program measures itself over its measured phase: wall time
# (CLOCK_MONOTONIC) and process CPU time (user + sys, every thread,
# CLOCK_PROCESS_CPUTIME_ID); see work_common.h.
#
#   work_rtt    one empty work item in flight: submit, wait for its
#               completion, submit the next; N_RTT round trips; round
#               trips per second (wall) and CPU ns per round trip
#   work_burst  INFLIGHT_BURST items in flight (one more submitted per
#               completion) until N_BURST completed; items per second
#   resolve     INFLIGHT_RESOLVE lookups of "localhost" (service "80",
#               IPv4, stream; /etc/hosts, no network) in flight until
#               N_RESOLVE answered; lookups per second
# Before each measured phase an unmeasured warm-up starts every pool
# thread (and loads the resolver's files).
#
# It never asserts a time. Exit status: 0; 1 if a run failed its own checks
# (a completion missing or duplicated, an item's fn not run exactly once, a
# wrong status or answer, a stall, a crash, a run over RUN_TIMEOUT); 2 on a
# build or usage problem.
#
# Environment:
#   ROUNDS=5            interleaved rounds
#   SCENARIOS="work_rtt work_burst resolve"
#   CPUS=0,1            the CPU set (taskset -c) each program runs on;
#                       CPUS= (empty) for no pinning
#   POOL=4              worker threads, both implementations
#   N_RTT=200000  N_BURST=1000000  N_RESOLVE=100000   measured ops
#   INFLIGHT_BURST=1000  INFLIGHT_RESOLVE=64
#   RUN_TIMEOUT=300     seconds before one run counts as hung (killed)
#   BENCH_BUILD=dir     the build (build/bench, as bench/run.sh: the top-level
#                       project with CPORT_BUILD_BENCH=ON, RelWithDebInfo)
#   SKIP_BUILD=1        use the binaries as they are
#   OUT=dir             results (bench/results): work.csv (every run),
#                       work.txt (the table)
#   CPORT_BACKEND=..    passed through: cport's backend (default epoll)
set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_BUILD=${BENCH_BUILD:-$ROOT/build/bench}
OUT=${OUT:-$ROOT/bench/results}
ROUNDS=${ROUNDS:-5}
SCENARIOS=${SCENARIOS:-"work_rtt work_burst resolve"}
CPUS=${CPUS-0,1}
POOL=${POOL:-4}
N_RTT=${N_RTT:-200000}
N_BURST=${N_BURST:-1000000}
N_RESOLVE=${N_RESOLVE:-100000}
INFLIGHT_BURST=${INFLIGHT_BURST:-1000}
INFLIGHT_RESOLVE=${INFLIGHT_RESOLVE:-64}
RUN_TIMEOUT=${RUN_TIMEOUT:-300}

log() { echo "$*" >&2; }
die() {
  log "work.sh: $*"
  exit 2
}

for v in ROUNDS POOL N_RTT N_BURST N_RESOLVE INFLIGHT_BURST INFLIGHT_RESOLVE RUN_TIMEOUT; do
  case ${!v} in '' | *[!0-9]* | 0) die "$v must be a positive integer" ;; esac
done
for sc in $SCENARIOS; do
  case $sc in work_rtt | work_burst | resolve) ;; *) die "unknown scenario $sc" ;; esac
done
PIN=()
if [ -n "$CPUS" ]; then
  command -v taskset >/dev/null 2>&1 || die "taskset missing (bash bench/setup.sh)"
  taskset -c "$CPUS" true 2>/dev/null || die "CPUS=$CPUS: not a CPU set this machine has"
  PIN=(taskset -c "$CPUS")
fi
command -v timeout >/dev/null 2>&1 || die "timeout (coreutils) missing"

# ---------------------------------------------------------------------------
# Build: the same build dir and flags as bench/run.sh, target bench_work
# ---------------------------------------------------------------------------
generator_args=()
command -v ninja >/dev/null 2>&1 && generator_args=(-G Ninja)
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  mkdir -p "$(dirname "$BENCH_BUILD")"
  if [ ! -f "$BENCH_BUILD/CMakeCache.txt" ]; then
    cmake -S "$ROOT" -B "$BENCH_BUILD" "${generator_args[@]}" \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCPORT_BUILD_BENCH=ON \
      -DCPORT_BUILD_TESTS=OFF -DCPORT_BUILD_EXAMPLES=ON >"$BENCH_BUILD.work.log" 2>&1 ||
      { rm -rf "$BENCH_BUILD"; die "configure failed (see $BENCH_BUILD.work.log)"; }
  fi
  cmake --build "$BENCH_BUILD" --target bench_work >>"$BENCH_BUILD.work.log" 2>&1 ||
    die "build failed (see $BENCH_BUILD.work.log; libuv: bash bench/setup.sh)"
fi
CPORT_BIN=$BENCH_BUILD/bench/work
UV_BIN=$BENCH_BUILD/bench/uv_work
[ -x "$CPORT_BIN" ] || die "no $CPORT_BIN"
[ -x "$UV_BIN" ] || die "no $UV_BIN (libuv1-dev missing? bash bench/setup.sh)"

# ---------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------
mkdir -p "$OUT"
CSV=$OUT/work.csv
TABLE=$OUT/work.txt
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

FIELDS="n ops inflight pool warm cpu_s user_s sys_s wall_s rate ns_per_op vcsw ivcsw csw_per_op ran done missing dup bad threads rss_kb ok"
echo "round,scenario,impl,$(echo "$FIELDS" | tr ' ' ','),load1,exit" >"$CSV"

kv() { # kv KEY LINE: the value of KEY=... in LINE
  printf '%s\n' "$2" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k {print $2; exit}'
}

args_of() { # args_of SCENARIO: the program's arguments
  case $1 in
  work_rtt) echo "--scenario work_rtt --n $N_RTT --pool $POOL" ;;
  work_burst) echo "--scenario work_burst --n $N_BURST --inflight $INFLIGHT_BURST --pool $POOL" ;;
  resolve) echo "--scenario resolve --n $N_RESOLVE --inflight $INFLIGHT_RESOLVE --pool $POOL" ;;
  esac
}

FAILED=0
run_one() { # run_one ROUND SCENARIO IMPL
  local round=$1 sc=$2 impl=$3 bin line rc row f why
  if [ "$impl" = cport ]; then bin=$CPORT_BIN; else bin=$UV_BIN; fi
  # shellcheck disable=SC2046 # the arguments split on purpose
  line=$(UV_THREADPOOL_SIZE=$POOL CPORT_THREADPOOL_SIZE=$POOL \
    timeout -k 5 "$RUN_TIMEOUT" "${PIN[@]}" "$bin" $(args_of "$sc") 2>"$WORK/err")
  rc=$?
  row="$round,$sc,$impl"
  for f in $FIELDS; do row="$row,$(kv "$f" "$line")"; done
  echo "$row,$(cut -d' ' -f1 /proc/loadavg),$rc" >>"$CSV"
  if [ "$rc" != 0 ] || [ "$(kv ok "$line")" != 1 ]; then
    FAILED=1
    why=""
    [ "$rc" = 124 ] && why="timed out after $RUN_TIMEOUT s (hung?); "
    [ "$rc" -gt 128 ] && why="killed by signal $((rc - 128)); "
    log "work.sh: FAIL $sc $impl (exit $rc): $why$(grep -v 'cport backend' "$WORK/err" | head -c 600)"
  fi
  printf '  round %-2s %-10s %-6s %12s /s  %9s cpu ns/op  threads %3s  %s\n' "$round" "$sc" \
    "$impl" "$(kv rate "$line")" "$(kv ns_per_op "$line")" "$(kv threads "$line")" \
    "$([ "$rc" = 0 ] && echo ok || echo FAILED)" >&2
}

log "work.sh: $ROUNDS round(s), scenarios: $SCENARIOS, pool $POOL, $([ -n "$CPUS" ] && echo "pinned to CPUs $CPUS" || echo "not pinned")"
START=$(date +%s)
for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then order="cport libuv"; else order="libuv cport"; fi
  for sc in $SCENARIOS; do
    for impl in $order; do run_one "$round" "$sc" "$impl"; done
  done
done
ELAPSED=$(($(date +%s) - START))

# ---------------------------------------------------------------------------
# Table: medians over rounds, ratios cport / libuv
# ---------------------------------------------------------------------------
awk -F, -v scen="$SCENARIOS" '
function median(list,    a, n, i, j, t) {
  n = split(list, a, " ")
  if (n == 0) return ""
  for (i = 2; i <= n; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
  return (n % 2) ? a[(n + 1) / 2] + 0 : (a[n / 2] + a[n / 2 + 1]) / 2
}
NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
{
  k = $col["scenario"] SUBSEP $col["impl"]
  runs[k]++
  if ($col["exit"] != 0 || $col["ok"] != 1) { fails[k]++; next }
  rate[k] = rate[k] " " $col["rate"]; ns[k] = ns[k] " " $col["ns_per_op"]
  wall[k] = wall[k] " " $col["wall_s"]; thr[k] = thr[k] " " $col["threads"]
  csw[k] = csw[k] " " $col["csw_per_op"]
  per_round[k, $col["round"]] = $col["rate"]; rounds[$col["round"]] = 1
}
END {
  printf "%-10s %-6s %5s %12s %8s %8s %12s %8s %8s %8s %8s %5s\n", "scenario", "impl", "runs", \
    "ops/s", "x libuv", "paired", "cpu ns/op", "x libuv", "csw/op", "wall s", "threads", "fails"
  ns_ = split(scen, S, " ")
  for (i = 1; i <= ns_; i++) {
    b = S[i] SUBSEP "libuv"
    br = median(rate[b]); bn = median(ns[b])
    for (j = 1; j <= 2; j++) {
      impl = (j == 1) ? "cport" : "libuv"
      k = S[i] SUBSEP impl
      if (!(k in runs)) continue
      if (rate[k] == "") {
        printf "%-10s %-6s %5d %12s %8s %8s %12s %8s %8s %8s %8s %5d\n", S[i], impl, runs[k], \
          "-", "-", "-", "-", "-", "-", "-", "-", fails[k] + 0
        continue
      }
      r = median(rate[k]); n = median(ns[k])
      xr = (br > 0) ? sprintf("%.2f", r / br) : "-"
      xn = (bn > 0) ? sprintf("%.2f", n / bn) : "-"
      pl = ""
      for (rd in rounds)
        if ((k, rd) in per_round && (b, rd) in per_round && per_round[b, rd] > 0)
          pl = pl " " per_round[k, rd] / per_round[b, rd]
      pr = (pl == "") ? "-" : sprintf("%.2f", median(pl))
      printf "%-10s %-6s %5d %12.0f %8s %8s %12.1f %8s %8.3f %8.3f %8d %5d\n", S[i], impl, runs[k], \
        r, xr, pr, n, xn, median(csw[k]), median(wall[k]), median(thr[k]), fails[k] + 0
    }
  }
}' "$CSV" >"$WORK/table"

{
  echo "cport work/resolve bench: $(date -u '+%Y-%m-%d %H:%M UTC'), git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$([ -z "$(git -C "$ROOT" status --porcelain -- src include bench/work.c bench/work_common.h bench/peers/uv_work.c 2>/dev/null)" ] || echo ' (+ uncommitted changes)')"
  echo "kernel $(uname -r), $(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), each program $([ -n "$CPUS" ] && echo "pinned to CPUs $CPUS" || echo "not pinned")"
  echo "libuv $(pkg-config --modversion libuv 2>/dev/null || echo '?'), cport backend ${CPORT_BACKEND:-auto (epoll)}; pool $POOL threads (both); rounds $ROUNDS (median shown), wall ${ELAPSED} s"
  echo "ops/s: ops / wall time of the measured phase; cpu ns/op: process CPU time (user+sys, every thread) / ops"
  echo "x libuv: ratio of the medians, cport / libuv (ops/s: > 1 is cport faster; cpu: < 1 is cport cheaper); paired: median of the same-round ops/s ratios"
  echo "work_rtt: 1 empty work item in flight, $N_RTT round trips; work_burst: $INFLIGHT_BURST in flight, $N_BURST items"
  echo "resolve: $INFLIGHT_RESOLVE lookups of localhost:80 (IPv4, stream; /etc/hosts) in flight, $N_RESOLVE answered"
  echo "csw/op: context switches (voluntary + involuntary, every thread; getrusage) per op; threads: the process's threads at the end of the phase (1 + pool)"
  echo
  cat "$WORK/table"
} >"$TABLE"
cat "$TABLE"
log "work.sh: every run $CSV, table $TABLE"

if [ $FAILED != 0 ]; then
  log "work.sh: some runs FAILED (see above and the ok column of $CSV)"
  exit 1
fi
exit 0
