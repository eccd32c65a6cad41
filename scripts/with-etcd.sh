#!/usr/bin/env bash
# Run a command beside a throwaway etcd: Debian's etcd-server started on free
# loopback ports with a temporary data directory, stopped and removed when
# the command ends. The command's arguments may name the endpoint as
# @ETCD@; it is also in the environment as XRAIL_ETCD.
#
#   scripts/with-etcd.sh CMD [ARGS...]
# Exit 77 (skipped, for ctest) when etcd is not installed.
set -euo pipefail
command -v etcd >/dev/null || { echo "SKIPPED: etcd is not installed (Debian: etcd-server)"; exit 77; }
dir=$(mktemp -d /tmp/xrail-etcd.XXXXXX)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cport=$(free_port) pport=$(free_port)
url=http://127.0.0.1:$cport
etcd --name local --data-dir "$dir/data" --listen-client-urls "$url" --advertise-client-urls "$url" \
  --listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
  --initial-cluster "local=http://127.0.0.1:$pport" > "$dir/etcd.log" 2>&1 &
pid=$!
export XRAIL_ETCD_PID=$pid
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 300); do # until it serves a read, at most 30 s
  python3 -c 'import sys, urllib.request as u; u.urlopen(u.Request(sys.argv[1] + "/v3/kv/range", b"{\"key\":\"AA==\"}"), timeout=1)' "$url" 2>/dev/null && break
  kill -0 $pid 2>/dev/null || { echo "with-etcd: etcd exited:" >&2; tail -5 "$dir/etcd.log" >&2; exit 1; }
  sleep 0.1
done
echo "with-etcd: etcd at $url" >&2
export XRAIL_ETCD=$url
args=()
for a in "$@"; do args+=("${a//@ETCD@/$url}"); done
"${args[@]}"
