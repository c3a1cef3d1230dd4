"""Activation memory planner: one arena, shared by liveness.

Each tensor lives from the step that writes it to the last step that reads it. Tensors
are placed largest first at the lowest offset that does not overlap any already-placed
tensor whose lifetime intersects (greedy-by-size, as TFLite's arena planner does).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ALIGN = 64


@dataclass(frozen=True)
class Interval:
    """A buffer to place: bytes, and the first and last step (inclusive) it is live."""
    name: str
    nbytes: int
    first: int
    last: int


def _round_up(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def plan(intervals) -> tuple:
    """Return ({name: offset}, arena_bytes) for a list of Interval."""
    placed = []          # (offset, size, first, last)
    offsets = {}
    for iv in sorted(intervals, key=lambda iv: (-iv.nbytes, iv.first, iv.name)):
        size = _round_up(iv.nbytes)
        if size == 0:
            offsets[iv.name] = 0
            continue
        busy = sorted((off, sz) for off, sz, f, l in placed if f <= iv.last and iv.first <= l)
        offset = 0
        for off, sz in busy:
            if offset + size <= off:
                break
            offset = max(offset, off + sz)
        placed.append((offset, size, iv.first, iv.last))
        offsets[iv.name] = offset
    total = max((off + sz for off, sz, _, _ in placed), default=0)
    return offsets, total


def allocate(nbytes: int) -> np.ndarray:
    """A uint8 buffer of nbytes whose data pointer is ALIGN-aligned."""
    raw = np.empty(nbytes + ALIGN, dtype=np.uint8)
    start = (-raw.ctypes.data) % ALIGN
    return raw[start:start + nbytes]
