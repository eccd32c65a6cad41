#!/usr/bin/env bash
# soak_link.sh BUILD [N] - the link-down fault N times (default 100): a
# 256 MiB WRITE over 4 shaped tcp rails between two namespaces, rail 1's
# link cut 1 s in and restored after, every byte verified; prints the
# distribution of detection and finish times (docs/reliability.md). Not in
# CI: about 20 s a run. Needs root.
set -euo pipefail
build=$1 n=${2:-100}
here=$(cd "$(dirname "$0")/../.." && pwd)
bash "$here/tests/faults/netns_faults.sh" "$build/tests/test_link" "$here/scripts/netns-rails.sh" \
  "soak$n"
