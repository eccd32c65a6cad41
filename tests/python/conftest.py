"""Fixtures for the Python binding's tests: real engines on real providers.

Engines use loopback rails: tcp (tcp;ofi_rxm on lo) and shm. Two engines
in one process are real engines with their own rails; the two-process
tests run the other side as a separate Python process (_peer.py).
"""
import os
import sys

import pytest

import xrail

PROVIDERS = {"tcp": dict(provider="tcp;ofi_rxm", domain="lo"), "shm": dict(provider="shm")}


def settings(prov, rails=2, **kw):
    s = dict(PROVIDERS[prov], rails=rails, ignore_env=True)
    s.update(kw)
    return s


@pytest.fixture(params=sorted(PROVIDERS))
def prov(request):
    try:
        with xrail.Engine("probe", **settings(request.param, rails=1)):
            pass
    except xrail.NoRail as e:
        pytest.skip(f"provider {request.param} is not available here: {e}")
    return request.param


@pytest.fixture
def pair(prov):
    """(initiator, target, peer): the target drives itself with a progress thread."""
    a = xrail.Engine("prefill", **settings(prov))
    b = xrail.Engine("decode", **settings(prov, progress_thread=True))
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def scripts():
    return os.path.join(os.path.dirname(__file__), "..", "..", "scripts")


PEER = os.path.join(os.path.dirname(__file__), "_peer.py")
PYTHON = sys.executable
