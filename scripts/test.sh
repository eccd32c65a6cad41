#!/usr/bin/env bash
# Set up, configure, build and run every test through ctest.
#   scripts/test.sh              the suite, warnings as errors
#   scripts/test.sh --sanitize   the same suite built with ASan and UBSan
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

build=build
flags=(-DXRAIL_WERROR=ON)
if [ "${1:-}" = "--sanitize" ]; then
  build=build-asan
  flags+=(-DXRAIL_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug)
  # libfabric keeps provider state for the life of the process; what it
  # leaves at exit is not ours (see tests/lsan.supp), everything else is.
  export LSAN_OPTIONS="suppressions=$root/tests/lsan.supp:print_suppressions=0"
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
fi

bash scripts/setup.sh
cmake -S . -B "$build" "${flags[@]}"
cmake --build "$build" -j"$(nproc)"
ctest --test-dir "$build" --output-on-failure --timeout 900
