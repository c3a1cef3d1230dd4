"""Naive NumPy reference implementations of the operators in docs/ops.md: ``run_op``,
``evaluate`` and the helpers they share. Each op's reference function lives with its
OpDef in runtime/ops/ (one file per op family); ``OPS`` reads them from there.

Written for clarity, not speed: every op computes in float64 and returns float32.
Attribute names and semantics follow ONNX (opset 13+); missing attributes take the
defaults listed in docs/ops.md.  This module is the project's single source of truth
that kernels and backends are tested against.

The ONNX importer also folds constant subgraphs with ``run_op``; for that, integer
inputs (shape tensors) keep an integer dtype in the layout ops (Concat, Reshape,
Flatten, Transpose, Squeeze, Unsqueeze, Gather, Slice, Split, Pad, Identity) and in
Add/Sub/Mul/Div (integer Div truncates toward zero), and the import-only ops Shape,
Constant, ConstantOfShape and Cast return the dtype ONNX gives them. Split returns a
list of arrays (one per output).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Callable

import numpy as np

__all__ = [
    "run_op",
    "OPS",
    "resolve_pads",
    "conv_output_hw",
    "pool_output_hw",
    "evaluate",
    "slice_bounds",
    "resize_source_index",
    "resize_axis_table",
]

_AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


def _f64(a) -> np.ndarray:
    """Return ``a`` as a float64 ndarray."""
    return np.asarray(a, dtype=np.float64)


def _out(a) -> np.ndarray:
    """Return ``a`` as a float32 ndarray (the dtype of every op output)."""
    return np.asarray(a).astype(np.float32)


def _is_int(*arrays) -> bool:
    """True if every given array has an integer (or bool) dtype: folded shape arithmetic."""
    return all(a is not None and np.asarray(a).dtype.kind in "iub" for a in arrays)


def _keep(a) -> np.ndarray:
    """Layout-op output: integer/bool data keeps its dtype, anything else becomes float32."""
    a = np.asarray(a)
    return np.array(a, copy=True) if a.dtype.kind in "iub" else a.astype(np.float32)


def _effective(k: int, d: int) -> int:
    """Return the extent of a kernel of size ``k`` with dilation ``d``."""
    return (k - 1) * d + 1


def resolve_pads(in_hw, kernel_hw, strides=(1, 1), dilations=(1, 1), pads=None,
                 auto_pad="NOTSET") -> list[int]:
    """Return the explicit pads [top, left, bottom, right] implied by ``pads``/``auto_pad``."""
    auto_pad = auto_pad or "NOTSET"
    if auto_pad not in _AUTO_PADS:
        raise ValueError(f"unknown auto_pad {auto_pad!r}")
    if auto_pad == "NOTSET":
        pads = list(pads) if pads is not None else [0, 0, 0, 0]
        if len(pads) != 4:
            raise ValueError(f"pads must have 4 entries [top,left,bottom,right], got {pads}")
        return [int(p) for p in pads]
    if auto_pad == "VALID":
        return [0, 0, 0, 0]
    begin, end = [], []
    for size, k, s, d in zip(in_hw, kernel_hw, strides, dilations):
        out = -(-size // s)  # ceil(size / s)
        total = max(0, (out - 1) * s + _effective(k, d) - size)
        small, big = total // 2, total - total // 2
        # The odd extra cell goes at the end for SAME_UPPER, at the beginning for SAME_LOWER.
        begin.append(small if auto_pad == "SAME_UPPER" else big)
        end.append(big if auto_pad == "SAME_UPPER" else small)
    return begin + end


def conv_output_hw(in_hw, kernel_hw, strides, dilations, pads) -> tuple[int, int]:
    """Return the Conv output (OH, OW) for explicit pads [top, left, bottom, right]."""
    out = []
    for a in range(2):
        span = in_hw[a] + pads[a] + pads[a + 2] - _effective(kernel_hw[a], dilations[a])
        if span < 0:
            raise ValueError(f"kernel {kernel_hw} larger than padded input {in_hw} (pads {pads})")
        out.append(span // strides[a] + 1)
    return out[0], out[1]


def pool_output_hw(in_hw, kernel_hw, strides, dilations, pads, ceil_mode=0) -> tuple[int, int]:
    """Return the pooling output (OH, OW); with ceil_mode a window starting in the end padding is dropped."""
    if not ceil_mode:
        return conv_output_hw(in_hw, kernel_hw, strides, dilations, pads)
    out = []
    for a in range(2):
        span = in_hw[a] + pads[a] + pads[a + 2] - _effective(kernel_hw[a], dilations[a])
        if span < 0:
            raise ValueError(f"kernel {kernel_hw} larger than padded input {in_hw} (pads {pads})")
        n = -(-span // strides[a]) + 1
        if (n - 1) * strides[a] >= in_hw[a] + pads[a]:
            n -= 1  # the last window would start inside the end padding
        out.append(n)
    return out[0], out[1]


def _window(a: np.ndarray, i: int, j: int, out_hw, strides, dilations) -> np.ndarray:
    """Return the (…, OH, OW) view of ``a`` seen by kernel tap (i, j)."""
    (oh, ow), (sh, sw), (dh, dw) = out_hw, strides, dilations
    return a[..., i * dh: i * dh + (oh - 1) * sh + 1: sh, j * dw: j * dw + (ow - 1) * sw + 1: sw]


def _spatial_attrs(attrs: dict) -> tuple[list[int], list[int], str]:
    """Return (strides, dilations, auto_pad) with defaults."""
    strides = [int(s) for s in attrs.get("strides", [1, 1])]
    dilations = [int(d) for d in attrs.get("dilations", [1, 1])]
    return strides, dilations, attrs.get("auto_pad", "NOTSET") or "NOTSET"


def _clip(x: np.ndarray, lo, hi) -> np.ndarray:
    """Return ``min(max(x, lo), hi)`` (all values become ``hi`` when lo > hi, as in ONNX)."""
    lo = -np.inf if lo is None else float(lo)
    hi = np.inf if hi is None else float(hi)
    return np.minimum(np.maximum(x, lo), hi)


# The op references live with their OpDefs, one file per op family in runtime/ops/;
# the helpers below are shared by several of them.


def _axes(axes, rank) -> list[int]:
    out = sorted(int(a) % rank for a in axes)
    if any(not -rank <= int(a) < rank for a in axes) or len(set(out)) != len(out):
        raise ValueError(f"axes {list(axes)} invalid for rank {rank}")
    return out


_NEAREST = {
    "round_prefer_floor": lambda v, s: np.where(v - np.floor(v) == 0.5, np.floor(v), np.round(v)),
    "round_prefer_ceil": lambda v, s: np.where(v - np.floor(v) == 0.5, np.ceil(v), np.round(v)),
    "floor": lambda v, s: np.floor(v),
    "ceil": lambda v, s: np.ceil(v),
    # ONNX Upsample / Resize-10 as onnxruntime runs them: truncate, ceil when shrinking
    "simple": lambda v, s: np.ceil(v) if s < 1 else np.floor(v),
}


def resize_source_index(in_size: int, out_size: int, scale: float, coord: str,
                        nearest: str) -> np.ndarray:
    """Input index each output position of one axis copies in a nearest Resize."""
    x = np.arange(out_size, dtype=np.float64)
    scale = float(scale)
    if coord == "half_pixel":
        orig = (x + 0.5) / scale - 0.5
    elif coord == "pytorch_half_pixel":
        orig = (x + 0.5) / scale - 0.5 if out_size > 1 else np.zeros_like(x)
    elif coord == "align_corners":
        orig = x * (in_size - 1) / (out_size - 1) if out_size > 1 else np.zeros_like(x)
    elif coord == "asymmetric":
        orig = x / scale
    elif coord == "tf_half_pixel_for_nn":
        orig = (x + 0.5) / scale
    elif coord == "half_pixel_symmetric":
        adjustment = out_size / (scale * in_size)
        orig = in_size / 2 * (1 - adjustment) + (x + 0.5) / scale - 0.5
    else:
        raise ValueError(f"unknown coordinate_transformation_mode {coord!r}")
    if nearest not in _NEAREST:
        raise ValueError(f"unknown nearest_mode {nearest!r}")
    return np.clip(_NEAREST[nearest](orig, scale), 0, max(in_size - 1, 0)).astype(np.int64)


def _interp_coeffs(ratio: float, scale: float, mode: str, a: float, antialias: bool):
    """Interpolation weights of the neighbours of a point ``ratio`` past the left one."""
    if mode == "linear" and not antialias:
        return np.array([1 - ratio, ratio])
    if mode == "cubic" and not antialias:
        r, q = ratio, 1 - ratio
        return np.array([((a * (r + 1) - 5 * a) * (r + 1) + 8 * a) * (r + 1) - 4 * a,
                         ((a + 2) * r - (a + 3)) * r * r + 1,
                         ((a + 2) * q - (a + 3)) * q * q + 1,
                         ((a * (q + 1) - 5 * a) * (q + 1) + 8 * a) * (q + 1) - 4 * a])
    scale = min(scale, 1.0)
    if mode == "linear":      # antialias: a triangle widened by 1 / scale
        start = int(np.floor(-1 / scale) + 1)
        args = (np.arange(start, 2 - start) - ratio) * scale
        c = np.clip(1 - np.abs(args), 0, 1)
        return c / c.sum()
    start = int(np.floor(-2 / scale) + 1)     # cubic, antialias
    x = np.abs(scale * (np.arange(start, 2 - start) - ratio))
    c = np.where(x <= 1, (a + 2) * x ** 3 - (a + 3) * x ** 2 + 1,
                 np.where(x < 2, a * x ** 3 - 5 * a * x ** 2 + 8 * a * x - 4 * a, 0.0))
    return c / c.sum()


def resize_axis_table(in_size: int, out_size: int, scale: float, coord: str, mode: str,
                      cubic_a: float = -0.75, exclude_outside: bool = False,
                      antialias: bool = False, roi=(0.0, 1.0)):
    """One axis of a linear or cubic Resize, as the ONNX definition computes it.

    Returns (idx, w, outside): output position o is sum_k w[o, k] * x[idx[o, k]]
    (indices clamped to the input, as ONNX's edge padding does), or the extrapolation
    value where ``outside[o]`` (tf_crop_and_resize: the source point is off the input).
    """
    y = np.arange(out_size, dtype=np.float64)
    scale = float(scale)
    width = scale * in_size                  # ONNX uses scale x input, not out_size
    outside = np.zeros(out_size, np.uint8)
    if coord == "align_corners":
        x = np.zeros(out_size) if width == 1 else y * (in_size - 1) / (width - 1)
    elif coord == "asymmetric":
        x = y / scale
    elif coord == "tf_crop_and_resize":
        lo, hi = float(roi[0]), float(roi[1])
        x = np.full(out_size, (hi - lo) * (in_size - 1) / 2) if width == 1 else \
            y * (hi - lo) * (in_size - 1) / (width - 1)
        x = x + lo * (in_size - 1)
        outside = ((x < 0) | (x > in_size - 1)).astype(np.uint8)
    elif coord == "pytorch_half_pixel":
        x = np.full(out_size, -0.5) if width == 1 else (y + 0.5) / scale - 0.5
    elif coord == "half_pixel":
        x = (y + 0.5) / scale - 0.5
    elif coord == "half_pixel_symmetric":
        x = in_size / 2 * (1 - out_size / width) + (y + 0.5) / scale - 0.5
    else:
        raise ValueError(f"unknown coordinate_transformation_mode {coord!r}")
    base = np.floor(x)
    ratio = np.where(x == base, 1.0, x - base)    # a whole x counts from its left neighbour
    coeffs = [_interp_coeffs(float(r), scale, mode, cubic_a, antialias) for r in ratio]
    n = len(coeffs[0]) if coeffs else (2 if mode == "linear" else 4)
    w = np.array(coeffs, np.float64).reshape(out_size, n)
    # the n neighbours nearest x, ties to the smaller index (ONNX's neighbour choice)
    pad = -(-n // 2)
    xp = x + pad
    p = np.floor(xp)
    frac = xp - p
    if n % 2 == 0:
        first = p + np.where(frac == 0, -(n // 2), -(n // 2) + 1)
    else:
        first = p + np.where(frac <= 0.5, -((n - 1) // 2), -((n - 1) // 2) + 1)
    idx = first.astype(np.int64)[:, None] + np.arange(n)[None, :] - pad
    if exclude_outside:
        w = np.where((idx < 0) | (idx >= in_size), 0.0, w)
        total = w.sum(axis=1, keepdims=True)
        w = w / np.where(total == 0, 1.0, total)
    return np.clip(idx, 0, max(in_size - 1, 0)), w, outside


def slice_bounds(dim: int, start: int, end: int, step: int) -> slice:
    """The Python slice of ONNX Slice on one axis of size ``dim`` (ONNX clamping rules)."""
    if step == 0:
        raise ValueError("Slice step must not be 0")
    start = start + dim if start < 0 else start
    end = end + dim if end < 0 else end
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
    else:
        start, end = min(max(start, -1), dim - 1), min(max(end, -1), dim - 1)
    return slice(start, end if end >= 0 else None, step)


class _Ops(Mapping):
    """op type -> reference function, read from the OpDefs (runtime/ops/) on each use."""

    def _table(self):
        from .opdef import OPDEFS  # noqa: PLC0415
        return {k: d.reference for k, d in OPDEFS.items() if d.reference is not None}

    def __getitem__(self, op_type):
        from .opdef import OPDEFS  # noqa: PLC0415
        d = OPDEFS.get(op_type)
        if d is None or d.reference is None:
            raise KeyError(op_type)
        return d.reference

    def __iter__(self):
        return iter(self._table())

    def __len__(self):
        return len(self._table())


OPS: Mapping[str, Callable[[list, dict], np.ndarray]] = _Ops()


def run_op(op_type: str, inputs: list, attrs: dict | None = None):
    """Run one op by ONNX name on NumPy inputs; raise KeyError for an unknown op.

    Returns an array, or a list of arrays for a multi-output op (Split).
    """
    try:
        fn = OPS[op_type]
    except KeyError:
        raise KeyError(f"unknown op_type {op_type!r}; known: {sorted(OPS)}") from None
    return fn(list(inputs), dict(attrs or {}))


def evaluate(graph, feeds: dict) -> dict:
    """Run a whole Graph op by op with the reference (no passes, no fusion).

    Constants are read as the float32 values they stand for, so a quantized graph is
    evaluated with its dequantized weights.
    """
    values = {name: c.as_float32() for name, c in graph.constants.items()}
    values.update({k: np.asarray(v, dtype=np.float32) for k, v in feeds.items()})
    for node in graph.nodes:
        attrs = {k: v for k, v in node.attrs.items() if not k.startswith("_")}
        args = [values[t] if t else None for t in node.inputs]
        while args and args[-1] is None:
            args.pop()
        result = run_op(node.op_type, args, attrs)
        results = result if isinstance(result, list) else [result]
        for name, value in zip(node.outputs, results):
            if name:
                values[name] = value
    return {o.name: values[o.name] for o in graph.outputs}
