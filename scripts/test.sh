#!/usr/bin/env bash
# THE test command: set up the machine, then for each preset configure, build
# and run ctest. Exits non-zero if anything failed; ends with a summary.
#
#   bash scripts/test.sh                  # presets debug, tsan, valgrind, mingw
#   CPORT_TEST_PRESETS="debug" bash scripts/test.sh
#   CPORT_TEST_ONLY=hostile CPORT_TEST_PRESETS="debug mingw" bash scripts/test.sh
#                                         # build, then only scripts/hostile.sh
#
# debug  Linux, ASan + UBSan: every test (conformance, threads, names, install)
# tsan   Linux, ThreadSanitizer: only the tests matching "threads|names"
#        (the filter is in CMakePresets.json's tsan test preset)
# valgrind  Linux, no sanitizer: the conformance suite on epoll under
#        valgrind memcheck (CPORT_TEST_LAUNCHER; io_uring's kernel writes
#        are invisible to valgrind); only cport_conformance is built
# mingw  Windows x64 cross build; the tests run under Wine (cmake/wine-run.sh)
#        with a persistent wineserver on the private prefix, stopped at exit
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
read -r -a presets <<<"${CPORT_TEST_PRESETS:-debug tsan valgrind mingw}"
# CPORT_TEST_ONLY=hostile: configure and build the presets, run no ctest
# and no echo load, only the hostile peers (scripts/hostile.sh).
only="${CPORT_TEST_ONLY:-}"
case "$only" in
  "" | hostile) ;;
  *) echo "CPORT_TEST_ONLY: '$only' is not one of: (empty), hostile"; exit 2 ;;
esac
export CPORT_WINEPREFIX="${CPORT_WINEPREFIX:-${HOME:-/root}/.cache/cport/wineprefix}"

logdir="$root/build/test-logs"
start=$SECONDS
rows=()
failed=0
wine_up=0
# run_pair and record; its counters n_pass/n_fail are the summary's too.
# shellcheck source=scripts/echo-pair.sh
source "$root/scripts/echo-pair.sh"

say() { printf '\n==> %s\n' "$*"; }
elapsed() { printf '%dm%02ds' $(( $1 / 60 )) $(( $1 % 60 )); }

cleanup() {
  kill_server
  if [ "$wine_up" -eq 1 ]; then
    bash cmake/wine-run.sh --stop-server || true
    wine_up=0
  fi
}
trap cleanup EXIT
trap 'echo "interrupted"; exit 130' INT TERM

say "setup (scripts/setup.sh)"
if ! bash scripts/setup.sh </dev/null; then
  echo "setup failed"
  echo "summary: 0 passed, 1 failed"
  exit 1
fi
mkdir -p "$logdir"

for p in "${presets[@]}"; do
  t0=$SECONDS
  say "[$p] configure"
  if ! cmake --preset "$p" </dev/null; then
    rows+=("$p: configure FAILED"); n_fail=$((n_fail + 1)); failed=1; continue
  fi
  say "[$p] build"
  targets=()
  [ "$p" = valgrind ] && targets=(--target cport_conformance)
  if ! cmake --build --preset "$p" "${targets[@]}" </dev/null; then
    rows+=("$p: build FAILED"); n_fail=$((n_fail + 1)); failed=1; continue
  fi

  if [ -n "$only" ]; then
    rows+=("$p: built (no ctest: CPORT_TEST_ONLY=$only, $(elapsed $((SECONDS - t0))))")
    continue
  fi
  if [ "$p" = "mingw" ]; then
    say "[$p] starting a persistent wineserver ($CPORT_WINEPREFIX)"
    bash cmake/wine-run.sh --start-server
    wine_up=1
  fi
  case "$p" in
    tsan) say "[$p] ctest (only tests matching 'threads|names'; the rest run under ASan in debug)" ;;
    valgrind) say "[$p] ctest (the conformance suite on epoll, both modes, under valgrind memcheck)" ;;
    mingw) say "[$p] ctest (under Wine, one test at a time)" ;;
    *) say "[$p] ctest" ;;
  esac
  log="$logdir/$p.log"
  ctest --preset "$p" </dev/null 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  if [ "$p" = "mingw" ]; then cleanup; fi

  # "100% tests passed, 0 tests failed out of 12"
  line="$(grep -E '^[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1)"
  total=0; bad=0
  if [ -n "$line" ]; then
    bad="$(sed -E 's/.* ([0-9]+) tests? failed out of.*/\1/' <<<"$line")"
    total="$(sed -E 's/.*out of ([0-9]+).*/\1/' <<<"$line")"
  fi
  good=$((total - bad))
  n_pass=$((n_pass + good))
  n_fail=$((n_fail + bad))
  if [ "$rc" -ne 0 ]; then
    failed=1
    if [ "$bad" -eq 0 ]; then n_fail=$((n_fail + 1)); fi
    rows+=("$p: FAILED ($good of $total passed, ctest exit $rc, $(elapsed $((SECONDS - t0))))")
  else
    rows+=("$p: ok ($good of $total passed, $(elapsed $((SECONDS - t0))))")
  fi
done

# The examples under load, every byte checked: 1,000 connections per Linux
# backend and mode (issue 2), and 200 from the Linux client to
# echo_server.exe under Wine (issue 3). Debug builds: ASan watches too.
# Silent connections to an echo server with --idle-timeout: each must be
# closed by the server, which must count them as idle on exit.
idle_check() { # idle_check NAME SIGNAL SERVER...
  local name="$1" sig="$2" slog
  shift 2
  run_pair "$name" "$sig" "$@" --idle-timeout 300 -- bash "$root/scripts/idle-client.sh" PORT 5
  slog="$logdir/${name// /_}.server.log"
  if grep -q '5 closed idle' "$slog"; then
    record "$name: server counted 5 idle closes" PASS
  else
    record "$name: server counted 5 idle closes" FAIL "$(grep -m1 'closed idle' "$slog")"
  fi
}

# The echo client resolving a name and racing its addresses (Happy
# Eyeballs), inside test/dns/testns: see scripts/happy-eyeballs.sh.
eyeballs() { # eyeballs NAME CLIENT...
  local name="$1" log="$logdir/${1//[ \/:]/_}.log"
  shift
  say "$name"
  if "$root/build/debug/testns" --stuck-listener -- bash "$root/scripts/happy-eyeballs.sh" \
    "$root/build/debug/echo_server" --port PORT -- "$@" --port PORT >"$log" 2>&1; then
    record "$name" PASS
  else
    record "$name" FAIL "log: $log"
  fi
  sed 's/^/  /' "$log"
}

# System calls per message of the echo example on io_uring, counted:
# see scripts/syscall-count.sh.
syscall_count() {
  local dbg="$root/build/debug" log="$logdir/syscall-count.log"
  say "syscall count: echo_server on io_uring"
  if bash "$root/scripts/syscall-count.sh" "$dbg/echo_server" "$dbg/loadgen" >"$log" 2>&1; then
    record "syscall count: echo_server on io_uring" PASS
  else
    record "syscall count: echo_server on io_uring" FAIL "log: $log"
  fi
  sed 's/^/  /' "$log"
}

echo_load() {
  local dbg="$root/build/debug" win="$root/build/mingw" b m
  logdir="$root/build/test-logs/echo" && mkdir -p "$logdir"
  [ -x "$dbg/echo_server" ] || { record "echo load" FAIL "build/debug has no echo_server"; return; }
  for b in epoll io_uring; do
    for m in completion select; do
      # --idle-timeout: every recv carries a deadline, and no busy
      # connection may be taken for an idle one.
      run_pair "echo load: linux $b $m, 1000 connections" TERM \
        "$dbg/echo_server" --port 0 --mode "$m" --backend "$b" --idle-timeout 20000 -- \
        "$dbg/echo_client" --port PORT --connections 1000 --bytes 20000 --mode "$m"
      idle_check "idle timeout: linux $b $m" TERM \
        "$dbg/echo_server" --port 0 --mode "$m" --backend "$b"
      run_pair "tutorial server: linux $b $m, 200 connections" TERM:any \
        env CPORT_BACKEND="$b" "$dbg/tutorial_server" 0 "$m" -- \
        "$dbg/echo_client" --port PORT --connections 200 --bytes 20000 --mode "$m"
      run_pair "udp echo: linux $b $m, 2000 datagrams" TERM \
        "$dbg/udp_echo_server" --port 0 --mode "$m" --backend "$b" -- \
        "$dbg/udp_echo_client" --port PORT --count 2000 --size 1000 --mode "$m"
      eyeballs "happy eyeballs: linux $b $m, --host both.test.cport" \
        "$dbg/echo_client" --backend "$b" --mode "$m"
    done
    run_pair "http_hello: linux $b, 100 keep-alive connections, 20000 requests" INT \
      "$dbg/http_hello" --port 0 --backend "$b" -- \
      "$dbg/loadgen" --port PORT --mode http --conns 100 --msgs 20000
    # Chunks in library buffers from cport_recv_multi, echoed from them.
    run_pair "echo load: linux $b --recv-multi 1, 1000 connections" TERM \
      "$dbg/echo_server" --port 0 --backend "$b" --recv-multi 1 --idle-timeout 20000 -- \
      "$dbg/echo_client" --port PORT --connections 1000 --bytes 20000
  done
  syscall_count
  [ -f "$win/echo_server.exe" ] || return 0
  # Wine's sockets are the wineserver's, in its network namespace: this
  # one runs with no persistent server, so Wine starts one inside testns,
  # stopped (and waited for) before any other Wine program runs.
  bash cmake/wine-run.sh --stop-server
  for m in completion select; do
    eyeballs "happy eyeballs: wine echo_client.exe $m, --host both.test.cport" \
      bash cmake/wine-run.sh "$win/echo_client.exe" --mode "$m"
    bash cmake/wine-run.sh --stop-server
  done
  bash cmake/wine-run.sh --start-server
  wine_up=1
  run_pair "http_hello: wine http_hello.exe, 50 keep-alive connections from linux" INT \
    bash cmake/wine-run.sh "$win/http_hello.exe" --port 0 -- \
    "$dbg/loadgen" --port PORT --mode http --conns 50 --msgs 5000
  run_pair "echo load: wine echo_server.exe --recv-multi 1, 200 connections from linux" INT \
    bash cmake/wine-run.sh "$win/echo_server.exe" --port 0 --recv-multi 1 -- \
    "$dbg/echo_client" --port PORT --connections 200 --bytes 20000
  for m in completion select; do
    run_pair "echo load: wine echo_server.exe $m, 200 connections from linux" INT \
      bash cmake/wine-run.sh "$win/echo_server.exe" --port 0 --mode "$m" --idle-timeout 20000 -- \
      "$dbg/echo_client" --port PORT --connections 200 --bytes 20000 --mode "$m"
    idle_check "idle timeout: wine echo_server.exe $m" INT \
      bash cmake/wine-run.sh "$win/echo_server.exe" --port 0 --mode "$m"
    run_pair "tutorial server: wine $m, 100 connections from linux" INT:any \
      bash cmake/wine-run.sh "$win/tutorial_server.exe" 0 "$m" -- \
      "$dbg/echo_client" --port PORT --connections 100 --bytes 20000 --mode "$m"
    run_pair "udp echo: wine udp_echo_server.exe $m, 500 datagrams from linux" INT \
      bash cmake/wine-run.sh "$win/udp_echo_server.exe" --port 0 --mode "$m" -- \
      "$dbg/udp_echo_client" --port PORT --count 500 --size 1000 --mode "$m"
  done
  cleanup
}

# Hostile peers (issue 16): slowloris, an RST storm, clients that never
# read, half-closes, random payloads and EMFILE against the echo example,
# one row per backend and mode: see scripts/hostile.sh.
hostile_peers() {
  local log cell cells=() line
  logdir="$root/build/test-logs/hostile" && mkdir -p "$logdir"
  if [ -x "$root/build/debug/echo_server" ]; then
    cells+=(linux:epoll:completion linux:epoll:select linux:io_uring:completion linux:io_uring:select)
  else
    record "hostile peers: linux" FAIL "build/debug has no echo_server"
  fi
  [ -f "$root/build/mingw/echo_server.exe" ] && cells+=(wine:completion wine:select)
  for cell in "${cells[@]}"; do
    if [ "${cell%%:*}" = wine ] && [ "$wine_up" -eq 0 ]; then
      bash cmake/wine-run.sh --start-server
      wine_up=1
    fi
    log="$logdir/${cell//:/_}.log"
    say "hostile peers: ${cell//:/ }"
    bash "$root/scripts/hostile.sh" "$cell" >"$log" 2>&1
    sed 's/^/  /' "$log"
    line="$(grep -E '^(PASS|FAIL) hostile: ' "$log" | tail -n 1)"
    if [ "${line%% *}" = PASS ]; then
      record "${line#PASS }" PASS
    else
      record "hostile: ${cell//:/ }" FAIL "log: $log"
    fi
  done
  cleanup
}

# A 20-second smoke of the soak (bench/soak.sh): the echo example on a
# release build under mixed echo, connection churn and streaming, every
# byte checked, its RSS sampled every 5 s and required to settle.
soak_smoke() {
  local log="$root/build/test-logs/soak-smoke.log" t0=$SECONDS
  say "soak smoke: echo_server (release) on epoll, 20 s"
  if MINUTES=0.34 SAMPLE=5 bash "$root/bench/soak.sh" >"$log" 2>&1; then
    record "soak smoke: epoll, 20 s ($(elapsed $((SECONDS - t0))))" PASS
  else
    record "soak smoke: epoll, 20 s" FAIL "log: $log"
  fi
  sed 's/^/  /' "$log"
}

# TLS interop with the openssl command (scripts/tls-interop.sh): the
# debug build's examples both ways on every Linux backend and mode, and
# the Windows build's under Wine when the mingw preset ran.
tls_interop() {
  local log="$root/build/test-logs/tls-interop.log" t0=$SECONDS win=()
  if [ ! -x "$root/build/debug/tls_echo_server" ]; then
    record "tls interop" FAIL "no build/debug/tls_echo_server (a build without TLS?)"
    return
  fi
  [ -x "$root/build/mingw/tls_echo_client.exe" ] && win=("WIN_BUILD=$root/build/mingw")
  say "tls interop: the examples against openssl s_client and s_server"
  if env "${win[@]}" BACKENDS="${CPORT_TEST_BACKENDS:-epoll io_uring}" \
    bash "$root/scripts/tls-interop.sh" "$root/build/debug" >"$log" 2>&1; then
    record "tls interop: $(tail -n 1 "$log") ($(elapsed $((SECONDS - t0))))" PASS
  else
    record "tls interop: $(tail -n 1 "$log")" FAIL "log: $log"
  fi
  grep -E '^(PASS|FAIL)' "$log" | sed 's/^/  /'
}

if [ -z "$only" ]; then
  say "echo load"
  echo_load
fi
hostile_peers
if [ -z "$only" ]; then
  tls_interop
  soak_smoke
fi
for r in "${results[@]}"; do rows+=("$r"); done
[ "$n_fail" -eq 0 ] || failed=1

say "summary ($(elapsed $((SECONDS - start))) in all; logs in build/test-logs)"
for r in "${rows[@]}"; do printf '  %s\n' "$r"; done
if [ "$failed" -ne 0 ]; then echo "RESULT: FAILED"; else echo "RESULT: all presets passed"; fi
echo "summary: $n_pass passed, $n_fail failed"
exit "$failed"
