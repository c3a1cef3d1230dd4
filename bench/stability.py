"""Resident memory over many runs of the demo model: does anything leak per run?

    python bench/stability.py [--runs 10000] [--storage fp32] [--memory normal]
                              [--input-size 224] [--callers 1]

Warms up for 100 runs, then runs ``--runs`` more (split over ``--callers`` threads sharing
one session) and prints RSS (VmRSS from /proc/self/status) every tenth of the way, and the
growth from the first sample to the last.
"""
import argparse
import threading
import time

import numpy as np

import jitconv as jc
from jitconv import models


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def run_many(sess, x, runs, callers):
    def work(n):
        for _ in range(n):
            sess.run(x)

    pool = [threading.Thread(target=work, args=(runs // callers,)) for _ in range(callers)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


def measure(graph, config, runs, callers=1, samples=10, warmup=100):
    """[(runs done, RSS bytes)]: one sample after the warm-up, then ``samples`` more."""
    sess = jc.Session(graph, config)
    x = np.random.default_rng(0).standard_normal(graph.inputs[0].shape).astype(np.float32)
    run_many(sess, x, warmup, 1)
    got = [(0, rss_bytes())]
    step = max(1, runs // samples)
    for done in range(step, runs + 1, step):
        run_many(sess, x, step, callers)
        got.append((done, rss_bytes()))
    return got


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10000)
    ap.add_argument("--storage", default="fp32", choices=["fp32", "fp16", "int8", "int4"])
    ap.add_argument("--memory", default="normal", choices=["normal", "high", "low"])
    ap.add_argument("--precision", default="normal", choices=["normal", "high", "low"])
    ap.add_argument("--input-size", type=int, default=224)
    ap.add_argument("--callers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    graph = models.mobilenet_v2(input_size=a.input_size)
    if a.storage != "fp32":
        graph = jc.quantize(graph, a.storage)
    config = jc.Config(threads=a.threads, memory=a.memory, precision=a.precision)
    t0 = time.perf_counter()
    got = measure(graph, config, a.runs, a.callers)
    secs = time.perf_counter() - t0
    print(f"mobilenet_v2 {a.input_size}px {a.storage} {config.label()}, {a.runs} runs from "
          f"{a.callers} thread(s) in {secs:.0f} s")
    for done, rss in got:
        print(f"  after {done:>6} runs: RSS {rss / 2**20:8.1f} MiB")
    first, last = got[0][1], got[-1][1]
    print(f"RSS growth: {(last - first) / 2**20:+.2f} MiB ({100 * (last - first) / first:+.2f}%)")


if __name__ == "__main__":
    main()
