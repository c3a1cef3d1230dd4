"""Nothing grows per run: resident memory and Python's own allocations stay flat over
many runs (bench/stability.py does 10,000 runs of the full-size demo model)."""
import gc
import threading
import tracemalloc

import numpy as np

import jitconv as jc
from jitconv import models


def _rss():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def _runs(sess, x, n, callers=1):
    def work():
        for _ in range(n // callers):
            sess.run(x)
    pool = [threading.Thread(target=work) for _ in range(callers)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


def test_rss_and_python_allocations_stay_flat_over_many_runs():
    graph = models.mobilenet_v2(input_size=32, width=0.35, num_classes=10)
    x = np.random.default_rng(0).standard_normal(graph.inputs[0].shape).astype(np.float32)
    sess = jc.Session(graph, jc.Config(threads=2))
    _runs(sess, x, 200, callers=2)                     # warm: workspaces, caches, pages
    gc.collect()
    rss0 = _rss()
    tracemalloc.start()
    try:
        _runs(sess, x, 200, callers=2)
        gc.collect()
        py0 = tracemalloc.get_traced_memory()[0]
        _runs(sess, x, 1000, callers=2)
        gc.collect()
        py1 = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    rss1 = _rss()
    assert py1 - py0 < 64 * 1024, f"Python allocations grew {py1 - py0} B over 1000 runs"
    assert rss1 - rss0 < 0.01 * rss0, f"RSS grew {rss1 - rss0} B from {rss0} B"
    assert sess.info().workspaces <= 2
