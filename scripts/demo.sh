#!/usr/bin/env bash
# Set up, build, and run the prefill -> decode example: two processes moving
# KV-cache blocks over 4 tcp rails on loopback. Extra arguments go to the
# example (e.g. --provider shm --rails 8).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
cmake -S . -B build >/dev/null
cmake --build build -j"$(nproc)" --target prefill_decode
exec ./build/examples/prefill_decode/prefill_decode "$@"
