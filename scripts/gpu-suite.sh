#!/usr/bin/env bash
# Build xrail with CUDA and run its GPU suite on a machine with a GPU (the
# device tool's H100), in one call. Logs go to $OUT (the device tool's
# return folder) or build-gpu/out.
#
#   bash scripts/gpu-suite.sh          # GPU tests, then the whole suite
#
# The machine has no libfabric, Lua or Check: carry .deps (made here with
# ../shared/gpu/fetch-debs.sh .deps) and this script unpacks it.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-build-gpu/out}
mkdir -p "$out"
if [ -f .deps/env.sh ]; then
  # shellcheck disable=SC1091
  source .deps/env.sh
fi
{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  nvcc --version | tail -2
  fi_info -l 2>/dev/null | grep -E '^(tcp|shm|ofi_rxm)' | tr '\n' ' '
  echo
} >"$out/device.txt" 2>&1
cat "$out/device.txt"

echo "== build"
if ! { cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release &&
       cmake --build build-gpu -j"$(nproc)"; } >"$out/build.log" 2>&1; then
  tail -40 "$out/build.log"
  exit 1
fi
grep -E "CUDA memory support" "$out/build.log"

echo "== GPU tests (device memory, both providers, the four pairs)"
timeout 300 ctest --test-dir build-gpu -R '^stage\.' --output-on-failure -V >"$out/gpu-tests.log" 2>&1
gpu_rc=$?
grep -E "ok:|WRITE|SKIPPED|FAIL|Passed|Failed|\*\*\*" "$out/gpu-tests.log" | sed 's/^[0-9]*: //'

echo "== whole suite with a GPU present"
timeout 200 ctest --test-dir build-gpu --output-on-failure -E '^stage\.' >"$out/all-tests.log" 2>&1
all_rc=$?
grep -E "tests passed|Failed|\*\*\*" "$out/all-tests.log"

echo "gpu tests rc=$gpu_rc, whole suite rc=$all_rc"
[ "$gpu_rc" -eq 0 ] && [ "$all_rc" -eq 0 ]
