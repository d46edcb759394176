#!/usr/bin/env bash
# Run a Windows program under Wine: the CMAKE_CROSSCOMPILING_EMULATOR of the
# mingw build (see cmake/mingw-w64-x86_64.cmake) and the helper the scripts use.
#
#   cmake/wine-run.sh build/mingw/cport_conformance.exe --backend iocp --mode select
#   cmake/wine-run.sh --start-server   # persistent wineserver + Wine services, warmed up
#   cmake/wine-run.sh --stop-server    # wineserver -k, and wait until it is gone
#
# Environment:
#   CPORT_WINEPREFIX     the private Wine prefix (default ~/.cache/cport/wineprefix);
#                        scripts/setup.sh creates it
#   CPORT_WINE_TIMEOUT   seconds before the program is killed (default 600)
#   CPORT_WINEDEBUG      WINEDEBUG for the run (default -all: no err:/fixme: noise)
# The program's exit status is passed through; 124 means it timed out.
#
# Why the warm-up: the first Wine program of a wineserver session starts the
# prefix's services (services.exe, winedevice.exe, rpcss.exe...), and they
# inherit that program's stdout and stderr. Under a persistent wineserver they
# never exit, so a reader of that pipe (ctest) never sees end-of-file and the
# test "times out" long after the program ended. So a session is always
# started here with the services' stdio on /dev/null, before the real program.
set -u

export WINEPREFIX="${CPORT_WINEPREFIX:-${HOME:-/root}/.cache/cport/wineprefix}"
export WINEDEBUG="${CPORT_WINEDEBUG:--all}"
export WINEARCH=win64
# Never offer to download Mono or Gecko when a prefix has to be created.
export WINEDLLOVERRIDES="${WINEDLLOVERRIDES:-mscoree,mshtml=}"

first_cmd() {
  local c
  for c in "$@"; do
    if command -v "$c" >/dev/null 2>&1; then command -v "$c"; return 0; fi
  done
  return 1
}
wine_bin="$(first_cmd wine64 wine /usr/lib/wine/wine64)" || {
  echo "wine-run.sh: wine is not installed (run scripts/setup.sh)" >&2
  exit 127
}
wineserver_bin="$(first_cmd wineserver /usr/lib/wine/wineserver64 wineserver64)" || {
  echo "wine-run.sh: wineserver is not installed (run scripts/setup.sh)" >&2
  exit 127
}

# Start a wineserver that lingers $1 seconds after its last program ("" =
# forever). If this call started it, bring the services up with /dev/null
# stdio. A server that is already running is left alone.
start_session() {
  mkdir -p "$WINEPREFIX" # wineserver -p cannot start in a prefix that does not exist
  if "$wineserver_bin" "-p$1" </dev/null >/dev/null 2>&1; then
    timeout --kill-after=10 120 "$wine_bin" cmd.exe /c exit 0 </dev/null >/dev/null 2>&1 || true
  fi
}

case "${1:-}" in
  "")
    echo "usage: $0 PROGRAM.exe [ARGS...] | --start-server | --stop-server" >&2
    exit 2 ;;
  --start-server)
    start_session ""
    exit 0 ;;
  --stop-server)
    "$wineserver_bin" -k </dev/null >/dev/null 2>&1 || true
    "$wineserver_bin" -w </dev/null >/dev/null 2>&1 || true # gone, not just told to go
    exit 0 ;;
esac

start_session 5
exec timeout --kill-after=10 "${CPORT_WINE_TIMEOUT:-600}" "$wine_bin" "$@"
