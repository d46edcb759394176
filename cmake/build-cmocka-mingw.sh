#!/usr/bin/env bash
# Build cmocka for the mingw-w64 (Windows x86_64) cross build, from Debian's
# source package, and install it into build/deps/cmocka-mingw. Idempotent: a
# second run with the result in place does nothing.
#
#   bash cmake/build-cmocka-mingw.sh [PREFIX]
#
# Steps: make sure apt has a deb-src entry (a copy of the stanzas of
# /etc/apt/sources.list.d/debian.sources with "Types: deb-src", written to its
# own file), `apt-get source cmocka` into build/deps/src, then cmocka's own
# CMake build with cmake/mingw-w64-x86_64.cmake. The result has
# include/cmocka.h and lib/libcmocka-static.a, which CMakeLists.txt finds
# through CPORT_CMOCKA_PREFIX (the mingw preset sets it).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
deps="${CPORT_DEPS_DIR:-$root/build/deps}"
prefix="${1:-$deps/cmocka-mingw}"
srcroot="$deps/src"
builddir="$deps/cmocka-mingw-build"
stamp="$prefix/.cport-cmocka-stamp"
stamp_want="cmocka mingw-w64 x86_64 static v1"

log() { printf '[build-cmocka-mingw] %s\n' "$*"; }

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$stamp_want" ] &&
   [ -f "$prefix/include/cmocka.h" ] && [ -f "$prefix/lib/libcmocka-static.a" ]; then
  log "already built: $prefix"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
    log "not root and no sudo: apt steps may fail"
  fi
fi

for tool in x86_64-w64-mingw32-gcc cmake dpkg-source; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    log "missing $tool: run scripts/setup.sh (packages mingw-w64, cmake, dpkg-dev)"
    exit 1
  fi
done
generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi

have_deb_src() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] && grep -Eq '^[[:space:]]*deb-src[[:space:]]' "$f" && return 0
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && grep -Eiq '^Types:.*deb-src' "$f" && return 0
  done
  return 1
}

apt_updated=0
if ! have_deb_src; then
  main_sources=/etc/apt/sources.list.d/debian.sources
  src_file=/etc/apt/sources.list.d/cport-deb-src.sources
  if [ -f "$main_sources" ]; then
    log "adding deb-src entries in $src_file (copied from $main_sources)"
    sed -E 's/^Types:.*$/Types: deb-src/I' "$main_sources" | $SUDO tee "$src_file" >/dev/null
  elif [ -f /etc/apt/sources.list ] && grep -Eq '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list; then
    src_file=/etc/apt/sources.list.d/cport-deb-src.list
    log "adding deb-src lines in $src_file (copied from /etc/apt/sources.list)"
    sed -nE 's/^[[:space:]]*deb([[:space:]])/deb-src\1/p' /etc/apt/sources.list | $SUDO tee "$src_file" >/dev/null
  else
    log "no apt sources found to copy; cannot fetch the cmocka source package"
    exit 1
  fi
  $SUDO apt-get update -q
  apt_updated=1
fi

mkdir -p "$srcroot"
srcdir="$(find "$srcroot" -maxdepth 1 -type d -name 'cmocka-*' | sort | tail -n 1)"
if [ -z "$srcdir" ] || [ ! -f "$srcdir/CMakeLists.txt" ]; then
  log "apt-get source cmocka -> $srcroot"
  if ! (cd "$srcroot" && apt-get source -q cmocka); then
    if [ "$apt_updated" -eq 0 ]; then
      $SUDO apt-get update -q
      (cd "$srcroot" && apt-get source -q cmocka)
    else
      exit 1
    fi
  fi
  srcdir="$(find "$srcroot" -maxdepth 1 -type d -name 'cmocka-*' | sort | tail -n 1)"
fi
if [ -z "$srcdir" ] || [ ! -f "$srcdir/CMakeLists.txt" ]; then
  log "no cmocka source tree under $srcroot"
  exit 1
fi
log "source: $srcdir"

rm -rf "$builddir"
cmake -S "$srcdir" -B "$builddir" "${generator[@]}" \
  -DCMAKE_TOOLCHAIN_FILE="$here/mingw-w64-x86_64.cmake" \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_INSTALL_PREFIX="$prefix" \
  -DWITH_STATIC_LIB=ON \
  -DWITH_EXAMPLES=OFF \
  -DUNIT_TESTING=OFF \
  -DPICKY_DEVELOPER=OFF
cmake --build "$builddir" --parallel "$(nproc 2>/dev/null || echo 2)"
cmake --install "$builddir"

if [ ! -f "$prefix/include/cmocka.h" ] || [ ! -f "$prefix/lib/libcmocka-static.a" ]; then
  log "install did not produce include/cmocka.h and lib/libcmocka-static.a in $prefix:"
  find "$prefix" -type f | sed 's/^/  /'
  exit 1
fi
printf '%s\n' "$stamp_want" >"$stamp"
log "installed into $prefix"
