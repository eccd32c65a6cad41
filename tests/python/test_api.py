"""Round trips of every call of the binding, and an exception for every bad input."""
import gc
import sys
import time

import numpy as np
import pytest

import xrail
from conftest import settings


def test_engine_basics(prov):
    with xrail.Engine("e1", **settings(prov, rails=3)) as e:
        assert e.name == "e1" and not e.closed
        rails = e.rails
        assert len(rails) == 3 and all(isinstance(r, xrail.RailInfo) for r in rails)
        assert rails[0].provider.startswith(prov) or prov in rails[0].provider
        assert all(r.up for r in rails) and "tx_bytes" in rails[0].counters
        e.set_rail_state(1, False)
        assert not e.rails[1].up
        e.set_rail_state(1, True)
        assert "return {" in e.config()
        assert e.progress() >= 0
    assert e.closed
    with pytest.raises(xrail.Error, match="closed"):
        e.metadata()


def test_register_every_kind_of_memory(prov):
    with xrail.Engine("e2", **settings(prov)) as e:
        ba = bytearray(8192)
        arr = np.zeros((4, 1024), dtype=np.float16)
        regions = [e.register(ba), e.register(memoryview(ba)[4096:]), e.register(arr),
                   e.register(bytes(100), access="r"), e.register(arr, access="none")]
        assert regions[0].nbytes == 8192 and regions[0].kind == "host"
        assert regions[1].nbytes == 4096
        assert regions[2].nbytes == arr.nbytes and regions[2].addr == arr.ctypes.data
        t = e.register((arr.ctypes.data, arr.nbytes, "host", -1), access="rw")
        assert t.addr == arr.ctypes.data
        stats = e.mr_cache_stats()
        assert stats["registrations"] > 0 and len(stats["rail_registrations"]) == 2
        for g in regions:
            g.deregister()
        t.deregister()


def test_bad_inputs_raise(prov, scripts, tmp_path):
    with xrail.Engine("e3", **settings(prov)) as e:
        with pytest.raises(ValueError, match="read-only"):
            e.register(bytes(10), access="rw")        # writable access to read-only memory
        with pytest.raises(ValueError, match="access 'x'"):
            e.register(bytearray(10), access="x")
        with pytest.raises(ValueError, match="C-contiguous"):
            e.register(np.zeros((8, 8))[:, 1])
        with pytest.raises(ValueError, match="memory kind"):
            e.register((1, 2, "tpu", 0))

        class FakeTensor:  # what torch and cupy expose, on a machine without a GPU
            __cuda_array_interface__ = {"data": (0x7f0000000000, False), "shape": (16,),
                                        "typestr": "<f2", "version": 3}
        with pytest.raises((xrail.NotSupported, xrail.InvalidArgument)):
            e.register(FakeTensor())
        with pytest.raises(xrail.BadMetadata, match="truncated"):
            e.load_peer(e.metadata()[:-3])
        with pytest.raises(xrail.BadMetadata):
            e.load_peer(b"hello")
        with pytest.raises(xrail.InvalidArgument, match="cannot be read"):
            e.policy_reload("/nonexistent/policy.lua")
        broken = tmp_path / "broken.lua"
        broken.write_text("return { plan = function( }")
        with pytest.raises(xrail.ScriptError, match="broken.lua"):
            e.policy_reload(str(broken))
        with pytest.raises(xrail.InvalidArgument, match="width"):
            e.set_field("x", 5)
        with pytest.raises(xrail.InvalidArgument, match="1 to 255 bytes"):
            e.set_field("a" * 300, b"v")
    with pytest.raises(TypeError, match="unknown setting"):
        xrail.Engine("e4", bogus=1)
    with pytest.raises(xrail.InvalidArgument, match="cannot be read"):
        xrail.Engine("e5", layout="/nonexistent.lua", **settings(prov))
    bad_layout = tmp_path / "bad_layout.lua"
    bad_layout.write_text("return { name = 'x', version = 1, fields = { { id = 1 } } }")
    with pytest.raises(xrail.ScriptError, match="bad_layout.lua"):
        xrail.Engine("e5", layout=str(bad_layout), **settings(prov))
    with pytest.raises(xrail.NoRail):
        xrail.Engine("e6", provider="no-such-provider", rails=1, ignore_env=True)


def test_transfers_round_trip(pair):
    a, b = pair
    n = 1 << 20
    dst = np.zeros(n, dtype=np.uint8)
    ro = np.arange(n, dtype=np.uint8)
    g_dst = b.register(dst, access="w")
    g_ro = b.register(ro, access="r")
    p = a.load_peer(b.metadata())
    assert p.name == "decode" and p.rail_count == 2
    src = (np.arange(n, dtype=np.uint64) * 3 % 255).astype(np.uint8)
    # A buffer nobody registered: registered on demand.
    t = a.write(p, [(src, n // 2), (src[n // 2:], n // 2)],
                [(g_dst.addr, n // 2), (g_dst.addr + n // 2, n // 2)], notif=b"w1")
    t.wait(timeout=30)
    assert t.done() and t.status == "done" and t.chunk_count() >= 2
    assert b.wait_notification(30) == ("prefill", b"w1")
    assert (dst == src).all()
    # READ back, into an address/length pair of a registered buffer.
    back = np.zeros(n, dtype=np.uint8)
    a.register(back, access="none")
    a.read(p, [(back.ctypes.data, n)], [(g_ro.addr, n)]).wait(30)
    assert (back == ro).all()
    # Standalone notifications of any size, and the iterator.
    big = bytes(range(256)) * 4096
    a.send_notif(p, b"")
    a.send_notif(p, big)
    got = [b.wait_notification(30), b.wait_notification(30)]
    assert got == [("prefill", b""), ("prefill", big)]
    assert list(b.notifications(timeout=0)) == []
    # The plan, and a reused transfer.
    assert "rail" in a.explain(p, 4 << 20)
    t.repost()
    t.wait(30)
    assert b.wait_notification(30) == ("prefill", b"w1")
    # Each post may carry its own notification, and keeps it for the next.
    t.repost(notif=b"request-2")
    t.wait(30)
    assert b.wait_notification(30) == ("prefill", b"request-2")
    t.repost()
    t.wait(30)
    assert b.wait_notification(30) == ("prefill", b"request-2")
    # Remote ranges the peer did not publish, or did not grant.
    with pytest.raises(xrail.OutOfRange, match="descriptor 0"):
        a.write(p, [src], [(g_dst.addr + 8, n)])
    with pytest.raises(xrail.AccessDenied):
        a.write(p, [src], [(g_ro.addr, n)])
    with pytest.raises(ValueError, match="exceeds"):
        a.write(p, [(src, n + 1)], [(g_dst.addr, n + 1)])
    with pytest.raises(ValueError, match="2 local descriptors, 1 remote"):
        a.write(p, [src, src], [(g_dst.addr, n)])
    with pytest.raises(xrail.NotRegistered):
        a.write(p, [(1 << 40, 64)], [(g_dst.addr, 64)])
    with pytest.raises(ValueError, match="read-only"):
        a.read(p, [bytes(64)], [(g_ro.addr, 64)])
    # The cache's controls.
    a.mr_cache_configure(enabled=False)
    st = a.mr_cache_stats()
    assert st["entries"] == st["in_use"]  # off: only what regions still hold remains
    a.mr_cache_configure(enabled=True, max_entries=100)
    a.mr_cache_flush()
    a.invalidate(src)
    p.unload()
    with pytest.raises(xrail.Error, match="unloaded"):
        p.name


def test_peer_fields(prov, scripts):
    kw = settings(prov, layout="kv_cache.lua", script_path=scripts)
    with xrail.Engine("decode", **kw) as b, xrail.Engine("prefill", **kw) as a:
        b.set_field("model", "m")
        for k, v in (("kv.base", 4096), ("kv.layers", 2), ("kv.blocks", 8), ("kv.block_bytes", 64)):
            b.set_field(k, v, width=8 if k == "kv.base" else 4)
        b.set_field("kv.dtype", "float16")
        p = a.load_peer(b.metadata())
        # Typed by the layout: strings as str, integers as int; raw=True gives the bytes.
        assert p.field("model") == "m" and p.field("kv.dtype") == "float16"
        assert p.field("kv.layers") == 2 and p.field("kv.base") == 4096
        assert p.field("tp_rank") == 0  # the layout's default
        assert p.field("kv.layers", raw=True) == (2).to_bytes(4, sys.byteorder)
        assert p.field("model", raw=True) == b"m"
        with pytest.raises(xrail.NotFound):
            p.field("nope")
        with pytest.raises(xrail.InvalidArgument):
            b.set_field("kv.layers", 2, width=8)  # u32 in the layout


def test_untyped_fields_are_bytes(prov):
    # The built-in layout declares no fields: what a peer sets is bytes.
    with xrail.Engine("decode", **settings(prov)) as b, xrail.Engine("prefill", **settings(prov)) as a:
        b.set_field("note", b"\x00\xff")
        b.set_field("count", 7, width=4)
        p = a.load_peer(b.metadata())
        assert p.field("note") == b"\x00\xff"
        assert p.field("count") == (7).to_bytes(4, sys.byteorder)


def test_kv_descriptors():
    loc, rem = xrail.kv_descriptors(1000, 5000, 10, [0, 1, 2, 7], [4, 5, 6, 0], layers=2,
                                    local_layer_stride=100, remote_layer_stride=200)
    assert loc == [(1000, 30), (1070, 10), (1100, 30), (1170, 10)]
    assert rem == [(5040, 30), (5000, 10), (5240, 30), (5200, 10)]
    assert xrail.kv_descriptors(0, 0, 8, [], []) == ([], [])
    with pytest.raises(xrail.InvalidArgument):
        xrail.kv_descriptors(0, 0, 8, [1], [])


def test_lifetimes(pair):
    a, b = pair
    n = 8 << 20
    dst = np.zeros(n, dtype=np.uint8)
    g = b.register(dst, access="w")
    p = a.load_peer(b.metadata())
    src = np.ones(n, dtype=np.uint8)
    region = a.register(src, access="none")
    # Drop every reference while a transfer is in flight: nothing breaks,
    # the buffers stay alive, and the transfer lands whole.
    t = a.write(p, [src], [(g.addr, n)], notif=b"x")
    del t, region, src
    gc.collect()
    assert b.wait_notification(30) == ("prefill", b"x")
    assert (dst == 1).all()
    a.progress()
    # A peer used after unload, and handles after their engine closed.
    p.unload()
    with pytest.raises(ValueError, match="unloaded"):
        a.write(p, [bytearray(8)], [(g.addr, 8)])
    a.close()
    with pytest.raises(xrail.Error, match="closed"):
        a.metadata()
    g.deregister()


def test_engine_closed_with_transfer_in_flight(prov):
    b = xrail.Engine("decode", **settings(prov))
    a = xrail.Engine("prefill", **settings(prov))
    n = 32 << 20
    dst = np.zeros(n, dtype=np.uint8)
    g = b.register(dst, access="w")
    p = a.load_peer(b.metadata())
    src = np.ones(n, dtype=np.uint8)
    t = a.write(p, [src], [(g.addr, n)])
    a.close()                     # with the WRITE possibly still in flight
    with pytest.raises(xrail.Error, match="closed"):
        t.wait(5)
    with pytest.raises(xrail.Error, match="closed"):
        p.name
    del t, p, src                 # handles of a closed engine go quietly, in any order
    gc.collect()
    # The other engine is unharmed and still serves new peers.
    c = xrail.Engine("prefill2", **settings(prov))
    p2 = c.load_peer(b.metadata())
    c.write(p2, [np.full(64, 7, dtype=np.uint8)], [(g.addr, 64)]).wait(30)
    assert (dst[:64] == 7).all()
    c.close()
    g.deregister()
    b.close()


def test_engine_dropped_before_its_transfer(prov):
    """Dropping the last reference to an engine does not free it under a
    live transfer: the transfer keeps it."""
    b = xrail.Engine("decode", **settings(prov))
    dst = np.zeros(1 << 20, dtype=np.uint8)
    g = b.register(dst, access="w")
    a = xrail.Engine("prefill", **settings(prov))
    t = a.write(a.load_peer(b.metadata()), [np.ones(1 << 20, dtype=np.uint8)], [(g.addr, 1 << 20)])
    del a
    gc.collect()
    t.wait(30)
    assert (dst == 1).all()
    del t
    gc.collect()
    g.deregister()
    b.close()


def test_version_and_exception_bases():
    # One version, from the C library; the header's macros agree with it.
    assert xrail.__version__ == xrail._xrail.version
    parts = xrail.__version__.split(".")
    assert len(parts) == 3 and all(p.isdigit() for p in parts)
    # A timeout is also Python's TimeoutError, so generic handlers catch it.
    assert issubclass(xrail.Timeout, TimeoutError)
    assert issubclass(xrail.Timeout, xrail.Error)


def test_log_goes_to_python_logging(prov):
    import logging

    class Keep(logging.Handler):
        def __init__(self):
            super().__init__()
            self.records = []

        def emit(self, record):
            self.records.append(record)

    lg = logging.getLogger("xrail.test")
    keep = Keep()
    lg.addHandler(keep)
    lg.setLevel(logging.DEBUG)
    try:
        xrail.log_to_python(lg)
        # Engine creation logs its rails at info level.
        with xrail.Engine("logger", log_level=2, **settings(prov, rails=1)):
            pass
        got = [r.getMessage() for r in keep.records]
        assert any(m.startswith("[logger] 1 rails") for m in got), got
        assert all(r.levelno == logging.INFO for r in keep.records)
    finally:
        xrail.log_to_stderr()
        lg.removeHandler(keep)
    # Back on stderr: nothing more reaches the logger.
    n = len(keep.records)
    with xrail.Engine("logger2", log_level=2, **settings(prov, rails=1)):
        pass
    assert len(keep.records) == n


def test_fileno_wakes_an_event_loop(pair):
    import os
    import select

    a, b = pair
    dst = np.zeros(1 << 16, dtype=np.uint8)
    g = b.register(dst, access="w")
    p = a.load_peer(b.metadata())
    fd, afd = b.fileno(), a.fileno()  # asked before: nothing is written until then
    for f in (fd, afd):
        while select.select([f], [], [], 0)[0]:  # what came before: not this test's
            os.read(f, 8)
    t = a.write(p, [np.full(1 << 16, 7, dtype=np.uint8)], [(g.addr, 1 << 16)], notif=b"ev")
    # The target's progress thread makes its fd readable when the
    # notification arrives; nothing polls the engine meanwhile.
    assert select.select([fd], [], [], 30)[0] == [fd]
    assert os.read(fd, 8)
    assert b.wait_notification(0) == ("prefill", b"ev")
    t.wait(30)
    assert (dst == 7).all()
    # The initiator's fd says its transfer ended (its write follows the
    # status that wait() returned on: a bound, not 0).
    assert select.select([afd], [], [], 10)[0]


def test_asyncio_waits_on_the_fd(pair):
    import asyncio

    a, b = pair
    dst = np.zeros(1 << 20, dtype=np.uint8)
    g = b.register(dst, access="w")
    p = a.load_peer(b.metadata())
    src = np.full(1 << 20, 5, dtype=np.uint8)

    async def decode(n):
        got = []
        async for name, msg in b.notifications_async():
            got.append((name, msg))
            if len(got) == n:
                return got

    async def prefill(n):
        for i in range(n):
            t = a.write(p, [src], [(g.addr, src.nbytes)], notif=b"req-%d" % i)
            await t.wait_async(30)
            assert t.status == "done"

    async def main():
        # Both sides in one loop: neither may block it.
        got, _ = await asyncio.wait_for(asyncio.gather(decode(4), prefill(4)), 60)
        assert got == [("prefill", b"req-%d" % i) for i in range(4)]
        assert (dst == 5).all()
        # Nothing comes: a timeout, and the loop stays free meanwhile.
        ticks = 0

        async def tick():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        tk = asyncio.ensure_future(tick())
        with pytest.raises(xrail.Timeout) as ei:
            await b.wait_notification_async(0.3)
        assert isinstance(ei.value, TimeoutError)
        tk.cancel()
        assert ticks >= 5
        # A failed transfer raises from wait_async as from wait.
        bad = a.write(p, [src], [(g.addr, src.nbytes)])
        bad.cancel()
        try:
            await bad.wait_async(30)
        except xrail.Canceled:
            pass  # canceled in flight; or it had already finished
    asyncio.run(main())


def test_notifications_sleep_in_c(pair):
    import resource
    import time

    a, b = pair
    # Nothing arrives: the waiter sleeps in xr_notif_wait, the GIL released.
    t0 = time.monotonic()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    assert list(b.notifications(timeout=0.5)) == []
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    waited = time.monotonic() - t0
    assert waited >= 0.45
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    # Both engines' threads count here. Sleeping costs ~1% on tcp; shm has no
    # wait object and naps (~15% per engine), so only tcp is judged.
    if "tcp" in b.rails[0].provider:
        assert cpu / waited < 0.5, f"{cpu / waited:.0%} of a core while waiting"


def test_group_one_notification_after_every_layer(pair):
    import asyncio

    a, b = pair
    layers, n = 6, 1 << 18
    dst = np.zeros(layers * n, dtype=np.uint8)
    g_dst = b.register(dst, access="w")
    p = a.load_peer(b.metadata())
    p.connect(30)  # every rail at once, before the first layer
    src = np.arange(layers * n, dtype=np.uint64).astype(np.uint8)
    g = a.group(p, notif=b"request-7")
    with pytest.raises(ValueError, match="group"):
        a.write(p, [src[:n]], [(g_dst.addr, n)], notif=b"own", group=g)
    members = [a.write(p, [src[l * n:(l + 1) * n]], [(g_dst.addr + l * n, n)], group=g)
               for l in range(layers)]
    assert g.status == "in progress"  # not sealed: it cannot end
    g.seal()
    with pytest.raises(xrail.InvalidArgument, match="sealed"):
        a.write(p, [src[:n]], [(g_dst.addr, n)], group=g)
    g.wait(30)
    assert g.status == "done" and all(t.status == "done" for t in members)
    # One notification, and every byte of every layer was there before it.
    assert b.wait_notification(30) == ("prefill", b"request-7")
    assert (dst == src).all()
    assert list(b.notifications(timeout=0.2)) == []  # the members said nothing

    async def again():
        g2 = a.group(p, notif=b"request-8")
        for l in range(layers):
            a.write(p, [src[l * n:(l + 1) * n]], [(g_dst.addr + l * n, n)], group=g2)
        g2.seal()
        await g2.wait_async(30)
        return await b.wait_notification_async(30)
    assert asyncio.run(again()) == ("prefill", b"request-8")
    # Released before its seal: it never notifies.
    g3 = a.group(p, notif=b"never")
    t = a.write(p, [src[:n]], [(g_dst.addr, n)], group=g3)
    g3.release()
    t.wait(30)
    assert list(b.notifications(timeout=0.3)) == []
    with pytest.raises(xrail.Error, match="released"):
        g3.seal()


def test_register_host_memory_that_only_says_where_it_is(prov):
    class CpuTensor:  # what a CPU torch tensor offers: no buffer protocol
        def __init__(self, a):
            self.a = a
        def data_ptr(self):
            return self.a.ctypes.data
        def numel(self):
            return self.a.size
        def element_size(self):
            return self.a.itemsize
        def is_contiguous(self):
            return self.a.flags["C_CONTIGUOUS"]

    class ArrayLike:  # only __array_interface__
        def __init__(self, a):
            self.__array_interface__ = a.__array_interface__

    with xrail.Engine("mem", **settings(prov)) as e:
        a = np.zeros((64, 32), dtype=np.float16)
        r = e.register(CpuTensor(a))
        assert (r.addr, r.nbytes, r.kind) == (a.ctypes.data, a.nbytes, "host")
        with pytest.raises(ValueError, match="contiguous"):
            e.register(CpuTensor(np.zeros((8, 8))[:, 1]))
        b = np.ones(1000, dtype=np.int32)
        r2 = e.register(ArrayLike(b))
        assert (r2.addr, r2.nbytes) == (b.ctypes.data, b.nbytes)
        ro = np.ones(10)
        ro.flags.writeable = False
        with pytest.raises(ValueError, match="read-only"):
            e.register(ArrayLike(ro), access="rw")
        # A list: a list of regions; one bad item leaves none registered.
        before = e.mr_cache_stats()["in_use"]
        rs = e.register([bytearray(4096), np.zeros(100), CpuTensor(a)])
        assert [x.kind for x in rs] == ["host"] * 3
        for x in rs:
            x.deregister()
        with pytest.raises(ValueError):
            e.register([bytearray(4096), bytes(10)], access="rw")  # bytes are read-only
        assert e.mr_cache_stats()["in_use"] == before
        r.deregister()
        r2.deregister()


def test_connect_on_load(prov):
    # Loading the peer sends a hello on every rail: no transfer, no connect().
    with xrail.Engine("decode", **settings(prov)) as b, \
            xrail.Engine("prefill", **settings(prov, connect_on_load=True)) as a:
        a.load_peer(b.metadata())
        end = time.monotonic() + 30
        while not all(r.counters["notif_tx"] >= 1 for r in a.rails):
            assert time.monotonic() < end, [r.counters["notif_tx"] for r in a.rails]
            time.sleep(0.01)
    with pytest.raises(TypeError):
        xrail.Engine("x", **settings(prov, connect_on_loadd=True))


def test_host_only_rails(prov):
    # A rails entry may be declared host_only; rail_info says which are.
    base = {k: v for k, v in settings(prov).items() if k in ("provider", "domain")}
    rails = [dict(base, count=1), dict(base, count=1, host_only=True)]
    with xrail.Engine("a", ignore_env=True, rails=rails) as e:
        assert [r.host_only for r in e.rails] == [False, True]
        assert "host_only = true" in e.config()
    with pytest.raises(TypeError):
        xrail.Engine("b", ignore_env=True, rails=[dict(base, count=1, host_onyl=True)])


def test_ipc_fence_setting(prov):
    # On by default; off reaches the engine (its config says so).
    with xrail.Engine("a", **settings(prov)) as a, \
            xrail.Engine("b", **settings(prov, ipc_fence=False)) as b:
        assert "ipc_fence = true," in a.config()
        assert "ipc_fence = false," in b.config()
