#!/usr/bin/env bash
# Build the libFuzzer harnesses (clang, libclang-rt-14-dev) and run each for
# a bounded number of inputs: every parser of a peer's bytes (metadata,
# notification frames, staging headers). A crash, a leak or a failed check
# fails the run, and the input that did it is kept in build-fuzz/.
#   scripts/fuzz.sh            1,000,000 inputs each (what CI runs)
#   RUNS=10000000 scripts/fuzz.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
runs=${RUNS:-1000000}
harnesses=(layout frame stage_wire)

missing=()
command -v clang >/dev/null || missing+=(clang)
dpkg-query -W -f='${Status}' libclang-rt-14-dev 2>/dev/null | grep -q "install ok installed" ||
  missing+=(libclang-rt-14-dev)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
bash scripts/setup.sh
CC=clang cmake -S . -B build-fuzz -DXRAIL_FUZZ=ON -DXRAIL_PYTHON=OFF -DXRAIL_EXAMPLES=OFF >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target "${harnesses[@]/#/fuzz_}"
for h in "${harnesses[@]}"; do
  corpus=build-fuzz/corpus-$h
  mkdir -p "$corpus"
  # Valid inputs to start from, so that mutations reach past the header.
  [ -d "tests/fuzz/seeds/$h" ] && cp -n "tests/fuzz/seeds/$h"/* "$corpus"/
  echo "fuzz: $h, $runs inputs"
  (cd build-fuzz && "./tests/fuzz_$h" -runs="$runs" -print_final_stats=1 "corpus-$h" 2>&1 |
     grep -E '^Done|ERROR|SUMMARY|stat::number_of_executed_units') ||
    { echo "fuzz: $h failed"; exit 1; }
done
