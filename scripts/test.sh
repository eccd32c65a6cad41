#!/usr/bin/env bash
# Set up, configure, build and run every test through ctest.
#   scripts/test.sh                     the suite, warnings as errors
#   scripts/test.sh --sanitize          the same suite built with ASan and UBSan
#   scripts/test.sh --tsan              the integration tests built with ThreadSanitizer
#   scripts/test.sh --libfabric PREFIX  the same suite against the libfabric
#                                       installed in PREFIX (e.g. 2.6.0 built by
#                                       ../shared/deps/build-libfabric.sh)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

build=build
flags=(-DXRAIL_WERROR=ON)
ctest_args=()
case "${1:-}" in
--sanitize)
  build=build-asan
  flags+=(-DXRAIL_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug)
  # libfabric keeps provider state for the life of the process; what it
  # leaves at exit is not ours (see tests/lsan.supp), everything else is.
  export LSAN_OPTIONS="suppressions=$root/tests/lsan.supp:print_suppressions=0"
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
  ;;
--tsan)
  build=build-tsan
  # Python is left out: the interpreter would need the runtime preloaded.
  flags+=(-DXRAIL_TSAN=ON -DXRAIL_PYTHON=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo)
  # libfabric is not instrumented: what it copies through memcpy or recv
  # (a peer's RMA into a registered buffer, ordered by messages in another
  # process) is not checked; xrail's own accesses all are (tests/tsan.supp).
  export TSAN_OPTIONS="suppressions=$root/tests/tsan.supp:ignore_noninstrumented_modules=1:halt_on_error=0:exitcode=66:allocator_may_return_null=1"
  # The sanitizer slows everything 5-20x: the health deadline stretches to
  # match (tests/integration/harness.h), so that slowness is not a verdict.
  export XR_TEST_DEADLINE_MS=10000
  # One integration test of each kind and provider (not every rail count
  # or policy: a full sweep takes half an hour here); unit tests are one
  # thread, benchmarks measure speed, and the fault tests check time bounds
  # that a sanitizer breaks.
  ctest_args=(-R '^(events\.|group\.|xfer\.(tcp|shm)\.(4rails|4to32|progress_threads?)|xfer\.tcp_native\.4rails|notif\.|order\.|reload\.|lifecycle\.|bad_input\.|engine\.|policy\.shm|mr_cache\.(tcp|shm)\.on|stage\.(tcp|shm)\.host\.(sd|ds)|no_delivery_complete\.|cli\.shm|example\.)')
  ;;
--libfabric)
  prefix=$(cd "${2:?usage: scripts/test.sh --libfabric PREFIX}" && pwd)
  [ -f "$prefix/lib/pkgconfig/libfabric.pc" ] || { echo "test.sh: no libfabric in $prefix" >&2; exit 2; }
  version=$(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --modversion libfabric)
  build=build-libfabric-$version
  export PKG_CONFIG_PATH="$prefix/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
  export LD_LIBRARY_PATH="$prefix/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  echo "test.sh: against libfabric $version in $prefix"
  ;;
"") ;;
*) echo "usage: scripts/test.sh [--sanitize | --tsan | --libfabric PREFIX]" >&2; exit 2 ;;
esac

bash scripts/setup.sh
cmake -S . -B "$build" "${flags[@]}"
cmake --build "$build" -j"$(nproc)"
ctest --test-dir "$build" --output-on-failure --timeout 900 "${ctest_args[@]}"
