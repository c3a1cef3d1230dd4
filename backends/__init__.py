"""Backend registry and the built-in backends."""
from .base import Backend, Kernel, OpContext, Target
from .registry import Registry, default_registry

__all__ = ["Backend", "Kernel", "OpContext", "Registry", "Target", "default_registry"]
