"""What a prepared session reports: per-op kernel choices and the memory split."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .tables import html_table, text_table


def op_flops(node, in_shapes, out_shapes) -> int:
    """Floating-point operations of one node (a multiply-add counts as 2)."""
    out = out_shapes[0] if out_shapes else ()
    n_out = math.prod(out)
    op = node.op_type
    if op == "Conv":
        w = in_shapes[1]
        return 2 * n_out * w[1] * w[2] * w[3]
    if op == "Gemm":
        a = in_shapes[0]
        k = a[0] if node.attr("transA", 0) else a[1]
        return 2 * n_out * k
    if op == "MatMul":
        return 2 * n_out * in_shapes[0][-1]
    if op in ("MaxPool", "AveragePool"):
        kh, kw = node.attr("kernel_shape")
        return n_out * kh * kw
    if op == "GlobalAveragePool":
        return math.prod(in_shapes[0])
    if op in ("Softmax", "BatchNormalization"):
        return 3 * n_out
    if op in ("Relu", "Clip", "Add", "Mul"):
        return n_out
    return 0


@dataclass(frozen=True)
class OpInfo:
    """One op's kernel choice: which backend and kernel run it, on what storage, and why."""
    name: str
    op_type: str
    backend: str
    kernel: str
    storage: str
    reason: str
    out_shape: tuple
    flops: int
    scratch_bytes: int
    weight_bytes: int = 0


@dataclass(frozen=True)
class SessionInfo:
    """Memory split (bytes), total FLOPs and the per-op table of a prepared session."""
    config: object
    weight_bytes: int
    arena_bytes: int
    scratch_bytes: int
    flops: int
    ops: tuple = field(default_factory=tuple)
    threading: str = ""   # Numba's threading layer (runtime/threads.describe)
    workspaces: int = 1   # arena + scratch pairs: one per run that was in flight at once
    vectors: str = ""     # the vector width the kernels were compiled for (runtime/target)
    rss_at_prepare: int = 0   # the process's RSS when Session() returned (0: unknown)

    _COLUMNS = ("name", "op_type", "backend", "kernel", "storage", "weight_bytes", "out_shape",
                "reason")

    def _rows(self):
        return [[str(getattr(op, c)) for c in self._COLUMNS] for op in self.ops]

    def summary(self) -> str:
        return (f"{self.config.label()}: weights {self.weight_bytes:,} B, "
                f"arena {self.arena_bytes:,} B, scratch {self.scratch_bytes:,} B"
                + (f" ({self.workspaces} workspaces: concurrent runs)" if self.workspaces > 1
                   else "") + ", "
                f"{self.flops / 1e6:,.1f} MFLOP, {len(self.ops)} ops"
                + (f"; threads: {self.threading}" if self.threading else "")
                + (f"; vectors: {self.vectors}" if self.vectors else "")
                + (f"; process RSS at prepare {self.rss_at_prepare / 2**20:,.1f} MiB"
                   if self.rss_at_prepare else ""))

    def __str__(self) -> str:
        return text_table(self._COLUMNS, self._rows(), self.summary())

    def _repr_html_(self) -> str:
        return html_table(self._COLUMNS, self._rows(), self.summary())
