"""One Session shared by several threads: every answer right, plans switched safely.

The stress sizes are small for CI; JITCONV_STRESS_RUNS raises the runs per thread (the
note of issue 17 quotes a long run).
"""
import os
import threading

import numpy as np
import pytest

import jitconv as jc
from jitconv import models
from jitconv.runtime import session as session_mod
from jitconv.runtime.reference import evaluate

from helpers import assert_close, dynamic_graph, rand

RUNS = int(os.environ.get("JITCONV_STRESS_RUNS", "12"))


def _hammer(fn, jobs, threads):
    """Run fn(job) for every job from ``threads`` threads at once (released together);
    returns {job: result}; re-raises the first exception a thread hit."""
    results, errors = {}, []
    start = threading.Barrier(threads)
    chunks = [jobs[i::threads] for i in range(threads)]

    def work(chunk):
        try:
            start.wait()
            for job in chunk:
                results[job] = fn(job)
        except BaseException as e:      # reported below, in the test's thread
            errors.append(e)

    pool = [threading.Thread(target=work, args=(c,)) for c in chunks]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=600)
    assert not any(t.is_alive() for t in pool), "a thread hung"
    if errors:
        raise errors[0]
    return results


def _model():
    return models.mobilenet_v2(input_size=32, width=0.35, num_classes=10)


@pytest.mark.parametrize("threads,kernel_threads", [(4, 1), (2, 2)])
def test_one_session_many_threads_every_answer_right(rng, threads, kernel_threads):
    graph = _model()
    sess = jc.Session(graph, jc.Config(threads=kernel_threads))
    single = sess.info().arena_bytes
    name = graph.outputs[0].name
    xs = [rand(rng, 1, 3, 32, 32) for _ in range(threads * RUNS)]
    want = [sess.run(x)[name] for x in xs]                      # one thread: the truth
    assert_close(want[0], evaluate(graph, {graph.inputs[0].name: xs[0]})[name], rtol=1e-3)
    got = _hammer(lambda i: sess.run(xs[i])[name], list(range(len(xs))), threads)
    wrong = [i for i in range(len(xs)) if not np.array_equal(got[i], want[i])]
    assert not wrong, f"{len(wrong)} of {len(xs)} concurrent answers differ"
    info = sess.info()
    assert 1 <= info.workspaces <= threads
    assert info.arena_bytes == single * info.workspaces    # every workspace is counted


def test_threads_at_different_batch_sizes_switch_plans_safely(rng, monkeypatch):
    monkeypatch.setattr(session_mod, "PLAN_CACHE", 2)    # switches also rebuild plans
    graph = dynamic_graph(rng)
    sess = jc.Session(graph, jc.Config(threads=1))
    jobs = [(i, 1 + i % 4) for i in range(4 * RUNS)]
    xs = {j: rand(rng, j[1], 3, 8, 8) for j in jobs}
    got = _hammer(lambda j: sess.run(xs[j])["p"], jobs, 4)
    for j in jobs:
        assert_close(got[j], evaluate(graph, {"x": xs[j]})["p"], what=f"job {j}")


def test_resize_while_other_threads_run(rng):
    graph = dynamic_graph(rng)
    sess = jc.Session(graph, jc.Config(threads=1))
    x = rand(rng, 2, 3, 8, 8)
    want = evaluate(graph, {"x": x})["p"]
    stop = threading.Event()
    bad = []

    def runner():
        while not stop.is_set():
            got = sess.run(x)["p"]
            if not np.allclose(got, want, rtol=1e-4, atol=1e-5):
                bad.append(got)

    pool = [threading.Thread(target=runner) for _ in range(2)]
    for t in pool:
        t.start()
    try:
        for n in (1, 3, 2, 5, 1) * 3:
            sess.resize({"x": (n, 3, 8, 8)})
    finally:
        stop.set()
        for t in pool:
            t.join(timeout=120)
    assert not bad, f"{len(bad)} wrong answers while resizing"


def test_a_failing_run_gives_its_workspace_back(rng):
    graph = dynamic_graph(rng)
    sess = jc.Session(graph, jc.Config(threads=1))
    with pytest.raises(jc.InputError, match="'x' has shape"):
        sess.run(rand(rng, 1, 4, 8, 8))
    assert sess._inflight == 0 and len(sess._free) == len(sess._pool) == 1
    sess.resize({"x": (3, 3, 8, 8)})                     # would wait forever if leaked
    x = rand(rng, 3, 3, 8, 8)
    assert_close(sess.run(x)["p"], evaluate(graph, {"x": x})["p"])


_WORKQUEUE_SCRIPT = """
import threading, numpy as np, jitconv as jc, numba
from jitconv import models
g = models.mobilenet_v2(input_size=32, width=0.35, num_classes=10)
s = jc.Session(g, jc.Config(threads=2))
x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
want = s.run(x)["logits"]
bad = []
def work():
    for _ in range(20):
        if not np.array_equal(s.run(x)["logits"], want):
            bad.append(1)
ts = [threading.Thread(target=work) for _ in range(3)]
[t.start() for t in ts]
[t.join() for t in ts]
print(numba.threading_layer(), "wrong", len(bad))
"""


def test_workqueue_layer_runs_are_serialized_not_aborted():
    """Numba's workqueue layer terminates the process when two threads launch parallel
    regions at once; jitconv serializes runs under it."""
    import subprocess
    import sys
    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue")
    r = subprocess.run([sys.executable, "-c", _WORKQUEUE_SCRIPT], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["workqueue", "wrong", "0"]
