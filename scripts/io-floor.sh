#!/usr/bin/env bash
# io-floor.sh — what the SMTP conversations alone cost in CPU per message on this machine, as
# measured on Postfix's own minimal C tools (smtp-source and smtp-sink: a select loop each, no
# queue, no parsing, nothing stored). A relay does one receive and one send per message, so
# "receive over a new connection" plus "send over a warm one" is a floor under any relay's CPU
# per message before it parses, stores or signs anything. The pipeline issue compares
# Postern's CPU per message with the cost of its signatures; this is the part no relay avoids.
#
# Usage: scripts/io-floor.sh   (N=20000 SESSIONS=20 SIZE=4096; loopback only; each process is
# bounded by timeout). Needs smtp-source/smtp-sink (Debian's postfix package) and perf.
set -euo pipefail
N=${N:-20000}; SESSIONS=${SESSIONS:-20}; SIZE=${SIZE:-4096}
command -v smtp-source >/dev/null && command -v perf >/dev/null \
  || { echo "needs smtp-source (postfix) and perf" >&2; exit 2; }
W=$(mktemp -d /tmp/io-floor.XXXXXX); trap 'rm -rf "$W"' EXIT
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1]);s.close()'; }
# CPU milliseconds of a finished `perf stat -x,` run, per message.
per_msg() { awk -F, -v n="$N" '$3 == "task-clock" { printf "%.3f", $1 / n }' "$1"; }

measure() {  # $1: label, $2: extra smtp-source flags
  local port; port=$(free_port)
  timeout 300 perf stat -x, -e task-clock -o "$W/sink" \
    smtp-sink -u nobody -M "$N" "127.0.0.1:$port" 1024 & local sink=$!
  for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  # smtp-source may see the sink leave after the last message; that is not a failure here.
  timeout 300 perf stat -x, -e task-clock -o "$W/source" \
    smtp-source $2 -s "$SESSIONS" -l "$SIZE" -m "$N" -f a@x.test -t b@y.test "127.0.0.1:$port" \
    2>/dev/null || true
  wait "$sink" || true
  echo "$1 receive_ms_per_msg=$(per_msg "$W/sink") send_ms_per_msg=$(per_msg "$W/source")"
}

measure "new-connection-per-message" ""
measure "warm-connections" "-d"
echo "config: N=$N sessions=$SESSIONS size=$SIZE"
