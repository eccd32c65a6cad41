#!/usr/bin/env bash
# Install what xrail needs to build and test, from Debian's apt repositories.
# Idempotent: installs only what is missing, and runs apt-get update at most once.
#   scripts/setup.sh           what scripts/test.sh needs
#   scripts/setup.sh --bench   also the baselines and tools of scripts/bench-suite.sh
#                              (ucx_perftest, gnuplot, valgrind)
set -euo pipefail

pkgs=(build-essential cmake pkg-config libfabric-dev libfabric-bin liblua5.4-dev
      check libsubunit-dev iproute2 python3-dev python3-setuptools python3-pytest python3-numpy
      python3-pip clang etcd-server etcd-client openssl libcurl4-openssl-dev libjson-c-dev)
if [ "${1:-}" = --bench ]; then
  pkgs+=(ucx-utils gnuplot-nox valgrind)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all packages present"
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo=sudo
fi
echo "setup: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
