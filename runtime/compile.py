"""Compiling a session's kernels in several processes at once.

Numba compiles one function at a time per process (a global lock), and the first run of a
model spends nearly all of its time there: ResNet-50 with an empty cache took 47 s on two
cores, 45 s of it compiling. Processes compile independently and share Numba's on-disk
cache, so ``precompile`` splits the session's kernels into ``jobs`` shares by their
measured compile cost, compiles one share in this process and each other share in a
process of its own (``python -m jitconv.runtime.compile``, which loads the model file, a
temporary .jcm for a Graph, and answers with JSON; a plain subprocess rather than
multiprocessing, whose "spawn" re-runs the caller's script), and waits for all of them. The session's next run then loads every kernel from the
cache.

Each share runs the ops of its kernels once on the session's workspace (zero inputs); an
op that fails there is left for the session's own run to compile and report.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile

# Seconds to compile each kernel family cold, with what it calls (ResNet-50 / MobileNetV2,
# numba 0.68, 2-core Xeon: `jitconv compile --jobs 1` on each). Only the ratios
# matter: they balance the shares. Kernels not listed count 1.
COST = {
    "conv2d_winograd": 14.0,
    "conv2d_tiled": 11.0,
    "conv2d_chanvec": 7.0,
    "conv2d_depthwise": 11.0,
    "conv2d_int8dot": 8.0,
    "max_pool2d": 3.0,
    "gemm_nt": 1.5,
}


def shares(kernels, jobs: int) -> list:
    """Split kernel names into at most ``jobs`` lists of about equal COST (longest first,
    each to the lightest share); the heaviest share comes first."""
    bins = [[0.0, []] for _ in range(max(1, jobs))]
    for name in sorted(set(kernels), key=lambda k: (-COST.get(k, 1.0), k)):
        lightest = min(bins, key=lambda b: b[0])
        lightest[0] += COST.get(name, 1.0)
        lightest[1].append(name)
    return [names for _, names in sorted(bins, key=lambda b: -b[0]) if names]


def default_jobs() -> int:
    """Processes for compiling: the cores this process may use, at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


def precompile(model, config=None, *, jobs: int | None = None, input_shapes=None) -> dict:
    """Compile (or load from Numba's cache) every kernel a session of ``model`` runs.

    model: a Graph, or a path to an .onnx or .jcm file (``input_shapes`` as for
    ``jitconv.load``); config: the Config the sessions will use (kernel choice depends on
    it). ``jobs`` processes share the work (default: the usable cores, at most 8); 1
    compiles here only. Returns {kernel name: seconds its ops took in their first run,
    compiling included}. Later sessions, in this process or any other on this machine,
    load the kernels from the cache.
    """
    from jitconv import load
    from jitconv.errors import JitconvError
    from .config import Config
    from .modelfile import save
    from .session import Session
    config = Config() if config is None else config
    jobs = default_jobs() if jobs is None else int(jobs)
    path = None if hasattr(model, "nodes") else os.fspath(model)
    graph = model if path is None else load(path, input_shapes=input_shapes)
    sess = Session(graph, config)
    parts = shares([step.kernel.name for step in sess._steps], jobs)
    if len(parts) < 2:
        return sess.warm_kernels(set().union(*parts))
    times = {}
    with tempfile.TemporaryDirectory(prefix="jitconv-compile-") as folder:
        if path is None:
            path = os.path.join(folder, "model.jcm")
            save(graph, path)
            input_shapes = None
        job = {"path": path, "input_shapes": input_shapes, "config": dataclasses.asdict(config),
               "shapes": sess.input_shapes}
        env = dict(os.environ, JITCONV_PROGRESS="0")   # one voice: the caller's
        workers = [subprocess.Popen([sys.executable, "-m", "jitconv.runtime.compile"],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                    env=env)
                   for _ in parts[1:]]
        for w, part in zip(workers, parts[1:]):
            w.stdin.write(json.dumps(dict(job, kernels=part)))
            w.stdin.close()
        try:
            times.update(sess.warm_kernels(set(parts[0])))
        finally:
            answers = [(w.stdout.read(), w.wait()) for w in workers]
        for (out, rc), part in zip(answers, parts[1:]):
            if rc != 0:
                raise JitconvError(f"precompile: the process compiling {', '.join(part)} "
                                   f"failed (exit status {rc}; its error is above)")
            times.update(json.loads(out))
    return times


def _worker_main() -> None:
    """``python -m jitconv.runtime.compile``: one share, as JSON on stdin and stdout."""
    from jitconv import load
    from jitconv.runtime.config import Config
    from jitconv.runtime.session import Session
    job = json.loads(sys.stdin.read())
    shapes = job["input_shapes"]
    if shapes is not None:
        shapes = {k: tuple(v) for k, v in shapes.items()}
    sess = Session(load(job["path"], input_shapes=shapes), Config(**job["config"]))
    want = {k: tuple(v) for k, v in job["shapes"].items()}
    if dict(sess.input_shapes) != want:
        sess.resize(want)
    print(json.dumps(sess.warm_kernels(set(job["kernels"]))))


if __name__ == "__main__":
    _worker_main()
