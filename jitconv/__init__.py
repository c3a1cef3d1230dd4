"""jitconv: Numba-compiled CNN inference with explicit weight storages and memory modes.

Quick use::

    import jitconv as jc
    g = jc.GraphBuilder()
    x = g.input("x", (1, 3, 32, 32))
    ...
    sess = jc.Session(g.build(), jc.Config(threads=2))
    out = sess.run(array)
"""
from jitconv.backends import Backend, Kernel, OpContext, Registry, default_registry
from jitconv.backends import cpu as _cpu  # noqa: F401  registers the CPU backend
from jitconv.errors import (ConfigError, GraphError, InputError, InternalError,
                            JitconvError, RegistryError)
from jitconv.runtime.builder import GraphBuilder, Tensor
from jitconv.runtime.config import Config
from jitconv.runtime.info import OpInfo, SessionInfo
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


def backends() -> list:
    """Names of the registered backends."""
    return default_registry.names()


__all__ = [
    "Backend", "Config", "ConfigError", "Constant", "Graph", "GraphBuilder", "GraphError",
    "InputError", "InternalError", "JitconvError", "Kernel", "Node", "OpContext", "OpInfo",
    "Registry", "RegistryError", "Session", "SessionInfo", "Tensor", "TensorSpec",
    "backends", "default_registry", "register_backend", "register_kernel",
    "unregister_backend",
]
