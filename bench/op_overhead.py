"""The runtime's cost per op: 50 tiny ops (25 x 1x1 conv 8->8 at 4x4 + an Add), best of
five medians of 200 runs, in microseconds per run.

    python bench/op_overhead.py [--checkout PATH]

With --checkout the jitconv of another checkout (e.g. a git worktree of the parent commit)
is measured instead of the installed one; run the two alternately, a process each.
"""
import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkout", help="a jitconv checkout to import instead")
    args = ap.parse_args(argv)
    if args.checkout:
        sys.path.insert(0, HERE)
        from compare_engines import _import_checkout
        _import_checkout(os.path.abspath(args.checkout))
    import numpy as np
    import jitconv as jc
    rng = np.random.default_rng(0)
    g = jc.GraphBuilder()
    y = g.input("x", (1, 8, 4, 4))
    for _ in range(25):
        w = (rng.standard_normal((8, 8, 1, 1)) * 0.3).astype(np.float32)
        y = g.conv2d(y, w, activation="relu")
        y = g.add(y, y)
    g.output(y, "y")
    sess = jc.Session(g.build(), jc.Config(threads=1, progress=False))
    a = rng.standard_normal((1, 8, 4, 4)).astype(np.float32)
    for _ in range(50):
        sess.run(a)
    meds = []
    for _ in range(5):
        t = []
        for _ in range(200):
            t0 = time.perf_counter()
            sess.run(a)
            t.append(time.perf_counter() - t0)
        meds.append(statistics.median(t))
    print(f"{args.checkout or 'installed'}: {min(meds) * 1e6:.1f} us per run of 50 ops")
    return 0


if __name__ == "__main__":
    sys.exit(main())
