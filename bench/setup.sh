#!/usr/bin/env bash
# bench/setup.sh: installs what bench/ needs (Debian), idempotently: only
# the packages that are missing, and apt-get update only when some are.
#   bash bench/setup.sh
set -eu
pkgs="cmake ninja-build gcc g++ pkg-config util-linux procps
      libuv1-dev libevent-dev libboost-dev liburing-dev gnuplot-nox"
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    missing="$missing $p"
done
if [ -z "$missing" ]; then
  echo "bench/setup.sh: everything is installed"
  exit 0
fi
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
echo "bench/setup.sh: installing$missing"
$SUDO apt-get update -qq
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
