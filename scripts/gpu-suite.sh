#!/usr/bin/env bash
# Build xrail with CUDA and run its GPU suite on a machine with a GPU (the
# device tool's H100), in one call. Logs go to $OUT (the device tool's
# return folder) or build-gpu/out.
#
#   bash scripts/gpu-suite.sh          # GPU tests, then the whole suite
#   bash scripts/gpu-suite.sh bench    # GPU tests, then xrail-bench on device
#                                      # memory and multi-rail loopback
#   bash scripts/gpu-suite.sh pair [P,D]
#                                      # GPU tests, then prefill on GPU P and
#                                      # decode on GPU D (default 0,1 with two
#                                      # GPUs, else 0,0): the C and Python
#                                      # examples, xrail-bench device->device
#                                      # beside the copy ceilings, one run
#   bash scripts/gpu-suite.sh layerwise
#                                      # GPU tests, then the layer-by-layer
#                                      # comparison of docs/performance.md
#                                      # (host memory, 4 tcp rails), on a
#                                      # host with cores to spare
#   bash scripts/gpu-suite.sh cold [BASE]
#                                      # GPU tests, then the first READ after
#                                      # xr_peer_connect against warm (32 tcp
#                                      # rails), this tree and BASE alternated
#   bash scripts/gpu-suite.sh node     # GPU tests, then P prefill -> decode
#                                      # pairs on 2P GPUs at once (libfabric
#                                      # 2.6 shm with CUDA), each pair's GB/s
#                                      # beside cudaMemcpyPeer alone and all
#                                      # at once (docs/gpu.md)
#   bash scripts/gpu-suite.sh matrix   # xrail beside raw libfabric, 1.17 and
#                                      # 2.6, tcp and shm, on this host's cores
#   bash scripts/gpu-suite.sh rails [BASE]
#                                      # 4 tcp rails with a thread each beside
#                                      # 4 raw endpoints with a thread each,
#                                      # this tree (also with as many in
#                                      # flight as raw) and BASE alternated;
#                                      # a BASE that is no commit: this tree;
#                                      # then this tree with round_robin.lua
#   bash scripts/gpu-suite.sh direct [P,D]
#                                      # GPU tests, then libfabric 2.6 built
#                                      # with CUDA: the GPU tests on it (shm
#                                      # registers device memory itself), and
#                                      # GPU P -> GPU D: xrail direct, xrail
#                                      # staged, raw fi_rma_bw, cudaMemcpyPeer
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

# libfabric 2.6 with CUDA takes minutes to build: it starts now, beside
# the build and tests on Debian's 1.17 (direct mode).
lf=${XR_LIBFABRIC_CUDA:-/opt/lf}
if [ "${1:-}" = direct ] || [ "${1:-}" = node ] || [ "${1:-}" = matrix ]; then
  bash .deps/src/build-libfabric.sh "$lf" --cuda --fabtests >"$out/lf-build.log" 2>&1 &
  lf_pid=$!
fi

echo "== build"
if ! { cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release &&
       cmake --build build-gpu -j"$(nproc)"; } >"$out/build.log" 2>&1; then
  tail -40 "$out/build.log"
  exit 1
fi
grep -E "CUDA memory support" "$out/build.log"

gpu_rc=0
if [ "${1:-}" != matrix ] && [ "${1:-}" != rails ]; then # host memory only there
  echo "== GPU tests (device memory, both providers, the four pairs)"
  timeout 300 ctest --test-dir build-gpu -R '^(stage|split_rails)\.' --output-on-failure -V >"$out/gpu-tests.log" 2>&1
  gpu_rc=$?
  grep -E "ok:|WRITE|SKIPPED|FAIL|Passed|Failed|\*\*\*" "$out/gpu-tests.log" | sed 's/^[0-9]*: //'
fi

if [ "${1:-}" = layerwise ]; then
  # examples/prefill_decode as on the 2-core VM (--compute-us 2000: 16
  # layers of 2 ms each), one transfer after the last layer against a
  # transfer group fed layer by layer, alternated, three rounds each.
  # With one progress thread, the thread that posts (prefill's own) copies
  # each layer into tcp's sockets inside fi_write; with four, the rails'
  # threads post and copy.
  lw_rc=0
  for threads in 1 4; do
    echo "== layer by layer on $(nproc) cores, XRAIL_PROGRESS_THREADS=$threads"
    for k in 1 2 3; do
      for mode in one --layerwise; do
        flag=$([ "$mode" = one ] || echo "$mode")
        log="$out/layerwise-t$threads-$k-${mode#--}.log"
        # shellcheck disable=SC2086
        XRAIL_PROGRESS_THREADS=$threads timeout 120 build-gpu/examples/prefill_decode/prefill_decode \
          --compute-us 2000 $flag --port $((19000 + RANDOM % 1000)) >"$log" 2>&1 || lw_rc=1
        grep -E "notification delivered|alone on the wire" "$log" | sed "s/^/round $k: /"
        grep -q "verified every byte" "$log" || { echo "round $k: NOT VERIFIED"; lw_rc=1; }
      done
    done
  done
  echo "gpu tests rc=$gpu_rc, layerwise rc=$lw_rc"
  [ "$gpu_rc" -eq 0 ] && [ "$lw_rc" -eq 0 ]
  exit
fi

# build_base COMMIT TARGET: COMMIT's TARGET in build-base, from a worktree
# beside this one, for a side-by-side; false (and says so) when the copy
# holds no git history or the build fails.
build_base() {
  if git rev-parse -q --verify "$1^{commit}" >/dev/null 2>&1 &&
     git worktree add -f -q build-base-src "$1" >/dev/null 2>&1 &&
     { cmake -S build-base-src -B build-base -DCMAKE_BUILD_TYPE=Release &&
       cmake --build build-base -j"$(nproc)" --target "$2"; } >"$out/base-build.log" 2>&1; then
    return 0
  fi
  echo "(no $1 to build here: this tree alone)"
  return 1
}

if [ "${1:-}" = cold ]; then
  # The first 64 MiB READ to a new 32-rail peer after xr_peer_connect,
  # against warm (docs/performance.md), on a host with cores to spare:
  # this tree against BASE (default HEAD~1, built beside it when the copy
  # holds git's history), alternated, three rounds.
  base=${2:-HEAD~1}
  benches=(build-gpu/tests/xrail-bench-cold)
  if build_base "$base" xrail-bench-cold; then
    benches+=(build-base/tests/xrail-bench-cold)
  fi
  cold_rc=0
  for k in 1 2 3; do
    for b in "${benches[@]}"; do
      echo "round $k, ${b%%/*}: $(timeout 300 "$b" --rails 32 --size 64M --runs 3 2>&1 | grep '^median' || echo FAILED)"
    done
  done | tee "$out/cold.txt"
  grep -q FAILED "$out/cold.txt" && cold_rc=1
  echo "gpu tests rc=$gpu_rc, cold rc=$cold_rc"
  exit "$cold_rc"
fi

if [ "${1:-}" = pair ]; then
  ngpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
  gpus=${2:-$([ "$ngpu" -ge 2 ] && echo 0,1 || echo 0,0)}
  p=${gpus%,*} d=${gpus#*,}
  echo "== prefill on GPU $p, decode on GPU $d ($ngpu GPU(s) here)"
  pair_rc=0
  echo "== the C example, KV caches in device memory"
  for prov in "tcp;ofi_rxm" shm; do
    timeout 120 build-gpu/examples/prefill_decode/prefill_decode --provider "$prov" \
      --port $((19000 + RANDOM % 1000)) --gpu "$p,$d" 2>&1 | tee -a "$out/pair-c.log" || pair_rc=1
  done
  echo "== the Python example, torch tensors"
  py=$(command -v python3 || true)
  if [ -n "$py" ] && "$py" -c 'import torch, numpy; assert torch.cuda.is_available()' 2>/dev/null &&
     cmake -S . -B build-gpu -DPython3_EXECUTABLE="$py" >>"$out/build.log" 2>&1 &&
     cmake --build build-gpu -j"$(nproc)" --target xrail_python >>"$out/build.log" 2>&1; then
    for prov in tcp shm; do
      PYTHONPATH=build-gpu/python timeout 120 "$py" examples/python/prefill_decode.py --cuda \
        --gpus "$p,$d" --provider "$prov" 2>&1 | tee -a "$out/pair-python.log" || pair_rc=1
    done
  else
    echo "SKIPPED: no python3 with torch and a GPU here"
  fi
  echo "== xrail-bench device -> device, beside the copy ceilings, in one run"
  {
    build-gpu/tests/xrail-bench-cuda --src "$p" --dst "$d" --sizes 64k,1M,16M --duration 1 ||
      pair_rc=1
    for prov in shm "tcp;ofi_rxm"; do
      for op in write read; do
        timeout 120 build-gpu/tests/xrail-bench --provider "$prov" --op $op --mem "cuda:$p" \
          --target-mem "cuda:$d" --sizes 64k,1M,16M --duration 1 --warmup 8 || pair_rc=1
      done
    done
    build-gpu/tests/xrail-bench-cuda --src "$p" --dst "$d" --sizes 64k,1M,16M --duration 1 ||
      pair_rc=1
  } >"$out/pair-bench.txt" 2>&1
  cat "$out/pair-bench.txt"
  echo "gpu tests rc=$gpu_rc, pair rc=$pair_rc"
  [ "$gpu_rc" -eq 0 ] && [ "$pair_rc" -eq 0 ]
  exit
fi

# libfabric 2.6 with CUDA (started at the top) and xrail built against it
# into build-gpu-26 (direct and node modes).
build_26() {
  echo "== libfabric 2.6.0 with CUDA and fabtests into $lf"
  if ! wait "$lf_pid"; then
    tail -30 "$out/lf-build.log"
    return 1
  fi
  tail -1 "$out/lf-build.log"
  (
    # shellcheck disable=SC1091
    XR_LIBFABRIC=$lf source .deps/env.sh
    for prov in shm tcp; do
      echo "-- $prov on 2.6 (CUDA): $(fi_info -p $prov -v 2>&1 | grep -c FI_HMEM) lines name FI_HMEM"
      fi_info -p $prov -v 2>&1 | grep -E "caps:|mr_mode:" | sort | uniq -c | cut -c1-200
    done
    echo "== build against 2.6"
    # Lua's folder from .deps holds Debian's libfabric too: the linker must
    # meet 2.6's first when it resolves what libxrail needs.
    if ! { cmake -S . -B build-gpu-26 -DCMAKE_BUILD_TYPE=Release \
             -DCMAKE_EXE_LINKER_FLAGS="-Wl,-rpath-link,$lf/lib" \
             -DCMAKE_MODULE_LINKER_FLAGS="-Wl,-rpath-link,$lf/lib" &&
           cmake --build build-gpu-26 -j"$(nproc)"; } >"$out/build-26.log" 2>&1; then
      tail -40 "$out/build-26.log"
      exit 1
    fi
  )
}

if [ "${1:-}" = direct ]; then
  # libfabric 2.6.0 built with CUDA (its shm lists FI_HMEM and registers
  # device memory itself) and its fabtests, the raw baseline, from the
  # source carried in .deps/src. Then, in one run, GPU P -> GPU D between
  # two processes: xrail on 2.6 shm (direct), xrail on 1.17 shm (staged),
  # raw fi_rma_bw on 2.6 shm, and cudaMemcpyPeer.
  ngpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
  gpus=${2:-$([ "$ngpu" -ge 2 ] && echo 0,1 || echo 0,0)}
  p=${gpus%,*} d=${gpus#*,}
  direct_rc=0
  build_26 || exit 1
  (
    # shellcheck disable=SC1091
    XR_LIBFABRIC=$lf source .deps/env.sh
    echo "== GPU tests against 2.6 (shm: direct; tcp: staged)"
    timeout 300 ctest --test-dir build-gpu-26 -R '^(stage|split_rails)\.' --output-on-failure -V \
      >"$out/gpu-tests-26.log" 2>&1
    rc=$?
    grep -E "ok:|device memory on|SKIPPED|FAIL|Passed|Failed|\*\*\*" "$out/gpu-tests-26.log" |
      sed 's/^[0-9]*: //'
    # Device -> device in larger chunks (one CUDA copy each on shm): which
    # keep every byte, WRITE (its source overwritten as it completes) and
    # READ, 3 runs each, with the fence after CUDA IPC copies and without.
    for fence in on off; do
      for chunk in 1048576 4194304 16777216; do
        for k in 1 2 3; do
          r=$(XR_TEST_NO_FENCE=$([ $fence = off ] && echo 1) XR_TEST_CHUNK=$chunk \
                timeout 60 build-gpu-26/tests/test_stage shm cuda:dd 2>&1 |
              grep -E "FAIL|READ device <- device" | head -1 | sed 's/.*\] //')
          echo "fence $fence, chunk $chunk, run $k: ${r:-no output}" | tee -a "$out/fence.txt"
          [ $fence = on ] && ! echo "$r" | grep -q "verified" && rc=1
        done
      done
    done
    exit $rc
  ) || direct_rc=1
  echo "== GPU $p -> GPU $d, one run: xrail direct (2.6), xrail staged (1.17), raw fi_rma_bw (2.6), cudaMemcpyPeer"
  {
    build-gpu/tests/xrail-bench-cuda --src "$p" --dst "$d" --sizes 64k,1M,16M,64M --duration 1 ||
      direct_rc=1
    for op in write read; do
      for chunk in 1M 16M "1M --no-fence"; do
        echo "# xrail on libfabric 2.6 shm, $op, chunks of $chunk"
        # shellcheck disable=SC2086
        (XR_LIBFABRIC=$lf source .deps/env.sh &&
         timeout 120 build-gpu-26/tests/xrail-bench --provider shm --op $op --mem "cuda:$p" \
           --target-mem "cuda:$d" --sizes 64k,1M,16M,64M --duration 1 --warmup 8 --window 16 \
           --chunk $chunk) || direct_rc=1
      done
      echo "# xrail on libfabric 1.17 shm (staged), $op"
      timeout 120 build-gpu/tests/xrail-bench --provider shm --op $op --mem "cuda:$p" \
        --target-mem "cuda:$d" --sizes 64k,1M,16M --duration 1 --warmup 8 --window 16 ||
        direct_rc=1
      echo "# raw fi_rma_bw on libfabric 2.6 shm, $op (server on GPU $d, client on GPU $p, window 16)"
      for size in 65536 1048576 16777216 67108864; do
        port=$((20000 + RANDOM % 5000))
        (XR_LIBFABRIC=$lf source .deps/env.sh &&
         timeout 60 fi_rma_bw -p shm -E="$port" -D cuda -i "$d" -o $op -S $size -W 16 -I 1000 \
           -w 100 >>"$out/rma_bw-server.txt" 2>&1) &
        sleep 1
        (XR_LIBFABRIC=$lf source .deps/env.sh &&
         timeout 60 fi_rma_bw -p shm -E="$port" -D cuda -i "$p" -o $op -S $size -W 16 -I 1000 \
           -w 100 127.0.0.1 2>&1) || direct_rc=1
        wait
      done
    done
    build-gpu/tests/xrail-bench-cuda --src "$p" --dst "$d" --sizes 64k,1M,16M,64M --duration 1 ||
      direct_rc=1
    # Host memory on shm with a GPU present: a rail that asks FI_HMEM (the
    # default here), one declared host_only, and raw, on both libfabrics.
    for v in 1.17 2.6; do
      b=build-gpu/tests/xrail-bench
      [ $v = 2.6 ] && b=build-gpu-26/tests/xrail-bench
      for mode in "" --host-only --raw; do
        echo "# host memory, libfabric $v shm, xrail-bench ${mode:-(default)}"
        # shellcheck disable=SC2086
        (if [ $v = 2.6 ]; then XR_LIBFABRIC=$lf source .deps/env.sh; fi &&
         timeout 60 "$b" --provider shm --sizes 64k,1M,16M --duration 1 --warmup 10 $mode) ||
          direct_rc=1
      done
    done
  } >"$out/direct-bench.txt" 2>&1
  cat "$out/direct-bench.txt"
  echo "gpu tests rc=$gpu_rc, direct rc=$direct_rc"
  [ "$gpu_rc" -eq 0 ] && [ "$direct_rc" -eq 0 ]
  exit
fi

if [ "${1:-}" = node ]; then
  # The shape of a p5 node: P prefill -> decode pairs on 2P GPUs, all at
  # once, over libfabric 2.6 shm built with CUDA (device memory through CUDA
  # IPC). GPUs pair within a NUMA node, as numa_local.lua keeps traffic
  # near; each process's config declares its rails with its GPU and node.
  # One run: each pair's GB/s with 1 MiB and 16 MiB blocks, every byte
  # verified, beside cudaMemcpyPeer for each pair alone and all at once.
  node_rc=0
  secs=${NODE_SECONDS:-5}
  ngpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
  nvidia-smi topo -m >"$out/topo.txt" 2>&1
  cat "$out/topo.txt"
  # Each GPU's NUMA node, from sysfs through its PCI address (-1: one node).
  numa=()
  while IFS=', ' read -r g bus; do
    b=$(echo "${bus#0000}" | tr 'A-F' 'a-f')
    n=$(cat "/sys/bus/pci/devices/$b/numa_node" 2>/dev/null || echo 0)
    numa[g]=$([ "$n" -ge 0 ] 2>/dev/null && echo "$n" || echo 0)
  done < <(nvidia-smi --query-gpu=index,pci.bus_id --format=csv,noheader)
  # Pairs: two GPUs of one node (prefill on the first); GPUs left alone on
  # their nodes pair with each other. One GPU: both ends on it, a smoke run
  # of this script, not a node's figure.
  pairs=() spare=()
  for n in $(printf '%s\n' "${numa[@]}" | sort -un); do
    on=()
    for g in "${!numa[@]}"; do [ "${numa[g]}" = "$n" ] && on+=("$g"); done
    for ((k = 0; k + 1 < ${#on[@]}; k += 2)); do pairs+=("${on[k]},${on[k+1]}"); done
    [ $((${#on[@]} % 2)) = 1 ] && spare+=("${on[-1]}")
  done
  for ((k = 0; k + 1 < ${#spare[@]}; k += 2)); do pairs+=("${spare[k]},${spare[k+1]}"); done
  [ "$ngpu" = 1 ] && pairs=("0,0")
  echo "== $ngpu GPU(s), NUMA nodes ${numa[*]}: ${#pairs[@]} pair(s): ${pairs[*]} (prefill,decode)"
  build_26 || exit 1
  pd=build-gpu-26/examples/prefill_decode/prefill_decode
  mkdir -p build-gpu-26/node
  # One config per process: its rails tagged with its GPU and NUMA node,
  # numa_local.lua, and 16 MiB chunks (each chunk of device memory is one
  # CUDA copy on shm: larger ones move far more, docs/gpu.md).
  conf() {
    echo "return { rails = { { provider = \"shm\", count = 2, numa = ${numa[$1]}, gpu = $1 } },
  policy = \"numa_local.lua\", chunk = 16 * 1024 * 1024, progress_sleep_us = 0 }" \
      >"build-gpu-26/node/gpu$1.lua"
  }
  for g in "${!numa[@]}"; do conf "$g"; done
  {
    for blk in 1024 16384; do
      # 384 MiB (1 MiB blocks) or 512 MiB (16 MiB blocks) per request.
      geo=$([ $blk = 1024 ] && echo "--layers 16 --blocks 64 --request 24" ||
            echo "--layers 4 --blocks 16 --request 8")
      start=$(($(date +%s) + 20))
      k=0
      for pr in "${pairs[@]}"; do
        p=${pr%,*} d=${pr#*,} port=$((21000 + 10 * k))
        # shellcheck disable=SC2086
        (XR_LIBFABRIC=$lf source .deps/env.sh &&
         timeout 180 "$pd" decode --config "build-gpu-26/node/gpu$d.lua" --gpu "$p,$d" \
           --port $port --block-kib $blk $geo >"$out/node-$blk-pair$k-decode.log" 2>&1) &
        sleep 0.5
        # shellcheck disable=SC2086
        (XR_LIBFABRIC=$lf source .deps/env.sh &&
         timeout 180 "$pd" prefill --config "build-gpu-26/node/gpu$p.lua" --gpu "$p,$d" \
           --port $port --block-kib $blk $geo --duration "$secs" --start-at $start \
           >"$out/node-$blk-pair$k-prefill.log" 2>&1) &
        k=$((k + 1))
      done
      wait
      rates=()
      for ((k = 0; k < ${#pairs[@]}; k++)); do
        r=$(sed -n 's/^decode:  sustained \([0-9.]*\) GB\/s.*/\1/p' "$out/node-$blk-pair$k-decode.log")
        v=$(grep -c "verified every byte" "$out/node-$blk-pair$k-decode.log")
        echo "block ${blk}KiB pair $k (GPU ${pairs[k]}): ${r:-FAILED} GB/s, $([ "$v" = 1 ] && echo verified || echo NOT VERIFIED)"
        [ "$v" = 1 ] && [ -n "$r" ] || node_rc=1
        rates+=("${r:-0}")
      done
      printf '%s\n' "${rates[@]}" | awk -v b="$blk" '{t += $1; if (NR == 1 || $1 < m) m = $1}
        END {printf "block %sKiB aggregate: %.1f GB/s; lowest pair %.2fx the mean\n", b, t, m / (t / NR)}'
    done
    # The ceilings: cudaMemcpyPeer for each pair alone, then all at once.
    for ((k = 0; k < ${#pairs[@]}; k++)); do
      pr=${pairs[k]}
      echo "# ceiling, pair $k alone (GPU ${pr%,*} -> GPU ${pr#*,})"
      build-gpu/tests/xrail-bench-cuda --src "${pr%,*}" --dst "${pr#*,}" --sizes 1M,16M \
        --duration 2 || node_rc=1
    done
    echo "# ceiling, all pairs at once"
    k=0
    for pr in "${pairs[@]}"; do
      build-gpu/tests/xrail-bench-cuda --src "${pr%,*}" --dst "${pr#*,}" --sizes 1M,16M \
        --duration 2 >"$out/ceiling-all-$k.txt" 2>&1 &
      k=$((k + 1))
    done
    wait
    for ((k = 0; k < ${#pairs[@]}; k++)); do
      echo "pair $k: $(grep -E '^(1M|16M) ' "$out/ceiling-all-$k.txt" | awk '{printf "%s %s GB/s  ", $1, $2}')"
    done
    for sz in 1M 16M; do
      grep -h "^$sz " "$out"/ceiling-all-*.txt | awk -v s="$sz" '{t += $2}
        END {printf "all at once, %s copies: %.1f GB/s together\n", s, t}'
    done
  } 2>&1 | tee "$out/node.txt"
  grep -q "FAILED\|NOT VERIFIED" "$out/node.txt" && node_rc=1
  echo "gpu tests rc=$gpu_rc, node rc=$node_rc"
  [ "$gpu_rc" -eq 0 ] && [ "$node_rc" -eq 0 ]
  exit
fi

if [ "${1:-}" = matrix ]; then
  # docs/performance.md's libfabric matrix on this host's cores: xrail
  # beside raw fi_write/fi_read on Debian's 1.17 and on 2.6, one rail of
  # tcp;ofi_rxm and of shm, 3 rounds alternated (MATRIX_DUR s a point).
  # MATRIX_XRAIL_ARGS=--host-only: xrail's rails declared host_only, as
  # docs/gpu.md advises for host memory on a host with a GPU.
  build_26 || exit 1
  XRAIL_ARGS=${MATRIX_XRAIL_ARGS:-} DUR=${MATRIX_DUR:-1} \
    bash tests/bench/libfabric_matrix.sh build-gpu build-gpu-26 "$lf" 3 \
    2>"$out/matrix.log" | tee "$out/matrix.md"
  exit "${PIPESTATUS[0]}"
fi

if [ "${1:-}" = rails ]; then
  # N tcp rails with a progress thread each beside N raw endpoints with a
  # thread each (docs/performance.md), on this host's cores: this tree,
  # BASE (default HEAD~1, built beside it when the copy holds git's
  # history) and raw, alternated, 3 rounds.
  base=${2:-HEAD~1}
  base_build=
  if build_base "$base" xrail-bench; then
    base_build=build-base
  fi
  echo "== $(nproc) cores; this tree against ${base_build:+$base and }raw"
  bash tests/bench/rails_raw.sh build-gpu "$base_build" 3 2>"$out/rails.log" | tee "$out/rails.md"
  rails_rc=${PIPESTATUS[0]}
  # Whole transfers over the rails in turn, as raw's are: the built-in
  # policy stripes 1 MiB into 256 KiB chunks (docs/performance.md, 4).
  echo "== $(nproc) cores; this tree with round_robin.lua against raw"
  POLICY=scripts/policy/round_robin.lua bash tests/bench/rails_raw.sh build-gpu "" 3 \
    2>"$out/rails-rr.log" | tee "$out/rails-rr.md"
  [ "${PIPESTATUS[0]}" = 0 ] || rails_rc=1
  exit "$rails_rc"
fi

if [ "${1:-}" = bench ]; then
  # xrail-bench with device memory on either side (the staged path over
  # Debian's providers), then 1 vs 4 tcp rails on loopback on this host's
  # cores, alternating, 3 runs: the same points as docs/performance.md.
  b=build-gpu/tests/xrail-bench
  echo "== xrail-bench, device memory ($(nproc) cores)"
  bench_rc=0
  for prov in ${BENCH_CUDA_PROVIDERS-shm "tcp;ofi_rxm"}; do
    for m in "host cuda:0" "cuda:0 host" "cuda:0 cuda:0"; do
      read -r mi mt <<<"$m"
      for op in write read; do
        echo "# $prov $op initiator $mi target $mt"
        timeout 120 "$b" --provider "$prov" --op $op --mem "$mi" --target-mem "$mt" \
          --sizes 1M,16M --duration 1 --warmup 4 || bench_rc=1
      done
    done
  done >"$out/bench-cuda.txt" 2>&1
  cat "$out/bench-cuda.txt"
  echo "== xrail-bench, 1 vs 4 tcp rails and raw on loopback, 3 runs"
  # Default threading (the target's one progress thread, the initiator's
  # loop), then one progress thread per rail on each side (-t).
  for r in $(seq "${BENCH_LOOP_RUNS:-3}"); do
    for n in 1 4; do
      timeout 120 "$b" --rails $n --sizes 64k,1M,16M --duration 2 --json \
        >"$out/bench-loop-r$r-n$n.json" || bench_rc=1
      timeout 120 "$b" --rails $n --sizes 64k,1M,16M --duration 2 --json --progress-threads $n \
        >"$out/bench-loop-r$r-n$n-t.json" || bench_rc=1
    done
    timeout 120 "$b" --raw --sizes 64k,1M,16M --duration 2 --json >"$out/bench-loop-r$r-raw.json" ||
      bench_rc=1
    # 4 raw endpoints in one process pair, a thread each on both sides.
    timeout 120 "$b" --raw --rails 4 --sizes 64k,1M,16M --duration 2 --json \
      >"$out/bench-loop-r$r-raw4.json" || bench_rc=1
    for f in "$out"/bench-loop-r$r-*.json; do
      grep -h '"gbps"' "$f" | sed "s|^ *{|$(basename "$f" .json): |; s/, \"p50_us.*//; s/\"mode\".*\"size\"/size/"
    done
  done
  # Does loopback tcp scale across connections at all here? One raw pair,
  # then 4 raw pairs (8 processes) at once: if 4 pairs move 4 times what
  # one does, the kernel scales and a limit inside one process remains.
  echo "== capacity: 1 raw tcp pair, then 4 pairs at once (WRITE, 2 s)"
  for s in 1M 16M; do
    one=$("$b" --raw --sizes $s --duration 2 --csv | tail -1 | cut -d, -f9)
    for k in 1 2 3 4; do
      "$b" --raw --sizes $s --duration 2 --csv >"$out/pair-$s-$k.csv" &
    done
    wait
    sum=$(tail -qn1 "$out"/pair-$s-*.csv | cut -d, -f9 | awk '{t += $1} END {printf "%.3f", t}')
    echo "$s: one pair $one GB/s; 4 pairs at once: $(tail -qn1 "$out"/pair-$s-*.csv | cut -d, -f9 | paste -sd' ') = $sum GB/s"
  done
  echo "gpu tests rc=$gpu_rc, bench rc=$bench_rc"
  [ "$gpu_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
  exit
fi

echo "== whole suite with a GPU present"
timeout 200 ctest --test-dir build-gpu --output-on-failure -E '^stage\.' >"$out/all-tests.log" 2>&1
all_rc=$?
grep -E "tests passed|Failed|\*\*\*" "$out/all-tests.log"

echo "== Python example with torch CUDA tensors (the python3 that has torch)"
py_rc=0
py=$(command -v python3 || true)
if [ -n "$py" ] && "$py" -c 'import torch, numpy; assert torch.cuda.is_available()' 2>/dev/null; then
  if cmake -S . -B build-gpu -DPython3_EXECUTABLE="$py" >>"$out/build.log" 2>&1 &&
     cmake --build build-gpu -j"$(nproc)" --target xrail_python >>"$out/build.log" 2>&1; then
    for prov in tcp shm; do
      PYTHONPATH=build-gpu/python timeout 120 "$py" examples/python/prefill_decode.py --cuda \
        --provider "$prov" 2>&1 | tee -a "$out/python-cuda.log" || py_rc=1
    done
  else
    echo "building the Python extension for $py failed (see build.log)"; py_rc=1
  fi
else
  echo "SKIPPED: no python3 with torch and a GPU here"
fi

echo "gpu tests rc=$gpu_rc, whole suite rc=$all_rc, python example rc=$py_rc"
[ "$gpu_rc" -eq 0 ] && [ "$all_rc" -eq 0 ] && [ "$py_rc" -eq 0 ]
