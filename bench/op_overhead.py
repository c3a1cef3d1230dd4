"""Executor overhead per op: a chain of 100 Relu ops on a tiny tensor.

    python bench/op_overhead.py

Prints the median time per op (session run time / ops); the kernels do almost nothing,
so this is what the executor costs around each kernel call.
"""
import statistics
import time

import numpy as np

import jitconv as jc


def main(ops=100, runs=200):
    g = jc.GraphBuilder("relu_chain")
    x = g.input("x", (1, 8))
    for i in range(ops):
        x = g.relu(x, name=f"relu{i}")
    g.output(x, "y")
    sess = jc.Session(g.build(), jc.Config(threads=1))
    feed = np.ones((1, 8), np.float32)
    sess.run(feed)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(feed)
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    print(f"{ops} tiny ops: median run {med * 1e6:.1f} us, {med / ops * 1e6:.2f} us per op")


if __name__ == "__main__":
    main()
