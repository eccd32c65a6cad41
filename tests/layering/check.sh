#!/usr/bin/env bash
# The layering check: calls go one way, down.
#   check.sh LAYERS OBJDIR [CLI_OBJ]   check the engine's objects under OBJDIR
#   check.sh --self-test LAYERS         prove the check fails on a call upward
# Reads each object's defined and undefined symbols (nm) and fails when a
# file calls a function defined in a higher layer (engine/layers.txt), when
# a core object names libfabric, when a listed file has no object, when a
# global name is neither xr__<module>_<verb> nor a call of xrail.h, or when
# the CLI calls an internal function that is not core's.
set -euo pipefail

layers=$1
if [ "$layers" = --self-test ]; then
  layers=$2
  t=$(mktemp -d)
  trap 'rm -rf "$t"' EXIT
  # rail.c calling engine.c is the shape this check exists to catch.
  mkdir -p "$t/src/core" "$t/include"
  touch "$t/include/xrail.h"
  printf 'int xr__engine_thing(void) { return 1; }\n' > "$t/engine.c"
  printf 'int xr__engine_thing(void);\nint xr__rail_thing(void) { return xr__engine_thing(); }\n' > "$t/rail.c"
  cc -c "$t/engine.c" -o "$t/src/engine.c.o"
  cc -c "$t/rail.c" -o "$t/src/rail.c.o"
  printf 'rail rail.c\nengine engine.c\n' > "$t/layers.txt"
  if out=$("$0" "$t/layers.txt" "$t" 2>&1); then
    echo "self-test FAILED: an upward call passed the check"; exit 1
  fi
  grep -q 'rail.c (rail) calls xr__engine_thing, defined in engine.c (engine)' <<<"$out" ||
    { echo "self-test FAILED: unexpected report: $out"; exit 1; }
  echo "self-test ok: $out"
  exit 0
fi
objdir=$2
cli=${3:-}
header=$(dirname "$layers")/include/xrail.h
declare -A public
while read -r name; do public[$name]=1; done < <(grep -o 'XR_API[^(]*\bxr_[a-z0-9_]*(' "$header" |
  grep -o 'xr_[a-z0-9_]*(' | tr -d '(')

declare -A layer_of_file rank_of_layer file_of_sym obj_of_file
rank=0
while read -r name files; do
  case "$name" in ''|'#'*) continue ;; esac
  rank_of_layer[$name]=$rank
  rank=$((rank + 1))
  for f in $files; do layer_of_file[$f]=$name; done
done < "$layers"

fail=0
for f in "${!layer_of_file[@]}"; do
  o=$(find "$objdir" -path "*/src/$f.o" -print -quit)
  if [ -z "$o" ]; then
    echo "no object for $f under $objdir"; fail=1; continue
  fi
  obj_of_file[$f]=$o
  while read -r sym; do
    file_of_sym[$sym]=$f
    # Names say their module: xr__<module>_<verb>, or a call of xrail.h.
    if [[ $sym != xr__* ]] && [ -z "${public[$sym]:-}" ]; then
      echo "$f defines $sym: internal names are xr__<module>_<verb>; xr_ names are xrail.h's"
      fail=1
    fi
  done < <(nm -g --defined-only "$o" | awk '$2 ~ /[TDBR]/ && $3 !~ /^__/ {print $3}') # __: the sanitizers' own
done

for f in "${!obj_of_file[@]}"; do
  me=${layer_of_file[$f]}
  while read -r sym; do
    if [ "$me" = core ] && [[ $sym == fi_* ]]; then
      echo "$f (core) calls libfabric's $sym: core has no libfabric"; fail=1
    fi
    d=${file_of_sym[$sym]:-}
    [ -n "$d" ] || continue
    them=${layer_of_file[$d]}
    if [ "${rank_of_layer[$them]}" -gt "${rank_of_layer[$me]}" ]; then
      echo "$f ($me) calls $sym, defined in $d ($them)"; fail=1
    fi
  done < <(nm -u "${obj_of_file[$f]}" | awk '{print $2}')
done

if [ -n "$cli" ]; then
  while read -r sym; do
    d=${file_of_sym[$sym]:-}
    if [[ $sym == xr__* ]] && { [ -z "$d" ] || [ "${layer_of_file[$d]}" != core ]; }; then
      echo "the CLI calls $sym, which is not core's"; fail=1
    fi
  done < <(nm -u "$cli" | awk '{print $2}')
fi

if [ $fail -ne 0 ]; then
  echo "layering: calls that do not go down (engine/layers.txt)"
  exit 1
fi
echo "layering: ok: ${#obj_of_file[@]} files in $rank layers, every call goes down"
