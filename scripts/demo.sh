#!/usr/bin/env bash
# Set up, build, and run the prefill -> decode example: two processes moving
# KV-cache blocks over 4 tcp rails on loopback. Extra arguments go to the
# example (e.g. --provider shm --rails 8).
#
#   scripts/demo.sh [ARGS]          the C example
#   scripts/demo.sh --etcd [ARGS]   the C example with no side channel: a local etcd
#                                   (scripts/with-etcd.sh) is the directory
#   scripts/demo.sh python [ARGS]   the Python example (numpy; --cuda for torch on a GPU)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
cmake -S . -B build >/dev/null
if [ "${1:-}" = python ]; then
  shift
  cmake --build build -j"$(nproc)" --target xrail_python
  PYTHONPATH="$root/build/python" exec /usr/bin/python3 examples/python/prefill_decode.py "$@"
fi
cmake --build build -j"$(nproc)" --target prefill_decode
if [ "${1:-}" = --etcd ]; then
  shift
  exec scripts/with-etcd.sh ./build/examples/prefill_decode/prefill_decode --etcd @ETCD@ "$@"
fi
exec ./build/examples/prefill_decode/prefill_decode "$@"
