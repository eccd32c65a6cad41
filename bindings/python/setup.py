"""The parts of the xrail package's build that come from the installed
libxrail (pyproject.toml has the rest): its include and library
directories, found with pkg-config (xrail.pc) or under XRAIL_PREFIX, and
the version its xrail.h declares.

    cmake --install build --prefix /usr/local      # the library first
    pip install --no-build-isolation bindings/python
"""
import os
import shlex
import subprocess

from setuptools import Extension, setup


def xrail_flags():
    prefix = os.environ.get("XRAIL_PREFIX")
    if prefix:
        lib = os.path.join(prefix, "lib")
        if not os.path.isdir(lib):
            lib = os.path.join(prefix, "lib", "x86_64-linux-gnu")
        return [os.path.join(prefix, "include")], [lib]
    try:
        out = subprocess.run(["pkg-config", "--cflags", "--libs", "xrail"], check=True,
                             capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise SystemExit("xrail: libxrail not found by pkg-config; install it "
                         "(cmake --install) or set XRAIL_PREFIX") from e
    words = shlex.split(out)
    return ([w[2:] for w in words if w.startswith("-I")],
            [w[2:] for w in words if w.startswith("-L")])


def header_version(dirs):
    """The version xrail.h declares (its XR_VERSION_* macros), the one place it is written."""
    for d in dirs:
        try:
            with open(os.path.join(d, "xrail.h")) as f:
                text = f.read()
        except OSError:
            continue
        parts = []
        for part in ("MAJOR", "MINOR", "PATCH"):
            tag = "#define XR_VERSION_%s " % part
            line = next(l for l in text.splitlines() if l.startswith(tag))
            parts.append(line[len(tag):].strip())
        return ".".join(parts)
    raise SystemExit("xrail: xrail.h not found in %s" % dirs)


inc, libdirs = xrail_flags()
setup(
    version=header_version(inc),
    ext_modules=[Extension("xrail._xrail", ["src/_xrail.c"], include_dirs=inc,
                           library_dirs=libdirs, libraries=["xrail"],
                           runtime_library_dirs=libdirs)],
)
