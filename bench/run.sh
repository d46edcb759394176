#!/usr/bin/env bash
# bench/run.sh: cport's echo server against its peers, and cport's HTTP
# hello server against libuv's (bench/README.md).
#
# For every scenario and server it starts a fresh server pinned to CPU 0,
# runs bench/loadgen pinned to CPU 1, and measures the server process: CPU
# time (sum of /proc/PID/task/*/schedstat, in ns, plus user/sys ticks from
# /proc/PID/stat) from after "listening on" until it has settled after the
# load generator exited, divided by the messages the load generator counted
# -> server CPU ns per message; peak RSS (VmHWM). Rounds are interleaved
# (every scenario and server once, then again), and the table shows the
# median over rounds with each figure's ratio to raw_epoll's median, and for
# CPU also the median of the per-round ratios ("paired"), which drift of the
# machine between rounds does not move.
#
# It never asserts a time: it reports. Exit status: 0; 1 if any load
# generator run failed (byte mismatch, failed connection, stall) or a
# server did not start or died; 2 on a build or usage problem.
#
# Environment:
#   ROUNDS=3          interleaved rounds
#   QUICK=1           smoke run (~2 min): 1 round, 1 s cells, 1 s idle hold
#   SECS=4            seconds per pingpong/stream/connect cell
#   IDLE_SECS=3       idle hold, seconds
#   IDLE_CONNS=10000  connections in the idle scenario
#   SERVERS="..."     subset/order of: raw_epoll libuv libevent asio liburing
#                     cport-completion cport-select, and the extras
#                     raw_epoll_et cport-uring-completion cport-uring-select
#                     cport-uring-defer (otp.defer: sends and recvs through
#                     the ring) cport-uring-single (and a single-thread
#                     context: SINGLE_ISSUER, DEFER_TASKRUN)
#                     cport-uring-multi (--recv-multi 1: one cport_recv_multi
#                     per connection, the kernel's multishot recv on a
#                     provided-buffer ring) cport-uring-multi-single (and
#                     otp.defer and a single-thread context)
#                     cport-multi (--recv-multi 1 on epoll)
#                     cport-single (epoll, a single-thread context: no
#                     socket, queue or timer locks)
#                     alt-completion alt-select (the echo scenarios' servers)
#                     alt-single alt-uring-completion alt-uring-single
#                     alt-uring-multi-single (the same on io_uring, as
#                     their cport-uring-* counterparts)
#                     TLS servers (run only in the tls-* scenarios, and the
#                     tls-* scenarios run only them): openssl-epoll
#                     (peers/openssl_echo, plain OpenSSL on epoll: the
#                     baseline there) cport-tls-epoll cport-tls-uring
#                     (examples/tls_echo_server, completion mode, epoll or
#                     io_uring), and the extras cport-tls-select (select
#                     mode, epoll) openssl-epoll-ra (openssl_echo with
#                     read-ahead: one recv per 16 KiB, not two); the
#                     first three are the default when a tls-* scenario is
#                     chosen (and the plain ones only with a plain scenario);
#                     alt-tls-epoll alt-tls-uring: CPORT_ALT_BUILD's
#                     tls_echo_server (an A/B of a TLS engine patch)
#   SCENARIOS="..."   subset of: pp1 pp100 pp1000 stream10 connect50 idle10k
#                     http (these by default), tls-stream tls-handshake (on request:
#                     SCENARIOS="tls-stream tls-handshake"), and the extras
#                     stream10q (loadgen ACKs at once: TCP_QUICKACK) and
#                     stream10w1 (one chunk in flight). tls-stream: stream10
#                     over TLS 1.3 (TLS_AES_256_GCM_SHA384, one 16 KiB chunk
#                     is one record); tls-handshake: 10 loops of connect, full
#                     handshake (no resumption), 64-byte echo, close_notify,
#                     close: a message is one handshake
#   TLS_CERTS=dir     the TLS scenarios' certificates (build/tls-certs,
#                     made by scripts/tls-certs.sh if missing)
#   HTTP_SERVERS="..."  the http scenario's servers, subset/order of: libuv
#                     (peers/uv_http_hello) cport-completion (examples/
#                     http_hello, epoll) cport-uring-completion (io_uring)
#                     alt-completion (CPORT_ALT_BUILD's http_hello); default
#                     all but alt-completion (added when CPORT_ALT_BUILD is set)
#   HTTP_CONNS=100    keep-alive connections in the http scenario
#   CPORT_BUILD=dir   a build dir holding cport's echo_server, http_hello
#                     and tls_echo_server
#                     (default: the release preset's, build/release, built
#                     if needed)
#   CPORT_ALT_BUILD=dir  A/B: another build's echo_server (a patched tree),
#                     run as the servers alt-completion and alt-select (added
#                     to the default SERVERS when this is set), and its
#                     http_hello as alt-completion in the http scenario
#   BENCH_BUILD=dir   where loadgen and the peers are built (build/bench)
#   SKIP_BUILD=1      use the binaries as they are
#   OUT=dir           results (bench/results): latest.csv (every run),
#                     summary.csv (medians), latest.txt (the table),
#                     cpu_per_msg.dat and, with gnuplot, cpu_per_msg.png
#   SERVER_CPU=0 CLIENT_CPU=1   the CPUs to pin to
set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_BUILD=${BENCH_BUILD:-$ROOT/build/bench}
OUT=${OUT:-$ROOT/bench/results}
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
  ROUNDS=${ROUNDS:-1}
  SECS=${SECS:-1}
  IDLE_SECS=${IDLE_SECS:-1}
else
  ROUNDS=${ROUNDS:-3}
  SECS=${SECS:-4}
  IDLE_SECS=${IDLE_SECS:-3}
fi
IDLE_CONNS=${IDLE_CONNS:-10000}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
CPORT_ALT_BUILD=${CPORT_ALT_BUILD:-}
SCENARIOS=${SCENARIOS:-"pp1 pp100 pp1000 stream10 connect50 idle10k http"}
# The plain echo servers when a plain echo scenario is chosen, the TLS
# servers when a tls-* one is.
DEFAULT_SERVERS=""
for sc in $SCENARIOS; do
  case $sc in
  http) ;;
  tls-*) DEFAULT_TLS_SERVERS="openssl-epoll cport-tls-epoll cport-tls-uring" ;;
  *) DEFAULT_SERVERS="raw_epoll libuv libevent asio liburing cport-completion cport-select"
     [ -n "$CPORT_ALT_BUILD" ] && DEFAULT_SERVERS="$DEFAULT_SERVERS alt-completion alt-select" ;;
  esac
done
DEFAULT_SERVERS="$DEFAULT_SERVERS ${DEFAULT_TLS_SERVERS:-}"
SERVERS=${SERVERS:-$DEFAULT_SERVERS}
TLS_CERTS=${TLS_CERTS:-$ROOT/build/tls-certs}
DEFAULT_HTTP_SERVERS="libuv cport-completion cport-uring-completion"
[ -n "$CPORT_ALT_BUILD" ] && DEFAULT_HTTP_SERVERS="$DEFAULT_HTTP_SERVERS alt-completion"
HTTP_SERVERS=${HTTP_SERVERS:-$DEFAULT_HTTP_SERVERS}
HTTP_CONNS=${HTTP_CONNS:-100}

log() { printf '%s\n' "$*" >&2; }
die() { log "run.sh: $*"; exit 2; }

# ---------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------
generator_args=()
command -v ninja >/dev/null 2>&1 && generator_args=(-G Ninja)

build_bench() {
  # Preferred: the top-level project with CPORT_BUILD_BENCH=ON (builds
  # cport's echo_server too, RelWithDebInfo like the release preset).
  if [ ! -f "$BENCH_BUILD/CMakeCache.txt" ]; then
    cmake -S "$ROOT" -B "$BENCH_BUILD" "${generator_args[@]}" \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCPORT_BUILD_BENCH=ON \
      -DCPORT_BUILD_TESTS=OFF -DCPORT_BUILD_EXAMPLES=ON >"$BENCH_BUILD.log" 2>&1 ||
      { rm -rf "$BENCH_BUILD"; return 1; }
  fi
  cmake --build "$BENCH_BUILD" --target bench >>"$BENCH_BUILD.log" 2>&1
}

build_bench_standalone() {
  # Fallback when the top level does not configure or build: bench/ alone.
  local dir=$BENCH_BUILD-only
  cmake -S "$ROOT/bench" -B "$dir" "${generator_args[@]}" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$dir.log" 2>&1 &&
    cmake --build "$dir" --target bench >>"$dir.log" 2>&1 || return 1
  BENCH_BIN=$dir
}

BENCH_BIN=$BENCH_BUILD/bench
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  mkdir -p "$(dirname "$BENCH_BUILD")"
  if ! build_bench; then
    log "run.sh: top-level bench build failed (see $BENCH_BUILD.log); building bench/ alone"
    build_bench_standalone || die "bench build failed (see $BENCH_BUILD-only.log)"
  fi
fi
[ -x "$BENCH_BIN/loadgen" ] || { [ -x "$BENCH_BUILD-only/loadgen" ] && BENCH_BIN=$BENCH_BUILD-only; }
LOADGEN=$BENCH_BIN/loadgen
[ -x "$LOADGEN" ] || die "no loadgen in $BENCH_BIN"

# cport's echo server and HTTP server: CPORT_BUILD, else the release preset
# (built here), else the bench build's own copies (same build type).
CPORT_ECHO=""
CPORT_HTTP=""
CPORT_TLS_ECHO=""
if [ -n "${CPORT_BUILD:-}" ]; then
  CPORT_ECHO=$CPORT_BUILD/echo_server
  CPORT_HTTP=$CPORT_BUILD/http_hello
  CPORT_TLS_ECHO=$CPORT_BUILD/tls_echo_server
  [ -x "$CPORT_ECHO" ] || [ -x "$CPORT_HTTP" ] ||
    die "CPORT_BUILD=$CPORT_BUILD has no echo_server and no http_hello"
else
  rel=$ROOT/build/release
  if [ "${SKIP_BUILD:-0}" != 1 ]; then
    if (cd "$ROOT" && { [ -f "$rel/CMakeCache.txt" ] || cmake --preset release >"$rel.log" 2>&1; } &&
        cmake --build "$rel" --target echo_server http_hello >>"$rel.log" 2>&1); then
      CPORT_ECHO=$rel/echo_server
      CPORT_HTTP=$rel/http_hello
      # Apart: a build without TLS still has the other two.
      cmake --build "$rel" --target tls_echo_server >>"$rel.log" 2>&1 &&
        CPORT_TLS_ECHO=$rel/tls_echo_server
    else
      log "run.sh: release preset build of echo_server and http_hello failed (see $rel.log)"
    fi
  elif [ -x "$rel/echo_server" ]; then
    CPORT_ECHO=$rel/echo_server
    CPORT_HTTP=$rel/http_hello
    [ -x "$rel/tls_echo_server" ] && CPORT_TLS_ECHO=$rel/tls_echo_server
  fi
  if [ -z "$CPORT_ECHO" ] && [ -x "$BENCH_BUILD/echo_server" ]; then
    CPORT_ECHO=$BENCH_BUILD/echo_server
    CPORT_HTTP=$BENCH_BUILD/http_hello
    log "run.sh: using $CPORT_ECHO and $CPORT_HTTP"
  fi
  if [ -z "$CPORT_TLS_ECHO" ] && [ -x "$BENCH_BUILD/tls_echo_server" ]; then
    CPORT_TLS_ECHO=$BENCH_BUILD/tls_echo_server
    log "run.sh: using $CPORT_TLS_ECHO"
  fi
fi

# The http scenario's servers answer HTTP: the same names, other programs.
http_server_cmd() {
  case $1 in
  libuv) echo "$BENCH_BIN/uv_http_hello --port 0" ;;
  cport-completion) echo "$CPORT_HTTP --port 0 --backend epoll" ;;
  cport-uring-completion) echo "$CPORT_HTTP --port 0 --backend io_uring" ;;
  alt-completion) echo "$CPORT_ALT_BUILD/http_hello --port 0 --backend epoll" ;;
  *) return 1 ;;
  esac
}

# The TLS servers: the tls-* scenarios' (and only theirs).
tls_server_cmd() {
  local certs="--cert $TLS_CERTS/server.pem --key $TLS_CERTS/server.key"
  case $1 in
  openssl-epoll) echo "$BENCH_BIN/openssl_echo --port 0 $certs" ;;
  openssl-epoll-ra) echo "$BENCH_BIN/openssl_echo --port 0 $certs --read-ahead 1" ;;
  cport-tls-epoll) echo "$CPORT_TLS_ECHO --port 0 $certs --mode completion --backend epoll" ;;
  cport-tls-select) echo "$CPORT_TLS_ECHO --port 0 $certs --mode select --backend epoll" ;;
  cport-tls-uring) echo "$CPORT_TLS_ECHO --port 0 $certs --mode completion --backend io_uring" ;;
  alt-tls-epoll) echo "$CPORT_ALT_BUILD/tls_echo_server --port 0 $certs --mode completion --backend epoll" ;;
  alt-tls-uring) echo "$CPORT_ALT_BUILD/tls_echo_server --port 0 $certs --mode completion --backend io_uring" ;;
  *) return 1 ;;
  esac
}
is_tls_server() { tls_server_cmd "$1" >/dev/null; }

server_cmd() { # server_cmd SERVER [SCENARIO]
  if [ "${2:-}" = http ]; then
    http_server_cmd "$1"
    return
  fi
  if tls_server_cmd "$1"; then return; fi
  case $1 in
  raw_epoll) echo "$BENCH_BIN/raw_epoll --port 0" ;;
  raw_epoll_et) echo "$BENCH_BIN/raw_epoll --port 0 --trigger et" ;;
  libuv) echo "$BENCH_BIN/uv_echo --port 0" ;;
  libevent) echo "$BENCH_BIN/event_echo --port 0" ;;
  asio) echo "$BENCH_BIN/asio_echo --port 0" ;;
  liburing) echo "$BENCH_BIN/uring_echo --port 0" ;;
  cport-completion) echo "$CPORT_ECHO --port 0 --mode completion --backend epoll" ;;
  cport-select) echo "$CPORT_ECHO --port 0 --mode select --backend epoll" ;;
  cport-uring-completion) echo "$CPORT_ECHO --port 0 --mode completion --backend io_uring" ;;
  cport-uring-select) echo "$CPORT_ECHO --port 0 --mode select --backend io_uring" ;;
  cport-uring-defer) echo "$CPORT_ECHO --port 0 --backend io_uring --defer 1" ;;
  cport-uring-single) echo "$CPORT_ECHO --port 0 --backend io_uring --defer 1 --single-thread 1" ;;
  cport-uring-multi) echo "$CPORT_ECHO --port 0 --backend io_uring --recv-multi 1" ;;
  cport-uring-multi-single)
    echo "$CPORT_ECHO --port 0 --backend io_uring --recv-multi 1 --defer 1 --single-thread 1" ;;
  cport-multi) echo "$CPORT_ECHO --port 0 --backend epoll --recv-multi 1" ;;
  cport-single) echo "$CPORT_ECHO --port 0 --mode completion --backend epoll --single-thread 1" ;;
  alt-single) echo "$CPORT_ALT_BUILD/echo_server --port 0 --mode completion --backend epoll --single-thread 1" ;;
  alt-completion) echo "$CPORT_ALT_BUILD/echo_server --port 0 --mode completion --backend epoll" ;;
  alt-select) echo "$CPORT_ALT_BUILD/echo_server --port 0 --mode select --backend epoll" ;;
  alt-uring-completion) echo "$CPORT_ALT_BUILD/echo_server --port 0 --mode completion --backend io_uring" ;;
  alt-uring-single)
    echo "$CPORT_ALT_BUILD/echo_server --port 0 --backend io_uring --defer 1 --single-thread 1" ;;
  alt-uring-multi-single)
    echo "$CPORT_ALT_BUILD/echo_server --port 0 --backend io_uring --recv-multi 1 --defer 1 --single-thread 1" ;;
  *) return 1 ;;
  esac
}

scenario_args() {
  case $1 in
  pp1) echo "--mode pingpong --conns 1 --size 64 --secs $SECS" ;;
  pp100) echo "--mode pingpong --conns 100 --size 64 --secs $SECS" ;;
  pp1000) echo "--mode pingpong --conns 1000 --size 64 --secs $SECS" ;;
  stream10) echo "--mode stream --conns 10 --size 16384 --window 65536 --secs $SECS" ;;
  stream10q) echo "--mode stream --conns 10 --size 16384 --window 65536 --secs $SECS --quickack 1" ;;
  stream10w1) echo "--mode stream --conns 10 --size 16384 --window 16384 --secs $SECS" ;;
  connect50) echo "--mode connect --conns 50 --size 64 --secs $SECS" ;;
  idle10k) echo "--mode idle --conns $IDLE_CONNS --secs $IDLE_SECS" ;;
  http) echo "--mode http --conns $HTTP_CONNS --secs $SECS" ;;
  tls-stream)
    echo "--mode stream --conns 10 --size 16384 --window 65536 --secs $SECS --tls $TLS_CERTS/ca.pem" ;;
  tls-handshake) echo "--mode connect --conns 10 --size 64 --secs $SECS --tls $TLS_CERTS/ca.pem" ;;
  *) return 1 ;;
  esac
}

for sc in $SCENARIOS; do scenario_args "$sc" >/dev/null || die "unknown scenario $sc"; done
HAVE_ECHO=0
HAVE_HTTP=0
for sc in $SCENARIOS; do
  if [ "$sc" = http ]; then HAVE_HTTP=1; else HAVE_ECHO=1; fi
done

# Servers that can run: a missing binary is skipped with a note.
for s in $SERVERS; do server_cmd "$s" >/dev/null || die "unknown server $s"; done
for s in $HTTP_SERVERS; do server_cmd "$s" http >/dev/null || die "unknown http server $s"; done
runnable() { # runnable SCENARIO_KIND SERVER...: prints those with a binary
  local kind=$1 s cmd bin
  shift
  for s in "$@"; do
    cmd=$(server_cmd "$s" "$kind")
    bin=${cmd%% *}
    if [ -n "$bin" ] && [ -x "$bin" ]; then
      echo "$s"
    else
      log "run.sh: skipping${kind:+ $kind} $s (no binary${bin:+ $bin})"
    fi
  done
}
RUN_SERVERS=()
RUN_HTTP_SERVERS=()
# shellcheck disable=SC2086
[ $HAVE_ECHO = 1 ] && mapfile -t RUN_SERVERS < <(runnable "" $SERVERS)
# shellcheck disable=SC2086
[ $HAVE_HTTP = 1 ] && mapfile -t RUN_HTTP_SERVERS < <(runnable http $HTTP_SERVERS)
[ $((${#RUN_SERVERS[@]} + ${#RUN_HTTP_SERVERS[@]})) -gt 0 ] || die "no server to run"
servers_for() { # the servers a scenario runs, one a line
  if [ "$1" = http ]; then
    [ ${#RUN_HTTP_SERVERS[@]} -eq 0 ] || printf '%s\n' "${RUN_HTTP_SERVERS[@]}"
  else
    # TLS servers serve the tls-* scenarios, the others the rest.
    local s tls=0
    case $1 in tls-*) tls=1 ;; esac
    for s in ${RUN_SERVERS[@]+"${RUN_SERVERS[@]}"}; do
      if is_tls_server "$s"; then [ $tls = 1 ] && echo "$s"; else [ $tls = 0 ] && echo "$s"; fi
    done
  fi
  return 0
}
# Every server of the run, in order, once: the table's and the plot's columns.
ALL_SERVERS=$(printf '%s\n' "${RUN_SERVERS[@]}" "${RUN_HTTP_SERVERS[@]}" | awk 'NF && !seen[$0]++' | tr '\n' ' ')

# The TLS scenarios' certificates (scripts/tls-certs.sh makes them once).
case " $SCENARIOS " in *" tls-"*)
  [ -s "$TLS_CERTS/server.pem" ] || bash "$ROOT/scripts/tls-certs.sh" "$TLS_CERTS" >/dev/null 2>&1 ||
    die "could not make the TLS certificates in $TLS_CERTS (scripts/tls-certs.sh)" ;;
esac

# Both processes need room for the idle scenario (each stays under 20,000).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
need=$((IDLE_CONNS + 64))
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge "$need" ] ||
  log "run.sh: warning: ulimit -n $(ulimit -n) < $need: idle10k will fail"

# ---------------------------------------------------------------------------
# Measuring a process
# ---------------------------------------------------------------------------
cpu_ns() { # sum of on-CPU ns over the live threads of $1
  cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f\n", s}'
}
user_sys_ticks() { # "utime stime" of the whole process, in clock ticks
  sed 's/^.*) //' /proc/"$1"/stat 2>/dev/null | awk '{print $12, $13}'
}
hwm_kb() { awk '/^VmHWM:/ {print $2}' /proc/"$1"/status 2>/dev/null; }
load1() { cut -d' ' -f1 /proc/loadavg; }
TICK_MS=$(awk -v hz="$(getconf CLK_TCK)" 'BEGIN {print 1000 / hz}')

# Waits until the server's CPU time stops growing (it has handled the
# closes), at most 3 s. Echo servers that wake on a timer (cport polls its
# stop flag every 100 ms) stay under the threshold.
settle() {
  local pid=$1 prev cur i
  prev=$(cpu_ns "$pid")
  for i in $(seq 30); do
    sleep 0.1
    cur=$(cpu_ns "$pid")
    [ -n "$cur" ] || return 0
    [ $((cur - prev)) -lt 500000 ] && return 0
    prev=$cur
  done
}

kv() { # kv KEY LINE: the value of KEY=... in LINE
  printf '%s\n' "$2" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k {print $2; exit}'
}

mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"; [ -n "${SPID:-}" ] && kill -KILL "$SPID" 2>/dev/null' EXIT

CSV=$OUT/latest.csv
echo "round,scenario,server,conns,size,msgs,bytes,secs,msgs_per_sec,p50_us,p99_us,server_cpu_ms,server_user_ms,server_sys_ms,cpu_ns_per_msg,peak_rss_kb,client_cpu_ms,load1,loadgen_rc,server_exit,ok" >"$CSV"

FAILED=0
SPID=""

run_cell() { # run_cell ROUND SCENARIO SERVER
  local round=$1 sc=$2 srv=$3 cmd args port="" line rc c0 c1 t0 t1 hwm exit_code ok
  cmd=$(server_cmd "$srv" "$sc")
  args=$(scenario_args "$sc")
  : >"$WORK/out"
  # shellcheck disable=SC2086
  taskset -c "$SERVER_CPU" $cmd >"$WORK/out" 2>"$WORK/err" &
  SPID=$!
  for _ in $(seq 100); do
    port=$(awk '/^listening on/ {print $3; exit}' "$WORK/out")
    port=${port##*:} # tls_echo_server says HOST:PORT
    [ -n "$port" ] && break
    kill -0 "$SPID" 2>/dev/null || break
    sleep 0.05
  done
  if [ -z "$port" ]; then
    log "run.sh: $srv did not start: $(head -c 300 "$WORK/err")"
    kill -KILL "$SPID" 2>/dev/null
    wait "$SPID" 2>/dev/null
    SPID=""
    FAILED=1
    echo "$round,$sc,$srv,,,,,,,,,,,,,,,$(load1),,nostart,0" >>"$CSV"
    return
  fi
  c0=$(cpu_ns "$SPID")
  read -r t0u t0s <<<"$(user_sys_ticks "$SPID")"
  # shellcheck disable=SC2086
  line=$(taskset -c "$CLIENT_CPU" "$LOADGEN" --port "$port" $args 2>"$WORK/lgerr")
  rc=$?
  local alive=1
  kill -0 "$SPID" 2>/dev/null || alive=0
  if [ $alive = 1 ]; then settle "$SPID"; fi
  c1=$(cpu_ns "$SPID")
  read -r t1u t1s <<<"$(user_sys_ticks "$SPID")"
  hwm=$(hwm_kb "$SPID")
  kill -TERM "$SPID" 2>/dev/null
  exit_code=""
  for _ in $(seq 100); do
    if ! kill -0 "$SPID" 2>/dev/null; then
      wait "$SPID"
      exit_code=$?
      break
    fi
    sleep 0.05
  done
  if [ -z "$exit_code" ]; then
    kill -KILL "$SPID" 2>/dev/null
    wait "$SPID" 2>/dev/null
    exit_code=hung
  fi
  SPID=""
  [ $alive = 1 ] || exit_code=died
  ok=$(kv ok "$line")
  if [ "$rc" != 0 ] || [ "$ok" != 1 ] || [ $alive = 0 ]; then
    FAILED=1
    log "run.sh: FAIL $sc on $srv (loadgen exit $rc, server $exit_code): $(head -c 500 "$WORK/lgerr")"
  fi
  [ "$exit_code" = 0 ] || log "run.sh: note: $srv exited with $exit_code on SIGTERM ($(head -c 200 "$WORK/err"))"
  local msgs; msgs=$(kv msgs "$line")
  awk -v r="$round" -v sc="$sc" -v srv="$srv" -v line="$line" -v c0="${c0:-0}" -v c1="${c1:-0}" \
      -v u0="${t0u:-0}" -v s0="${t0s:-0}" -v u1="${t1u:-0}" -v s1="${t1s:-0}" -v tick="$TICK_MS" \
      -v hwm="${hwm:-0}" -v l1="$(load1)" -v rc="$rc" -v ex="$exit_code" -v ok="${ok:-0}" 'BEGIN {
    n = split(line, kvs, " ")
    for (i = 1; i <= n; i++) { split(kvs[i], p, "="); v[p[1]] = p[2] }
    cpu = c1 - c0
    per = (v["msgs"] > 0) ? cpu / v["msgs"] : 0
    printf "%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%.1f,%.0f,%.0f,%.0f,%s,%s,%s,%s,%s,%s\n",
      r, sc, srv, v["conns"], v["size"], v["msgs"], v["bytes"], v["secs"], v["msgs_per_sec"],
      v["p50_us"], v["p99_us"], cpu / 1e6, (u1 - u0) * tick, (s1 - s0) * tick, per, hwm,
      v["client_cpu_ms"], l1, rc, ex, ok
  }' >>"$CSV"
  printf '  %-9s %-22s %12s msgs  %8.0f ns/msg  rss %s kB\n' "$sc" "$srv" "${msgs:-?}" \
    "$(awk -v c=$(( ${c1:-0} - ${c0:-0} )) -v m="${msgs:-0}" 'BEGIN {print (m > 0) ? c / m : 0}')" \
    "${hwm:-?}" >&2
}

log "run.sh: ${ROUNDS} round(s), ${SECS} s cells, idle ${IDLE_CONNS} conns held ${IDLE_SECS} s"
[ $HAVE_ECHO = 1 ] && log "run.sh: servers: ${RUN_SERVERS[*]}"
[ $HAVE_HTTP = 1 ] && log "run.sh: http servers: ${RUN_HTTP_SERVERS[*]} ($HTTP_CONNS connections)"
log "run.sh: cport echo_server: ${CPORT_ECHO:-none}, http_hello: ${CPORT_HTTP:-none}, tls_echo_server: ${CPORT_TLS_ECHO:-none}"
START=$(date +%s)
for round in $(seq "$ROUNDS"); do
  log "run.sh: round $round/$ROUNDS"
  for sc in $SCENARIOS; do
    for srv in $(servers_for "$sc"); do
      run_cell "$round" "$sc" "$srv"
    done
  done
done
ELAPSED=$(($(date +%s) - START))

# ---------------------------------------------------------------------------
# Summary: medians over rounds, ratios to raw_epoll (http: to libuv)
# ---------------------------------------------------------------------------
SUMMARY=$OUT/summary.csv
TABLE=$OUT/latest.txt
awk -F, -v scen="$SCENARIOS" -v servers="$ALL_SERVERS" -v summary="$SUMMARY" '
function median(list,    a, n, i, j, t) {
  n = split(list, a, " ")
  if (n == 0) return ""
  for (i = 2; i <= n; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
  return (n % 2) ? a[(n + 1) / 2] + 0 : (a[n / 2] + a[n / 2 + 1]) / 2
}
function ratio(x, base) { return (base > 0 && x != "") ? sprintf("%.2f", x / base) : "-" }
# The median over rounds of (server / raw_epoll in the same round): each
# ratio pairs two cells run minutes apart at most, so drift of the machine
# between rounds cancels, which the ratio of the two medians does not do.
function paired_ratio(k, b,    r, list) {
  list = ""
  for (r in rounds)
    if ((k, r) in round_cpu && (b, r) in round_cpu && round_cpu[b, r] > 0)
      list = list " " round_cpu[k, r] / round_cpu[b, r]
  return list == "" ? "-" : sprintf("%.2f", median(list))
}
NR == 1 { next }
{
  k = $2 SUBSEP $3
  runs[k]++
  if ($21 != 1) fails[k]++
  if ($6 != "" && $6 > 0) {
    cpu[k] = cpu[k] " " $15; tput[k] = tput[k] " " $9
    round_cpu[k, $1] = $15; rounds[$1] = 1
    p50[k] = p50[k] " " $10; p99[k] = p99[k] " " $11; rss[k] = rss[k] " " $16
  }
}
END {
  ns = split(scen, S, " "); nv = split(servers, V, " ")
  print "scenario,server,runs,fails,cpu_ns_per_msg,cpu_x_raw,cpu_x_raw_paired,msgs_per_sec,msgs_x_raw,p50_us,p50_x_raw,p99_us,p99_x_raw,peak_rss_kb,rss_x_raw" > summary
  printf "%-10s %-22s %10s %6s %6s %11s %6s %9s %6s %9s %6s %10s %6s %5s\n", \
    "scenario", "server", "cpu ns/msg", "x raw", "paired", "msgs/s", "x raw", "p50 us", "x raw", \
    "p99 us", "x raw", "RSS MiB", "x raw", "fails"
  for (i = 1; i <= ns; i++) {
    # no raw_epoll speaks HTTP or TLS
    b = S[i] SUBSEP (S[i] == "http" ? "libuv" : S[i] ~ /^tls-/ ? "openssl-epoll" : "raw_epoll")
    bc = median(cpu[b]); bt = median(tput[b]); b5 = median(p50[b]); b9 = median(p99[b]); br = median(rss[b])
    for (j = 1; j <= nv; j++) {
      k = S[i] SUBSEP V[j]
      if (!(k in runs)) continue
      c = median(cpu[k]); t = median(tput[k]); m5 = median(p50[k]); m9 = median(p99[k]); r = median(rss[k])
      f = fails[k] + 0; pr = paired_ratio(k, b)
      printf "%s,%s,%d,%d,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n", S[i], V[j], runs[k], f, \
        c, ratio(c, bc), pr, t, ratio(t, bt), m5, ratio(m5, b5), m9, ratio(m9, b9), r, ratio(r, br) > summary
      printf "%-10s %-22s %10.0f %6s %6s %9.0f %6s %9.1f %6s %10.1f %6s %7.1f %6s %5d\n", \
        S[i], V[j], c, ratio(c, bc), pr, t, ratio(t, bt), m5, ratio(m5, b5), m9, ratio(m9, b9), \
        r / 1024, ratio(r, br), f
    }
  }
}' "$CSV" >"$WORK/table"

{
  echo "cport bench: $(date -u '+%Y-%m-%d %H:%M UTC'), git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$([ -z "$(git -C "$ROOT" status --porcelain -- src include examples 2>/dev/null)" ] || echo ' (+ uncommitted changes in src/include/examples)')"
  echo "kernel $(uname -r), $(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), server on CPU $SERVER_CPU, loadgen on CPU $CLIENT_CPU"
  echo "rounds $ROUNDS (median shown), ${SECS} s per cell, idle: $IDLE_CONNS conns held ${IDLE_SECS} s; wall ${ELAPSED} s"
  echo "cpu ns/msg: server CPU (all threads, user+sys) / messages; x raw: ratio to raw_epoll's median;"
  echo "            paired: median over rounds of the ratio to raw_epoll in the same round"
  echo "messages: pp*/connect: one 64-byte round trip (connect: a whole connect-echo-close cycle);"
  echo "          stream10: one 16 KiB chunk echoed; idle10k: one connection (accept, hold, 1-byte echo, close)"
  case " $SCENARIOS " in *" http "*)
    echo "http: examples/http_hello (cport-*) and peers/uv_http_hello (libuv), $HTTP_CONNS keep-alive"
    echo "      connections, one request in flight each; a message is one request and its response;"
    echo "      x raw and paired are ratios to libuv there (no raw_epoll HTTP server)" ;;
  esac
  case " $SCENARIOS " in *" tls-"*)
    echo "tls-*: TLS 1.3, TLS_AES_256_GCM_SHA384, P-256 ECDSA certificate (scripts/tls-certs.sh), no resumption;"
    echo "       tls-stream: stream10 over TLS (a message is one 16 KiB chunk = one record, echoed);"
    echo "       tls-handshake: 10 loops of connect, full handshake, 64-byte echo, close_notify, close"
    echo "       (a message is one handshake); x raw and paired are ratios to openssl-epoll"
    echo "       (peers/openssl_echo, plain OpenSSL on epoll) there" ;;
  esac
  echo
  cat "$WORK/table"
} >"$TABLE"
cat "$TABLE"

# Data for the plot: scenarios as rows, servers as columns (a server with
# no figure at all, e.g. one that failed everywhere, is left out).
DAT=$OUT/cpu_per_msg.dat
awk -F, -v scen="$SCENARIOS" -v servers="$ALL_SERVERS" '
NR == 1 { next }
$5 != "" { v[$1 SUBSEP $2] = $5; has[$2] = 1 }
END {
  ns = split(scen, S, " "); nv = split(servers, V, " ")
  printf "scenario"; for (j = 1; j <= nv; j++) if (V[j] in has) printf " %s", V[j]; print ""
  for (i = 1; i <= ns; i++) {
    printf "%s", S[i]
    for (j = 1; j <= nv; j++) {
      if (!(V[j] in has)) continue
      x = v[S[i] SUBSEP V[j]]; printf " %s", (x == "" ? "NaN" : x)
    }
    print ""
  }
}' "$SUMMARY" >"$DAT"
nplot=$(($(head -1 "$DAT" | wc -w) - 1))
if [ "$nplot" -lt 1 ]; then
  log "run.sh: nothing to plot"
elif command -v gnuplot >/dev/null 2>&1; then
  (cd "$OUT" && gnuplot -e "datafile='cpu_per_msg.dat'; outfile='cpu_per_msg.png'; nservers=$nplot" \
    "$ROOT/bench/plot.gp") || log "run.sh: gnuplot failed"
else
  log "run.sh: no gnuplot (bench/setup.sh installs it): $OUT/cpu_per_msg.png not drawn"
fi
log "run.sh: raw results $CSV, medians $SUMMARY, table $TABLE"

if [ $FAILED != 0 ]; then
  log "run.sh: some runs FAILED (see above and the ok column of $CSV)"
  exit 1
fi
exit 0
