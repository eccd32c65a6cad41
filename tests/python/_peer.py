"""The other side of the two-process tests: a decode engine in its own
process. Speaks JSON lines on stdin/stdout; the metadata goes as hex, as a
side channel of a real deployment would carry it."""
import json
import sys

import numpy as np

import xrail
from conftest import settings


def main():
    prov, nbytes = sys.argv[1], int(sys.argv[2])
    with xrail.Engine("decode", **settings(prov, rails=4, layout="kv_cache.lua", progress_thread=True,
                                           script_path=sys.argv[3])) as e:
        pool = np.zeros(nbytes, dtype=np.uint8)
        region = e.register(pool, access="rw")
        e.set_field("model", "tiny-llm")
        e.set_field("kv.base", region.addr, width=8)
        e.set_field("kv.layers", 2, width=4)
        e.set_field("kv.blocks", 16, width=4)
        e.set_field("kv.block_bytes", nbytes // 32, width=4)
        e.set_field("kv.dtype", "float16")
        print(json.dumps({"md": e.metadata().hex(), "addr": region.addr}), flush=True)
        for line in sys.stdin:
            cmd = json.loads(line)
            if cmd["op"] == "wait_notif":
                who, msg = e.wait_notification(timeout=60)
                expect = (np.arange(nbytes, dtype=np.uint64) * 7 % 251).astype(np.uint8)
                ok = bool((pool == expect).all())
                print(json.dumps({"who": who, "msg": msg.decode(), "ok": ok}), flush=True)
            elif cmd["op"] == "fill":
                pool[:] = (np.arange(nbytes, dtype=np.uint64) * 13 % 253).astype(np.uint8)
                print(json.dumps({"ok": True}), flush=True)
            elif cmd["op"] == "quit":
                break


if __name__ == "__main__":
    main()
