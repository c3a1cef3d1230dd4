"""Graph IR: named tensors, constants that know their storage, and nodes.

A Graph is plain data. Sessions never mutate a Graph they are given; passes
(see runtime/passes.py) return new graphs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jitconv.errors import GraphError
from .attrs import check_node

STORAGES = ("fp32", "fp16", "int8", "int4")
QUANT_BITS = {"int8": 8, "int4": 4}


@dataclass(frozen=True)
class TensorSpec:
    """A graph input or output: name, shape and dtype.

    ``dynamic`` lists the axes of an input whose size may change from run to run (an
    ONNX ``dim_param``): ``shape`` then holds the size the graph is first planned for.
    """
    name: str
    shape: tuple
    dtype: str = "float32"
    dynamic: tuple = ()


@dataclass
class Constant:
    """A weight tensor as the loader keeps it in memory.

    ``data`` is the array actually held; ``storage`` says how to read it:

    - "fp32": float32 array of the logical shape.
    - "fp16": float16 array of the logical shape (IEEE half, clamped to +-65504).
    - "int8": int8 array (rows, K): row r is output channel r flattened in C order.
    - "int4": uint8 array (rows, ceil(K/2)): value k of a row is the nibble k % 2 of
      byte k // 2 (low nibble first), a 4-bit two's complement integer.

    For int8/int4, ``scale`` (float32, shape (rows, nblocks)) and ``zero`` (float32 of
    the same shape, or None when symmetric) give value = q * scale + zero, where block
    b of a row covers K values [b * K/nblocks, (b+1) * K/nblocks). ``shape`` is the
    logical shape; ``nbytes`` counts every array really held, never a formula.
    """
    name: str
    data: np.ndarray
    storage: str = "fp32"
    scale: np.ndarray | None = None
    zero: np.ndarray | None = None
    logical_shape: tuple | None = None

    def __post_init__(self):
        if self.storage not in STORAGES:
            raise GraphError(f"constant {self.name!r}: unknown storage {self.storage!r}; "
                             f"known: {', '.join(STORAGES)}")
        want = {"fp32": np.float32, "fp16": np.float16, "int8": np.int8, "int4": np.uint8}
        if self.data.dtype != want[self.storage]:
            raise GraphError(f"constant {self.name!r}: storage {self.storage} needs "
                             f"{np.dtype(want[self.storage])} data, got {self.data.dtype}")
        if self.storage in QUANT_BITS:
            if self.scale is None or self.logical_shape is None or self.data.ndim != 2:
                raise GraphError(f"constant {self.name!r}: {self.storage} needs 2-D data, "
                                 f"a scale array and its logical shape")
            rows, k = self.rows_k
            cols = k if self.storage == "int8" else (k + 1) // 2
            if self.data.shape != (rows, cols):
                raise GraphError(f"constant {self.name!r}: {self.storage} data shape "
                                 f"{self.data.shape} should be {(rows, cols)} for logical "
                                 f"shape {self.shape}")
            if (self.scale.ndim != 2 or self.scale.shape[0] != rows or self.scale.shape[1] < 1
                    or k % self.scale.shape[1]):
                raise GraphError(f"constant {self.name!r}: scale shape {self.scale.shape} "
                                 f"does not fit {rows} rows of {k} values")
            if self.zero is not None and self.zero.shape != self.scale.shape:
                raise GraphError(f"constant {self.name!r}: zero shape {self.zero.shape} "
                                 f"!= scale shape {self.scale.shape}")
        elif self.logical_shape is not None and tuple(self.logical_shape) != self.data.shape:
            raise GraphError(f"constant {self.name!r}: logical shape {self.logical_shape} "
                             f"!= data shape {self.data.shape}")

    @property
    def shape(self) -> tuple:
        return tuple(self.logical_shape) if self.logical_shape is not None else \
            tuple(self.data.shape)

    @property
    def rows_k(self) -> tuple:
        """(rows, values per row) of the quantized layout: (shape[0], prod(shape[1:]))."""
        shape = self.shape
        return shape[0], int(np.prod(shape[1:], dtype=np.int64))

    @property
    def block_k(self) -> int:
        """Values per quantization block along a row (K for per-channel)."""
        return self.rows_k[1] // self.scale.shape[1] if self.scale is not None else 0

    @property
    def nbytes(self) -> int:
        extra = [a for a in (self.scale, self.zero) if a is not None]
        return int(self.data.nbytes + sum(a.nbytes for a in extra))

    def arrays(self) -> list:
        """Every array this constant holds (for weight-byte accounting)."""
        return [a for a in (self.data, self.scale, self.zero) if a is not None]

    def as_float32(self) -> np.ndarray:
        """The values as float32 of the logical shape (NumPy decoding, no copy for fp32).

        This is the reference decoding: kernels dequantize on their own and are tested
        against it.
        """
        if self.storage == "fp32":
            return np.ascontiguousarray(self.data, dtype=np.float32)
        if self.storage == "fp16":
            return self.data.astype(np.float32)
        rows, k = self.rows_k
        if self.storage == "int8":
            q = self.data.astype(np.float32)
        else:
            lo = (self.data & 0x0F).astype(np.int8)
            hi = (self.data >> 4).astype(np.int8)
            q = np.stack([lo, hi], axis=-1).reshape(rows, 2 * self.data.shape[1])[:, :k]
            q = np.where(q > 7, q - 16, q).astype(np.float32)
        nb = self.scale.shape[1]
        q = q.reshape(rows, nb, k // nb)
        vals = q * self.scale[:, :, None]
        if self.zero is not None:
            vals = vals + self.zero[:, :, None]
        return vals.reshape(self.shape).astype(np.float32)


@dataclass
class Node:
    """One operator application. ``inputs`` may name "" for an absent optional input."""
    op_type: str
    inputs: list
    outputs: list
    attrs: dict = field(default_factory=dict)
    name: str = ""

    def attr(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)

    def describe(self) -> str:
        return f"{self.op_type} node {self.name!r}"


@dataclass
class Graph:
    """A dataflow graph: inputs, constants, topologically ordered nodes, outputs."""
    inputs: list
    outputs: list
    nodes: list
    constants: dict
    name: str = "graph"
    # True when shape computations were folded for the declared input shapes (ONNX
    # Shape -> Reshape chains): the graph is then only valid for exactly those shapes
    fixed_input_shapes: bool = False

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Check names are defined before use, unique, outputs exist, and attributes
        hold values of their kinds (runtime/attrs.py)."""
        defined = {}
        for spec in self.inputs:
            if spec.name in defined:
                raise GraphError(f"graph {self.name!r}: input {spec.name!r} defined twice")
            defined[spec.name] = "input"
        for cname in self.constants:
            if cname in defined:
                raise GraphError(f"graph {self.name!r}: constant {cname!r} clashes with an input")
            defined[cname] = "constant"
        seen_nodes = set()
        for node in self.nodes:
            if node.name in seen_nodes:
                raise GraphError(f"graph {self.name!r}: node name {node.name!r} used twice")
            seen_nodes.add(node.name)
            check_node(node)
            for t in node.inputs:
                if t and t not in defined:
                    raise GraphError(f"{node.describe()}: input tensor {t!r} is not defined "
                                     f"before this node")
            for t in node.outputs:
                if t in defined:
                    raise GraphError(f"{node.describe()}: output tensor {t!r} is already "
                                     f"defined (by an {defined[t]})")
                defined[t] = node.name
        for spec in self.outputs:
            if spec.name not in defined:
                raise GraphError(f"graph {self.name!r}: output {spec.name!r} is never produced")

    @property
    def weight_bytes(self) -> int:
        return sum(c.nbytes for c in self.constants.values())

    def storages(self) -> dict:
        """storage name -> number of constants kept that way."""
        out: dict = {}
        for c in self.constants.values():
            out[c.storage] = out.get(c.storage, 0) + 1
        return out

    def consumers(self) -> dict:
        """tensor name -> list of nodes reading it."""
        out: dict = {}
        for node in self.nodes:
            for t in node.inputs:
                if t:
                    out.setdefault(t, []).append(node)
        return out

    def __repr__(self) -> str:
        return (f"Graph({self.name!r}, inputs={[i.name for i in self.inputs]}, "
                f"outputs={[o.name for o in self.outputs]}, nodes={len(self.nodes)}, "
                f"weight_bytes={self.weight_bytes})")
