"""Naive NumPy reference implementations of the operators in docs/ops.md.

Written for clarity, not speed: every op computes in float64 and returns float32.
Attribute names and semantics follow ONNX (opset 13+); missing attributes take the
defaults listed in docs/ops.md.  This module is the project's single source of truth
that kernels and backends are tested against.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

__all__ = [
    "run_op",
    "OPS",
    "resolve_pads",
    "conv_output_hw",
    "pool_output_hw",
    "evaluate",
]

_AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


def _f64(a) -> np.ndarray:
    """Return ``a`` as a float64 ndarray."""
    return np.asarray(a, dtype=np.float64)


def _out(a) -> np.ndarray:
    """Return ``a`` as a float32 ndarray (the dtype of every op output)."""
    return np.asarray(a).astype(np.float32)


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


def conv(inputs, attrs) -> np.ndarray:
    """Conv: grouped, strided, dilated 2-D convolution + bias + optional relu/clip epilogue."""
    x, w = _f64(inputs[0]), _f64(inputs[1])
    b = _f64(inputs[2]) if len(inputs) > 2 and inputs[2] is not None else None
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    group = int(attrs.get("group", 1))
    if c != cg * group or m % group != 0:
        raise ValueError(f"Conv shape mismatch: X {x.shape}, W {w.shape}, group {group}")
    strides, dilations, auto_pad = _spatial_attrs(attrs)
    pads = resolve_pads((h, wd), (kh, kw), strides, dilations, attrs.get("pads"), auto_pad)
    oh, ow = conv_output_hw((h, wd), (kh, kw), strides, dilations, pads)
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    wg = w.reshape(group, m // group, cg, kh, kw)
    acc = np.zeros((n, group, m // group, oh, ow))
    if oh > 0 and ow > 0:
        for i in range(kh):
            for j in range(kw):
                patch = _window(xp, i, j, (oh, ow), strides, dilations)
                patch = patch.reshape(n, group, cg, oh, ow)
                acc += np.einsum("ngchw,gmc->ngmhw", patch, wg[:, :, :, i, j])
    y = acc.reshape(n, m, oh, ow)
    if b is not None:
        y = y + b.reshape(1, m, 1, 1)
    act = attrs.get("activation", "") or ""
    if act == "relu":
        y = np.maximum(y, 0.0)
    elif act == "clip":
        y = _clip(y, attrs.get("activation_min"), attrs.get("activation_max"))
    elif act:
        raise ValueError(f"unknown Conv activation {act!r}")
    return _out(y)


def _pool(inputs, attrs, kind: str) -> np.ndarray:
    """Shared MaxPool/AveragePool: explicit taps over a padded copy plus validity masks."""
    x = _f64(inputs[0])
    n, c, h, w = x.shape
    kh, kw = (int(k) for k in attrs["kernel_shape"])
    strides, dilations, auto_pad = _spatial_attrs(attrs)
    pads = resolve_pads((h, w), (kh, kw), strides, dilations, attrs.get("pads"), auto_pad)
    # With auto_pad the output is fixed by the spec formulas, which ignore ceil_mode.
    ceil_mode = int(attrs.get("ceil_mode", 0)) if auto_pad == "NOTSET" else 0
    oh, ow = pool_output_hw((h, w), (kh, kw), strides, dilations, pads, ceil_mode)
    # Extra cells past the end padding, reachable only by ceil_mode windows.
    ph = max(h + pads[0] + pads[2], (oh - 1) * strides[0] + _effective(kh, dilations[0]))
    pw = max(w + pads[1] + pads[3], (ow - 1) * strides[1] + _effective(kw, dilations[1]))
    xp = np.zeros((n, c, ph, pw))
    xp[:, :, pads[0]:pads[0] + h, pads[1]:pads[1] + w] = x
    real = np.zeros((ph, pw))  # 1 on input cells
    real[pads[0]:pads[0] + h, pads[1]:pads[1] + w] = 1.0
    counted = np.zeros((ph, pw))  # 1 on input cells and explicit pad cells
    counted[:h + pads[0] + pads[2], :w + pads[1] + pads[3]] = 1.0
    if kind == "max":
        y = np.full((n, c, oh, ow), -np.inf)
    else:
        y, n_real, n_counted = np.zeros((n, c, oh, ow)), np.zeros((oh, ow)), np.zeros((oh, ow))
    if oh > 0 and ow > 0:
        for i in range(kh):
            for j in range(kw):
                win = _window(xp, i, j, (oh, ow), strides, dilations)
                ok = _window(real, i, j, (oh, ow), strides, dilations)
                if kind == "max":
                    y = np.maximum(y, np.where(ok > 0, win, -np.inf))  # pads never win
                else:
                    y += win
                    n_real += ok
                    n_counted += _window(counted, i, j, (oh, ow), strides, dilations)
    if kind == "avg":
        with np.errstate(invalid="ignore", divide="ignore"):
            y = y / (n_counted if int(attrs.get("count_include_pad", 0)) else n_real)
    return _out(y)


def max_pool(inputs, attrs) -> np.ndarray:
    """MaxPool: padded positions never win; supports dilations, ceil_mode, auto_pad."""
    return _pool(inputs, attrs, "max")


def average_pool(inputs, attrs) -> np.ndarray:
    """AveragePool: count_include_pad counts explicit pads but never ceil_mode overhang."""
    return _pool(inputs, attrs, "avg")


def global_average_pool(inputs, attrs) -> np.ndarray:
    """GlobalAveragePool: mean over all spatial axes, keeping them as size 1."""
    x = _f64(inputs[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        return _out(np.mean(x, axis=tuple(range(2, x.ndim)), keepdims=True))


def relu(inputs, attrs) -> np.ndarray:
    """Relu: max(x, 0)."""
    return _out(np.maximum(_f64(inputs[0]), 0.0))


def clip(inputs, attrs) -> np.ndarray:
    """Clip: min(max(x, min), max) with attrs ``min`` (-inf) and ``max`` (+inf)."""
    return _out(_clip(_f64(inputs[0]), attrs.get("min"), attrs.get("max")))


def add(inputs, attrs) -> np.ndarray:
    """Add: elementwise sum with numpy broadcasting."""
    return _out(_f64(inputs[0]) + _f64(inputs[1]))


def mul(inputs, attrs) -> np.ndarray:
    """Mul: elementwise product with numpy broadcasting."""
    return _out(_f64(inputs[0]) * _f64(inputs[1]))


def concat(inputs, attrs) -> np.ndarray:
    """Concat: join along ``axis`` (negative counts from the end)."""
    return _out(np.concatenate([_f64(a) for a in inputs], axis=int(attrs["axis"])))


def flatten(inputs, attrs) -> np.ndarray:
    """Flatten: reshape to (prod(shape[:axis]), prod(shape[axis:]))."""
    x = _f64(inputs[0])
    axis = int(attrs.get("axis", 1))
    if axis < 0:
        axis += x.ndim
    if not 0 <= axis <= x.ndim:
        raise ValueError(f"Flatten axis {attrs.get('axis')} out of range for rank {x.ndim}")
    return _out(x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:])))


def _reshape_target(in_shape, shape) -> tuple[int, ...]:
    """Return the concrete Reshape target: 0 copies the input dim, one -1 is inferred."""
    out = [int(in_shape[i]) if int(s) == 0 else int(s) for i, s in enumerate(shape)]
    if out.count(-1) > 1:
        raise ValueError(f"Reshape shape {list(shape)} has more than one -1")
    if -1 in out:
        known = math.prod(d for d in out if d != -1)
        total = math.prod(in_shape)
        if known == 0:
            # Zero-element input: infer -1 as if the zero-sized dims were 1 (e.g. batch 0
            # with shape [0, -1] gives (0, C*H*W)); raises if that is not consistent.
            known = math.prod(d for d in out if d not in (-1, 0))
            total = math.prod(d for d in in_shape if d != 0)
        if known == 0 or total % known:
            raise ValueError(f"cannot reshape {tuple(in_shape)} to {list(shape)}")
        out[out.index(-1)] = total // known
    if math.prod(out) != math.prod(in_shape):
        raise ValueError(f"cannot reshape {tuple(in_shape)} to {list(shape)}")
    return tuple(out)


def reshape(inputs, attrs) -> np.ndarray:
    """Reshape: to attr ``shape`` (or a second input), with ONNX 0/-1 rules."""
    x = _f64(inputs[0])
    shape = attrs["shape"] if "shape" in attrs else np.asarray(inputs[1]).tolist()
    return _out(x.reshape(_reshape_target(x.shape, shape)))


def transpose(inputs, attrs) -> np.ndarray:
    """Transpose: permute axes by ``perm`` (default: reversed)."""
    x = _f64(inputs[0])
    perm = attrs.get("perm")
    return _out(np.transpose(x, None if perm is None else [int(p) for p in perm]))


def gemm(inputs, attrs) -> np.ndarray:
    """Gemm: alpha * A' @ B' + beta * C, C broadcast to (M, N)."""
    a, b = _f64(inputs[0]), _f64(inputs[1])
    if int(attrs.get("transA", 0)):
        a = a.T
    if int(attrs.get("transB", 0)):
        b = b.T
    y = float(attrs.get("alpha", 1.0)) * (a @ b)
    if len(inputs) > 2 and inputs[2] is not None:
        y = y + float(attrs.get("beta", 1.0)) * _f64(inputs[2])
    return _out(np.broadcast_to(y, (a.shape[0], b.shape[1])))


def matmul(inputs, attrs) -> np.ndarray:
    """MatMul: numpy matmul semantics (batched, broadcast)."""
    return _out(np.matmul(_f64(inputs[0]), _f64(inputs[1])))


def softmax(inputs, attrs) -> np.ndarray:
    """Softmax: exp(x - max) / sum along the single axis ``axis`` (default -1)."""
    x = _f64(inputs[0])
    axis = int(attrs.get("axis", -1))
    if x.size == 0:
        return _out(x)
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return _out(e / np.sum(e, axis=axis, keepdims=True))


def batch_normalization(inputs, attrs) -> np.ndarray:
    """BatchNormalization (inference): (x - mean) / sqrt(var + eps) * scale + B over axis 1."""
    x = _f64(inputs[0])
    shape = (1, -1) + (1,) * (x.ndim - 2)
    scale, bias, mean, var = (_f64(a).reshape(shape) for a in inputs[1:5])
    eps = float(attrs.get("epsilon", 1e-5))
    return _out((x - mean) / np.sqrt(var + eps) * scale + bias)


OPS: dict[str, Callable[[list, dict], np.ndarray]] = {
    "Conv": conv,
    "Relu": relu,
    "Clip": clip,
    "Add": add,
    "Mul": mul,
    "MaxPool": max_pool,
    "AveragePool": average_pool,
    "GlobalAveragePool": global_average_pool,
    "Concat": concat,
    "Flatten": flatten,
    "Reshape": reshape,
    "Transpose": transpose,
    "Gemm": gemm,
    "MatMul": matmul,
    "Softmax": softmax,
    "BatchNormalization": batch_normalization,
}


def run_op(op_type: str, inputs: list, attrs: dict | None = None) -> np.ndarray:
    """Run one op by ONNX name on NumPy inputs; raise KeyError for an unknown op."""
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
        values[node.outputs[0]] = run_op(node.op_type, args, attrs)
    return {o.name: values[o.name] for o in graph.outputs}
