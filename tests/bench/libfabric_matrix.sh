#!/usr/bin/env bash
# xrail beside raw fi_write/fi_read on two libfabrics, in one run: WRITE and
# READ at 64 KiB, 1 MiB and 16 MiB over one tcp;ofi_rxm rail and one shm
# rail, each point as xrail-bench and as xrail-bench --raw (the same window
# of operations on one endpoint, no engine), with Debian's libfabric and
# with another one (2.6, built by ../shared/deps/build-libfabric.sh).
# RUNS rounds alternate every configuration, so that the machine's drift
# falls on all of them; the table gives each one's median GB/s and
# xrail/raw, the median of the per-round ratios.
#
#   tests/bench/libfabric_matrix.sh BUILD_A BUILD_B PREFIX_B [RUNS]
#
# BUILD_A: a build directory against the system libfabric; BUILD_B: one
# configured with PKG_CONFIG_PATH=PREFIX_B/lib/pkgconfig. DUR=S sets each
# point's seconds (default 2); OPS="write" leaves out READ; XRAIL_ARGS adds
# options to the xrail runs (e.g. --host-only on a host with a GPU).
set -euo pipefail
build_a=$(cd "$1" && pwd) build_b=$(cd "$2" && pwd) prefix_b=$(cd "$3" && pwd) runs=${4:-3}
DUR=${DUR:-2}
OPS=${OPS:-"write read"}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

version() { # build dir [prefix]: the libfabric version that build's binaries load
  local lib
  lib=$(LD_LIBRARY_PATH=${2:+$2/lib} ldd "$1/tests/xrail-bench" | awk '/libfabric/ {print $3}')
  basename "$(readlink -f "$lib")" | sed 's/^libfabric\.so\.//'
}
va=$(version "$build_a") vb=$(version "$build_b" "$prefix_b")
echo "libfabric_matrix: A = $build_a (libfabric.so.$va), B = $build_b (libfabric.so.$vb)" >&2

for r in $(seq "$runs"); do
  for side in a b; do
    bin=$build_a/tests/xrail-bench lib=
    [ $side = b ] && bin=$build_b/tests/xrail-bench lib=$prefix_b/lib
    for op in $OPS; do
      for prov in tcp shm; do
        p=$prov
        [ $prov = tcp ] && p="tcp;ofi_rxm"
        for mode in xrail raw; do
          echo "libfabric_matrix: round $r/$runs, $side $op $prov $mode" >&2
          args=(--op "$op" --provider "$p" --rails 1 --sizes 64k,1M,16M --duration "$DUR"
                --warmup 10 --json)
          # shellcheck disable=SC2206
          if [ $mode = raw ]; then args+=(--raw); else args+=(${XRAIL_ARGS:-}); fi
          LD_LIBRARY_PATH=$lib "$bin" "${args[@]}" 2>/dev/null > "$out/$side-$op-$prov-$mode-$r.json"
        done
      done
    done
  done
done

python3 - "$out" "$runs" "$va" "$vb" "$OPS" <<'PY'
import json, os, statistics, sys
out, runs, va, vb, ops = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5].split()
def gbps(side, op, prov, mode, r, k):
    return json.load(open(f"{out}/{side}-{op}-{prov}-{mode}-{r}.json"))[k]["gbps"]
print(f"| op | provider | block | xrail A | raw A | xrail/raw A | xrail B | raw B | xrail/raw B | xrail B/A |")
print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
for op in ops:
    for prov in ("tcp", "shm"):
        for k, size in enumerate(("64 KiB", "1 MiB", "16 MiB")):
            row = [op.upper(), "tcp;ofi_rxm" if prov == "tcp" else "shm", size]
            med = {}
            for side in ("a", "b"):
                x = [gbps(side, op, prov, "xrail", r, k) for r in range(1, runs + 1)]
                w = [gbps(side, op, prov, "raw", r, k) for r in range(1, runs + 1)]
                med[side] = statistics.median(x)
                ratio = statistics.median(a / b if b else float("nan") for a, b in zip(x, w))
                row += [f"{med[side]:.2f}", f"{statistics.median(w):.2f}", f"{ratio:.2f}"]
            row.append(f"{med['b'] / med['a']:.2f}" if med["a"] else "nan")
            print("| " + " | ".join(row) + " |")
print(f"\nA: libfabric.so.{va}; B: libfabric.so.{vb}; {runs} rounds; GB/s medians; "
      "xrail/raw: median of the per-round ratios.")
if os.environ.get("XRAIL_ARGS"):
    print(f"xrail ran with {os.environ['XRAIL_ARGS']}.")
PY
