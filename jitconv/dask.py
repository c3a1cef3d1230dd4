"""Batch inference over a Dask array: ``jitconv.dask.predict``.

Needs the extra: ``pip install "jitconv[dask]"`` (dask and distributed).

Each chunk of the image array along axis 0 becomes one task. A task runs in whichever
process Dask gives it (a ``distributed`` worker, or the local threaded scheduler) and
takes that process's session for (model file, config) from a per-process cache: the model
is loaded once per process and config (a .jcm is memory-mapped), and every later task
reuses the session. Tasks of one process take turns on a session (a Session serves one
run at a time), so the session's thread count is the worker's own thread count
(``threads_per_worker``): a 1-worker x 2-thread cluster runs 2-thread sessions, a 2 x 1
cluster two 1-thread sessions, and the cores are never oversubscribed. Dask's nanny sets
OMP/MKL/OPENBLAS threads to 1 but not Numba's; an explicit ``Config(threads=)`` wins.

The model path must be readable by every worker (a shared or identical file system).
Tasks are pure, so a worker that dies mid-run has its tasks rerun by Dask elsewhere.
"""
from __future__ import annotations

import dataclasses
import operator
import os
import threading

import numpy as np

from jitconv.errors import ConfigError, InputError, JitconvError

try:
    import dask
    import dask.array as da
except ImportError:                                      # pragma: no cover - the extra
    raise JitconvError('jitconv.dask needs dask: pip install "jitconv[dask]"') from None

_SESSIONS: dict = {}       # (path, mtime, size, config) -> (Session, lock)
_CACHE_LOCK = threading.Lock()
_LOADS = 0


def loads() -> int:
    """How many times this process loaded a model for predict() (tests and monitoring:
    ``client.run(jitconv.dask.loads)`` gives it per worker)."""
    return _LOADS


def _worker_threads():
    """The distributed worker's thread count, or None outside a worker."""
    try:
        from distributed import get_worker  # noqa: PLC0415
        w = get_worker()
    except (ImportError, ValueError):
        return None
    n = getattr(w, "nthreads", None) or getattr(getattr(w, "state", None), "nthreads", None)
    return int(n) if n else None


def _batch_dynamic(graph):
    """The graph with axis 0 of its input dynamic (chunks differ in length)."""
    from jitconv.runtime.ir import Graph, TensorSpec  # noqa: PLC0415
    spec = graph.inputs[0]
    if 0 in spec.dynamic or graph.fixed_input_shapes:
        return graph
    inputs = [TensorSpec(spec.name, spec.shape, spec.dtype, tuple(sorted({0, *spec.dynamic})))]
    return Graph(inputs, graph.outputs, graph.nodes, graph.constants, graph.name,
                 fixed_input_shapes=graph.fixed_input_shapes)


def _session(path, config):
    import jitconv as jc  # noqa: PLC0415
    global _LOADS
    config = config or jc.Config()
    if config.threads is None:
        threads = _worker_threads()
        if threads:
            config = dataclasses.replace(config, threads=threads)
    st = os.stat(path)
    key = (path, st.st_mtime_ns, st.st_size, config)
    with _CACHE_LOCK:
        entry = _SESSIONS.get(key)
        if entry is None:
            entry = (jc.Session(_batch_dynamic(jc.load(path)), config), threading.Lock())
            _LOADS += 1
            _SESSIONS[key] = entry
    return entry


def _run_chunk(block, path, config, batch, name, outputs):
    """One task: the chunk through the process's session, in slices of ``batch`` rows."""
    sess, lock = _session(path, config)
    x = np.ascontiguousarray(block, dtype=np.float32)
    n = x.shape[0]
    step = batch or max(n, 1)
    parts = {o: [] for o in outputs}
    with lock:
        for i in range(0, max(n, 1), step):
            res = sess.run({name: x[i:i + step]})
            for o in outputs:
                parts[o].append(res[o])
    return {o: p[0] if len(p) == 1 else np.concatenate(p) for o, p in parts.items()}


def _model_path(model):
    try:
        path = os.path.abspath(os.fspath(model))
    except TypeError:
        raise InputError(f"predict: model must be a path to a .onnx or .jcm file, got "
                         f"{type(model).__name__}") from None
    if os.path.splitext(path)[1].lower() not in (".onnx", ".jcm"):
        raise InputError(f"predict: {path}: jitconv.dask reads .onnx and .jcm model files")
    if not os.path.isfile(path):
        raise InputError(f"predict: {path}: no such file")
    return path


def predict(model, images, *, config=None, batch=None):
    """Run a model over a Dask array of images, chunk by chunk, on Dask's workers.

    Parameters
    ----------
    model : str or os.PathLike
        A .onnx or .jcm file, readable at this path by every worker.
    images : dask.array.Array
        The model's one input, stacked along axis 0 and chunked along it (other axes
        are merged into one chunk); converted to float32.
    config : jitconv.Config, optional
        The session config on the workers; threads default to the worker's own count.
    batch : int, optional
        Most rows per Session.run: a larger chunk runs in slices (bounds the arena).

    Returns
    -------
    dask.array.Array, or dict of them
        The first output, or {name: array} when the model has several outputs, each
        chunked along axis 0 like ``images``.

    Examples
    --------
    >>> from distributed import Client, LocalCluster          # doctest: +SKIP
    >>> client = Client(LocalCluster(n_workers=2, threads_per_worker=1))  # doctest: +SKIP
    >>> probs = jitconv.dask.predict("model.jcm", images, batch=16).compute()  # doctest: +SKIP
    """
    import jitconv as jc  # noqa: PLC0415
    from jitconv.runtime.shapes import infer_shapes  # noqa: PLC0415
    path = _model_path(model)
    if not isinstance(images, da.Array):
        raise InputError(f"predict: images must be a dask.array.Array chunked along axis 0, "
                         f"got {type(images).__name__} (wrap it with dask.array.from_array)")
    if config is not None and not isinstance(config, jc.Config):
        raise ConfigError(f"predict: config must be a jitconv.Config, got "
                          f"{type(config).__name__}")
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int)
                              or batch < 1):
        raise ConfigError(f"predict: batch={batch!r} must be a positive int or None")
    graph = jc.load(path)            # here only for names and shapes (a .jcm is mmapped)
    if len(graph.inputs) != 1:
        raise InputError(f"predict: {path} has {len(graph.inputs)} inputs "
                         f"({', '.join(s.name for s in graph.inputs)}); predict feeds one")
    spec = graph.inputs[0]
    if images.ndim != len(spec.shape) or any(
            d != want for a, (d, want) in enumerate(zip(images.shape, spec.shape))
            if a > 0 and a not in spec.dynamic):
        raise InputError(f"predict: images of shape {images.shape} do not fit input "
                         f"{spec.name!r} of {path}, shape {spec.shape} (axis 0 is the batch)")
    if any(np.isnan(c) for c in images.chunks[0]):
        raise InputError("predict: images have unknown chunk sizes along axis 0; call "
                         "images.compute_chunk_sizes() first")
    if graph.fixed_input_shapes and set(images.chunks[0]) != {spec.shape[0]}:
        raise InputError(f"predict: {path} computes shapes folded for input shape "
                         f"{spec.shape} at import, so every chunk must hold "
                         f"{spec.shape[0]} images; rechunk images to that size")
    images = images.rechunk({a: -1 for a in range(1, images.ndim)}).astype(np.float32)
    outputs = [o.name for o in graph.outputs]
    shapes = {}
    for n in set(images.chunks[0]) | {images.chunks[0][0] + 1}:
        try:
            inferred = infer_shapes(graph, {spec.name: (n,) + tuple(images.shape[1:])})
        except JitconvError as e:
            raise InputError(f"predict: {path} cannot run a chunk of {n} images: {e}") from e
        shapes[n] = {o: inferred[o] for o in outputs}
    for o in outputs:
        if any(s[o][0] != n for n, s in shapes.items()):
            raise InputError(f"predict: output {o!r} of {path} does not follow the batch "
                             f"axis (shape {shapes[images.chunks[0][0]][o]} for "
                             f"{images.chunks[0][0]} images)")
    del graph
    run = dask.delayed(_run_chunk, pure=True)
    blocks = images.to_delayed(optimize_graph=False).reshape(-1)   # keeps persisted futures
    pieces = {o: [] for o in outputs}
    for blk, n in zip(blocks, images.chunks[0]):
        res = run(blk, path, config, batch, spec.name, outputs)
        for o in outputs:
            item = dask.delayed(operator.getitem, pure=True)(res, o)
            pieces[o].append(da.from_delayed(item, shapes[n][o], dtype=np.float32))
    arrays = {o: da.concatenate(p, axis=0) for o, p in pieces.items()}
    return arrays[outputs[0]] if len(outputs) == 1 else arrays
