#!/usr/bin/env bash
# bench/timers.sh: cport's timers against libuv's uv_timer_t.
#
# Runs bench/timers (cport) and bench/uv_timers (libuv) side by side, each
# scenario in a fresh process pinned to one CPU, in interleaved rounds
# (every scenario and implementation once, then again; the order of the two
# implementations alternates between rounds), and prints one table of
# medians. Each program measures itself: process CPU time (user + sys,
# CLOCK_PROCESS_CPUTIME_ID) over its measured phase (see timers_common.h).
#
#   startstop  1,000,000 timers (1..60,000 ms) started, then cancelled in a
#              random order; cport's figure includes draining the abort
#              message each cancel queues (every 4,096 cancels)
#   churn      10,000 live timers; 1,000,000 times cancel a random one and
#              start another (per-connection idle timeouts); ns per pair
#   fire       100,000 one-shot timers over 0..1000 ms, run until all fired
#              (CPU time of the whole phase; waiting costs none)
#
# It never asserts a time. Exit status: 0; 1 if a run failed its own checks
# (a wrong or missing message, a timer fired twice or early); 2 on a build
# or usage problem.
#
# Environment:
#   ROUNDS=5          interleaved rounds
#   SCENARIOS="startstop churn fire"
#   CPU=0             the CPU both programs are pinned to
#   BENCH_BUILD=dir   the build (build/bench, as bench/run.sh: the top-level
#                     project with CPORT_BUILD_BENCH=ON, RelWithDebInfo)
#   SKIP_BUILD=1      use the binaries as they are
#   OUT=dir           results (bench/results): timers.csv (every run),
#                     timers.txt (the table)
#   CPORT_BACKEND=..  passed through: cport's backend (default epoll)
set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_BUILD=${BENCH_BUILD:-$ROOT/build/bench}
OUT=${OUT:-$ROOT/bench/results}
ROUNDS=${ROUNDS:-5}
SCENARIOS=${SCENARIOS:-"startstop churn fire"}
CPU=${CPU:-0}

log() { echo "$*" >&2; }
die() {
  log "timers.sh: $*"
  exit 2
}

case $ROUNDS in '' | *[!0-9]* | 0) die "ROUNDS must be a positive integer" ;; esac
for sc in $SCENARIOS; do
  case $sc in startstop | churn | fire) ;; *) die "unknown scenario $sc" ;; esac
done
command -v taskset >/dev/null 2>&1 || die "taskset missing (bash bench/setup.sh)"

# ---------------------------------------------------------------------------
# Build: the same build dir and flags as bench/run.sh, target bench_timers
# ---------------------------------------------------------------------------
generator_args=()
command -v ninja >/dev/null 2>&1 && generator_args=(-G Ninja)
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  mkdir -p "$(dirname "$BENCH_BUILD")"
  if [ ! -f "$BENCH_BUILD/CMakeCache.txt" ]; then
    cmake -S "$ROOT" -B "$BENCH_BUILD" "${generator_args[@]}" \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCPORT_BUILD_BENCH=ON \
      -DCPORT_BUILD_TESTS=OFF -DCPORT_BUILD_EXAMPLES=ON >"$BENCH_BUILD.timers.log" 2>&1 ||
      { rm -rf "$BENCH_BUILD"; die "configure failed (see $BENCH_BUILD.timers.log)"; }
  fi
  cmake --build "$BENCH_BUILD" --target bench_timers >>"$BENCH_BUILD.timers.log" 2>&1 ||
    die "build failed (see $BENCH_BUILD.timers.log; libuv: bash bench/setup.sh)"
fi
CPORT_BIN=$BENCH_BUILD/bench/timers
UV_BIN=$BENCH_BUILD/bench/uv_timers
[ -x "$CPORT_BIN" ] || die "no $CPORT_BIN"
[ -x "$UV_BIN" ] || die "no $UV_BIN (libuv1-dev missing? bash bench/setup.sh)"

# ---------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------
mkdir -p "$OUT"
CSV=$OUT/timers.csv
TABLE=$OUT/timers.txt
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

FIELDS="n ops cpu_s user_s sys_s wall_s ns_per_op fired cancelled early early_call max_late_ms rss_kb ok"
echo "round,scenario,impl,$(echo "$FIELDS" | tr ' ' ','),load1,exit" >"$CSV"

kv() { # kv KEY LINE: the value of KEY=... in LINE
  printf '%s\n' "$2" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k {print $2; exit}'
}

FAILED=0
run_one() { # run_one ROUND SCENARIO IMPL
  local round=$1 sc=$2 impl=$3 bin line rc row f
  if [ "$impl" = cport ]; then bin=$CPORT_BIN; else bin=$UV_BIN; fi
  line=$(taskset -c "$CPU" "$bin" --scenario "$sc" 2>"$WORK/err")
  rc=$?
  row="$round,$sc,$impl"
  for f in $FIELDS; do row="$row,$(kv "$f" "$line")"; done
  echo "$row,$(cut -d' ' -f1 /proc/loadavg),$rc" >>"$CSV"
  if [ "$rc" != 0 ] || [ "$(kv ok "$line")" != 1 ]; then
    FAILED=1
    log "timers.sh: FAIL $sc $impl (exit $rc): $(grep -v 'cport backend' "$WORK/err" | head -c 600)"
  fi
  printf '  round %-2s %-9s %-6s %9s ns/op  cpu %8s s  fired %7s  %s\n' "$round" "$sc" "$impl" \
    "$(kv ns_per_op "$line")" "$(kv cpu_s "$line")" "$(kv fired "$line")" \
    "$([ "$rc" = 0 ] && echo ok || echo FAILED)" >&2
}

log "timers.sh: $ROUNDS round(s), scenarios: $SCENARIOS, pinned to CPU $CPU"
START=$(date +%s)
for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then order="cport libuv"; else order="libuv cport"; fi
  for sc in $SCENARIOS; do
    for impl in $order; do run_one "$round" "$sc" "$impl"; done
  done
done
ELAPSED=$(($(date +%s) - START))

# ---------------------------------------------------------------------------
# Table: medians over rounds, ratio cport / libuv
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
  cpu[k] = cpu[k] " " $col["cpu_s"]; ns[k] = ns[k] " " $col["ns_per_op"]
  wall[k] = wall[k] " " $col["wall_s"]; rss[k] = rss[k] " " $col["rss_kb"]
  fired[k] = fired[k] " " $col["fired"]; late[k] = late[k] " " $col["max_late_ms"]
  per_round[k, $col["round"]] = $col["ns_per_op"]; rounds[$col["round"]] = 1
}
END {
  printf "%-10s %-6s %5s %9s %11s %8s %8s %9s %8s %10s %7s %5s\n", "scenario", "impl", "runs", \
    "cpu s", "ns/timer", "x libuv", "paired", "wall s", "RSS MiB", "fired", "late ms", "fails"
  ns_ = split(scen, S, " ")
  for (i = 1; i <= ns_; i++) {
    b = S[i] SUBSEP "libuv"
    bn = median(ns[b])
    for (j = 1; j <= 2; j++) {
      impl = (j == 1) ? "cport" : "libuv"
      k = S[i] SUBSEP impl
      if (!(k in runs)) continue
      c = median(cpu[k]); n = median(ns[k])
      x = (bn > 0 && n != "") ? sprintf("%.2f", n / bn) : "-"
      pl = ""
      for (r in rounds)
        if ((k, r) in per_round && (b, r) in per_round && per_round[b, r] > 0)
          pl = pl " " per_round[k, r] / per_round[b, r]
      pr = (pl == "") ? "-" : sprintf("%.2f", median(pl))
      lt = (S[i] == "fire") ? sprintf("%.1f", median(late[k])) : "-"
      printf "%-10s %-6s %5d %9.3f %11.1f %8s %8s %9.3f %8.1f %10.0f %7s %5d\n", S[i], impl, runs[k], \
        c, n, x, pr, median(wall[k]), median(rss[k]) / 1024, median(fired[k]), lt, fails[k] + 0
    }
  }
}' "$CSV" >"$WORK/table"

{
  echo "cport timer bench: $(date -u '+%Y-%m-%d %H:%M UTC'), git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$([ -z "$(git -C "$ROOT" status --porcelain -- src include bench/timers.c bench/timers_common.h bench/peers/uv_timers.c 2>/dev/null)" ] || echo ' (+ uncommitted changes)')"
  echo "kernel $(uname -r), $(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), both pinned to CPU $CPU"
  echo "libuv $(pkg-config --modversion libuv 2>/dev/null || echo '?'), cport backend ${CPORT_BACKEND:-auto (epoll)}; rounds $ROUNDS (median shown), wall ${ELAPSED} s"
  echo "cpu s: process CPU time (user+sys) of the measured phase; ns/timer: that / timers (churn: / cancel+start pairs)"
  echo "x libuv: ratio of the medians, cport / libuv; paired: median over rounds of the same-round ratio"
  echo "startstop: 1M timers (1..60000 ms) started then cancelled in random order (cport: + draining 1M abort messages)"
  echo "churn: 10k live timers, 1M x (cancel a random one, start a new one); fire: 100k timers over 0..1000 ms, all fired"
  echo "fired: timers that fired during the phase (startstop/churn: their time came first); late ms (fire): max lateness"
  echo
  cat "$WORK/table"
} >"$TABLE"
cat "$TABLE"
log "timers.sh: every run $CSV, table $TABLE"

if [ $FAILED != 0 ]; then
  log "timers.sh: some runs FAILED (see above and the ok column of $CSV)"
  exit 1
fi
exit 0
