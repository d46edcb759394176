#!/usr/bin/env bash
# Build OpenSSL 3 static libraries for the mingw-w64 (Windows x86_64) cross
# build, from Debian's `openssl` source package, and install them (headers,
# libssl.a, libcrypto.a) into build/deps/openssl-mingw. Idempotent: a second
# run with the result in place does nothing; CPORT_OPENSSL_REBUILD=1 forces a
# fresh build.
#
#   bash cmake/build-openssl-mingw.sh [PREFIX]
#
# Steps: make sure apt has a deb-src entry (as cmake/build-cmocka-mingw.sh
# does), `apt-get source openssl` into build/deps/src, then OpenSSL's own
# `./Configure mingw64 --cross-compile-prefix=x86_64-w64-mingw32- no-shared
# no-tests ...`, `make build_libs` and `make install_dev` (libraries and
# headers only: no programs, no manual pages). CMakeLists.txt finds the result
# through CPORT_OPENSSL_PREFIX (the mingw preset sets it).
#
# Takes several minutes on 2 cores (see docs/wine.md for a measured time).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
deps="${CPORT_DEPS_DIR:-$root/build/deps}"
prefix="${1:-$deps/openssl-mingw}"
srcroot="$deps/src"
stamp="$prefix/.cport-openssl-stamp"
stamp_want="openssl mingw-w64 x86_64 static v1"

log() { printf '[build-openssl-mingw] %s\n' "$*"; }

if [ "${CPORT_OPENSSL_REBUILD:-0}" != "1" ] &&
   [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$stamp_want" ] &&
   [ -f "$prefix/include/openssl/ssl.h" ] &&
   [ -f "$prefix/lib/libssl.a" ] && [ -f "$prefix/lib/libcrypto.a" ]; then
  log "already built: $prefix"
  exit 0
fi

# shellcheck source=cmake/apt-source.sh
source "$here/apt-source.sh"

for tool in x86_64-w64-mingw32-gcc make perl dpkg-source; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    log "missing $tool: run scripts/setup.sh (packages mingw-w64, make, perl, dpkg-dev)"
    exit 1
  fi
done

find_src() {
  find "$srcroot" -maxdepth 1 -type d -name 'openssl-[0-9]*' | sort | tail -n 1
}

mkdir -p "$srcroot"
srcdir="$(find_src)"
if [ -z "$srcdir" ] || [ ! -f "$srcdir/Configure" ]; then
  fetch_source openssl "$srcroot" || exit 1
  srcdir="$(find_src)"
fi
if [ -z "$srcdir" ] || [ ! -f "$srcdir/Configure" ]; then
  log "no openssl source tree under $srcroot"
  exit 1
fi
log "source: $srcdir"

# Build out of tree, so the Debian source stays clean for a rebuild.
builddir="$deps/openssl-mingw-build"
rm -rf "$builddir" "$prefix"
mkdir -p "$builddir"
start=$(date +%s)
# Its compiler lines go to a log (thousands of them); the tail is shown on failure.
if ! (
  cd "$builddir" || exit 1
  # no-module/no-engine/no-dso: everything is in the two static libraries,
  # nothing is loaded at run time. --openssldir is only OpenSSL's compiled-in
  # default; cport never relies on it (nor on SSL_CERT_FILE / SSL_CERT_DIR).
  perl "$srcdir/Configure" mingw64 \
    --cross-compile-prefix=x86_64-w64-mingw32- \
    --prefix="$prefix" --libdir=lib --openssldir="$prefix/ssl" \
    no-shared no-tests no-module no-engine no-dso no-legacy \
    -D_WIN32_WINNT=0x0601 &&
    make -j"$(nproc 2>/dev/null || echo 2)" build_libs &&
    make install_dev
) >"$deps/openssl-mingw-build.log" 2>&1; then
  tail -n 40 "$deps/openssl-mingw-build.log"
  log "the build failed: $deps/openssl-mingw-build.log"
  exit 1
fi
end=$(date +%s)

if [ ! -f "$prefix/include/openssl/ssl.h" ] || [ ! -f "$prefix/lib/libssl.a" ] ||
   [ ! -f "$prefix/lib/libcrypto.a" ]; then
  log "install did not produce include/openssl/ssl.h, lib/libssl.a, lib/libcrypto.a in $prefix"
  exit 1
fi
printf '%s\n' "$stamp_want" >"$stamp"
log "installed into $prefix ($((end - start)) s to configure and build)"
