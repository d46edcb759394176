#!/usr/bin/env bash
# A client that connects and says nothing, to an echo server started with
# --idle-timeout: each of its COUNT connections must be closed by the
# server (EOF) before LIMIT seconds. Exits 0 if all were, 1 otherwise.
#
#   bash scripts/idle-client.sh PORT [COUNT] [LIMIT] [HOST]
# Plain bash (/dev/tcp), so a fresh machine needs nothing more.
set -u
port="$1" count="${2:-5}" limit="${3:-20}" host="${4:-127.0.0.1}"
fds=()
for _ in $(seq 1 "$count"); do
  exec {fd}<>"/dev/tcp/$host/$port" || { echo "idle-client: connect failed"; exit 1; }
  fds+=("$fd")
done
closed=0
for fd in "${fds[@]}"; do
  # read returns 1 at EOF, more than 128 when the limit passed first.
  if IFS= read -r -t "$limit" -u "$fd" _line; then
    echo "idle-client: the server sent data on a silent connection"
  elif [ $? -gt 128 ]; then
    echo "idle-client: connection still open after ${limit}s"
  else
    closed=$((closed + 1))
  fi
  exec {fd}>&-
done
echo "idle-client: $closed of $count silent connections closed by the server"
[ "$closed" -eq "$count" ]
