#!/usr/bin/env bash
# plot-bench.sh - xrail-bench results (--json or --csv files) to a PNG chart.
#
#   scripts/plot-bench.sh -o chart.png [--x size|rails|batch]
#                         [--y gbps|p50_us|p99_us|create_ns_per_desc|post_ns_per_desc]
#                         [--logy] [--title TEXT] FILE[=LABEL]...
#
# Each FILE is one series: its points' --y against --x (default GB/s against
# block size, on a log2 axis; --x rails for a rail-count sweep, --x batch
# for descriptors per transfer). LABEL names the series; without one, the
# file's first point names it: "<mode> <provider> <rails> rail(s) <policy>".
# Needs gnuplot (Debian: gnuplot-nox).
set -euo pipefail

out="" x=size y=gbps title="xrail-bench" logy=0
files=()
while [ $# -gt 0 ]; do
  case "$1" in
    -o) out=$2; shift 2 ;;
    --x) x=$2; shift 2 ;;
    --y) y=$2; shift 2 ;;
    --title) title=$2; shift 2 ;;
    --logy) logy=1; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) files+=("$1"); shift ;;
  esac
done
[ -n "$out" ] && [ ${#files[@]} -gt 0 ] || { echo "usage: $0 -o OUT.png [--x size|rails] FILE[=LABEL]..." >&2; exit 2; }
case "$x" in size|rails|batch) ;; *) echo "plot-bench: --x size, rails or batch" >&2; exit 2 ;; esac
case "$y" in gbps|p50_us|p99_us|create_ns_per_desc|post_ns_per_desc) ;;
  *) echo "plot-bench: --y gbps, p50_us, p99_us, create_ns_per_desc or post_ns_per_desc" >&2; exit 2 ;;
esac
command -v gnuplot >/dev/null || { echo "plot-bench: gnuplot not found (apt-get install gnuplot-nox)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# One "x y" line per point, sorted by x; the default label on stderr's side file.
extract() { # file data_out label_out
  awk -v X="$x" -v Y="$y" -v LBL="$3" '
    function jget(line, k,   m) {
      if (match(line, "\"" k "\": *\"[^\"]*\"")) {
        m = substr(line, RSTART, RLENGTH); sub(/^[^:]*: *"/, "", m); sub(/"$/, "", m); return m
      }
      if (match(line, "\"" k "\": *[-0-9.eE+]+")) {
        m = substr(line, RSTART, RLENGTH); sub(/^[^:]*: */, "", m); return m
      }
      return ""
    }
    /^mode,/ { for (i = 1; i <= NF; i++) col[$i] = i; csv = 1; next }
    csv && NF > 1 {
      print $col[X], $col[Y]
      if (!named++) printf "%s %s %s rail(s) %s\n", $col["mode"], $col["provider"], $col["rails"], $col["policy"] > LBL
      next
    }
    /"gbps"/ {
      print jget($0, X), jget($0, Y)
      if (!named++) printf "%s %s %s rail(s) %s\n", jget($0, "mode"), jget($0, "provider"), jget($0, "rails"), jget($0, "policy") > LBL
    }' FS=, "$1" | sort -n -k1,1 > "$2"
  [ -s "$2" ] || { echo "plot-bench: no points in $1" >&2; exit 1; }
}

plots=()
i=0
for f in "${files[@]}"; do
  file=${f%%=*} label=""
  [ "$f" != "$file" ] && label=${f#*=}
  [ -r "$file" ] || { echo "plot-bench: cannot read $file" >&2; exit 1; }
  extract "$file" "$tmp/$i.dat" "$tmp/$i.lbl"
  [ -n "$label" ] || label=$(sed 's/_/\\_/g; s/"//g' "$tmp/$i.lbl")
  plots+=("'$tmp/$i.dat' using 1:2 with linespoints lw 2 dt $((i % 5 + 1)) title \"${label//\"/}\"")
  i=$((i + 1))
done

ylabel="GB/s (10^9 bytes/s)"
[ "$y" = p50_us ] && ylabel="p50 latency (us)"
[ "$y" = p99_us ] && ylabel="p99 latency (us)"
[ "$y" = create_ns_per_desc ] && ylabel="xr_xfer_create CPU per descriptor (ns)"
[ "$y" = post_ns_per_desc ] && ylabel="xr_xfer_post CPU per descriptor (ns)"
{
  echo "set terminal pngcairo size 900,620 font 'DejaVu Sans,10' noenhanced"
  echo "set output '$out'"
  echo "set title \"${title//\"/}\""
  echo "set ylabel '$ylabel'"
  echo "set grid"
  echo "set key below"
  if [ $logy = 1 ]; then
    echo "set logscale y 10"
  else
    echo "set yrange [0:*]"
  fi
  if [ "$x" = size ]; then
    echo "set xlabel 'block size (bytes)'"
    echo "set logscale x 2"
    echo "set format x '%.0b%B'"
  elif [ "$x" = batch ]; then
    echo "set xlabel 'descriptors per transfer'"
    echo "set logscale x 2"
  else
    echo "set xlabel 'rails'"
    echo "set xtics 1"
  fi
  printf 'plot '
  (IFS=,; echo "${plots[*]}")
} > "$tmp/plot.gp"
gnuplot "$tmp/plot.gp"
echo "plot-bench: wrote $out"
