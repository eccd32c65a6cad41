#!/usr/bin/env bash
# netns_smoke.sh BENCH NETNS_RAILS - the shaped-rails harness end to end, small:
# two namespaces with 2 shaped veth rails, xrail-bench and --raw across them,
# then proof that everything is gone, after a clean run and after a failing
# one. It checks that the harness works and is torn down, not any figure.
# Skipped (77) without root or without ip/tc.
set -u
bench=$1 harness=$2
export XR_NETNS=xrsmk$$
[ "$(id -u)" -eq 0 ] || { echo "SKIPPED: network namespaces need root"; exit 77; }
command -v ip >/dev/null && command -v tc >/dev/null || { echo "SKIPPED: no ip/tc (iproute2)"; exit 77; }
# A namespace left by an earlier run would make `up` refuse; a stale one from
# this pid cannot exist, but clear it anyway.
"$harness" down

gone() {
  if ip netns list | grep -q "^$XR_NETNS-"; then
    echo "FAIL: $1: namespaces left behind:"; ip netns list; "$harness" down; exit 1
  fi
}

out=$("$harness" run 2 200mbit -- bash -c "
  '$bench' --netns $XR_NETNS --rails 2 --sizes 256k --iters 20 --warmup 2 --csv &&
  '$bench' --netns $XR_NETNS --raw --sizes 256k --iters 10 --warmup 2 --csv" 2>&1)
rc=$?
echo "$out"
[ $rc -eq 0 ] || { echo "FAIL: the bench across the namespaces exited $rc"; exit 1; }
# Both rails carried bytes: the split column has two non-zero numbers.
echo "$out" | grep -Eq '^xrail,write,.*,[1-9][0-9]*;[1-9][0-9]*$' ||
  { echo "FAIL: the 2-rail run did not use both veth rails"; exit 1; }
gone "after a clean run"

"$harness" run 1 100mbit -- false >/dev/null 2>&1 && { echo "FAIL: run hid the command's failure"; exit 1; }
gone "after a failing command"

"$harness" up 2 100mbit 1nonsense >/dev/null 2>&1 && { echo "FAIL: up accepted the rate '1nonsense'"; exit 1; }
"$harness" up 2 100mbit 1nonsense >/dev/null 2>&1
gone "after a refused up"
echo "ok: shaped rails up, bench across them on both rails, torn down every time"
