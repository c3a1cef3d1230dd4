"""Elementwise fp32 kernels made from a scalar function (an op's ``OpDef.scalar``).

``make_unary(scalar, nparams)`` returns a Numba kernel ``run(x, y, params)``: x, y 1-D
contiguous fp32 of the same length, params a tuple of ``nparams`` floats, and
``y[i] = scalar(x[i], *params)`` over a prange. One kernel is made per scalar and kept,
so a process compiles each at most once; Numba's on-disk cache keeps it across processes.
"""
from __future__ import annotations

import hashlib
import types

from numba import njit, prange
from numba.extending import register_jitable

_OPTS = dict(cache=True, parallel=True, fastmath={"contract"}, error_model="numpy",
             boundscheck=False)
_KERNELS: dict = {}


def _code_bytes(code) -> bytes:
    """The parts of a code object that decide what it computes (nested code included)."""
    parts = [code.co_code, repr(code.co_names).encode()]
    for c in code.co_consts:
        parts.append(_code_bytes(c) if isinstance(c, types.CodeType) else repr(c).encode())
    return b"\0".join(parts)


def code_digest(fn) -> int:
    """A non-negative int that changes when ``fn``'s body is edited."""
    return int.from_bytes(hashlib.sha256(_code_bytes(fn.__code__)).digest()[:7], "little")


def _importable(fn) -> bool:
    """True when ``fn`` can be found again by module and name (what the disk cache needs);
    a scalar made in exec'd code or a closure is compiled afresh in each process instead."""
    import sys
    owner = sys.modules.get(getattr(fn, "__module__", None) or "")
    return owner is not None and getattr(owner, fn.__qualname__, None) is fn


def make_unary(scalar, nparams: int):
    """The kernel ``run(x, y, params)`` applying ``scalar(x, *params)`` elementwise."""
    key = (scalar, int(nparams))
    kernel = _KERNELS.get(key)
    if kernel is not None:
        return kernel
    # register_jitable hands back the plain function: cloudpickle pickles it by reference
    # (module and name), so the closure's cache key is the same in every process and
    # the kernel loads from disk (a closure over an njit dispatcher would miss the cache in
    # every new process). Not inline="always": Numba cannot inline a call with *params.
    fn = register_jitable(scalar)
    # ... but that key does not change when the scalar's body is edited, and Numba would
    # load the old machine code. The digest of the scalar's code is a closure variable,
    # so it is part of the key; the test below never returns (the digest is >= 0) and is
    # there only so that the kernel refers to it.
    digest = code_digest(scalar)

    @njit(**(_OPTS if _importable(scalar) else {**_OPTS, "cache": False}))
    def run(x, y, params):
        if digest < 0:
            return
        for i in prange(x.shape[0]):
            y[i] = fn(x[i], *params)

    _KERNELS[key] = run
    return run
