#!/usr/bin/env bash
# bench-suite.sh - the measurements of docs/performance.md, each side by side
# with its baseline in the same run, repeated RUNS times; medians, ratios and
# charts at the end.
#
#   scripts/bench-suite.sh [striping] [hetero] [loopback] [latency] [postpath]
#
# No section named: all of them. Settings from the environment:
#   BUILD       the build directory with tests/xrail-bench (default build; built
#               there if missing, after scripts/setup.sh --bench)
#   OUT         where results go (default bench-results/<UTC time>)
#   RUNS        runs of every measurement (default 3); figures are medians
#   DUR         seconds per loopback point (default 1)
#   SHAPED_DUR  seconds per point on shaped rails (default 3)
#   XR_NETNS    namespace prefix for the shaped rails (default xrbench)
#
# Within one run, each baseline runs right beside what it is compared with,
# so a ratio never mixes two moments of a shared 2-core machine. Everything
# lands in OUT: runs/<section>/r<k>/<series>.json (xrail-bench's --json; the
# baselines' output converted to the same shape), summary.md (the tables of
# docs/performance.md) and *.png. Shaped sections need root; the namespaces
# are removed however the suite ends.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$root/build}
OUT=${OUT:-$root/bench-results/$(date -u +%Y%m%dT%H%MZ)}
RUNS=${RUNS:-3}
DUR=${DUR:-1}
SHAPED_DUR=${SHAPED_DUR:-3}
export XR_NETNS=${XR_NETNS:-xrbench}
bench=$BUILD/tests/xrail-bench
harness=$root/scripts/netns-rails.sh
policy=$root/scripts/policy
sections=("$@")
[ ${#sections[@]} -gt 0 ] || sections=(striping hetero loopback latency postpath)

# From a fresh clone: the packages (baselines included), then the bench.
bash "$root/scripts/setup.sh" --bench >&2
if [ ! -x "$bench" ]; then
  cmake -S "$root" -B "$BUILD" >&2
  cmake --build "$BUILD" -j"$(nproc)" --target xrail-bench >&2
fi
mkdir -p "$OUT/runs"
log() { echo "bench-suite: $*" >&2; }
trap '"$harness" down' EXIT
trap 'exit 130' INT TERM

# One xrail-bench run into runs/<section>/r<k>/<series>.json.
xb() { # section run series args...
  local d="$OUT/runs/$1/r$2" s=$3
  shift 3
  mkdir -p "$d"
  "$bench" --json "$@" > "$d/$s.json"
}

# The same shape for a baseline's single point.
point_json() { # file mode provider size gbps p50_us p99_us
  printf '[\n  {"mode": "%s", "op": "%s", "provider": "%s", "rails": 1, "policy": "-", "size": %s, "batch": 1, "iters": 0, "gbps": %s, "p50_us": %s, "p99_us": %s, "create_ns_per_desc": 0, "post_ns_per_desc": 0, "rail_bytes": [0]}\n]\n' \
    "$2" "$3" "$4" "$5" "$6" "$7" "$8" > "$1"
}

ucx_port=$((20000 + $$ % 20000))
# ucx_perftest, server and client on loopback. Prints the "Final:" line.
ucx() { # tls test size iters
  local tls=$1 t=$2 s=$3 n=$4 env=(UCX_TLS="$1")
  [ "$tls" = tcp ] && env+=(UCX_NET_DEVICES=lo)
  ucx_port=$((ucx_port + 1))
  env "${env[@]}" ucx_perftest -p "$ucx_port" >/dev/null 2>&1 &
  local srv=$!
  sleep 0.3
  local line
  line=$(env "${env[@]}" timeout 120 ucx_perftest 127.0.0.1 -p "$ucx_port" -t "$t" -s "$s" \
         -n "$n" -w $((n / 10 + 1)) 2>&1 | grep '^Final:') || { kill $srv 2>/dev/null; return 1; }
  wait $srv || true
  echo "$line"
}

# ucx_perftest bandwidth as a point: its "MB/s" is 2^20 bytes/s (msg/s x size
# says so), converted to GB/s of 10^9 bytes as xrail-bench reports.
ucx_bw() { # section run series tls test op size
  local d="$OUT/runs/$1/r$2" budget=$((2 << 30))
  mkdir -p "$d"
  local n=$((budget / $7))
  [ $n -gt 50000 ] && n=50000
  local f
  f=$(ucx "$4" "$5" "$7" "$n") || { log "ucx_perftest $5 $7 over $4 failed"; return 0; }
  # Final: iters p50 avg overall bw_avg bw_overall ...
  local gbps
  gbps=$(echo "$f" | awk '{printf "%.4f", $7 * 1048576 / 1e9}')
  point_json "$d/$3-$7.json" ucx "$6" "ucx-$4" "$7" "$gbps" 0 0
}

shaped_up() { "$harness" down; "$harness" up "$@" >&2; }

striping() {
  shaped_up 8 400mbit
  for r in $(seq "$RUNS"); do
    for n in 1 2 4 8; do
      log "striping run $r/$RUNS: $n rail(s) of 400 Mbit/s, 1 MiB WRITEs"
      xb striping "$r" "n$n" --netns "$XR_NETNS" --rails "$n" --sizes 1M --window 8 \
         --duration "$SHAPED_DUR" --warmup 8
    done
  done
  "$harness" down
}

hetero() {
  shaped_up 4 400mbit 400mbit 100mbit 100mbit
  for r in $(seq "$RUNS"); do
    for i in 0 1 2 3; do
      log "hetero run $r/$RUNS: rail $i alone"
      xb hetero "$r" "single$i" --netns "$XR_NETNS" --first-rail $i --rails 1 --sizes 1M \
         --window 8 --duration "$SHAPED_DUR" --warmup 4
    done
    for p in weighted even_stripe; do
      log "hetero run $r/$RUNS: 4 rails, $p.lua"
      xb hetero "$r" "$p" --netns "$XR_NETNS" --rails 4 --speeds 400,400,100,100 \
         --policy "$policy/$p.lua" --sizes 256k,1M,4M --window 8 --duration "$SHAPED_DUR" --warmup 4
    done
  done
  "$harness" down
}

loopback() {
  for r in $(seq "$RUNS"); do
    for op in write read; do
      local uop=ucp_put_bw
      [ $op = read ] && uop=ucp_get
      log "loopback run $r/$RUNS: $op, xrail tcp x1, tcp x4, shm, raw tcp, raw shm, ucx tcp, ucx shm"
      local common=(--op $op --sizes 64k,1M,16M --duration "$DUR" --warmup 10)
      xb loopback "$r" "xrail-tcp1-$op" "${common[@]}" --provider "tcp;ofi_rxm" --rails 1
      xb loopback "$r" "xrail-tcp4-$op" "${common[@]}" --provider "tcp;ofi_rxm" --rails 4
      xb loopback "$r" "raw-tcp-$op" "${common[@]}" --provider "tcp;ofi_rxm" --raw
      xb loopback "$r" "xrail-shm-$op" "${common[@]}" --provider shm --rails 1
      xb loopback "$r" "raw-shm-$op" "${common[@]}" --provider shm --raw
      for s in 65536 1048576 16777216; do
        ucx_bw loopback "$r" "ucx-tcp-$op" tcp $uop $op $s
        ucx_bw loopback "$r" "ucx-shm-$op" posix,cma $uop $op $s
      done
    done
  done
}

# Latency: one 8 B WRITE at a time, with completion, which is a round trip
# (the data out, the delivery acknowledgement back). fi_pingpong and
# ucx_perftest ucp_put_lat print half a round trip (measured: ucp_put_lat's
# 200000 iterations take 2 x its figure each), so they are doubled.
latency() {
  local iters=20000
  for r in $(seq "$RUNS"); do
    log "latency run $r/$RUNS: 8 B WRITE, xrail, raw, fi_pingpong, ucx_perftest over tcp and shm"
    local d="$OUT/runs/latency/r$r"
    mkdir -p "$d"
    # 8 B is the measurement; the larger sizes draw the latency chart.
    local common=(--sizes 8,512,4k,32k --window 1 --duration "$DUR" --warmup 200)
    xb latency "$r" xrail-tcp "${common[@]}" --provider "tcp;ofi_rxm"
    xb latency "$r" xrail-tcp-nap20 --sizes 8 --window 1 --duration "$DUR" --warmup 200 \
       --provider "tcp;ofi_rxm" --target-sleep-us 20
    xb latency "$r" raw-tcp "${common[@]}" --provider "tcp;ofi_rxm" --raw
    xb latency "$r" xrail-shm "${common[@]}" --provider shm
    xb latency "$r" raw-shm "${common[@]}" --provider shm --raw
    for p in tcp shm; do
      local prov=$p dom=() port=$((47700 + r * 2))
      [ $p = tcp ] && prov="tcp;ofi_rxm" dom=(-d lo) && port=$((port + 1))
      fi_pingpong -p "$prov" -e rdm "${dom[@]}" -I $iters -S 8 -B $port >/dev/null 2>&1 &
      local srv=$!
      sleep 0.3
      local us
      us=$(timeout 60 fi_pingpong -p "$prov" -e rdm "${dom[@]}" -I $iters -S 8 -P $port 127.0.0.1 |
           awk '$1 == 8 {print $7}')
      wait $srv || true
      point_json "$d/fi_pingpong-$p.json" fi_pingpong write "$prov" 8 0 "$(echo "$us" | awk '{print 2 * $1}')" 0
      local tls=tcp
      [ $p = shm ] && tls=posix,cma
      local f
      f=$(ucx $tls ucp_put_lat 8 $iters) || { log "ucp_put_lat over $tls failed"; continue; }
      point_json "$d/ucx-$p.json" ucx write "ucx-$tls" 8 0 "$(echo "$f" | awk '{print 2 * $3}')" 0
    done
  done
}

# The post path: one transfer of 18,880 descriptors of 64 KiB (Llama-70B TP8),
# create and post CPU apart from wire time; then callgrind's instruction count
# for xr_xfer_create and xr_xfer_post, per descriptor.
postpath() {
  for r in $(seq "$RUNS"); do
    log "postpath run $r/$RUNS: 18880 x 64 KiB, tcp x4 and shm"
    # 18880 descriptors twice: in the first point, 8 transfers are created in
    # a cold process (the first create registers the local pool on each rail
    # it plans for, and fresh chunk arrays fault their pages in); the second
    # is the steady state. Each creates 8 and posts 24; figures are means.
    # The smaller batches after them draw the chart.
    local batches=18880,18880,1024,4096
    xb postpath "$r" tcp4 --provider "tcp;ofi_rxm" --rails 4 --sizes 64k --batch $batches \
       --window 8 --iters 16 --warmup 8
    xb postpath "$r" shm --provider shm --sizes 64k --batch $batches --window 8 --iters 16 \
       --warmup 8
  done
  command -v valgrind >/dev/null || { log "postpath: no valgrind, no instruction counts"; return 0; }
  local prov
  for prov in shm "tcp;ofi_rxm"; do
    local n=1 tag=shm
    [ "$prov" = shm ] || n=4 tag=tcp4
    log "postpath: callgrind over xr_xfer_create and xr_xfer_post ($tag, one transfer)"
    local d="$OUT/callgrind/$tag"
    rm -rf "$d"
    mkdir -p "$d"
    valgrind --tool=callgrind --callgrind-out-file="$d/callgrind.%p" \
      --toggle-collect=xr_xfer_create --toggle-collect=xr_xfer_post \
      "$bench" --provider "$prov" --rails $n --sizes 64k --batch 18880 --window 1 --iters 1 \
      --warmup 0 > "$d/bench.txt" 2> "$d/valgrind.txt" || log "callgrind failed: $d/valgrind.txt"
    for f in "$d"/callgrind.*[0-9]; do
      callgrind_annotate --inclusive=yes --threshold=100 "$f" 2>/dev/null |
        grep -E 'xr_xfer_(create|post) ' > "$f.fn" || true
    done
  done
}

for s in "${sections[@]}"; do
  case "$s" in
    striping|hetero|loopback|latency|postpath) "$s" ;;
    *) echo "bench-suite: unknown section '$s'" >&2; exit 2 ;;
  esac
done

python3 "$root/tests/bench/summarize.py" "$OUT" > "$OUT/summary.md"
for c in "$OUT"/charts/*.args; do
  [ -e "$c" ] || continue
  mapfile -t a < "$c"
  "$root/scripts/plot-bench.sh" -o "${c%.args}.png" "${a[@]}" >&2
done
log "summary in $OUT/summary.md"
cat "$OUT/summary.md"
