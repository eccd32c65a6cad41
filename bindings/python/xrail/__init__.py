"""xrail: multi-rail, zero-copy KV-cache transfers between processes.

The engine does the work in C: a transfer is planned, posted and completed
by it, and Python only waits, with the GIL released. See docs/python.md.

    with xrail.Engine("decode", rails=4, provider="tcp;ofi_rxm", domain="lo") as e:
        region = e.register(kv_pool, access="rw")
        send_to_prefill(e.metadata())
        for peer_name, message in e.notifications():
            ...
"""
from __future__ import annotations

import asyncio
import atexit
import logging
import os
import sys
from typing import AsyncIterator, Iterator, List, NamedTuple, Optional, Sequence, Tuple

from . import _xrail
from ._xrail import (  # noqa: F401  (re-exported)
    AccessDenied,
    Again,
    AlreadyExists,
    BadMetadata,
    Busy,
    Canceled,
    Error,
    FabricError,
    Group,
    InProgress,
    InvalidArgument,
    NoRail,
    NotFound,
    NotRegistered,
    NotSupported,
    OutOfMemory,
    OutOfRange,
    DirectoryError,
    Peer,
    PeerGone,
    PeerLost,
    Region,
    ScriptError,
    Timeout,
    TooSmall,
    Transfer,
    TransferFailed,
    VersionMismatch,
)

# The C library's version, as xr_version() reports it.
__version__ = _xrail.version

__all__ = [
    "Engine", "Group", "Peer", "Region", "Transfer", "RailInfo", "Error", "kv_descriptors",
    "log_to_python", "log_to_stderr",
    "AccessDenied", "Again", "AlreadyExists", "BadMetadata", "Busy", "Canceled",
    "FabricError", "InProgress", "InvalidArgument", "NoRail", "NotFound", "NotRegistered",
    "NotSupported", "OutOfMemory", "OutOfRange", "PeerLost", "PeerGone", "DirectoryError",
    "ScriptError", "Timeout",
    "TooSmall", "TransferFailed", "VersionMismatch",
]


_LEVELS = (logging.ERROR, logging.WARNING, logging.INFO, logging.DEBUG)
_log_reset_at_exit = False


def log_to_python(logger: Optional[logging.Logger] = None) -> None:
    """Send xrail's log lines (every engine's, from any thread) to ``logger``,
    by default ``logging.getLogger("xrail")``, instead of stderr. Each engine
    still logs only up to its ``log_level`` (default: warnings)."""
    global _log_reset_at_exit
    lg = logger if logger is not None else logging.getLogger("xrail")

    def handler(level: int, engine: str, message: str) -> None:
        lg.log(_LEVELS[level], "[%s] %s", engine, message)

    _xrail.set_log_handler(handler)
    if not _log_reset_at_exit:
        # Before the interpreter goes, the handler goes: a progress thread
        # must not call into a finalizing interpreter.
        atexit.register(_xrail.set_log_handler, None)
        _log_reset_at_exit = True


def log_to_stderr() -> None:
    """Back to xrail's own lines on stderr (the default)."""
    _xrail.set_log_handler(None)


class RailInfo(NamedTuple):
    """One rail: a libfabric endpoint on one NIC (or one of many on loopback)."""
    index: int
    provider: str
    domain: str
    fabric: str
    address: str
    speed_mbps: int
    numa_node: int
    gpu: int
    pci: str
    up: bool
    state: str          # "up", "suspect", "down" or "disabled"
    reason: str         # why it is in that state
    last_error: str
    max_msg_size: int
    mr_mode: int
    delivery_complete: bool
    hmem: bool          # registers device memory itself (else stages it)
    host_only: bool     # declared to carry host memory (rails entry host_only)
    stage_slots: int    # bounce slots its staged chunks hold now
    counters: dict


class Engine(_xrail.Engine):
    """Engine(name, config=None, **settings): one per process.

    ``config`` names a config script (path, or a name on the script path).
    Settings override it: provider, domain, rails (a count, or a list of
    dicts with provider, domain, src_addr, count, speed, host_only), max_rails,
    stripe_min, chunk_size, rail_depth, progress_thread, progress_threads
    (threads sharing the rails), progress_sleep_us (the progress thread's idle
    nap; 0 never naps, for latency), log_level,
    ignore_env, policy, layout, script_path, script_mem, mr_cache (dict of
    enabled, max_entries, max_bytes) and stage (dict of chunk, slots,
    rx_slots, host). A context manager: leaving the block closes it.

    Unlike the C default, progress_thread is on unless set False: a Python
    program then never has to call progress() for queued notifications to
    leave, or for a peer's WRITEs to land.
    """

    def __init__(self, name: str, config: Optional[str] = None, **settings):
        settings.setdefault("progress_thread", True)
        super().__init__(name, config, **settings)
        self._wakers: dict = {}
        self._has_thread: Optional[bool] = None
        self._pending: List[Tuple[str, bytes]] = []
        self._dir_pending: List[Tuple[str, str, int]] = []  # taken by an async waiter

    def register(self, obj, access: str = "rw"):
        """A Region for obj (a buffer, a CUDA array, a CPU torch tensor, an
        object with __array_interface__, or an (addr, nbytes, kind, device)
        tuple); for a list of them, a list of Regions, all or none."""
        if not isinstance(obj, list):
            return super().register(obj, access)
        done: List[Region] = []
        try:
            for o in obj:
                done.append(super().register(o, access))
        except BaseException:
            for r in done:
                r.deregister()
            raise
        return done

    @property
    def rails(self) -> List[RailInfo]:
        """The rails, with their counters now."""
        return [RailInfo(**d) for d in self._rail_info()]

    def set_field(self, name: str, value, width: Optional[int] = None) -> None:
        """Publish a custom metadata field (checked against the layout).

        bytes go as they are, str as UTF-8, and an int as ``width`` bytes
        (1, 2, 4 or 8: the layout's type) in host byte order.
        """
        if isinstance(value, str):
            value = value.encode()
        elif isinstance(value, int) and not isinstance(value, bool):
            if width not in (1, 2, 4, 8):
                raise InvalidArgument(
                    f"set_field({name!r}): an int needs width=1, 2, 4 or 8 (the layout's type)")
            value = value.to_bytes(width, sys.byteorder, signed=value < 0)
        self._set_field(name, bytes(value))

    def notifications(self, timeout: Optional[float] = 0) -> Iterator[Tuple[str, bytes]]:
        """Yield (peer name, message) for each notification received.

        With timeout=0 it yields what has arrived and stops; with a number
        of seconds it waits up to that long for each; None waits for ever,
        one message at a time. Waiting sleeps in C (xr_notif_wait) with the
        GIL released; Ctrl-C still interrupts it.
        """
        ms = -1 if timeout is None else max(0, int(timeout * 1000))
        while self._pending:  # taken by an async waiter that has not had it yet
            yield self._pending.pop(0)
        while True:
            got = self._notif_get(ms)
            if got is None:
                return
            yield got

    def wait_notification(self, timeout: Optional[float] = None) -> Tuple[str, bytes]:
        """The next notification; Timeout if none arrives in time."""
        for got in self.notifications(timeout=timeout):
            return got
        raise Timeout(f"no notification within {timeout} s")

    # ---- asyncio: coroutines woken through the engine's fd ----

    def _threaded(self) -> bool:
        if self._has_thread is None:
            self._has_thread = 'progress = "thread"' in self.config()
        return self._has_thread

    def _waker(self) -> "_Waker":
        loop = asyncio.get_running_loop()
        w = self._wakers.get(loop)
        if w is None:
            w = self._wakers[loop] = _Waker(self, loop)
        return w

    async def _until(self, ready, timeout: Optional[float], what: str,
                     fd_only: bool = False) -> None:
        """Return once ready() is true, awaiting the engine's events; Timeout
        after `timeout` seconds (None: never). fd_only: what is awaited is
        signalled on the fd by a thread of the engine's own, not by progress."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not ready():
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                raise Timeout(f"{what}: not within {timeout} s")
            if not fd_only and not self._threaded():
                # Nothing writes the fd while no one drives progress.
                self.progress()
                await asyncio.sleep(0.0002)
                continue
            await asyncio.wait({self._waker().event()}, timeout=left)

    async def notifications_async(self) -> AsyncIterator[Tuple[str, bytes]]:
        """``async for peer_name, message in engine.notifications_async()``:
        each notification as it arrives, without blocking the event loop."""
        while True:
            await self._until(self._notif_ready, None, "notifications_async")
            yield self._pending.pop(0)

    def _notif_ready(self) -> bool:
        got = self._notif_get(0)
        if got is not None:
            self._pending.append(got)
        return bool(self._pending)

    async def wait_notification_async(self, timeout: Optional[float] = None
                                      ) -> Tuple[str, bytes]:
        """The next notification, awaited; Timeout if none arrives in time."""
        if not self._pending:
            await self._until(self._notif_ready, timeout, "wait_notification_async")
        return self._pending.pop(0)

    def directory_events(self) -> List[Tuple[str, str, int]]:
        """The directory's events since the last look, oldest first:
        (kind, peer name, etcd revision), kind "join", "update" or "leave"."""
        out, self._dir_pending = self._dir_pending + super().directory_events(), []
        return out

    async def directory_events_async(self) -> AsyncIterator[Tuple[str, str, int]]:
        """``async for kind, name, revision in engine.directory_events_async()``:
        each directory event as it comes, without blocking the event loop (the
        directory's thread wakes the engine's fd, progress thread or not)."""
        while True:
            await self._until(self._dir_ready, None, "directory_events_async", fd_only=True)
            yield self._dir_pending.pop(0)

    async def wait_directory_event_async(self, timeout: Optional[float] = None
                                         ) -> Tuple[str, str, int]:
        """The next directory event, awaited; Timeout if none comes in time."""
        if not self._dir_pending:
            await self._until(self._dir_ready, timeout, "wait_directory_event_async",
                              fd_only=True)
        return self._dir_pending.pop(0)

    def _dir_ready(self) -> bool:
        self._dir_pending += super().directory_events()
        return bool(self._dir_pending)

    def close(self) -> None:
        for w in list(self._wakers.values()):
            w.close()
        self._wakers.clear()
        super().close()

    def __exit__(self, *exc) -> bool:
        self.close()
        return False


class _Waker:
    """The coroutines of one event loop waiting on one engine: a reader on
    the engine's fd sets their futures, and each looks again at what it
    waits for (the fd says only that something happened)."""

    def __init__(self, engine: Engine, loop: asyncio.AbstractEventLoop):
        self._fd = engine.fileno()
        self._loop = loop
        self._futures: List[asyncio.Future] = []
        loop.add_reader(self._fd, self._readable)

    def _readable(self) -> None:
        try:
            os.read(self._fd, 8)
        except BlockingIOError:
            pass
        futures, self._futures = self._futures, []
        for f in futures:
            if not f.done():
                f.set_result(None)

    def event(self) -> "asyncio.Future[None]":
        f = self._loop.create_future()
        self._futures.append(f)
        return f

    def close(self) -> None:
        if not self._loop.is_closed():
            self._loop.remove_reader(self._fd)
        for f in self._futures:
            if not f.done():
                f.set_result(None)  # its waiter looks again and finds the engine closed


async def _wait_async(what, timeout: Optional[float] = None) -> None:
    """Transfer.wait_async and Group.wait_async: await the end of a posted
    transfer or a sealed group; raises its error as wait() does."""
    eng = what.engine
    await eng._until(lambda: what.status != "in progress", timeout, "wait_async")
    what.wait(0)


def kv_descriptors(local_base: int, remote_base: int, block_bytes: int,
                   local_blocks: Sequence[int], remote_blocks: Sequence[int],
                   layers: int = 1, local_layer_stride: Optional[int] = None,
                   remote_layer_stride: Optional[int] = None
                   ) -> Tuple[List[Tuple[int, int]], List[Tuple[int, int]]]:
    """(local, remote) descriptor lists for moving blocks of a paged KV cache.

    Block ``local_blocks[i]`` of each layer goes to ``remote_blocks[i]`` of
    the same layer. A block is ``block_bytes``; a layer holds its blocks
    contiguously, and layers are ``*_layer_stride`` bytes apart (by default
    ``block_bytes`` times the largest block index + 1 of that side). Runs of
    consecutive blocks on both sides become one descriptor, so a request's
    contiguous blocks cost one descriptor per layer.
    """
    if len(local_blocks) != len(remote_blocks):
        raise InvalidArgument(
            f"{len(local_blocks)} local blocks, {len(remote_blocks)} remote blocks")
    if not local_blocks:
        return [], []
    ls = local_layer_stride or block_bytes * (max(local_blocks) + 1)
    rs = remote_layer_stride or block_bytes * (max(remote_blocks) + 1)
    local: List[Tuple[int, int]] = []
    remote: List[Tuple[int, int]] = []
    for layer in range(layers):
        run_l = run_r = None
        n = 0
        for lb, rb in zip(local_blocks, remote_blocks):
            if run_l is not None and lb == run_l + n and rb == run_r + n:
                n += 1
                continue
            if run_l is not None:
                local.append((local_base + layer * ls + run_l * block_bytes, n * block_bytes))
                remote.append((remote_base + layer * rs + run_r * block_bytes, n * block_bytes))
            run_l, run_r, n = lb, rb, 1
        local.append((local_base + layer * ls + run_l * block_bytes, n * block_bytes))
        remote.append((remote_base + layer * rs + run_r * block_bytes, n * block_bytes))
    return local, remote
