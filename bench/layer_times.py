"""jitconv alone on yardstick layers A-I: best-of-rounds median time per layer, one line.

    python bench/layer_times.py THREADS LAYERS [--rounds 7] [--runs 20]
    python bench/layer_times.py 1 BFG

For quick A/B work on a kernel (bench/ab_kernels.sh runs it once per variant, round by
round); the side-by-side numbers against onnxruntime come from compare_onnxruntime.py.
The best round is quoted because on a shared 2-core VM whole rounds run slow (2x) when a
neighbour is busy; compare variants only within one interleaved run.
"""
import argparse
import statistics
import time

import numpy as np

import jitconv as jc
from jitconv.models import CONV_LAYERS, conv_layer


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("threads", type=int)
    ap.add_argument("layers", help="letters, e.g. ABF")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args(argv)
    cells = []
    for name in args.layers:
        if name not in CONV_LAYERS:
            raise SystemExit(f"unknown layer {name!r}; layers are {''.join(CONV_LAYERS)}")
        graph = conv_layer(name)
        sess = jc.Session(graph, jc.Config(threads=args.threads))
        x = np.random.default_rng(0).standard_normal(graph.inputs[0].shape).astype(np.float32)
        for _ in range(5):
            sess.run(x)
        best = float("inf")
        for _ in range(args.rounds):
            times = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                sess.run(x)
                times.append(time.perf_counter() - t0)
            best = min(best, statistics.median(times))
        info = sess.info()
        cells.append(f"{name} {best * 1e3:.3f}ms {info.flops / best / 1e9:.0f}GF/s "
                     f"[{info.ops[0].kernel}]")
    print(f"t={args.threads}: " + "  ".join(cells), flush=True)


if __name__ == "__main__":
    main()
