#!/usr/bin/env bash
# netns_faults.sh BIN NETNS_RAILS CASE - run one link fault case of
# test_link between two network namespaces joined by 4 veth rails of
# 200 Mbit/s (scripts/netns-rails.sh), removed afterwards whatever happens.
# Without root or iproute2 the case says it is skipped (exit 77).
set -euo pipefail
bin=$1 rails=$2 case=$3
if [ "$(id -u)" -ne 0 ] || ! command -v ip >/dev/null || ! command -v tc >/dev/null; then
  echo "SKIPPED: needs root, ip and tc (network namespaces and shaped veth links)"
  exit 77
fi
export XR_NETNS=xrf$$
# netem is a kernel module some kernels lack (this VM's among them). There
# the loss and the delay come from delay_link, a tun device in each
# namespace and a process between them that holds and drops packets; it is
# built beside test_link.
if [ "$case" = loss ]; then
  ns=xrprobe$$
  trap 'ip netns del "$ns" 2>/dev/null || true' EXIT
  ip netns add "$ns"
  ip -n "$ns" link add v0 type veth peer name v1
  if ! tc -n "$ns" qdisc add dev v0 root netem loss 5% delay 20ms 2>/dev/null; then
    relay=$(dirname "$bin")/delay_link
    if [ ! -c /dev/net/tun ] || [ ! -x "$relay" ]; then
      echo "SKIPPED: this kernel has no tc netem (sch_netem), and delay_link, which stands" \
           "in for it, needs /dev/net/tun and $relay"
      exit 77
    fi
    export XR_DELAY_LINK=$relay
  fi
  ip netns del "$ns"
fi
XR_NETNS=$XR_NETNS bash "$rails" run 4 200mbit -- "$bin" "$XR_NETNS" "$case"
