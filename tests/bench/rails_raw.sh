#!/usr/bin/env bash
# N tcp rails with a progress thread each, beside N raw endpoints with a
# thread each (xrail-bench --raw --rails N), in one run: WRITE and READ at
# 64 KiB, 1 MiB and 16 MiB over tcp;ofi_rxm, on a host with cores to spare.
# With a second build (BASE, e.g. the commit before a change), its xrail
# runs alternate with this one's. RUNS rounds alternate every
# configuration; the table gives each one's median GB/s and the ratios as
# the median of the per-round ratios.
#
#   tests/bench/rails_raw.sh BUILD [BASE_BUILD] [RUNS]
#
# RAILS=N (default 4); DUR=S each point's seconds (default 1); POLICY=FILE
# a policy script for both xrail builds (round_robin.lua keeps each 1 MiB
# transfer whole on one rail, as raw's are). Raw runs a
# window of 4 per endpoint. xrail runs twice: "xrail" with a window of 4
# transfers for the whole engine (the raw side has N times as many
# operations in flight), and "wide" with 4 per rail, as many as raw (a
# 64 KiB transfer is one chunk on one rail; the built-in policy stripes
# 1 MiB and 16 MiB over all of them).
set -euo pipefail
build=$(cd "$1" && pwd) base=${2:+$(cd "$2" && pwd)} runs=${3:-3}
RAILS=${RAILS:-4} DUR=${DUR:-1} POLICY=${POLICY:+$(cd "$(dirname "$POLICY")" && pwd)/$(basename "$POLICY")}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
modes="xrail wide raw"
[ -n "$base" ] && modes="base xrail wide raw"

for r in $(seq "$runs"); do
  for op in write read; do
    for m in $modes; do
      bin=$build/tests/xrail-bench
      [ $m = base ] && bin=$base/tests/xrail-bench
      args=(--op $op --provider "tcp;ofi_rxm" --rails "$RAILS" --sizes 64k,1M,16M
            --duration "$DUR" --warmup 10 --json)
      case $m in
        raw) args+=(--raw) ;;
        wide) args+=(--progress-threads "$RAILS" --window $((4 * RAILS))) ;;
        *) args+=(--progress-threads "$RAILS") ;;
      esac
      [ -n "$POLICY" ] && [ $m != raw ] && args+=(--policy "$POLICY")
      echo "rails_raw: round $r/$runs, $op $m" >&2
      timeout 120 "$bin" "${args[@]}" 2>/dev/null >"$out/$op-$m-$r.json"
    done
  done
done

python3 - "$out" "$runs" "$RAILS" "$modes" <<'PY'
import json, statistics, sys
out, runs, rails, modes = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4].split()
def gbps(op, m, r, k):
    return json.load(open(f"{out}/{op}-{m}-{r}.json"))[k]["gbps"]
def ratio(op, a, b, k):
    return statistics.median(gbps(op, a, r, k) / gbps(op, b, r, k) for r in range(1, runs + 1))
head = ["op", "block"] + [f"{m} GB/s" for m in modes] + ["xrail/raw", "wide/raw"]
if "base" in modes:
    head += ["base/raw", "xrail/base"]
print("| " + " | ".join(head) + " |")
print("|" + "---|" * 2 + "---:|" * (len(head) - 2))
for op in ("write", "read"):
    for k, size in enumerate(("64 KiB", "1 MiB", "16 MiB")):
        row = [op.upper(), size]
        row += [f"{statistics.median(gbps(op, m, r, k) for r in range(1, runs + 1)):.2f}" for m in modes]
        row += [f"{ratio(op, 'xrail', 'raw', k):.2f}", f"{ratio(op, 'wide', 'raw', k):.2f}"]
        if "base" in modes:
            row += [f"{ratio(op, 'base', 'raw', k):.2f}", f"{ratio(op, 'xrail', 'base', k):.2f}"]
        print("| " + " | ".join(row) + " |")
print(f"\n{rails} tcp;ofi_rxm rails, a progress thread each on both sides, against {rails} raw "
      f"endpoints, a thread each and 4 in flight on each; xrail: 4 transfers in flight, wide: "
      f"{4 * int(rails)}; {runs} rounds; GB/s medians; ratios: median of the per-round ratios.")
PY
[ -z "$POLICY" ] || echo "Policy of both xrail builds: $POLICY."
