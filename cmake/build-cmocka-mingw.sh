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

# shellcheck source=cmake/apt-source.sh
source "$here/apt-source.sh"

for tool in x86_64-w64-mingw32-gcc cmake dpkg-source; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    log "missing $tool: run scripts/setup.sh (packages mingw-w64, cmake, dpkg-dev)"
    exit 1
  fi
done
generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi

mkdir -p "$srcroot"
srcdir="$(find "$srcroot" -maxdepth 1 -type d -name 'cmocka-*' | sort | tail -n 1)"
if [ -z "$srcdir" ] || [ ! -f "$srcdir/CMakeLists.txt" ]; then
  fetch_source cmocka "$srcroot" || exit 1
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
