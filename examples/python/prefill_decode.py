#!/usr/bin/env python3
"""Prefill -> decode KV-cache transfer with xrail, in two processes.

The decode process owns a paged KV cache (layers x blocks x tokens x heads
x head_dim, float16), publishes it with the kv_cache.lua layout (model,
layers, blocks, block bytes, dtype), picks free blocks for a request from
its own block table and tells prefill which. Prefill checks the published
shape against its own, writes the request's blocks straight into decode's
memory with one notification, and decode verifies every block when the
notification arrives. Metadata and block tables travel over a side channel
(here, the pipes between the two processes; in a server, its own RPC).

With --etcd URL there is no side channel: both workers publish themselves
in the etcd directory and find each other by name, and the block tables,
the request and decode's verdict travel as xrail notifications.

    python3 examples/python/prefill_decode.py                  # tcp, 4 rails
    python3 examples/python/prefill_decode.py --provider shm
    python3 examples/python/prefill_decode.py --layerwise --compute-ms 2  # layer by layer
    python3 examples/python/prefill_decode.py --cuda           # torch tensors on GPU 0
    python3 examples/python/prefill_decode.py --cuda --gpus 0,1  # prefill GPU 0, decode GPU 1
    python3 examples/python/prefill_decode.py --etcd http://127.0.0.1:2379

Needs the package on PYTHONPATH (<build>/python, or pip-installed).
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

import xrail

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = os.path.join(HERE, "..", "..", "scripts")
MODEL = "tiny-llm-7b"
PREFIX = "/xrail-demo-py/"  # --etcd: this example's namespace in the directory


def engine_settings(args):
    s = dict(rails=args.rails, layout="kv_cache.lua", script_path=SCRIPTS, ignore_env=True)
    s.update(provider="tcp;ofi_rxm", domain="lo") if args.provider == "tcp" else s.update(
        provider="shm")
    return s


def make_pool(args):
    shape = (args.layers, args.blocks, args.block_tokens, args.heads, args.head_dim)
    if args.cuda:
        import torch  # only with --cuda
        dev = args.gpus[0] if args.role == "prefill" else args.gpus[1]
        return torch.zeros(shape, dtype=torch.float16, device=f"cuda:{dev}")
    return np.zeros(shape, dtype=np.float16)


def pool_info(pool):
    """(address, layer stride, block bytes) of a pool, numpy or torch."""
    if hasattr(pool, "data_ptr"):
        addr, nbytes = pool.data_ptr(), pool.numel() * pool.element_size()
    else:
        addr, nbytes = pool.ctypes.data, pool.nbytes
    layer = nbytes // pool.shape[0]
    return addr, layer, layer // pool.shape[1]


def publish_pool(e, addr, block_bytes, args):
    """The kv_cache.lua fields: what the other side checks before a transfer."""
    e.set_field("model", MODEL)
    e.set_field("kv.base", addr, width=8)
    e.set_field("kv.layers", args.layers, width=4)
    e.set_field("kv.blocks", args.blocks, width=4)
    e.set_field("kv.block_bytes", block_bytes, width=4)
    e.set_field("kv.dtype", "float16")


def block_values(layer, block, shape):
    """What prefill computed for (layer, its block): any function both sides agree on."""
    n = int(np.prod(shape))
    return ((np.arange(n, dtype=np.float32) % 509 + layer * 31 + block * 7) / 64).astype(
        np.float16).reshape(shape)


def to_host(t):
    return t.cpu().numpy() if hasattr(t, "cpu") else t


def decode(args):
    out = sys.stdout
    with xrail.Engine("decode", **engine_settings(args)) as e:
        pool = make_pool(args)
        region = e.register(pool, access="w")
        addr, layer_stride, block_bytes = pool_info(pool)
        publish_pool(e, addr, block_bytes, args)
        # Decode's own block table: this request gets scattered free blocks.
        rng = np.random.default_rng(7)
        mine = sorted(rng.choice(args.blocks, size=args.request_blocks, replace=False).tolist())
        if args.etcd:
            # Published once the pool and its fields are: no peer sees it half made.
            e.open_directory(args.etcd, prefix=PREFIX, ttl=5)
            who, ask = e.wait_notification(timeout=120)  # {"request": id, "want": n}
            if json.loads(ask)["want"] != len(mine):
                sys.exit(f"decode: {who} wants {json.loads(ask)['want']} blocks")
            prefill_peer = e.lookup(who, timeout=30)
            e.send_notif(prefill_peer, json.dumps({"blocks": mine}).encode())
            who, msg = e.wait_notification(timeout=120)
            prefill_blocks = json.loads(msg)["blocks"]
            msg = json.loads(msg)["request"].encode()
        else:
            print(json.dumps({"md": e.metadata().hex(), "blocks": mine}), flush=True)
            prefill_blocks = json.loads(sys.stdin.readline())["blocks"]
            who, msg = e.wait_notification(timeout=120)
        bad = 0
        host = to_host(pool)
        for layer in range(args.layers):
            for src, dst in zip(prefill_blocks, mine):
                want = block_values(layer, src, host.shape[2:])
                bad += int(not np.array_equal(host[layer, dst], want))
        result = json.dumps({"from": who, "msg": msg.decode(), "bad_blocks": bad})
        if args.etcd:
            # The verdict goes over xrail too; close only once prefill has it.
            e.send_notif(prefill_peer, result.encode())
            e.wait_notification(timeout=60)
        else:
            print(result, flush=True)
        region.deregister()
    out.flush()
    return 0 if bad == 0 else 1


def prefill(args):
    passed = [a for a in sys.argv[1:] if a not in ("--role", "prefill")]
    pipes = {} if args.etcd else dict(stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    child = subprocess.Popen([sys.executable, os.path.abspath(__file__)] + passed +
                             ["--role", "decode"], **pipes)
    try:
        with xrail.Engine("prefill", **engine_settings(args)) as e:
            pool = make_pool(args)
            addr, layer_stride, block_bytes = pool_info(pool)
            publish_pool(e, addr, block_bytes, args)
            e.register(pool, access="none")
            if args.etcd:
                # By name, once decode has published itself; then ask it
                # for free blocks, over xrail.
                e.open_directory(args.etcd, prefix=PREFIX, ttl=5)
                peer = e.lookup("decode", timeout=60)
                print(f"prefill: found decode through etcd at {args.etcd}, no side channel")
                e.send_notif(peer, json.dumps({"request": 42,
                                               "want": args.request_blocks}).encode())
                hello = json.loads(e.wait_notification(timeout=60)[1])
            else:
                hello = json.loads(child.stdout.readline())
                peer = e.load_peer(bytes.fromhex(hello["md"]))
            # Check decode's KV layout against ours before moving a byte.
            # Typed by kv_cache.lua: strings come back as str, integers as int.
            want = {"model": MODEL, "kv.dtype": "float16", "kv.layers": args.layers,
                    "kv.block_bytes": block_bytes}
            for name, value in want.items():
                if peer.field(name) != value:
                    sys.exit(f"prefill: decode's {name} is {peer.field(name)!r}, ours is {value!r}")
            remote_base = peer.field("kv.base")
            remote_blocks = peer.field("kv.blocks")
            # This request's blocks in prefill's own pool, computed here.
            mine = list(range(args.request_blocks))
            for layer in range(args.layers):
                for b in mine:
                    v = block_values(layer, b, pool.shape[2:])
                    if args.cuda:
                        import torch
                        pool[layer, b] = torch.from_numpy(v).to(pool.device)
                    else:
                        pool[layer, b] = v
            local, remote = xrail.kv_descriptors(
                addr, remote_base, block_bytes, mine, hello["blocks"], layers=args.layers,
                local_layer_stride=layer_stride, remote_layer_stride=block_bytes * remote_blocks)
            peer.connect(30)  # every rail at once: the request below runs warm
            done = b"request-42 done"
            if args.etcd:  # which of our blocks, in the notification itself
                done = json.dumps({"request": done.decode(), "blocks": mine}).encode()
            else:
                child.stdin.write(json.dumps({"blocks": mine}) + "\n")
                child.stdin.flush()
            t0 = time.perf_counter()
            if args.layerwise:
                # One transfer per layer, each sent as soon as its layer is
                # ready; one notification once every byte of all has landed.
                g = e.group(peer, notif=done)
                per = len(local) // args.layers
                for layer in range(args.layers):
                    time.sleep(args.compute_ms / 1e3)  # prefill computes this layer
                    e.write(peer, local[layer * per:(layer + 1) * per],
                            remote[layer * per:(layer + 1) * per], group=g)
                ready = time.perf_counter()
                g.seal()
                g.wait(timeout=120)
            else:
                time.sleep(args.layers * args.compute_ms / 1e3)  # every layer, then send
                ready = time.perf_counter()
                xfer = e.write(peer, local, remote, notif=done)
                xfer.wait(timeout=120)
            dt = time.perf_counter() - t0
            if args.layerwise or args.compute_ms:
                print(f"prefill: {'layer by layer, one group' if args.layerwise else 'one transfer'}"
                      f": last layer ready -> notification delivered in "
                      f"{(time.perf_counter() - ready) * 1e3:.2f} ms")
            nbytes = sum(n for _, n in local)
            print(f"prefill: wrote {len(mine)} blocks x {args.layers} layers "
                  f"({nbytes / 2**20:.1f} MiB, {len(local)} descriptors) over "
                  f"{len(e.rails)} {args.provider} rails in {dt * 1e3:.1f} ms: "
                  f"{nbytes / dt / 1e9:.2f} GB/s")
            if args.etcd:
                result = json.loads(e.wait_notification(timeout=120)[1])
                e.send_notif(peer, b"bye")
            else:
                result = json.loads(child.stdout.readline())
        if child.wait(timeout=60) != 0 or result["bad_blocks"]:
            print(f"decode: {result['bad_blocks']} blocks wrong", file=sys.stderr)
            return 1
        print(f"decode: notification {result['msg']!r} from {result['from']}; every block of "
              f"every layer verified")
        return 0
    finally:
        if child.poll() is None:
            child.kill()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--role", choices=["prefill", "decode"], default="prefill")
    ap.add_argument("--provider", choices=["tcp", "shm"], default="tcp")
    ap.add_argument("--rails", type=int, default=4)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--layerwise", action="store_true",
                    help="send each layer as soon as it is ready, in one transfer group")
    ap.add_argument("--compute-ms", type=float, default=0,
                    help="prefill's time per layer before it is ready")
    ap.add_argument("--blocks", type=int, default=64)
    ap.add_argument("--block-tokens", type=int, default=16)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--request-blocks", type=int, default=24)
    ap.add_argument("--etcd", metavar="URL",
                    help="find each other through this etcd, with no side channel")
    ap.add_argument("--cuda", action="store_true", help="torch tensors on GPU 0")
    ap.add_argument("--gpus", default="0,0",
                    help="with --cuda: prefill's GPU,decode's GPU (default 0,0)")
    args = ap.parse_args()
    try:
        args.gpus = [int(g) for g in args.gpus.split(",")]
        assert len(args.gpus) == 2 and min(args.gpus) >= 0
    except (ValueError, AssertionError):
        sys.exit(f"--gpus wants P,D (two device numbers), not {args.gpus!r}")
    if args.cuda:
        try:
            import torch
        except ImportError:
            sys.exit("--cuda needs torch")
        if not torch.cuda.is_available():
            sys.exit("--cuda: torch sees no GPU")
        if max(args.gpus) >= torch.cuda.device_count():
            sys.exit(f"--gpus {args.gpus}: torch sees {torch.cuda.device_count()} GPU(s)")
    return decode(args) if args.role == "decode" else prefill(args)


if __name__ == "__main__":
    sys.exit(main())
