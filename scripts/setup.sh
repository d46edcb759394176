#!/usr/bin/env bash
# Install everything cport needs to build, test and run its demo on Debian 12,
# build cmocka for the Windows cross build, and create the private Wine prefix.
# Safe to re-run: each step is skipped when its result is already there.
# Works as root without a terminal (CI); as another user it uses `sudo -n`.
#
# Environment:
#   CPORT_WINEPREFIX     private Wine prefix (default ~/.cache/cport/wineprefix)
#   CPORT_SETUP_NO_WINE  1 = skip the Wine prefix (no Windows tests wanted)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
log() { printf '[setup] %s\n' "$*"; }

export DEBIAN_FRONTEND=noninteractive
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
    log "warning: not root and no sudo; package installation may fail"
  fi
fi

packages=(
  cmake ninja-build gcc clang clang-format clang-tidy pkg-config dpkg-dev
  libcmocka-dev liburing-dev strace valgrind
  mingw-w64 wine wine64
  libuv1-dev libevent-dev libboost-dev
  libssl-dev openssl make perl
)

# --- 1. Debian packages --------------------------------------------------------
missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -eq 0 ]; then
  log "all packages present"
else
  log "installing: ${missing[*]}"
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "${missing[@]}" </dev/null
fi

# --- 2. cmocka for the mingw-w64 build -----------------------------------------
bash "$root/cmake/build-cmocka-mingw.sh" </dev/null

# --- 2b. OpenSSL 3 for the mingw-w64 build (the TLS engine under Wine) ----------
bash "$root/cmake/build-openssl-mingw.sh" </dev/null

# --- 3. the private Wine prefix ------------------------------------------------
if [ "${CPORT_SETUP_NO_WINE:-0}" = "1" ]; then
  log "skipping the Wine prefix (CPORT_SETUP_NO_WINE=1)"
  exit 0
fi
export WINEPREFIX="${CPORT_WINEPREFIX:-${HOME:-/root}/.cache/cport/wineprefix}"
export WINEDEBUG=-all
export WINEARCH=win64
export WINEDLLOVERRIDES="mscoree,mshtml="
if [ -f "$WINEPREFIX/system.reg" ] && [ -f "$WINEPREFIX/.cport-ready" ]; then
  log "wine prefix ready: $WINEPREFIX"
else
  log "creating wine prefix $WINEPREFIX (about 6 s, 700 MB)"
  mkdir -p "$(dirname "$WINEPREFIX")"
  if ! timeout --kill-after=10 300 wineboot -i </dev/null; then
    log "wineboot -i failed or timed out"
    timeout 30 wineserver -k </dev/null || true
    exit 1
  fi
  # wineboot returns before the prefix is fully written: wait for the server.
  timeout 120 wineserver -w </dev/null || true
  if [ ! -f "$WINEPREFIX/system.reg" ]; then
    log "wine prefix incomplete: $WINEPREFIX/system.reg missing"
    exit 1
  fi
  touch "$WINEPREFIX/.cport-ready"
  log "wine prefix ready: $WINEPREFIX"
fi
