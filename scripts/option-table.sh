#!/usr/bin/env bash
# Prints the README's option table: what cport_is_supported (and
# cport_family_supported) answer on Linux and on the Windows build under
# Wine. Needs build/release and build/mingw (scripts/demo.sh makes both).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cmake --build --preset release --target option_table >/dev/null
cmake --build --preset mingw --target option_table >/dev/null
linux="$(build/release/option_table)"
wine="$(bash cmake/wine-run.sh build/mingw/option_table.exe | tr -d '\r')"
yesno() { [ "$1" = 1 ] && echo yes || echo no; }
echo "| option | Linux | Windows (Wine 8) |"
echo "|---|---|---|"
paste <(printf '%s\n' "$linux") <(printf '%s\n' "$wine") |
  while IFS=$'\t' read -r name l _ w; do
    echo "| \`$name\` | $(yesno "$l") | $(yesno "$w") |"
  done
