#!/usr/bin/env python3
"""summarize.py OUT - medians, ratios and chart inputs from a bench-suite.sh run.

Reads OUT/runs/<section>/r<k>/<series>.json (xrail-bench --json arrays),
prints the Markdown tables of docs/performance.md on stdout, and writes
OUT/median/*.json (the medians, in xrail-bench's shape) with
OUT/charts/<name>.args (the arguments plot-bench.sh takes for each chart).

A ratio is taken inside each run, between series measured side by side,
and the median of those per-run ratios is reported; so is the median of
each figure. Nothing here knows what a result should be.
"""
import glob
import json
import os
import re
import statistics
import sys

OUT = sys.argv[1]
RUNS = {}  # section -> run -> series -> [points]
for path in glob.glob(os.path.join(OUT, "runs", "*", "r*", "*.json")):
    sec, run, name = path.split(os.sep)[-3:]
    try:
        with open(path) as f:
            pts = json.load(f)
    except (OSError, ValueError):
        continue  # a run that died left no valid JSON; its cells show "-"
    RUNS.setdefault(sec, {}).setdefault(run, {})[name[:-5]] = pts
os.makedirs(os.path.join(OUT, "median"), exist_ok=True)
os.makedirs(os.path.join(OUT, "charts"), exist_ok=True)


def pick(pts, size=None, key="gbps"):
    for p in pts or []:
        if size is None or p["size"] == size:
            return p.get(key)
    return None


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def per_run(sec, fn):
    """fn(series dict of one run) for every run of a section, None dropped."""
    return [fn(s) for s in RUNS.get(sec, {}).values()]


def fmt(x, spec=".3f"):
    return "-" if x is None else format(x, spec)


def ratio(a, b):
    return a / b if a is not None and b else None


def n_runs(sec):
    return len(RUNS.get(sec, {}))


def write_series(name, points):
    path = os.path.join(OUT, "median", name + ".json")
    with open(path, "w") as f:  # one point a line, as xrail-bench prints them
        f.write("[\n" + ",\n".join("  " + json.dumps(p) for p in points) + "\n]\n")
    return path


def chart(name, args):
    with open(os.path.join(OUT, "charts", name + ".args"), "w") as f:
        f.write("\n".join(args) + "\n")


def verdict(x, goal, higher=True):
    if x is None:
        return "not measured"
    return "met" if (x >= goal if higher else x <= goal) else "MISSED"


MiB = 1 << 20
out = []
w = out.append

if "striping" in RUNS:
    w("### Striping efficiency, equal rails (400 Mbit/s each, 1 MiB WRITEs)\n")
    w(f"Median of {n_runs('striping')} runs. Efficiency = BW(N) / (N x BW(1)), "
      "taken within each run.\n")
    w("| rails | GB/s | N x BW(1) | efficiency | goal | |")
    w("|---:|---:|---:|---:|---:|---|")
    bw1 = med(per_run("striping", lambda s: pick(s.get("n1"))))
    meas, ideal = [], []
    for n in (1, 2, 4, 8):
        bw = med(per_run("striping", lambda s: pick(s.get(f"n{n}"))))
        eff = med(per_run("striping", lambda s: ratio(pick(s.get(f"n{n}")),
                                                      n * (pick(s.get("n1")) or 0))))
        goal = None if n == 1 else (0.95 if n <= 4 else 0.90)
        w(f"| {n} | {fmt(bw, '.4f')} | {fmt(bw1 * n if bw1 else None, '.4f')} | {fmt(eff)} | "
          f"{'-' if goal is None else f'>= {goal:.2f}'} | "
          f"{'' if goal is None else verdict(eff, goal)} |")
        if bw is not None:
            meas.append({"mode": "xrail", "rails": n, "size": MiB, "gbps": bw})
            ideal.append({"mode": "ideal", "rails": n, "size": MiB, "gbps": bw1 * n})
    w("")
    chart("striping", ["--x", "rails", "--title",
                       "1 MiB WRITEs over N shaped rails of 400 Mbit/s (median)",
                       write_series("striping-xrail", meas) + "=xrail, built-in equal stripe",
                       write_series("striping-ideal", ideal) + "=N x one rail"])

if "hetero" in RUNS:
    w("### Heterogeneous rails (400, 400, 100, 100 Mbit/s, 1 MiB WRITEs)\n")
    w(f"Median of {n_runs('hetero')} runs. Each ratio is to the sum of the four rails "
      "measured alone in the same run.\n")
    singles = [med(per_run("hetero", lambda s, i=i: pick(s.get(f"single{i}"), MiB)))
               for i in range(4)]
    w("| rail 0 alone | rail 1 alone | rail 2 alone | rail 3 alone | sum |")
    w("|---:|---:|---:|---:|---:|")
    total = sum(x for x in singles if x is not None) if None not in singles else None
    w("| " + " | ".join(fmt(x, ".4f") for x in singles) + f" | {fmt(total, '.4f')} |\n")

    def total_of(s):
        xs = [pick(s.get(f"single{i}"), MiB) for i in range(4)]
        return None if None in xs else sum(xs)

    w("| policy | GB/s | of the sum | bytes per rail (%) | goal | |")
    w("|---|---:|---:|---|---|---|")
    series = []
    for p, goal in (("weighted", (0.90, True)), ("even_stripe", None)):
        bw = med(per_run("hetero", lambda s: pick(s.get(p), MiB)))
        r = med(per_run("hetero", lambda s: ratio(pick(s.get(p), MiB), total_of(s))))
        rb = [pick(s.get(p), MiB, "rail_bytes") for s in RUNS["hetero"].values()]
        rb = next((x for x in rb if x), None)
        split = "/".join(f"{100 * b / sum(rb):.0f}" for b in rb) if rb and sum(rb) else "-"
        g = ">= 0.90" if goal else "~0.4 expected (bound by the slowest rail)"
        w(f"| {p}.lua | {fmt(bw, '.4f')} | {fmt(r)} | {split} | {g} | "
          f"{verdict(r, 0.90) if goal else ''} |")
        pts = []
        for size in sorted({q["size"] for s in RUNS["hetero"].values() for q in s.get(p, [])}):
            pts.append({"mode": "xrail", "size": size, "rails": 4,
                        "gbps": med(per_run("hetero", lambda s: pick(s.get(p), size)))})
        series.append(write_series(f"hetero-{p}", pts) + f"={p}.lua")
    if total:
        sizes = [q["size"] for q in json.load(open(series[0].split("=")[0]))]
        series.append(write_series("hetero-sum", [{"mode": "sum", "size": z, "rails": 4,
                                                    "gbps": total} for z in sizes])
                      + "=sum of the 4 rails alone (1 MiB)")
    w("")
    chart("hetero", ["--title", "WRITEs over rails of 400, 400, 100, 100 Mbit/s (median)"]
          + series)

if "loopback" in RUNS:
    sizes = (64 * 1024, MiB, 16 * MiB)
    names = {"xrail-tcp1": "xrail tcp x1", "xrail-tcp4": "xrail tcp x4", "raw-tcp": "raw tcp",
             "ucx-tcp": "ucx_perftest tcp", "xrail-shm": "xrail shm", "raw-shm": "raw shm",
             "ucx-shm": "ucx_perftest posix,cma"}

    def lb(s, base, op, size):
        if base.startswith("ucx"):
            return pick(s.get(f"{base}-{op}-{size}"), size)
        return pick(s.get(f"{base}-{op}"), size)

    for op in ("write", "read"):
        w(f"### Loopback, unshaped: {op.upper()} (GB/s, median of {n_runs('loopback')} runs)\n")
        w("| block | xrail tcp x1 | raw tcp | ucx tcp | x1/raw | x1/ucx | xrail tcp x4 | "
          "x4/x1 | CPU busy x1, x4 | xrail shm | raw shm | ucx shm | shm/raw | shm/ucx |")
        w("|---|" + "---:|" * 13)
        for size in sizes:
            m = {b: med(per_run("loopback", lambda s, b=b: lb(s, b, op, size))) for b in names}

            def rr(a, b):
                return fmt(med(per_run("loopback", lambda s: ratio(lb(s, a, op, size),
                                                                    lb(s, b, op, size)))), ".2f")
            def busy(b):
                return fmt(med(per_run("loopback", lambda s: pick(s.get(f"{b}-{op}"), size,
                                                                  "cpu_busy_pct"))), ".0f")
            label = f"{size // MiB}M" if size >= MiB else f"{size // 1024}k"
            w(f"| {label} | {fmt(m['xrail-tcp1'])} | {fmt(m['raw-tcp'])} | {fmt(m['ucx-tcp'])} | "
              f"{rr('xrail-tcp1', 'raw-tcp')} | {rr('xrail-tcp1', 'ucx-tcp')} | "
              f"{fmt(m['xrail-tcp4'])} | {rr('xrail-tcp4', 'xrail-tcp1')} | "
              f"{busy('xrail-tcp1')}%, {busy('xrail-tcp4')}% | "
              f"{fmt(m['xrail-shm'])} | {fmt(m['raw-shm'])} | {fmt(m['ucx-shm'])} | "
              f"{rr('xrail-shm', 'raw-shm')} | {rr('xrail-shm', 'ucx-shm')} |")
        w("")
        series = []
        for b, label in names.items():
            pts = [{"mode": b, "size": z, "rails": 1,
                    "gbps": med(per_run("loopback", lambda s, z=z: lb(s, b, op, z)))}
                   for z in sizes]
            pts = [p for p in pts if p["gbps"] is not None]
            if pts:
                series.append(write_series(f"loopback-{op}-{b}", pts) + "=" + label)
        chart(f"loopback-{op}", ["--logy", "--title",
                                 f"Loopback {op.upper()}, unshaped (median; log scale)"]
              + series)

if "latency" in RUNS:
    w(f"### 8 B WRITE with completion (us, median of {n_runs('latency')} runs)\n")
    w("A WRITE with completion is a round trip; fi_pingpong and ucx_perftest print half a "
      "round trip, so their figures here are doubled. They report no p99.\n")
    w("| transport | xrail p50 | xrail p99 | xrail, target naps 20 us, p50 | raw fi_write p50 | "
      "fi_pingpong RTT | ucx_perftest put_lat RTT | xrail / better baseline | goal | |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for p in ("tcp", "shm"):
        def L(name, key="p50_us"):
            return med(per_run("latency", lambda s: pick(s.get(name), None, key)))
        x50, x99 = L(f"xrail-{p}"), L(f"xrail-{p}", "p99_us")
        best = med(per_run("latency", lambda s: ratio(
            pick(s.get(f"xrail-{p}"), None, "p50_us"),
            min([v for v in (pick(s.get(f"fi_pingpong-{p}"), None, "p50_us"),
                             pick(s.get(f"ucx-{p}"), None, "p50_us")) if v] or [0]))))
        w(f"| {p} | {fmt(x50, '.2f')} | {fmt(x99, '.2f')} | {fmt(L(f'xrail-{p}-nap20'), '.2f')} | "
          f"{fmt(L(f'raw-{p}'), '.2f')} | {fmt(L(f'fi_pingpong-{p}'), '.2f')} | "
          f"{fmt(L(f'ucx-{p}'), '.2f')} | {fmt(best, '.2f')} | <= 1.10 | "
          f"{verdict(best, 1.10, higher=False)} |")
    w("")
    for p in ("tcp", "shm"):
        series = []
        for mode in ("xrail", "raw"):
            name = f"{mode}-{p}"
            sizes = sorted({q["size"] for s in RUNS["latency"].values() for q in s.get(name, [])})
            pts = [{"mode": mode, "size": z, "rails": 1,
                    "p50_us": med(per_run("latency", lambda s: pick(s.get(name), z, "p50_us"))),
                    "p99_us": med(per_run("latency", lambda s: pick(s.get(name), z, "p99_us"))),
                    "gbps": 0} for z in sizes]
            if pts:
                series.append(write_series(f"latency-{name}", pts) + f"={mode} {p} p50")
        chart(f"latency-{p}", ["--y", "p50_us", "--title",
                               f"One WRITE with completion at a time over {p} (median p50)"]
              + series)

if "postpath" in RUNS:
    D = 18880
    w(f"### Post path: one transfer of {D} x 64 KiB (median of {n_runs('postpath')} runs)\n")
    w("Each row is the mean over 8 transfers created and 24 posts. *Cold*: the process's first "
      "transfers, whose create also registers the 1.2 GB local pool on each rail; *warm*: the "
      "same shape again.\n")
    w("| rails | | create ms | post ms | create + post ms | wire ms (p50) | goal | |")
    w("|---|---|---:|---:|---:|---:|---|---|")

    def nth(pts, i, key):
        return pts[i].get(key) if pts and len(pts) > i else None

    for name, label in (("tcp4", "tcp x4"), ("shm", "shm x1")):
        for i, phase in ((0, "cold"), (1, "warm")):
            c = med(per_run("postpath", lambda s: nth(s.get(name), i, "create_ns_per_desc")))
            p = med(per_run("postpath", lambda s: nth(s.get(name), i, "post_ns_per_desc")))
            wire = med(per_run("postpath", lambda s: nth(s.get(name), i, "p50_us")))
            tot = (c + p) * D / 1e6 if c is not None and p is not None else None
            w(f"| {label} | {phase} | {fmt(c and c * D / 1e6, '.2f')} | "
              f"{fmt(p and p * D / 1e6, '.2f')} | {fmt(tot, '.2f')} | "
              f"{fmt(wire and wire / 1e3, '.0f')} | < 5 | {verdict(tot, 5, higher=False)} |")
    w("")
    series = []
    for name, label in (("tcp4", "tcp x4"), ("shm", "shm x1")):
        pts = []
        for i in range(1, 4):  # the warm points
            b = next((s[name][i]["batch"] for s in RUNS["postpath"].values()
                      if s.get(name) and len(s[name]) > i), None)
            if b is None:
                continue
            pts.append({"mode": "xrail", "size": 65536, "batch": b, "rails": 1, "gbps": 0,
                        "create_ns_per_desc": med(per_run("postpath", lambda s: nth(
                            s.get(name), i, "create_ns_per_desc")))})
        if pts:
            series.append(write_series(f"postpath-{name}", sorted(pts, key=lambda q: q["batch"]))
                          + "=" + label)
    chart("postpath", ["--x", "batch", "--y", "create_ns_per_desc", "--title",
                       "xr_xfer_create CPU per 64 KiB descriptor, warm (median)"] + series)
    for f in sorted(glob.glob(os.path.join(OUT, "callgrind", "*", "callgrind.*.fn"))):
        ir = {}
        for line in open(f):
            m = re.match(r"\s*([\d,]+)\s.*\b(xr_xfer_create|xr_xfer_post)\b", line)
            if m:
                ir[m.group(2)] = int(m.group(1).replace(",", ""))
        if ir:
            cr, po = ir.get("xr_xfer_create", 0), ir.get("xr_xfer_post", 0)
            what = open(os.path.join(os.path.dirname(f), "bench.txt")).readline().strip()
            w(f"callgrind, {os.path.basename(f)[:-3]} ({what}): xr_xfer_create {cr:,} "
              f"instructions ({cr / D:.0f} per descriptor), xr_xfer_post {po:,} "
              f"({po / D:.1f} per descriptor, the provider calls it makes included).\n")

print("\n".join(out))
