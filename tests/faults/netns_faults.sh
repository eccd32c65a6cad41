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
# the loss comes from a tc classifier that drops 5% of packets (loss_bpf.c,
# built here with clang); the delay cannot be made without netem.
if [ "$case" = loss ]; then
  ns=xrprobe$$
  tmp=$(mktemp -d)
  trap 'ip netns del "$ns" 2>/dev/null || true; rm -rf "$tmp"' EXIT
  ip netns add "$ns"
  ip -n "$ns" link add v0 type veth peer name v1
  if tc -n "$ns" qdisc add dev v0 root netem loss 5% delay 20ms 2>/dev/null; then
    :
  elif ! command -v clang >/dev/null; then
    echo "SKIPPED: this kernel has no tc netem (sch_netem), and clang, which builds the" \
         "classifier that drops packets instead, is not installed"
    exit 77
  elif ! clang -O2 -target bpf -c "$(dirname "$0")/loss_bpf.c" -o "$tmp/loss.o" ||
       ! tc -n "$ns" qdisc add dev v0 clsact ||
       ! tc -n "$ns" filter add dev v0 egress bpf da obj "$tmp/loss.o" sec classifier; then
    echo "SKIPPED: this kernel has neither tc netem (sch_netem) nor a tc bpf classifier" \
         "to drop packets with"
    exit 77
  else
    export XR_LOSS_BPF=$tmp/loss.o
  fi
  ip netns del "$ns"
fi
XR_NETNS=$XR_NETNS bash "$rails" run 4 200mbit -- "$bin" "$XR_NETNS" "$case"
