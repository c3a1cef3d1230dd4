"""jitconv: Numba-compiled CNN inference with explicit weight storages and memory modes.

Quick use::

    import jitconv as jc
    g = jc.GraphBuilder()
    x = g.input("x", (1, 3, 32, 32))
    ...
    sess = jc.Session(g.build(), jc.Config(threads=2))
    out = sess.run(array)
"""
# The repository keeps kernels/, runtime/ and backends/ beside jitconv/ (docs/architecture.md,
# "Layout"); pip installs them as jitconv.kernels, jitconv.runtime and jitconv.backends. In
# a checkout that is not installed, the same names resolve to those folders here.
import importlib.util as _util
import os as _os

if _util.find_spec("jitconv.runtime") is None:
    _root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
    if _os.path.isfile(_os.path.join(_root, "runtime", "__init__.py")):
        __path__.append(_root)    # noqa: F821  (a package's own __path__)

# NOTE: Numba fixes its CPU features when the first function is decorated and its threading
# layer when its pool starts, so both are arranged here, before any kernel module is
# imported: 512-bit vectors on AVX-512 CPUs (runtime/target.py), TBB (from the tbb wheel)
# by default (runtime/threads.py).
from jitconv.runtime import target as _target

_target.prefer_full_vectors()

from jitconv.runtime import threads as _threads  # noqa: E402

_threads.select_layer()

from jitconv.backends import Backend, Kernel, OpContext, Registry, Target, default_registry  # noqa: E402
from jitconv.backends import cpu as _cpu  # noqa: F401,E402  registers the CPU backend
from jitconv.kernels import cache as _kernel_cache  # noqa: E402

_kernel_cache.drop_stale()   # cached kernels compiled from other sources (kernels/cache.py)
from jitconv.errors import (ConfigError, GraphError, InputError, InternalError,
                            JitconvError, OutOfMemoryError, RegistryError)
from jitconv.runtime.builder import GraphBuilder, Tensor
from jitconv.runtime.compare import CompareReport, compare
from jitconv.runtime.config import Config
from jitconv.runtime.info import OpInfo, SessionInfo
from jitconv.runtime.profile import OpTime, Profile
from jitconv.runtime.ir import Constant, Graph, Node, TensorSpec
from jitconv.runtime.session import Session

__version__ = "0.1.0"


def register_backend(backend: Backend) -> Backend:
    """Add a backend to the default registry (an error if the name is taken)."""
    return default_registry.register_backend(backend)


def register_kernel(backend: str, op_type: str, creator) -> None:
    """Register ``creator(ctx) -> Kernel | None`` for an op type on a registered backend."""
    default_registry.register_kernel(backend, op_type, creator)


def unregister_backend(name: str) -> None:
    """Remove a backend from the default registry."""
    default_registry.unregister_backend(name)


def quantize(graph, weights, *, block=None, symmetric=True, overrides=None, feeds=None,
             print_report=False):
    """Return a copy of ``graph`` whose Conv and Gemm/MatMul weights are stored as
    ``weights``; see jitconv.runtime.quantize.

    Parameters
    ----------
    graph : Graph
        The fp32 (or already quantized) graph; it is not modified.
    weights : {"fp16", "int8", "int4"}
        The storage of the weights.
    block : int, optional
        int8 / int4: one scale per ``block`` input channels of an output channel; None
        gives one scale per output channel.
    symmetric : bool
        int8 / int4: False adds a zero point per scale.
    overrides : dict, optional
        {node name: storage} for layers to keep otherwise (e.g. the first and last in fp16).
    feeds : dict, optional
        {input name: array}: also print the per-layer error of the quantized graph
        against the original (``compare``), so you see which layer the storage hurts.
    print_report : bool
        Print the weight bytes before and after and the largest weight error.

    Returns
    -------
    Graph
        The quantized copy; ``Graph.storages()`` counts its constants per storage.

    Examples
    --------
    >>> import jitconv as jc
    >>> from jitconv.models import conv_chain
    >>> q = jc.quantize(conv_chain(layers=2), "int4", overrides={"conv0": "fp16"})
    >>> sorted(q.storages().items())
    [('fp16', 1), ('fp32', 2), ('int4', 1)]
    """
    from jitconv.runtime.quantize import quantize_with_report
    qgraph, report = quantize_with_report(graph, weights, block=block, symmetric=symmetric,
                                          overrides=overrides)
    if print_report:
        print(report)
    if feeds is not None:
        print(compare(graph, qgraph, feeds))
    return qgraph


def save(graph, path) -> None:
    """Write ``graph`` to a .jcm file, weights stored as kept (fp16 2 B, int4 half a byte)."""
    from jitconv.runtime.modelfile import save as _save
    _save(graph, path)


def load(path, *, mmap=True, input_shapes=None, verify=True):
    """Read a model file by extension.

    Parameters
    ----------
    path : str or os.PathLike
        A .jcm file (jitconv's own) or an .onnx file (needs ``pip install
        "jitconv[onnx]"``; opsets 9 to 21, see jitconv.runtime.onnx_import).
    mmap : bool
        .jcm: memory-map the file, so weights page in from it as they are used.
    input_shapes : dict, optional
        .onnx: {input name: shape} replacing the declared input shapes.
    verify : bool
        .jcm: check the CRC-32 checksums; a damaged section is named in the error.

    Returns
    -------
    Graph
        The model, ready for ``Session``.
    """
    import os
    ext = os.path.splitext(str(path))[1].lower()
    if ext == ".onnx":
        from jitconv.runtime.onnx_import import load_onnx
        return load_onnx(path, input_shapes=input_shapes)
    from jitconv.runtime.modelfile import load as _load
    if ext != ".jcm":
        raise JitconvError(f"{path}: unknown model file type {ext!r}; jitconv reads .jcm "
                           f"and .onnx")
    if input_shapes is not None:
        raise JitconvError(f"{path}: input_shapes applies to .onnx files; for a .jcm "
                           f"model use Session.resize()")
    return _load(path, mmap=mmap, verify=verify)


def precompile(model, config=None, *, jobs=None, input_shapes=None) -> dict:
    """Compile every kernel a session of ``model`` (a Graph, or an .onnx / .jcm path) runs
    under ``config``, in ``jobs`` processes at once (default: the usable cores, at most 8),
    into Numba's on-disk cache; returns {kernel name: seconds}. See runtime/compile.py.

    >>> import jitconv as jc
    >>> from jitconv.models import conv_chain
    >>> sorted(jc.precompile(conv_chain(layers=2, size=8), jobs=1))
    ['conv2d_tiled']
    """
    from jitconv.runtime.compile import precompile as _precompile
    return _precompile(model, config, jobs=jobs, input_shapes=input_shapes)


def backends() -> list:
    """Names of the registered backends."""
    return default_registry.names()


__all__ = [
    "precompile",
    "Backend", "CompareReport", "Config", "ConfigError", "Constant", "Graph", "GraphBuilder", "GraphError",
    "InputError", "InternalError", "JitconvError", "Kernel", "Node", "OpContext", "OpInfo",
    "OpTime", "OutOfMemoryError", "Profile", "Registry", "RegistryError", "Session", "SessionInfo",
    "Target", "Tensor", "TensorSpec",
    "backends", "compare", "default_registry", "load", "quantize", "register_backend",
    "register_kernel", "save", "unregister_backend",
]
