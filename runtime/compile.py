"""Compiling a session's kernels in several processes at once.

Numba compiles one function at a time per process (a global lock), and the first run of a
model spends nearly all of its time there: ResNet-50 with an empty cache took 47 s on two
cores, 45 s of it compiling. Processes compile independently and share Numba's on-disk
cache, so ``precompile`` splits the session's kernels into ``jobs`` shares by their
measured compile cost, compiles one share in this process and each other share in a
process of its own, and waits for all of them; the session's next run then loads every
kernel from the cache. A worker is ``python -m jitconv.runtime.compile``: it loads the
model file (a temporary .jcm for a Graph) and answers in JSON. It is a plain subprocess,
not multiprocessing, whose "spawn" would re-run the caller's script.

Each share runs the ops of its kernels once on a session's workspace (zero inputs). A
share that fails raises a JitconvError naming its kernels (a worker's own error is printed
above it).
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile

# Seconds to compile each kernel cold, with what it calls (numba 0.68, 2-core Xeon: the
# demo's configs with precompile_many(jobs=1), and ResNet-50). Only the ratios matter:
# they balance the shares. Kernels not listed count 1.
COST = {
    # the blocked kernels (ResNet-50 / MobileNetV2, after the job functions of
    # kernels/jobs.py); their stored-weight variants share the compiled code
    "conv2d_blocked": 5.0,
    "depthwise_blocked": 2.0,
    "max_pool_blocked": 1.9,
    "conv2d_tiled": 18.0,         # its fp32 specialization also holds the fp16 decoder
    "conv2d_depthwise": 15.0,
    "conv2d_winograd": 14.0,
    "conv2d_tiled_int8w": 10.5,
    "conv2d_tiled_int4w": 10.5,
    "conv2d_int8dot": 8.0,
    "conv2d_chanvec": 5.0,
    "gemm_nt_int4w": 3.5,
    "max_pool2d": 3.0,
    "gemm_nt_fp16w": 2.5,
    "gemm_nt_int8w": 2.0,
    "conv2d_depthwise_fp16w": 1.5,
    "gemm_nt": 1.5,
}


def shares(kernels, jobs: int) -> list:
    """Split kernels (names, or (name, storage) pairs) into at most ``jobs`` lists of
    about equal COST of their names (longest first, each to the lightest share); the
    heaviest share comes first."""
    def cost(k):
        return COST.get(k if isinstance(k, str) else k[0], 1.0)

    bins = [[0.0, []] for _ in range(max(1, jobs))]
    for k in sorted(set(kernels), key=lambda k: (-cost(k), str(k))):
        lightest = min(bins, key=lambda b: b[0])
        lightest[0] += cost(k)
        lightest[1].append(k)
    return [names for _, names in sorted(bins, key=lambda b: -b[0]) if names]


def kernel_key(step):
    """What tells a step's compiled code apart: its kernel and the storage it reads."""
    return step.kernel.name, str(step.kernel.storage).split(" ")[0]


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
    times = {}
    for (name, _), t in precompile_many([(model, config)], jobs=jobs,
                                        input_shapes=input_shapes).items():
        times[name] = times.get(name, 0.0) + t
    return times


def precompile_many(items, *, jobs: int | None = None, input_shapes=None) -> dict:
    """``precompile`` for several (model, config) pairs at once (the demo's configs, say):
    each distinct (kernel, storage) is compiled once, by one of ``jobs`` processes.
    Returns {(kernel name, storage): seconds}."""
    from jitconv import load
    from jitconv.errors import JitconvError
    from .config import Config
    from .modelfile import save
    from .session import Session
    jobs = default_jobs() if jobs is None else int(jobs)
    prepared, owner = [], {}
    for i, (model, config) in enumerate(items):
        config = Config() if config is None else config
        path = None if hasattr(model, "nodes") else os.fspath(model)
        graph = model if path is None else load(path, input_shapes=input_shapes)
        sess = Session(graph, config)
        prepared.append((graph, path, config, sess))
        for step in sess._steps:
            owner.setdefault(kernel_key(step), i)
    parts = shares(owner, jobs)
    times = {}

    def mine(part):
        for key in part:
            times.update(prepared[owner[key]][3].warm_kernels({key}))

    if len(parts) < 2:
        mine(parts[0] if parts else [])
        return times
    with tempfile.TemporaryDirectory(prefix="jitconv-compile-") as folder:
        jobs_of = []
        for part in parts[1:]:
            todo = []
            for i in sorted({owner[k] for k in part}):
                graph, path, config, sess = prepared[i]
                if path is None:
                    path = os.path.join(folder, f"model{i}.jcm")
                    if not os.path.exists(path):
                        save(graph, path)
                shapes = input_shapes if path.lower().endswith(".onnx") else None
                todo.append({"path": path, "input_shapes": shapes,
                             "config": dataclasses.asdict(config),
                             "shapes": sess.input_shapes,
                             "kernels": [list(k) for k in part if owner[k] == i]})
            jobs_of.append(todo)
        env = dict(os.environ, JITCONV_PROGRESS="0")   # one voice: the caller's
        workers = [subprocess.Popen([sys.executable, "-m", "jitconv.runtime.compile"],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                    env=env)
                   for _ in jobs_of]
        for w, todo in zip(workers, jobs_of):
            w.stdin.write(json.dumps(todo))
            w.stdin.close()
        try:
            mine(parts[0])
        finally:
            answers = [(w.stdout.read(), w.wait()) for w in workers]
        for (out, rc), part in zip(answers, parts[1:]):
            if rc != 0:
                names = ", ".join(sorted({k[0] for k in part}))
                raise JitconvError(f"precompile: the process compiling {names} failed "
                                   f"(exit status {rc}; its error is above)")
            for name, storage, t in json.loads(out):
                times[(name, storage)] = t
    return times


def _worker_main() -> None:
    """``python -m jitconv.runtime.compile``: a list of jobs (one per model and config) as
    JSON on stdin; [[kernel, storage, seconds], ...] as JSON on stdout."""
    from jitconv import load
    from jitconv.runtime.config import Config
    from jitconv.runtime.session import Session
    out = []
    for job in json.loads(sys.stdin.read()):
        shapes = job["input_shapes"]
        if shapes is not None:
            shapes = {k: tuple(v) for k, v in shapes.items()}
        sess = Session(load(job["path"], input_shapes=shapes), Config(**job["config"]))
        want = {k: tuple(v) for k, v in job["shapes"].items()}
        if dict(sess.input_shapes) != want:
            sess.resize(want)
        for k in job["kernels"]:
            for (name, storage), t in sess.warm_kernels({tuple(k)}).items():
                out.append([name, storage, t])
    print(json.dumps(out))


if __name__ == "__main__":
    _worker_main()
