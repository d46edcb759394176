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

export DEBIAN_FRONTEND=noninteractive
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
    log "not root and no sudo: apt steps may fail"
  fi
fi

for tool in x86_64-w64-mingw32-gcc make perl dpkg-source; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    log "missing $tool: run scripts/setup.sh (packages mingw-w64, make, perl, dpkg-dev)"
    exit 1
  fi
done

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
    log "no apt sources found to copy; cannot fetch the openssl source package"
    exit 1
  fi
  $SUDO apt-get update -q
  apt_updated=1
fi

find_src() {
  find "$srcroot" -maxdepth 1 -type d -name 'openssl-[0-9]*' | sort | tail -n 1
}

mkdir -p "$srcroot"
srcdir="$(find_src)"
if [ -z "$srcdir" ] || [ ! -f "$srcdir/Configure" ]; then
  log "apt-get source openssl -> $srcroot"
  # A mirror may list a version whose .dsc is gone (seen here: the security
  # archive announced 3.0.22 and answered 404 for it), so every version apt
  # knows is tried, the candidate first.
  fetch_source() {
    local v
    (cd "$srcroot" && apt-get source -q openssl) && return 0
    for v in $(apt-cache showsrc openssl 2>/dev/null | sed -n 's/^Version: //p' | sort -rV); do
      log "retrying with openssl=$v"
      (cd "$srcroot" && apt-get source -q "openssl=$v") && return 0
    done
    return 1
  }
  if ! fetch_source; then
    if [ "$apt_updated" -eq 0 ]; then
      $SUDO apt-get update -q
      fetch_source || exit 1
    else
      exit 1
    fi
  fi
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
(
  cd "$builddir"
  # no-module/no-engine/no-dso: everything is in the two static libraries,
  # nothing is loaded at run time. --openssldir is only OpenSSL's compiled-in
  # default; cport never relies on it (nor on SSL_CERT_FILE / SSL_CERT_DIR).
  perl "$srcdir/Configure" mingw64 \
    --cross-compile-prefix=x86_64-w64-mingw32- \
    --prefix="$prefix" --libdir=lib --openssldir="$prefix/ssl" \
    no-shared no-tests no-module no-engine no-dso no-legacy \
    -D_WIN32_WINNT=0x0601
  make -j"$(nproc 2>/dev/null || echo 2)" build_libs
  make install_dev
)
end=$(date +%s)

if [ ! -f "$prefix/include/openssl/ssl.h" ] || [ ! -f "$prefix/lib/libssl.a" ] ||
   [ ! -f "$prefix/lib/libcrypto.a" ]; then
  log "install did not produce include/openssl/ssl.h, lib/libssl.a, lib/libcrypto.a in $prefix"
  exit 1
fi
printf '%s\n' "$stamp_want" >"$stamp"
log "installed into $prefix ($((end - start)) s to configure and build)"
