"""`jitconv demo`: run the built-in MobileNetV2-style model under each supported config."""
from __future__ import annotations

import statistics
import time

import numpy as np

from jitconv.models import mobilenet_v2
from jitconv.progress import CompileProgress, wanted
from jitconv.runtime.compile import default_jobs, precompile_many
from jitconv.runtime.config import Config
from jitconv.runtime.reference import evaluate
from jitconv.runtime.session import Session

STORAGES = ("fp32", "fp16", "int8", "int4")
MEMORY_MODES = ("normal", "high", "low")


def demo_rows(threads=(1, 2)):
    """(storage, Config) pairs the demo runs: every storage x memory mode at the most
    threads, fp32 at the other thread counts, and fp32 at precision high and low."""
    top = max(threads)
    rows = [(s, Config(threads=top, memory=m)) for s in STORAGES for m in MEMORY_MODES]
    rows += [("fp32", Config(threads=t)) for t in threads if t != top]
    rows += [("fp32", Config(threads=top, precision=p)) for p in ("high", "low")]
    return rows


def median_latency(sess, x, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        sess.run(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def _table(header, rows, out):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    out("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    out("  ".join("-" * w for w in widths))
    for r in rows:
        out("  ".join(c.ljust(w) for c, w in zip(r, widths)))


def run_demo(*, input_size=224, repeat=10, threads=(1, 2), seed=0, out=print, jobs=1):
    """Build the model, run each (storage, config), print and return the table rows.

    Error columns compare the logits: "kernel err" against the NumPy reference computed
    with the same (dequantized) weights, "vs fp32" against the fp32 model's reference,
    both as max abs error relative to max |reference|. With ``jobs`` > 1 (None: the usable
    cores, at most 8) the kernels of every config are compiled first, in that many
    processes (runtime/compile.py). The default, 1, compiles as each config first runs:
    on the 2-vCPU dev machine two compiling processes were slower than one (cold demo
    91 s vs 79 s: they duplicate shared helpers and the two vCPUs slow each other).
    """
    from jitconv import quantize
    graph = mobilenet_v2(input_size=input_size, seed=seed)
    x = np.random.default_rng(seed).standard_normal((1, 3, input_size, input_size)) \
        .astype(np.float32)
    out(f"model: {graph.name}, {len(graph.nodes)} nodes, input {x.shape}, "
        f"fp32 weights {graph.weight_bytes:,} B")
    graphs = {s: graph if s == "fp32" else quantize(graph, s) for s in STORAGES}
    t0 = time.perf_counter()
    refs = {s: evaluate(g, {"input": x})["logits"] for s, g in graphs.items()}
    out(f"NumPy references computed in {time.perf_counter() - t0:.1f}s")
    jobs = default_jobs() if jobs is None else jobs
    if jobs > 1:
        t0 = time.perf_counter()
        done = precompile_many([(graphs[s], cfg) for s, cfg in demo_rows(threads)], jobs=jobs)
        out(f"{len(done)} kernels compiled or loaded from the cache in "
            f"{time.perf_counter() - t0:.1f}s ({jobs} processes)")
    rows = []
    for storage, cfg in demo_rows(threads):
        sess = Session(graphs[storage], cfg)
        # the bar names the config; JITCONV_PROGRESS=0 keeps the demo quiet too
        sess.warmup(progress=CompileProgress(f"compiling/warming {storage} {cfg.label()}")
                    if wanted(cfg) else None)
        med, best = median_latency(sess, x, repeat)
        got = sess.run(x)["logits"]
        info = sess.info()
        rel = [float(np.max(np.abs(got - refs[s]))) / float(np.max(np.abs(refs[s])))
               for s in (storage, "fp32")]
        rows.append((storage, cfg.label(), f"{med * 1e3:.2f}", f"{best * 1e3:.2f}",
                     f"{info.weight_bytes:,}", f"{info.arena_bytes:,}",
                     f"{info.scratch_bytes:,}", f"{rel[0]:.1e}", f"{rel[1]:.1e}"))
    _table(("weights", "config", "median ms", "min ms", "weight B", "arena B", "scratch B",
            "kernel err", "vs fp32"), rows, out)
    return rows
