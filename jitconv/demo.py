"""`jitconv demo`: run the built-in MobileNetV2-style model under each supported config."""
from __future__ import annotations

import statistics
import time

import numpy as np

from jitconv.models import mobilenet_v2
from jitconv.progress import ProgressLine
from jitconv.runtime.config import Config
from jitconv.runtime.reference import evaluate
from jitconv.runtime.session import Session


def demo_configs(threads=(1, 2)):
    """The configs the demo runs: every memory mode, every precision, 1 and 2 threads."""
    configs = [Config(threads=t, memory=m) for t in threads for m in ("normal", "high", "low")]
    configs += [Config(threads=max(threads), precision=p) for p in ("high", "low")]
    return configs


def median_latency(sess, x, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        sess.run(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def run_demo(*, input_size=224, repeat=10, threads=(1, 2), seed=0, out=print):
    """Build the model, run each config, print and return the table rows.

    The error columns compare the logits with the fp32 NumPy reference (max abs, and
    max abs relative to max |reference|).
    """
    graph = mobilenet_v2(input_size=input_size, seed=seed)
    x = np.random.default_rng(seed).standard_normal((1, 3, input_size, input_size)) \
        .astype(np.float32)
    out(f"model: {graph.name}, {len(graph.nodes)} nodes, input {x.shape}, "
        f"fp32 weights {graph.weight_bytes:,} B")
    t0 = time.perf_counter()
    ref = evaluate(graph, {"input": x})["logits"]
    out(f"NumPy reference computed in {time.perf_counter() - t0:.1f}s")
    rows = []
    header = ("config", "median ms", "min ms", "weight B", "arena B", "scratch B",
              "max abs err", "rel err")
    for cfg in demo_configs(threads):
        sess = Session(graph, cfg)
        sess.warmup(progress=ProgressLine(f"compiling/warming {cfg.label()}"))
        med, best = median_latency(sess, x, repeat)
        err = float(np.max(np.abs(sess.run(x)["logits"] - ref)))
        info = sess.info()
        rows.append((cfg.label(), f"{med * 1e3:.2f}", f"{best * 1e3:.2f}",
                     f"{info.weight_bytes:,}", f"{info.arena_bytes:,}",
                     f"{info.scratch_bytes:,}", f"{err:.2e}",
                     f"{err / float(np.max(np.abs(ref))):.1e}"))
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    out("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    out("  ".join("-" * w for w in widths))
    for r in rows:
        out("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    return rows
