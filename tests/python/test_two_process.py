"""numpy transfers between two processes, verified on both sides."""
import json
import os
import resource
import subprocess

import numpy as np

import xrail
from conftest import PEER, PYTHON, settings


def test_numpy_write_and_read_between_processes(prov, scripts):
    nbytes = 4 << 20
    env = dict(os.environ)
    proc = subprocess.Popen([PYTHON, PEER, prov, str(nbytes), scripts], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        hello = json.loads(proc.stdout.readline())
        with xrail.Engine("prefill", **settings(prov, rails=2, layout="kv_cache.lua",
                                                script_path=scripts)) as e:
            e.set_field("model", "tiny-llm")
            for k in ("kv.base", "kv.layers", "kv.blocks", "kv.block_bytes"):
                e.set_field(k, 0, width=8 if k == "kv.base" else 4)
            e.set_field("kv.dtype", "float16")
            p = e.load_peer(bytes.fromhex(hello["md"]))
            # The decode side's layout fields, checked before a byte moves.
            assert p.field("model") == "tiny-llm"
            block = p.field("kv.block_bytes")
            assert block == nbytes // 32
            src = (np.arange(nbytes, dtype=np.uint64) * 7 % 251).astype(np.uint8)
            blocks = list(range(32))
            loc, rem = xrail.kv_descriptors(src.ctypes.data, hello["addr"], block, blocks[::-1],
                                            blocks[::-1])
            t = e.write(p, [(src[a - src.ctypes.data:], n) for a, n in loc], rem, notif=b"req-1")
            t.wait(timeout=60)
            proc.stdin.write(json.dumps({"op": "wait_notif"}) + "\n")
            proc.stdin.flush()
            r = json.loads(proc.stdout.readline())
            assert r == {"who": "prefill", "msg": "req-1", "ok": True}
            proc.stdin.write(json.dumps({"op": "fill"}) + "\n")
            proc.stdin.flush()
            assert json.loads(proc.stdout.readline())["ok"]
            back = np.zeros(nbytes, dtype=np.uint8)
            e.read(p, [back], [(hello["addr"], nbytes)]).wait(timeout=60)
            want = (np.arange(nbytes, dtype=np.uint64) * 13 % 253).astype(np.uint8)
            assert (back == want).all()
        proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
        proc.stdin.flush()
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def rss_kib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() // 1024


def test_no_leak_over_10000_transfers(pair):
    a, b = pair
    dst = np.zeros(4096, dtype=np.uint8)
    g = b.register(dst, access="w")
    p = a.load_peer(b.metadata())
    src = np.ones(4096, dtype=np.uint8)
    a.register(src, access="none")

    def burst(n):
        for i in range(n):
            a.write(p, [(src, 64 + i % 4000)], [(g.addr, 64 + i % 4000)],
                    notif=b"n" if i % 100 == 0 else None).wait(timeout=30)
        for _ in b.notifications(timeout=1):
            pass

    burst(1000)  # warm: pools, plan cache, allocator arenas
    before = rss_kib()
    burst(10000)
    grown = rss_kib() - before
    # A leak of even 100 bytes a transfer would show as about 1 MiB.
    assert grown < 1024, f"RSS grew by {grown} KiB over 10,000 transfers"
