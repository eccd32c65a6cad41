#!/usr/bin/env bash
# netns-rails.sh - two network namespaces joined by N shaped veth pairs, the
# rails of a multi-rail bench on one machine.
#
#   scripts/netns-rails.sh up N RATE...      make them (one RATE, or one per rail)
#   scripts/netns-rails.sh down              remove them
#   scripts/netns-rails.sh run N RATE... -- CMD...
#                                            up, CMD, down, whatever CMD does
#   scripts/netns-rails.sh show              addresses and qdiscs
#
# Layout, for prefix P (env XR_NETNS, default "xr"):
#   namespaces  P-a (the initiator's side) and P-b (the target's side)
#   rail i      veth "P<i>" in each namespace, 198.18.<i>.1/24 in P-a and
#               198.18.<i>.2/24 in P-b (198.18.0.0/15 is the benchmarking range,
#               RFC 2544, so nothing here can reach a real network)
#   shaping     the egress of both ends of rail i goes through tc tbf at its
#               rate, so a READ is shaped like a WRITE
# RATE is anything tc accepts: 400mbit, 1gbit, ... One RATE applies to all N.
#
# `up` that fails part way removes what it made; `run` removes everything when
# CMD ends, fails or is interrupted. xrail-bench --netns P runs its initiator in
# P-a and its target in P-b, rail i over veth P<i>. Needs root (CAP_NET_ADMIN).
set -euo pipefail

P=${XR_NETNS:-xr}
A="$P-a" B="$P-b"

die() { echo "netns-rails: $*" >&2; exit 1; }

down() {
  # Deleting a namespace deletes its veth ends, and with them their peers.
  ip netns del "$A" 2>/dev/null || true
  ip netns del "$B" 2>/dev/null || true
}

# tbf needs a bucket of at least one full packet, and with GSO on a veth a
# packet can be 64 KiB; 10 ms at the rate keeps a fast rail from stalling.
burst_for() {
  local bits
  bits=$(tc_rate_bits "$1")
  local b=$((bits / 8 / 100))
  [ "$b" -lt 131072 ] && b=131072
  echo "$b"
}

tc_rate_bits() {
  local r=${1,,} n unit
  n=${r%%[a-z]*}
  unit=${r#"$n"}
  [[ "$n" =~ ^[0-9]+$ ]] || die "rate '$1': want a number and a unit, like 400mbit"
  case "$unit" in
    bit|"") echo "$n" ;;
    kbit) echo $((n * 1000)) ;;
    mbit) echo $((n * 1000000)) ;;
    gbit) echo $((n * 1000000000)) ;;
    *) die "rate '$1': unit '$unit' (use bit, kbit, mbit or gbit)" ;;
  esac
}

up() {
  [ $# -ge 2 ] || die "usage: up N RATE..."
  local n=$1; shift
  [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 64 ] || die "N must be 1..64, not '$n'"
  [ $# -eq 1 ] || [ $# -eq "$n" ] || die "give one RATE, or $n (one per rail), not $#"
  local rates=("$@")
  for r in "${rates[@]}"; do tc_rate_bits "$r" >/dev/null; done
  [ "$(id -u)" -eq 0 ] || die "needs root (ip netns, tc)"
  if ip netns list | grep -qw -- "$A"; then die "$A exists: run '$0 down' first"; fi
  trap 'echo "netns-rails: up failed, removing what it made" >&2; down' ERR
  ip netns add "$A"
  ip netns add "$B"
  ip -n "$A" link set lo up
  ip -n "$B" link set lo up
  for ((i = 0; i < n; i++)); do
    local rate=${rates[0]}
    [ ${#rates[@]} -gt 1 ] && rate=${rates[$i]}
    local burst
    burst=$(burst_for "$rate")
    ip link add "xrtmp$$a" type veth peer name "xrtmp$$b"
    ip link set "xrtmp$$a" netns "$A"
    ip link set "xrtmp$$b" netns "$B"
    ip -n "$A" link set "xrtmp$$a" name "$P$i"
    ip -n "$B" link set "xrtmp$$b" name "$P$i"
    ip -n "$A" addr add "198.18.$i.1/24" dev "$P$i"
    ip -n "$B" addr add "198.18.$i.2/24" dev "$P$i"
    ip -n "$A" link set "$P$i" up
    ip -n "$B" link set "$P$i" up
    for ns in "$A" "$B"; do
      tc -n "$ns" qdisc add dev "$P$i" root tbf rate "$rate" burst "$burst" latency 50ms
    done
    echo "netns-rails: rail $i: $A/$P$i 198.18.$i.1 <-> $B/$P$i 198.18.$i.2, $rate"
  done
  trap - ERR
}

show() {
  for ns in "$A" "$B"; do
    echo "== $ns"
    ip -n "$ns" -br addr 2>/dev/null || echo "(absent)"
    tc -n "$ns" qdisc show 2>/dev/null | grep tbf || true
  done
}

cmd=${1:-}
[ -n "$cmd" ] && shift
case "$cmd" in
  up) up "$@" ;;
  down) down ;;
  show) show ;;
  run)
    args=()
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do args+=("$1"); shift; done
    [ "${1:-}" = "--" ] && [ $# -ge 2 ] || die "usage: run N RATE... -- CMD..."
    shift
    down # a namespace left by a killed run would make `up` refuse
    trap down EXIT
    trap 'exit 130' INT TERM
    up "${args[@]}"
    "$@"
    ;;
  *) die "usage: $0 up N RATE... | down | show | run N RATE... -- CMD..." ;;
esac
