"""Graph IR: named tensors, constants that know their storage, and nodes.

A Graph is plain data. Sessions never mutate a Graph they are given; passes
(see runtime/passes.py) return new graphs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jitconv.errors import GraphError

STORAGES = ("fp32",)


@dataclass(frozen=True)
class TensorSpec:
    """A graph input or output: name, shape and dtype."""
    name: str
    shape: tuple
    dtype: str = "float32"


@dataclass
class Constant:
    """A weight tensor as the loader keeps it in memory.

    ``data`` is the array actually held; ``storage`` says how to read it.
    ``nbytes`` is the bytes really held, never a formula.
    """
    name: str
    data: np.ndarray
    storage: str = "fp32"

    def __post_init__(self):
        if self.storage not in STORAGES:
            raise GraphError(f"constant {self.name!r}: unknown storage {self.storage!r}; "
                             f"known: {', '.join(STORAGES)}")

    @property
    def shape(self) -> tuple:
        return tuple(self.data.shape)

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)

    def as_float32(self) -> np.ndarray:
        """The constant's values as float32 (decoding if the storage needs it)."""
        return np.ascontiguousarray(self.data, dtype=np.float32)


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

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Check names are defined before use, unique, and outputs exist."""
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
