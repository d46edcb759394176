#!/usr/bin/env bash
# The echo client's Happy Eyeballs, end to end. Run by scripts/test.sh
# inside `test/dns/testns --stuck-listener`, where both.test.cport has the
# addresses ::1 (tried first) and 127.0.0.1, and a listener on [::1] at
# $CPORT_TEST_STUCK_PORT takes no connection: a connect there hangs.
#
#   happy-eyeballs.sh SERVER... -- CLIENT...   (PORT in either is replaced)
#
# The echo server listens on 127.0.0.1 at the same port. Each connection
# of the client must give up waiting on ::1 after 250 ms, start a second
# attempt on 127.0.0.1, and echo every byte there: so the client must end
# "ok" with exactly two connect attempts per connection. Exit 0 or 1.
set -u
port=${CPORT_TEST_STUCK_PORT:?run under test/dns/testns --stuck-listener}
server=() client=()
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do server+=("${1/#PORT/$port}"); shift; done
shift
for a in "$@"; do client+=("${a/#PORT/$port}"); done
connections=10

slog=$(mktemp) clog=$(mktemp)
trap 'rm -f "$slog" "$clog"' EXIT
"${server[@]}" >"$slog" 2>&1 &
spid=$!
for _ in $(seq 1 300); do # a cold Wine start takes about a second
  grep -q 'listening on' "$slog" && break
  kill -0 "$spid" 2>/dev/null || break
  sleep 0.1
done
"${client[@]}" --host both.test.cport --connections "$connections" --bytes 20000 >"$clog" 2>&1
rc=$?
kill -INT "$spid" 2>/dev/null
wait "$spid" 2>/dev/null
sed 's/^/  server| /' "$slog"
sed 's/^/  client| /' "$clog"
summary=$(tr -d '\r' <"$clog" | grep '^ok connections=') # Wine's stdout ends lines with CR LF
if [ "$rc" -ne 0 ] || ! grep -q "^ok connections=$connections .* attempts=$((2 * connections))\$" <<<"$summary"; then
  echo "happy-eyeballs: expected 'ok' with attempts=$((2 * connections)) (client exit $rc)"
  exit 1
fi
echo "happy-eyeballs: every connection fell back from the silent ::1 to 127.0.0.1"
