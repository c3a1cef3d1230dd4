"""Weight-storage ratios on model M, side by side in one process.

    python bench/storage_ratios.py [--threads 2] [--rounds 5] [--runs 10]

Prints, per storage in memory=low: resident weight bytes and median latency, each as a
ratio to fp32 in memory=low (the same register-tiled family, no Winograd), and the same for memory=normal.
Variants are interleaved round by round, and each round's median is kept; the table
shows the median over rounds, because this VM's timings drift.
"""
import argparse
import os
import statistics
import sys
import time


sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "asv_bench"))
import jitconv as jc  # noqa: E402
from benchmarks.common import feeds_for, model_m, stored  # noqa: E402

STORAGES = ("fp32", "fp16", "int8", "int4")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args(argv)
    base = model_m()
    feeds = feeds_for(base)
    sessions = {}
    for w in STORAGES:
        g = stored(base, w)
        for memory in ("low", "normal"):
            for precision in ("normal", "low"):
                s = jc.Session(g, jc.Config(threads=args.threads, memory=memory,
                                            precision=precision))
                s.warmup()
                sessions[(w, memory, precision)] = s
    medians = {k: [] for k in sessions}
    for _ in range(args.rounds):
        for key, sess in sessions.items():
            times = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                sess.run(feeds)
                times.append(time.perf_counter() - t0)
            medians[key].append(statistics.median(times))
    lat = {k: statistics.median(v) for k, v in medians.items()}
    base_bytes = sessions[("fp32", "low", "normal")].info().weight_bytes
    base_ms = lat[("fp32", "low", "normal")]
    print(f"model M, {args.threads} threads, {args.rounds} rounds x {args.runs} runs")
    print(f"{'weights':8} {'memory':7} {'precision':9} {'weight B':>11} {'bytes/fp32':>10} "
          f"{'median ms':>10} {'time/fp32':>9}")
    for (w, memory, precision), sess in sessions.items():
        b = sess.info().weight_bytes
        ms = lat[(w, memory, precision)]
        print(f"{w:8} {memory:7} {precision:9} {b:>11,} {b / base_bytes:>10.3f} "
              f"{ms * 1e3:>10.2f} {ms / base_ms:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
