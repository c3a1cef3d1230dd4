"""ToBlocked / FromBlocked: the layout conversions the CPU backend's layout pass inserts
(backends/cpu_layout.py) between NCHW tensors and channel-blocked NCHW16c ones.

A blocked tensor (N, ceil(C/16), H, W, 16) holds channel c of pixel (h, w) at
[n, c // 16, h, w, c % 16]; the channels past C in the last block are zero. These ops
exist inside a Session only: graphs, ONNX files and the reference keep NCHW.
"""
from __future__ import annotations

import numpy as np

from ..opdef import REQUIRED, Attr, OpDef, register
from ..shapes import _fail, _need_rank

BLOCK = 16


def blocked_shape(shape) -> tuple:
    """(N, C, H, W) -> (N, ceil(C/16), H, W, 16)."""
    n, c, h, w = shape
    return (n, -(-c // BLOCK), h, w, BLOCK)


def to_blocked(x: np.ndarray) -> np.ndarray:
    n, c, h, w = x.shape
    cb = -(-c // BLOCK)
    xp = np.zeros((n, cb * BLOCK, h, w), x.dtype)
    xp[:, :c] = x
    return np.ascontiguousarray(xp.reshape(n, cb, BLOCK, h, w).transpose(0, 1, 3, 4, 2))


def from_blocked(y: np.ndarray, channels: int) -> np.ndarray:
    n, cb, h, w, b = y.shape
    return np.ascontiguousarray(y.transpose(0, 1, 4, 2, 3).reshape(n, cb * b, h, w)[:, :channels])


def logical_shape(node, x, channels) -> tuple:
    """The NCHW shape a conv input stands for: x itself, or (N, channels, H, W) for a
    blocked x (checked to hold that many channels)."""
    if len(x) != 5:
        return tuple(x)
    if x[4] != BLOCK or x[1] != -(-channels // BLOCK):
        _fail(node, f"blocked input {tuple(x)} does not hold {channels} channels in blocks "
                    f"of {BLOCK}")
    return (x[0], channels, x[2], x[3])


def _to_shape(node, shapes):
    _need_rank(node, shapes[0], 4)
    return [blocked_shape(shapes[0])]


def _from_shape(node, shapes):
    _need_rank(node, shapes[0], 5, "blocked input")
    return [logical_shape(node, shapes[0], int(node.attr("channels")))]


register(OpDef(
    "ToBlocked", shape=_to_shape, reference=lambda i, a: to_blocked(i[0]),
    flops=lambda node, ins, outs: 0, internal=True,
    doc="NCHW -> NCHW16c (channels zero-padded to whole blocks); inserted by the CPU "
        "layout pass"))

register(OpDef(
    "FromBlocked", attrs=(Attr("channels", "int", REQUIRED, "channels of the NCHW result"),),
    shape=_from_shape, reference=lambda i, a: from_blocked(i[0], int(a["channels"])),
    flops=lambda node, ins, outs: 0, internal=True,
    doc="NCHW16c -> NCHW; inserted by the CPU layout pass"))
