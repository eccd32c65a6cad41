#!/usr/bin/env bash
# The README's pip path, for real: install the library of this build into a
# scratch prefix, `pip install --no-build-isolation bindings/python` against
# it (pyproject.toml with Debian's setuptools, no PyPI), check what was
# installed (the version from xrail.h in the package's metadata, the stubs),
# import the result and move bytes.
# usage: pip_install.sh PYTHON BUILD_DIR SOURCE_DIR
set -euo pipefail
py=$1 build=$2 src=$3
"$py" -m pip --version >/dev/null 2>&1 || { echo "SKIPPED: pip is missing (apt install python3-pip)"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
cp -r "$src/bindings/python" "$tmp/src"   # pip builds in the tree it is given
XRAIL_PREFIX="$tmp/prefix" "$py" -m pip install -q --no-build-isolation --no-deps \
  --disable-pip-version-check --target "$tmp/site" "$tmp/src" 2>&1 | grep -v "as the 'root' user" || true
cd "$tmp"
PYTHONPATH="$tmp/site" "$py" - <<'PY'
import importlib.metadata
import os
import xrail
assert importlib.metadata.version("xrail") == xrail.__version__, \
    (importlib.metadata.version("xrail"), xrail.__version__)
for f in ("__init__.pyi", "py.typed"):
    assert os.path.exists(os.path.join(os.path.dirname(xrail.__file__), f)), f + " not installed"
kw = dict(provider="shm", rails=1, ignore_env=True)
with xrail.Engine("a", **kw) as a, xrail.Engine("b", **kw) as b:
    dst = bytearray(65536)
    g = b.register(dst, access="w")
    p = a.load_peer(b.metadata())
    src = bytes(range(256)) * 256
    a.write(p, [src], [(g.addr, len(src))]).wait(30)
    assert bytes(dst) == src, "bytes differ"
print("pip-installed xrail moved 64 KiB and verified it:", xrail.__file__)
PY
