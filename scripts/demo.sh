#!/usr/bin/env bash
# THE demo command: build the echo server and client natively (release preset)
# and for Windows (mingw preset), then run them against each other:
#
#   1. Linux server + Linux client, in completion and in select mode
#   2. echo_server.exe under Wine, served to the Linux client
#   3. the Linux server, with echo_client.exe under Wine as the client
#   4. the same over TLS (tls_echo_server, tls_echo_client; certificates
#      made by scripts/tls-certs.sh): Linux with Linux, the Linux server
#      with tls_echo_client.exe under Wine (the Windows build's default
#      engine), and tls_echo_server.exe under Wine on OpenSSL with the
#      Linux client
#
# Each run: the server starts on port 0 and prints "listening on PORT"; the
# client opens 50 connections, sends 100000 bytes on each and checks every
# byte of the echo (exit 0 only then); the server is stopped with SIGTERM
# (SIGINT = Ctrl-C for the Windows build: under Wine SIGTERM kills a program
# without running its console handler) and must exit 0. One PASS/FAIL line
# per run.
#
# Environment: CPORT_DEMO_MODES (default "completion select"),
# CPORT_DEMO_CONNECTIONS (50), CPORT_DEMO_BYTES (100000), CPORT_DEMO_NO_WINE=1.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export CPORT_WINEPREFIX="${CPORT_WINEPREFIX:-${HOME:-/root}/.cache/cport/wineprefix}"
read -r -a modes <<<"${CPORT_DEMO_MODES:-completion select}"
conns="${CPORT_DEMO_CONNECTIONS:-50}"
nbytes="${CPORT_DEMO_BYTES:-100000}"
use_wine=1
[ "${CPORT_DEMO_NO_WINE:-0}" = "1" ] && use_wine=0

native="$root/build/release"
win="$root/build/mingw"
wine_run=(bash "$root/cmake/wine-run.sh")
logdir="$root/build/demo-logs"
wine_up=0
# shellcheck source=scripts/echo-pair.sh
source "$root/scripts/echo-pair.sh"

say() { printf '\n==> %s\n' "$*"; }

cleanup() {
  kill_server
  if [ "$wine_up" -eq 1 ]; then "${wine_run[@]}" --stop-server || true; fi
}
trap cleanup EXIT
trap 'echo "interrupted"; exit 130' INT TERM


say "setup (scripts/setup.sh)"
if [ "$use_wine" -eq 1 ]; then
  bash scripts/setup.sh </dev/null || { echo "FAIL setup"; exit 1; }
else
  CPORT_SETUP_NO_WINE=1 bash scripts/setup.sh </dev/null || { echo "FAIL setup"; exit 1; }
fi

say "build: release preset (Linux)"
if ! { cmake --preset release &&
  cmake --build --preset release --target echo_server echo_client tls_echo_server tls_echo_client; }; then
  echo "FAIL build (release): are examples/echo_server.c and examples/echo_client.c there?"
  exit 1
fi
if [ "$use_wine" -eq 1 ]; then
  say "build: mingw preset (Windows x64)"
  if ! { cmake --preset mingw &&
    cmake --build --preset mingw --target echo_server echo_client tls_echo_server tls_echo_client; }; then
    echo "FAIL build (mingw)"
    exit 1
  fi
fi
mkdir -p "$logdir"
certs="$root/build/tls-certs"
bash scripts/tls-certs.sh "$certs" >/dev/null || { echo "FAIL certificates (scripts/tls-certs.sh)"; exit 1; }
tls_srv=(--cert "$certs/server.pem" --key "$certs/server.key")
tls_cli=(--ca "$certs/ca.pem" --server-name localhost --count 200 --size 4096)

for m in "${modes[@]}"; do
  run_pair "linux server + linux client, $m mode" TERM \
    "$native/echo_server" --port 0 --mode "$m" -- \
    "$native/echo_client" --port PORT --connections "$conns" --bytes "$nbytes" --mode "$m"
  run_pair "TLS: linux server + linux client, $m mode" TERM \
    "$native/tls_echo_server" --port 0 --mode "$m" "${tls_srv[@]}" -- \
    "$native/tls_echo_client" --port PORT --mode "$m" "${tls_cli[@]}"
done

if [ "$use_wine" -eq 1 ]; then
  say "starting a persistent wineserver ($CPORT_WINEPREFIX)"
  "${wine_run[@]}" --start-server
  wine_up=1
  for m in "${modes[@]}"; do
    run_pair "wine server (echo_server.exe) + linux client, $m mode" INT \
      "${wine_run[@]}" "$win/echo_server.exe" --port 0 --mode "$m" -- \
      "$native/echo_client" --port PORT --connections "$conns" --bytes "$nbytes" --mode "$m"
    run_pair "linux server + wine client (echo_client.exe), $m mode" TERM \
      "$native/echo_server" --port 0 --mode "$m" -- \
      "${wine_run[@]}" "$win/echo_client.exe" --port PORT --connections "$conns" --bytes "$nbytes" --mode "$m"
    run_pair "TLS: linux server + wine client (tls_echo_client.exe, default engine), $m mode" TERM \
      "$native/tls_echo_server" --port 0 --mode "$m" "${tls_srv[@]}" -- \
      "${wine_run[@]}" "$win/tls_echo_client.exe" --port PORT --mode "$m" "${tls_cli[@]}"
    run_pair "TLS: wine server (tls_echo_server.exe --engine openssl) + linux client, $m mode" INT \
      "${wine_run[@]}" "$win/tls_echo_server.exe" --port 0 --mode "$m" --engine openssl "${tls_srv[@]}" -- \
      "$native/tls_echo_client" --port PORT --mode "$m" "${tls_cli[@]}"
  done
fi

say "demo summary"
for r in "${results[@]}"; do printf '  %s\n' "$r"; done
if [ "$n_fail" -eq 0 ]; then echo "DEMO PASS: $n_pass of $n_pass runs"; else echo "DEMO FAIL: $n_fail of $((n_pass + n_fail)) runs failed"; fi
[ "$n_fail" -eq 0 ]
