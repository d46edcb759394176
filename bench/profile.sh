#!/usr/bin/env bash
# bench/profile.sh: where a server spends its CPU under one scenario.
#   bench/profile.sh SERVER SCENARIO [perf|callgrind|stat]
# SERVER and SCENARIO as in run.sh (cport-completion pp100, ...). perf (the
# default) writes perf.data and prints `perf report`; callgrind runs the
# server under valgrind (about 50x slower: the load is capped by messages,
# not time) and prints callgrind_annotate; stat prints `perf stat`;
# syscalls counts the server's system calls per message (perf tracepoints).
# Binaries come from a previous bench/run.sh (BENCH_BUILD, CPORT_BUILD).
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SRV=${1:?server}
SC=${2:?scenario}
TOOL=${3:-perf}
OUTDIR=${OUTDIR:-/tmp/cport-profile}
mkdir -p "$OUTDIR"
BENCH_BIN=${BENCH_BUILD:-$ROOT/build/bench}/bench
CPORT_ECHO=${CPORT_BUILD:-$ROOT/build/release}/echo_server
[ -x "$CPORT_ECHO" ] || CPORT_ECHO=${BENCH_BUILD:-$ROOT/build/bench}/echo_server
CPORT_TLS_ECHO=${CPORT_BUILD:-$ROOT/build/release}/tls_echo_server
[ -x "$CPORT_TLS_ECHO" ] || CPORT_TLS_ECHO=${BENCH_BUILD:-$ROOT/build/bench}/tls_echo_server
TLS_CERTS=${TLS_CERTS:-$ROOT/build/tls-certs} # the tls-* scenarios (run.sh makes them)
SECS=${SECS:-4}
IDLE_CONNS=${IDLE_CONNS:-10000}
IDLE_SECS=${IDLE_SECS:-2}
# shellcheck source=/dev/null
eval "$(sed -n '/^tls_server_cmd()/,/^}/p; /^is_tls_server()/p; /^server_cmd()/,/^}/p; /^scenario_args()/,/^}/p' "$ROOT/bench/run.sh")"
cmd=$(server_cmd "$SRV") || { echo "unknown server $SRV" >&2; exit 2; }
args=$(scenario_args "$SC") || { echo "unknown scenario $SC" >&2; exit 2; }
ulimit -n "$(ulimit -Hn)"

case $TOOL in
callgrind)
  # Cap the work by messages: under valgrind the server is the bottleneck.
  args="$args --msgs ${MSGS:-20000} --timeout 60"
  # shellcheck disable=SC2086
  taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$OUTDIR/callgrind.out" \
    $cmd >"$OUTDIR/server.out" 2>"$OUTDIR/server.err" &
  ;;
*)
  # shellcheck disable=SC2086
  taskset -c 0 $cmd >"$OUTDIR/server.out" 2>"$OUTDIR/server.err" &
  ;;
esac
SPID=$!
port=""
for _ in $(seq 200); do
  port=$(awk '/^listening on/ {print $3; exit}' "$OUTDIR/server.out")
  port=${port##*:} # tls_echo_server says HOST:PORT
  [ -n "$port" ] && break
  sleep 0.05
done
[ -n "$port" ] || { echo "server did not start" >&2; kill "$SPID"; exit 1; }
PPID_=""
case $TOOL in
perf) perf record -g -o "$OUTDIR/perf.data" -p "$SPID" 2>"$OUTDIR/perf.err" & PPID_=$! ;;
stat) perf stat -p "$SPID" -o "$OUTDIR/perf.stat" & PPID_=$! ;;
syscalls)
  perf stat -x, -o "$OUTDIR/perf.syscalls" -p "$SPID" -e 'syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendto,syscalls:sys_enter_read,syscalls:sys_enter_write,syscalls:sys_enter_readv,syscalls:sys_enter_writev,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_epoll_ctl,syscalls:sys_enter_io_uring_enter,syscalls:sys_enter_accept4,syscalls:sys_enter_close,syscalls:sys_enter_ioctl,syscalls:sys_enter_getsockopt,syscalls:sys_enter_setsockopt,syscalls:sys_enter_futex,syscalls:sys_enter_mmap,syscalls:sys_enter_munmap,syscalls:sys_enter_brk,exceptions:page_fault_user' &
  PPID_=$! ;;
esac
sleep 0.3
# shellcheck disable=SC2086
line=$(taskset -c 1 "$BENCH_BIN/loadgen" --port "$port" $args)
echo "$line"
sleep 0.5
[ -n "$PPID_" ] && kill -INT "$PPID_" && wait "$PPID_"
kill -TERM "$SPID"
wait "$SPID"
case $TOOL in
perf) perf report -i "$OUTDIR/perf.data" --no-children --stdio --percent-limit 1.5 2>/dev/null |
        grep -v '^$' | head -${LINES_:-120} ;;
stat) cat "$OUTDIR/perf.stat" ;;
syscalls)
  msgs=$(printf '%s\n' "$line" | tr ' ' '\n' | awk -F= '$1 == "msgs" {print $2}')
  awk -F, -v m="$msgs" '$3 ~ /:/ && $1 + 0 > 0 {n = $3; sub(/^.*:(sys_enter_)?/, "", n); printf "%s=%.3f ", n, $1 / m} END {print "(per message)"}' "$OUTDIR/perf.syscalls" ;;
callgrind) callgrind_annotate --inclusive=no "$OUTDIR/callgrind.out" 2>/dev/null | head -${LINES_:-60} ;;
esac
