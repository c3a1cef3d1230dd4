"""What a backend is made of: kernels, the context a creator sees, and the backend itself.

A creator is ``creator(ctx: OpContext) -> Kernel | None``; returning None declines the op
(the session then asks the backup backend). A kernel splits shape-dependent planning
(``resize``) from execution (``run``), as MNN's Execution does.
"""
from __future__ import annotations

from contextlib import nullcontext
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
    avx512: bool = False         # AVX-512F: 32 zmm registers (the blocked-layout kernels)
    threads: int = 1             # worker threads a run uses
    name: str = "generic"

    @classmethod
    def host(cls, threads: int = 1) -> "Target":
        """This CPU, as Numba compiles for it (kernels/vnni.has_vnni)."""
        from jitconv.kernels.vnni import has_avx512, has_vnni
        return cls(vnni=has_vnni(), avx512=has_avx512(), threads=int(threads),
                   name="host cpu")


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


class HostMemory:
    """Where the CPU backend (and any backend whose kernels take NumPy arrays) keeps
    tensors: aligned host buffers, tensors as float32 views of them; nothing to copy."""
    host = True

    def allocate(self, nbytes: int):
        from jitconv.runtime.planner import allocate
        return allocate(nbytes)

    def view(self, buffer, offset: int, nbytes: int, shape):
        return buffer[offset:offset + nbytes].view(np.float32).reshape(shape)

    def scratch(self, buffer):
        """The scratch buffer as kernels see it (a uint8 host array here)."""
        return buffer


class DeviceMemory(HostMemory):
    """What a device backend provides for its own memory: ``allocate(nbytes)`` a buffer,
    ``view(buffer, offset, nbytes, shape)`` a float32 tensor inside it, and the two copies
    the session inserts where an op runs on another backend: ``to_device(host_array,
    device_tensor)`` and ``to_host(device_tensor, host_array)``. The session plans one
    arena per memory (runtime/planner.py) and never reads device tensors itself."""
    host = False

    def to_device(self, src, dst) -> None:
        raise NotImplementedError

    def to_host(self, src, dst) -> None:
        raise NotImplementedError


@dataclass
class Backend:
    """A named set of op creators, the memory its kernels read and write, and the context
    a run of its kernels needs. Registering an op type twice is an error.

    ``memory`` is a HostMemory (the default: tensors are NumPy arrays, shared with every
    other host backend without copies) or a DeviceMemory. ``run_context(config, what)``
    returns the context manager a session enters around every run (the CPU backend's
    thread count and fork guard live there); ``target(config)`` the hardware facts its
    kernel choice reads; ``graph_pass(graph, config, target)`` rewrites a session's graph
    for this backend after the generic passes (the CPU backend's layout pass), when
    Config.layout is "auto".
    """
    name: str
    description: str = ""
    available: object = None     # callable -> bool; None means always available
    creators: dict = field(default_factory=dict)
    target: object = None        # callable(config) -> Target; None: a generic Target
    memory: HostMemory = field(default_factory=HostMemory)
    run_context: object = None   # callable(config, what) -> context manager; None: none
    graph_pass: object = None    # callable(graph, config, target) -> graph; None: none

    def target_for(self, config) -> Target:
        """The hardware facts this backend's kernel choice reads, for this config."""
        if self.target is None:
            return Target(threads=config.resolved_threads())
        return self.target(config)

    def context(self, config, what: str):
        """The context a run of this backend's kernels needs (see the class docstring)."""
        if self.run_context is None:
            return nullcontext()
        return self.run_context(config, what)

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
