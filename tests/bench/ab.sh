#!/usr/bin/env bash
# Two builds of xrail-bench, the same points, alternated: before, after,
# before, after, ... RUNS pairs in one run, so that the machine's drift
# falls on both. Prints a markdown table: each build's median, and the
# after/before ratio of the medians with the range of the per-pair ratios.
#
#   tests/bench/ab.sh BEFORE/xrail-bench AFTER/xrail-bench [RUNS]
#
# Points: WRITE at 64 KiB, 1 MiB and 16 MiB over tcp (1 rail) and shm
# (GB/s), and the post path, 18,880 descriptors of 64 KiB in one transfer
# over 4 tcp rails and over shm (create and post CPU, ns per descriptor).
# DUR=S sets each throughput point's seconds (default 2); POST=0 leaves out
# the post path (callgrind counts it exactly, docs/performance.md).
set -euo pipefail
before=$1 after=$2 runs=${3:-3}
DUR=${DUR:-2}
POST=${POST:-1}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

point() { # build tag args...
  local bin=$1 tag=$2
  shift 2
  "$bin" --json "$@" 2>/dev/null > "$out/$tag.json"
}

for r in $(seq "$runs"); do
  for side in before after; do
    bin=$before
    [ $side = after ] && bin=$after
    echo "ab: run $r/$runs, $side" >&2
    point "$bin" "$side-tcp-$r" --provider "tcp;ofi_rxm" --rails 1 --sizes 64k,1M,16M \
      --duration "$DUR" --warmup 10
    point "$bin" "$side-shm-$r" --provider shm --rails 1 --sizes 64k,1M,16M \
      --duration "$DUR" --warmup 10
    [ "$POST" = 0 ] && continue
    point "$bin" "$side-post-tcp4-$r" --provider "tcp;ofi_rxm" --rails 4 --sizes 64k \
      --batch 18880 --window 2 --iters 4 --warmup 2
    point "$bin" "$side-post-shm-$r" --provider shm --sizes 64k --batch 18880 --window 2 \
      --iters 4 --warmup 2
  done
done

python3 - "$out" "$runs" "$POST" <<'PY'
import json, statistics, sys
out, runs, post = sys.argv[1], int(sys.argv[2]), sys.argv[3] != "0"
def load(side, name, r):
    return json.load(open(f"{out}/{side}-{name}-{r}.json"))
rows = []
for name, label in (("tcp", "tcp x1"), ("shm", "shm x1")):
    for k, size in enumerate(("64 KiB", "1 MiB", "16 MiB")):
        rows.append((f"{label} WRITE {size}", "GB/s", name, k, "gbps", True))
for name, label in (("post-tcp4", "tcp x4"), ("post-shm", "shm x1")) if post else ():
    rows.append((f"post path {label}: create", "ns/desc", name, 0, "create_ns_per_desc", False))
    rows.append((f"post path {label}: post", "ns/desc", name, 0, "post_ns_per_desc", False))
print("| point | unit | before (median) | after (median) | after/before | per-pair range |")
print("|---|---|---:|---:|---:|---|")
for label, unit, name, k, field, higher in rows:
    b = [load("before", name, r)[k][field] for r in range(1, runs + 1)]
    a = [load("after", name, r)[k][field] for r in range(1, runs + 1)]
    # A ratio above 1 is better for rates; for costs, before/after is shown
    # as after/before all the same, so below 1 is better there.
    pair = [x / y if y else float("nan") for x, y in zip(a, b)]
    mb, ma = statistics.median(b), statistics.median(a)
    print(f"| {label} | {unit} | {mb:.3g} | {ma:.3g} | {ma / mb:.3f} | "
          f"{min(pair):.3f}-{max(pair):.3f} |")
PY
