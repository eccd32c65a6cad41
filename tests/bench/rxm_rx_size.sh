#!/usr/bin/env bash
# xrail's rxm default (FI_OFI_RXM_MSG_RX_SIZE=128, set unless the
# environment has it) against rxm's own (4096): a 32-rail engine's creation,
# its cold and warm 64 MiB READ, and xr_peer_connect, alternated, three
# rounds (docs/performance.md, "xrail's rxm default").
#   tests/bench/rxm_rx_size.sh [BUILD_DIR]
set -euo pipefail
b=${1:-build}
for i in 1 2 3; do
  echo "== xrail default (128), round $i"
  "$b/tests/xrail-bench-cold" --rails 32 --size 64M --runs 1 | grep '^run'
  echo "== rxm default (FI_OFI_RXM_MSG_RX_SIZE=4096), round $i"
  FI_OFI_RXM_MSG_RX_SIZE=4096 "$b/tests/xrail-bench-cold" --rails 32 --size 64M --runs 1 | grep '^run'
done
