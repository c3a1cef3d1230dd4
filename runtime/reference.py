"""Naive NumPy reference implementations of the operators in docs/ops.md.

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
    if _is_int(*inputs):
        return np.add(inputs[0], inputs[1])
    return _out(_f64(inputs[0]) + _f64(inputs[1]))


def mul(inputs, attrs) -> np.ndarray:
    """Mul: elementwise product with numpy broadcasting."""
    if _is_int(*inputs):
        return np.multiply(inputs[0], inputs[1])
    return _out(_f64(inputs[0]) * _f64(inputs[1]))


def concat(inputs, attrs) -> np.ndarray:
    """Concat: join along ``axis`` (negative counts from the end)."""
    if _is_int(*inputs):
        return np.concatenate([np.asarray(a) for a in inputs], axis=int(attrs["axis"]))
    return _out(np.concatenate([_f64(a) for a in inputs], axis=int(attrs["axis"])))


def flatten(inputs, attrs) -> np.ndarray:
    """Flatten: reshape to (prod(shape[:axis]), prod(shape[axis:]))."""
    x = np.asarray(inputs[0])
    axis = int(attrs.get("axis", 1))
    if axis < 0:
        axis += x.ndim
    if not 0 <= axis <= x.ndim:
        raise ValueError(f"Flatten axis {attrs.get('axis')} out of range for rank {x.ndim}")
    return _keep(x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:])))


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
    x = np.asarray(inputs[0])
    shape = attrs["shape"] if "shape" in attrs else np.asarray(inputs[1]).tolist()
    return _keep(x.reshape(_reshape_target(x.shape, shape)))


def transpose(inputs, attrs) -> np.ndarray:
    """Transpose: permute axes by ``perm`` (default: reversed)."""
    x = np.asarray(inputs[0])
    perm = attrs.get("perm")
    return _keep(np.transpose(x, None if perm is None else [int(p) for p in perm]))


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


# --------------------------------------------------------------------------- ops of ONNX CNNs
# (added with the ONNX importer; docs/ops.md lists their attributes)


def sub(inputs, attrs) -> np.ndarray:
    """Sub: a - b with numpy broadcasting."""
    if _is_int(*inputs):
        return np.subtract(inputs[0], inputs[1])
    return _out(_f64(inputs[0]) - _f64(inputs[1]))


def div(inputs, attrs) -> np.ndarray:
    """Div: a / b with numpy broadcasting (integers: truncated toward zero, as ONNX)."""
    if _is_int(*inputs):
        a, b = np.asarray(inputs[0]), np.asarray(inputs[1])
        q = np.abs(a) // np.abs(b)
        return np.where((a < 0) != (b < 0), -q, q).astype(np.result_type(a, b))
    with np.errstate(divide="ignore", invalid="ignore"):
        return _out(_f64(inputs[0]) / _f64(inputs[1]))


def sum_(inputs, attrs) -> np.ndarray:
    """Sum: elementwise sum of one or more inputs, numpy broadcasting."""
    if _is_int(*inputs):
        return sum(np.asarray(a) for a in inputs[1:]) + np.asarray(inputs[0])
    acc = _f64(inputs[0])
    for a in inputs[1:]:
        acc = acc + _f64(a)
    return _out(acc)


def sigmoid(inputs, attrs) -> np.ndarray:
    """Sigmoid: 1 / (1 + exp(-x))."""
    x = _f64(inputs[0])
    with np.errstate(over="ignore"):
        return _out(1.0 / (1.0 + np.exp(-x)))


def hard_sigmoid(inputs, attrs) -> np.ndarray:
    """HardSigmoid: max(0, min(1, alpha * x + beta)), alpha 0.2, beta 0.5."""
    a, b = float(attrs.get("alpha", 0.2)), float(attrs.get("beta", 0.5))
    return _out(np.clip(a * _f64(inputs[0]) + b, 0.0, 1.0))


def hard_swish(inputs, attrs) -> np.ndarray:
    """HardSwish: x * max(0, min(1, x / 6 + 0.5))."""
    x = _f64(inputs[0])
    return _out(x * np.clip(x / 6.0 + 0.5, 0.0, 1.0))


def leaky_relu(inputs, attrs) -> np.ndarray:
    """LeakyRelu: x if x >= 0 else alpha * x (alpha 0.01)."""
    x = _f64(inputs[0])
    return _out(np.where(x >= 0, x, float(attrs.get("alpha", 0.01)) * x))


def prelu(inputs, attrs) -> np.ndarray:
    """PRelu: x if x >= 0 else slope * x; slope broadcasts to x (unidirectionally)."""
    x, slope = _f64(inputs[0]), _f64(inputs[1])
    if np.broadcast_shapes(x.shape, slope.shape) != x.shape:
        raise ValueError(f"PRelu slope of shape {slope.shape} does not broadcast to {x.shape}")
    return _out(np.where(x >= 0, x, slope * x))


def identity(inputs, attrs) -> np.ndarray:
    """Identity (and Dropout at inference): a copy."""
    return _keep(inputs[0])


def pad(inputs, attrs) -> np.ndarray:
    """Pad: ``pads`` [begin_0.., end_0..] (negative crops), mode constant/reflect/edge/wrap."""
    x = np.asarray(inputs[0])
    p = [int(v) for v in attrs.get("pads", [0] * (2 * x.ndim))]
    r = x.ndim
    if len(p) != 2 * r:
        raise ValueError(f"Pad pads {p} must have {2 * r} entries for a {r}-D input")
    mode = attrs.get("mode", "constant")
    if mode not in ("constant", "reflect", "edge", "wrap"):
        raise ValueError(f"unknown Pad mode {mode!r}")
    crop = tuple(slice(max(0, -p[i]), x.shape[i] - max(0, -p[i + r])) for i in range(r))
    x = x[crop]
    widths = [(max(0, p[i]), max(0, p[i + r])) for i in range(r)]
    data = x if _is_int(x) else _f64(x)
    if mode == "constant":
        y = np.pad(data, widths, mode="constant",
                   constant_values=attrs.get("value", 0.0) if not _is_int(x)
                   else int(attrs.get("value", 0)))
    else:
        y = np.pad(data, widths, mode={"reflect": "reflect", "edge": "edge", "wrap": "wrap"}[mode])
    return _keep(y)


def lrn(inputs, attrs) -> np.ndarray:
    """LRN across channels: x / (bias + alpha / size * sum of x^2 over a channel window)^beta."""
    x = _f64(inputs[0])
    size = int(attrs["size"])
    alpha = float(attrs.get("alpha", 1e-4))
    beta, bias = float(attrs.get("beta", 0.75)), float(attrs.get("bias", 1.0))
    c = x.shape[1]
    lo, hi = (size - 1) // 2, -(-(size - 1) // 2)
    sq = x * x
    acc = np.zeros_like(x)
    for ch in range(c):
        acc[:, ch] = sq[:, max(0, ch - lo):min(c, ch + hi + 1)].sum(axis=1)
    return _out(x / (bias + alpha / size * acc) ** beta)


def _axes(axes, rank) -> list[int]:
    out = sorted(int(a) % rank for a in axes)
    if any(not -rank <= int(a) < rank for a in axes) or len(set(out)) != len(out):
        raise ValueError(f"axes {list(axes)} invalid for rank {rank}")
    return out


def unsqueeze(inputs, attrs) -> np.ndarray:
    """Unsqueeze: insert size-1 dims at ``axes`` (positions in the output)."""
    x = np.asarray(inputs[0])
    axes = attrs["axes"] if "axes" in attrs else np.asarray(inputs[1]).tolist()
    shape = list(x.shape)
    for a in _axes(axes, x.ndim + len(axes)):
        shape.insert(a, 1)
    return _keep(x.reshape(shape))


def squeeze(inputs, attrs) -> np.ndarray:
    """Squeeze: drop the size-1 dims at ``axes`` (all size-1 dims when absent)."""
    x = np.asarray(inputs[0])
    axes = attrs.get("axes")
    if axes is None and len(inputs) > 1 and inputs[1] is not None:
        axes = np.asarray(inputs[1]).tolist()
    axes = [i for i, d in enumerate(x.shape) if d == 1] if axes is None else _axes(axes, x.ndim)
    if any(x.shape[a] != 1 for a in axes):
        raise ValueError(f"Squeeze axes {axes} are not all size 1 in shape {x.shape}")
    return _keep(x.reshape([d for i, d in enumerate(x.shape) if i not in axes]))


def shape(inputs, attrs) -> np.ndarray:
    """Shape: the input's shape as int64, sliced by ``start``/``end`` (opset 15)."""
    dims = np.asarray(inputs[0]).shape
    r = len(dims)
    start = int(attrs.get("start", 0))
    end = attrs.get("end")
    end = r if end is None else int(end)
    start, end = (min(max(v + r if v < 0 else v, 0), r) for v in (start, end))
    return np.array(dims[start:end], dtype=np.int64)


def gather(inputs, attrs) -> np.ndarray:
    """Gather: take ``indices`` (attr or input 1; negative counts from the end) along ``axis``."""
    x = np.asarray(inputs[0])
    idx = np.asarray(attrs["indices"] if "indices" in attrs else inputs[1]).astype(np.int64)
    axis = int(attrs.get("axis", 0))
    n = x.shape[axis]
    if np.any(idx < -n) or np.any(idx >= n):
        raise ValueError(f"Gather indices {idx.tolist()} out of range for axis size {n}")
    return _keep(np.take(x, np.where(idx < 0, idx + n, idx), axis=axis))


def constant(inputs, attrs) -> np.ndarray:
    """Constant: the ``value`` attribute (an array, kept in its dtype)."""
    return np.array(attrs["value"], copy=True)


def constant_of_shape(inputs, attrs) -> np.ndarray:
    """ConstantOfShape: an array of shape input 0 filled with ``value`` (default float32 0)."""
    value = np.asarray(attrs.get("value", np.zeros(1, np.float32)))
    dims = [int(d) for d in np.asarray(inputs[0]).reshape(-1)]
    return np.full(dims, value.reshape(-1)[0], dtype=value.dtype)


# ONNX TensorProto data type numbers -> numpy dtypes (what Cast folds to)
CAST_TYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32,
              7: np.int64, 9: np.bool_, 10: np.float16, 11: np.float64, 12: np.uint32,
              13: np.uint64}


def cast(inputs, attrs) -> np.ndarray:
    """Cast: to the numpy dtype of ONNX type number ``to`` (see CAST_TYPES)."""
    to = int(attrs["to"])
    if to not in CAST_TYPES:
        raise ValueError(f"Cast to ONNX type {to} is not supported")
    return np.asarray(inputs[0]).astype(CAST_TYPES[to])


def reduce_mean(inputs, attrs) -> np.ndarray:
    """ReduceMean over ``axes`` (None or absent: all axes), keepdims 1."""
    x = _f64(inputs[0])
    axes = attrs.get("axes")
    axes = tuple(range(x.ndim)) if axes is None else tuple(_axes(axes, x.ndim))
    with np.errstate(invalid="ignore", divide="ignore"):
        return _out(np.mean(x, axis=axes, keepdims=bool(int(attrs.get("keepdims", 1)))))


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


def resize(inputs, attrs) -> np.ndarray:
    """Resize (mode nearest): ``scales`` per axis, output ``sizes`` (default floor(in * scale))."""
    x = np.asarray(inputs[0])
    if attrs.get("mode", "nearest") != "nearest":
        raise ValueError(f"Resize mode {attrs.get('mode')!r}: only 'nearest' is implemented")
    scales = [float(s) for s in attrs["scales"]]
    sizes = attrs.get("sizes")
    if sizes is None:
        # floor(in * scale) with the product in float32, as onnxruntime computes it
        sizes = [int(math.floor(np.float32(d) * np.float32(s))) for d, s in zip(x.shape, scales)]
    coord = attrs.get("coordinate_transformation_mode", "half_pixel")
    nearest = attrs.get("nearest_mode", "round_prefer_floor")
    y = x
    for axis, (d, o, s) in enumerate(zip(x.shape, sizes, scales)):
        if o != d or s != 1.0:
            y = np.take(y, resize_source_index(d, int(o), s, coord, nearest), axis=axis)
    return _keep(y)


def split(inputs, attrs) -> list:
    """Split along ``axis`` into pieces of sizes ``split`` (a list of arrays)."""
    x = np.asarray(inputs[0])
    axis = int(attrs.get("axis", 0))
    sizes = [int(v) for v in attrs["split"]]
    if sum(sizes) != x.shape[axis]:
        raise ValueError(f"Split sizes {sizes} do not add up to {x.shape[axis]}")
    bounds = np.cumsum([0] + sizes)
    return [_keep(np.take(x, np.arange(bounds[i], bounds[i + 1]), axis=axis))
            for i in range(len(sizes))]


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


def slice_(inputs, attrs) -> np.ndarray:
    """Slice: ``starts``, ``ends``, ``axes`` (default 0..), ``steps`` (default 1)."""
    x = np.asarray(inputs[0])
    starts = [int(v) for v in attrs["starts"]]
    ends = [int(v) for v in attrs["ends"]]
    axes = [int(a) % x.ndim for a in attrs.get("axes", range(len(starts)))]
    steps = [int(v) for v in attrs.get("steps", [1] * len(starts))]
    index = [slice(None)] * x.ndim
    for a, s, e, st in zip(axes, starts, ends, steps):
        index[a] = slice_bounds(x.shape[a], s, e, st)
    return _keep(x[tuple(index)])


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
    "Sub": sub,
    "Div": div,
    "Sum": sum_,
    "Sigmoid": sigmoid,
    "HardSigmoid": hard_sigmoid,
    "HardSwish": hard_swish,
    "LeakyRelu": leaky_relu,
    "PRelu": prelu,
    "Identity": identity,
    "Dropout": identity,
    "Pad": pad,
    "LRN": lrn,
    "Unsqueeze": unsqueeze,
    "Squeeze": squeeze,
    "Shape": shape,
    "Gather": gather,
    "Constant": constant,
    "ConstantOfShape": constant_of_shape,
    "Cast": cast,
    "ReduceMean": reduce_mean,
    "Resize": resize,
    "Split": split,
    "Slice": slice_,
}


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
