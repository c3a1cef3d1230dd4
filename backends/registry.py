"""The backend registry: backends by name. The default registry holds the built-ins."""
from __future__ import annotations

from jitconv.errors import RegistryError

from .base import Backend


class Registry:
    """Backends by name; duplicates rejected, unknown names answered with the known ones."""

    def __init__(self):
        self._backends: dict = {}

    def register_backend(self, backend: Backend) -> Backend:
        if not isinstance(backend, Backend):
            raise RegistryError(f"register_backend expects a Backend, got {type(backend).__name__}")
        if backend.name in self._backends:
            raise RegistryError(f"backend {backend.name!r} is already registered")
        self._backends[backend.name] = backend
        return backend

    def unregister_backend(self, name: str) -> None:
        self.get(name)
        del self._backends[name]

    def get(self, name: str) -> Backend:
        try:
            return self._backends[name]
        except KeyError:
            raise RegistryError(f"unknown backend {name!r}; registered backends: "
                                f"{', '.join(sorted(self._backends)) or '(none)'}") from None

    def register_kernel(self, backend: str, op_type: str, creator) -> None:
        self.get(backend).register(op_type, creator)

    def names(self) -> list:
        return sorted(self._backends)

    def __contains__(self, name) -> bool:
        return name in self._backends


default_registry = Registry()
