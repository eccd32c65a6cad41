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
# netem is a kernel module some kernels lack (this VM's among them).
if [ "$case" = loss ]; then
  ns=xrprobe$$
  ip netns add "$ns"
  ip -n "$ns" link add v0 type veth peer name v1
  ok=0
  tc -n "$ns" qdisc add dev v0 root netem loss 5% delay 20ms 2>/dev/null && ok=1
  ip netns del "$ns"
  if [ "$ok" = 0 ]; then
    echo "SKIPPED: this kernel has no tc netem (sch_netem), which the loss case needs"
    exit 77
  fi
fi
XR_NETNS=$XR_NETNS bash "$rails" run 4 200mbit -- "$bin" "$XR_NETNS" "$case"
