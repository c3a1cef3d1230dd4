"""Throughput of one Session shared by request threads: the workspace pool (what
Session.run does) against one lock around run (what a server would otherwise add).

    python bench/concurrent_runs.py [--model mobilenet_v2|resnet50] [--callers 2]
                                    [--runs 40] [--rounds 5]

Per round, in an interleaved order: for each Config(threads=1|2), ``callers`` threads
each run ``runs`` inferences on one shared session, (a) as they are and (b) behind one
threading.Lock; and one thread alone. Prints the median images/s over the rounds and the
pool/lock ratio.
"""
import argparse
import statistics
import threading
import time

import numpy as np

import jitconv as jc
from jitconv import models


def throughput(sess, x, callers, runs, lock):
    def work():
        for _ in range(runs):
            if lock is None:
                sess.run(x)
            else:
                with lock:
                    sess.run(x)

    pool = [threading.Thread(target=work) for _ in range(callers)]
    t0 = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return callers * runs / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mobilenet_v2", choices=["mobilenet_v2", "resnet50"])
    ap.add_argument("--callers", type=int, default=2)
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    graph = getattr(models, a.model)()
    x = np.random.default_rng(0).standard_normal(graph.inputs[0].shape).astype(np.float32)
    sessions = {t: jc.Session(graph, jc.Config(threads=t)) for t in (1, 2)}
    for s in sessions.values():
        for _ in range(3):
            s.run(x)
    cases = [(t, mode) for t in (1, 2) for mode in ("alone", "lock", "pool")]
    got = {c: [] for c in cases}
    for r in range(a.rounds):
        for t, mode in cases if r % 2 == 0 else cases[::-1]:
            sess = sessions[t]
            if mode == "alone":
                got[(t, mode)].append(throughput(sess, x, 1, a.runs, None))
            else:
                lock = threading.Lock() if mode == "lock" else None
                got[(t, mode)].append(throughput(sess, x, a.callers, a.runs // a.callers,
                                                 lock))
    print(f"{a.model}, {a.callers} request threads, {a.rounds} rounds, img/s medians")
    print(f"{'kernel threads':>14} {'alone':>8} {'lock':>8} {'pool':>8} {'pool/lock':>9}"
          f" {'workspaces':>10}")
    for t in (1, 2):
        m = {mode: statistics.median(got[(t, mode)]) for mode in ("alone", "lock", "pool")}
        print(f"{t:>14} {m['alone']:8.1f} {m['lock']:8.1f} {m['pool']:8.1f} "
              f"{m['pool'] / m['lock']:9.2f} {sessions[t].info().workspaces:>10}")


if __name__ == "__main__":
    main()
