# Shared by cmake/build-cmocka-mingw.sh and cmake/build-openssl-mingw.sh:
# fetch a Debian source package with `apt-get source`, adding deb-src
# entries to apt first when there are none (a copy of the binary entries,
# in a file of their own). The caller defines log().
# shellcheck shell=bash

export DEBIAN_FRONTEND=noninteractive
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
    log "not root and no sudo: apt steps may fail"
  fi
fi
apt_updated=0

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

# ensure_deb_src: returns 1 (after saying why) if apt has no source to copy.
ensure_deb_src() {
  have_deb_src && return 0
  local main_sources=/etc/apt/sources.list.d/debian.sources src_file
  if [ -f "$main_sources" ]; then
    src_file=/etc/apt/sources.list.d/cport-deb-src.sources
    log "adding deb-src entries in $src_file (copied from $main_sources)"
    sed -E 's/^Types:.*$/Types: deb-src/I' "$main_sources" | $SUDO tee "$src_file" >/dev/null
  elif [ -f /etc/apt/sources.list ] && grep -Eq '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list; then
    src_file=/etc/apt/sources.list.d/cport-deb-src.list
    log "adding deb-src lines in $src_file (copied from /etc/apt/sources.list)"
    sed -nE 's/^[[:space:]]*deb([[:space:]])/deb-src\1/p' /etc/apt/sources.list | $SUDO tee "$src_file" >/dev/null
  else
    log "no apt sources found to copy; cannot fetch source packages"
    return 1
  fi
  $SUDO apt-get update -q && apt_updated=1
}

# A mirror may list a version whose .dsc is gone (seen here: the security
# archive announced openssl 3.0.22 and answered 404 for it), so every
# version apt knows is tried, the candidate first.
source_any_version() { # source_any_version PKG DIR
  local pkg="$1" dir="$2" v
  (cd "$dir" && apt-get source -q "$pkg") && return 0
  for v in $(apt-cache showsrc "$pkg" 2>/dev/null | sed -n 's/^Version: //p' | sort -rV); do
    log "retrying with $pkg=$v"
    (cd "$dir" && apt-get source -q "$pkg=$v") && return 0
  done
  return 1
}

# fetch_source PKG DIR: `apt-get source PKG` into DIR, with an apt-get
# update and a second try if the first fails on a stale index.
fetch_source() {
  ensure_deb_src || return 1
  mkdir -p "$2"
  log "apt-get source $1 -> $2"
  source_any_version "$1" "$2" && return 0
  [ "$apt_updated" -eq 1 ] && return 1
  $SUDO apt-get update -q && apt_updated=1
  source_any_version "$1" "$2"
}
