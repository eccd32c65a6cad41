#!/usr/bin/env bash
# Why the first READ after xr_peer_connect is slower than a warm one on tcp:
# the kernel starts a socket's send buffer at net.ipv4.tcp_wmem's middle
# value (16 KiB on Debian) and grows it only as the connection carries
# bytes, so connections that have carried only hellos send their first
# megabytes in small steps. Alternates the host's defaults with initial
# buffers of 4 MiB (a host setting, not one xrail can make for libfabric's
# sockets), three rounds of xrail-bench-cold --runs 3; restores the
# settings whatever happens (docs/performance.md, "xrail's rxm default").
#   sudo tests/bench/tcp_buffers.sh [BUILD_DIR]
set -euo pipefail
b=${1:-build}
if [ "$(id -u)" -ne 0 ]; then
  echo "needs root: it changes net.ipv4.tcp_wmem and tcp_rmem for the run" >&2
  exit 2
fi
wmem=$(sysctl -n net.ipv4.tcp_wmem) rmem=$(sysctl -n net.ipv4.tcp_rmem)
trap 'sysctl -qw net.ipv4.tcp_wmem="$wmem" net.ipv4.tcp_rmem="$rmem"' EXIT
read -r wlo _ whi <<<"$wmem"
read -r rlo _ rhi <<<"$rmem"
for i in 1 2 3; do
  echo "== host defaults (tcp_wmem $wmem), round $i"
  "$b/tests/xrail-bench-cold" --rails 32 --size 64M --runs 3 | grep '^median'
  sysctl -qw net.ipv4.tcp_wmem="$wlo 4194304 $((whi > 4194304 ? whi : 4194304))" \
             net.ipv4.tcp_rmem="$rlo 4194304 $((rhi > 4194304 ? rhi : 4194304))"
  echo "== initial socket buffers of 4 MiB, round $i"
  "$b/tests/xrail-bench-cold" --rails 32 --size 64M --runs 3 | grep '^median'
  sysctl -qw net.ipv4.tcp_wmem="$wmem" net.ipv4.tcp_rmem="$rmem"
done
