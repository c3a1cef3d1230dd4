"""What a prepared session reports: per-op kernel choices and the memory split."""
from __future__ import annotations

from dataclasses import dataclass, field

from .tables import html_table, text_table


def op_flops(node, in_shapes, out_shapes) -> int:
    """Floating-point operations of one node (a multiply-add counts as 2), from its
    OpDef's ``flops`` (runtime/ops/); 0 for an op type without one."""
    from .opdef import find  # noqa: PLC0415
    d = find(node.op_type)
    if d is None or d.flops is None:
        return 0
    return int(d.flops(node, in_shapes, out_shapes))


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
