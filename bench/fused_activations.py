"""Convs followed by SiLU (Sigmoid -> Mul) or GELU: jitconv session medians.

Run it in this checkout and in an older one (a ``git worktree``) to see what fusing the
activation into the conv changes::

    python bench/fused_activations.py --threads 2 1

Model: four 3x3 32 -> 32 convs at 56x56, each followed by the activation as ONNX ops.
"""
import argparse
import statistics
import time

import numpy as np

import jitconv as jc


def model(act, rng):
    g = jc.GraphBuilder(f"conv_{act}")
    t = g.input("x", (1, 32, 56, 56))
    for _ in range(4):
        t = g.conv2d(t, (rng.standard_normal((32, 32, 3, 3)) * 0.05).astype(np.float32),
                     np.zeros(32, np.float32), padding=1)
        t = g.mul(t, g.sigmoid(t)) if act == "silu" else g.gelu(t)
    g.output(t, "y")
    return g.build()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((1, 32, 56, 56)).astype(np.float32)}
    for th in args.threads:
        for act in ("silu", "gelu"):
            sess = jc.Session(model(act, rng), jc.Config(threads=th, progress=False))
            sess.run(feeds)
            meds = []
            for _ in range(args.rounds):
                ts = []
                for _ in range(args.runs):
                    t0 = time.perf_counter()
                    sess.run(feeds)
                    ts.append(time.perf_counter() - t0)
                meds.append(statistics.median(ts))
            print(f"{act:5s} threads={th}: {statistics.median(meds) * 1e3:.3f} ms, "
                  f"{len(sess.info().ops)} ops")


if __name__ == "__main__":
    main()
