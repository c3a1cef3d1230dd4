"""What a backend is made of: kernels, the context a creator sees, and the backend itself.

A creator is ``creator(ctx: OpContext) -> Kernel | None``; returning None declines the op
(the session then asks the backup backend). A kernel splits shape-dependent planning
(``resize``) from execution (``run``), as MNN's Execution does.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from jitconv.errors import RegistryError


@dataclass(frozen=True)
class Target:
    """The hardware facts kernel choice reads, as one explicit value.

    A backend says what its machine has (``Backend.target_for``); tests and tools may
    pass another one to a Session (``Session(graph, config, target=...)``) to see what
    would be chosen elsewhere. Nothing in backends/choice.py asks the machine itself.
    """
    vnni: bool = False           # AVX512-VNNI: the int8 dot kernel (vpdpbusd) may run
    threads: int = 1             # worker threads a run uses
    name: str = "generic"

    @classmethod
    def host(cls, threads: int = 1) -> "Target":
        """This CPU, as Numba compiles for it (kernels/vnni.has_vnni)."""
        from jitconv.kernels.vnni import has_vnni
        return cls(vnni=has_vnni(), threads=int(threads), name="host cpu")


@dataclass
class OpContext:
    """Everything a creator may look at to choose (or decline) a kernel for one node.

    Creation is shape-free: ``in_shapes`` / ``out_shapes`` are the shapes the session
    is first planned for, for declining by rank only; every decision that depends on
    sizes (the conv family included) is made in ``Kernel.resize``.
    """
    node: object                 # runtime.ir.Node
    in_shapes: list              # tuple per input, None for an absent optional input
    out_shapes: list
    constants: dict              # input index -> runtime.ir.Constant, for constant inputs
    config: object               # runtime.config.Config
    target: Target = field(default_factory=Target)

    def constant(self, index):
        """The Constant feeding input ``index``, or None if that input is computed."""
        return self.constants.get(index)


class Kernel:
    """One op's compiled work. Subclasses set ``name`` and ``reason`` and implement run().

    ``owned_inputs`` lists input indices whose constants the kernel captured (packed)
    at creation; the session does not keep or pass those constants at run time.
    ``storage`` describes the weights the kernel holds ("fp32", "-" when none).
    """
    name = "kernel"
    reason = ""
    storage = "-"
    owned_inputs: tuple = ()

    def resize(self, in_shapes, out_shapes) -> int:
        """Plan for these shapes; return the scratch bytes run() needs (0 if none)."""
        return 0

    def run(self, inputs, outputs, scratch) -> None:
        raise NotImplementedError

    def held_arrays(self) -> list:
        """Arrays this kernel keeps alive (packed weights); counted in weight_bytes."""
        return []

    def needs_scratch(self) -> bool:
        """True if a nonzero output can only be computed with a scratch buffer."""
        return False


@dataclass
class Backend:
    """A named set of op creators. Registering an op type twice is an error."""
    name: str
    description: str = ""
    available: object = None     # callable -> bool; None means always available
    creators: dict = field(default_factory=dict)
    target: object = None        # callable(config) -> Target; None: a generic Target

    def target_for(self, config) -> Target:
        """The hardware facts this backend's kernel choice reads, for this config."""
        if self.target is None:
            return Target(threads=config.resolved_threads())
        return self.target(config)

    def register(self, op_type: str, creator) -> None:
        if op_type in self.creators:
            raise RegistryError(f"backend {self.name!r} already has a kernel creator for "
                                f"op {op_type!r}")
        if not callable(creator):
            raise RegistryError(f"creator for op {op_type!r} on backend {self.name!r} "
                                f"must be callable, got {type(creator).__name__}")
        self.creators[op_type] = creator

    def creator(self, op_type: str):
        return self.creators.get(op_type)

    def is_available(self) -> bool:
        return True if self.available is None else bool(self.available())


def scratch_view(scratch: np.ndarray, shape, dtype=np.float32) -> np.ndarray:
    """A C-contiguous view of the first bytes of the scratch buffer."""
    n = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return scratch[:n].view(dtype).reshape(shape)
