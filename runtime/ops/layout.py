"""Layout ops: they move data without arithmetic (0 FLOPs), except Pad, which writes
every output element (counted as one each)."""
from __future__ import annotations

import math

import numpy as np

from ..opdef import REQUIRED, Attr, OnnxSpec, OpDef, register
from ..reference import _axes, _f64, _is_int, _keep, _out, slice_bounds
from ..shapes import _axes_list, _axis, _fail, reshape_target


def _no_flops(node, ins, outs):
    """A copy: no arithmetic."""
    return 0


# -- shape rules -----------------------------------------------------------------------

def _concat_shape(node, shapes):
    rank = len(shapes[0])
    axis = _axis(node, int(node.attr("axis", 1)), rank)
    total = 0
    for i, s in enumerate(shapes):
        if len(s) != rank or any(s[d] != shapes[0][d] for d in range(rank) if d != axis):
            _fail(node, f"input {i} has shape {tuple(s)}, not concatenable with "
                        f"{tuple(shapes[0])} along axis {axis}")
        total += s[axis]
    out = list(shapes[0])
    out[axis] = total
    return [tuple(out)]


def _flatten_shape(node, shapes):
    x = shapes[0]
    axis = int(node.attr("axis", 1))
    if not -len(x) <= axis <= len(x):
        _fail(node, f"axis={axis} is out of range for input shape {tuple(x)}")
    if axis < 0:
        axis += len(x)
    return [(math.prod(x[:axis]), math.prod(x[axis:]))]


def _reshape_shape(node, shapes):
    return [reshape_target(node, shapes[0], node.attr("shape", []))]


def _transpose_shape(node, shapes):
    x = shapes[0]
    perm = list(node.attr("perm", list(range(len(x)))[::-1]))
    if sorted(perm) != list(range(len(x))):
        _fail(node, f"perm={perm} is not a permutation of the {len(x)} axes of shape {tuple(x)}")
    return [tuple(x[p] for p in perm)]


def _pad_shape(node, shapes):
    x = tuple(shapes[0])
    pads = [int(p) for p in node.attr("pads", [0] * (2 * len(x)))]
    if len(pads) != 2 * len(x):
        _fail(node, f"pads {pads} must have {2 * len(x)} values (begins, then ends) for "
                    f"input shape {x}")
    if node.attr("mode", "constant") not in ("constant", "reflect", "edge", "wrap"):
        _fail(node, f"mode={node.attr('mode')!r} not understood; use constant, reflect, "
                    f"edge or wrap")
    out = tuple(d + pads[i] + pads[i + len(x)] for i, d in enumerate(x))
    if any(d < 0 for d in out):
        _fail(node, f"pads {pads} crop more than the input shape {x} holds")
    if node.attr("mode", "constant") == "reflect" and any(
            d < 2 and (pads[i] > 0 or pads[i + len(x)] > 0) for i, d in enumerate(x)):
        _fail(node, f"reflect padding needs at least 2 values on each padded axis; input {x}")
    return [out]


def _unsqueeze_shape(node, shapes):
    x = list(shapes[0])
    axes = list(node.attr("axes", []))
    if not axes:
        _fail(node, "attribute axes is required")
    for a in _axes_list(node, axes, len(x) + len(axes)):
        x.insert(a, 1)
    return [tuple(x)]


def _squeeze_shape(node, shapes):
    x = tuple(shapes[0])
    axes = node.attr("axes")
    axes = [i for i, d in enumerate(x) if d == 1] if axes is None else \
        _axes_list(node, axes, len(x))
    if any(x[a] != 1 for a in axes):
        _fail(node, f"axes {list(node.attr('axes'))} are not all of size 1 in shape {x}")
    return [tuple(d for i, d in enumerate(x) if i not in axes)]


def _gather_shape(node, shapes):
    x = tuple(shapes[0])
    if not x:
        _fail(node, "input data must be at least 1-D")
    axis = _axis(node, int(node.attr("axis", 0)), len(x))
    if node.attr("indices") is None:
        _fail(node, "attribute indices (integers) is required")
    idx = np.asarray(node.attr("indices"))
    idx = idx.astype(np.int64) if idx.size == 0 else idx
    if idx.dtype.kind not in "iu":
        _fail(node, f"indices must be integers, got {idx.dtype}")
    if idx.size and (idx.min() < -x[axis] or idx.max() >= x[axis]):
        _fail(node, f"indices {idx.tolist()} out of range for axis {axis} of size {x[axis]}")
    return [x[:axis] + idx.shape + x[axis + 1:]]


def _split_shape(node, shapes):
    x = tuple(shapes[0])
    axis = _axis(node, int(node.attr("axis", 0)), len(x))
    sizes = [int(s) for s in node.attr("split", [])]
    if len(sizes) != len(node.outputs) or sum(sizes) != x[axis] or any(s < 0 for s in sizes):
        _fail(node, f"split sizes {sizes} must be {len(node.outputs)} non-negative values "
                    f"adding up to {x[axis]} (axis {axis} of shape {x})")
    return [x[:axis] + (s,) + x[axis + 1:] for s in sizes]


def _slice_shape(node, shapes):
    x = list(shapes[0])
    starts, ends = list(node.attr("starts", [])), list(node.attr("ends", []))
    axes = list(node.attr("axes", range(len(starts))))
    steps = list(node.attr("steps", [1] * len(starts)))
    if not len(starts) == len(ends) == len(axes) == len(steps):
        _fail(node, f"starts {starts}, ends {ends}, axes {axes} and steps {steps} must have "
                    f"the same length")
    _axes_list(node, axes, len(x))
    out = list(x)
    for a, s, e, st in zip(axes, starts, ends, steps):
        a = _axis(node, int(a), len(x), "axes entry")
        if int(st) == 0:
            _fail(node, "steps must not be 0")
        out[a] = len(range(x[a])[slice_bounds(x[a], int(s), int(e), int(st))])
    return [tuple(out)]


# -- references ------------------------------------------------------------------------

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


def gather(inputs, attrs) -> np.ndarray:
    """Gather: take ``indices`` (attr or input 1; negative counts from the end) along ``axis``."""
    x = np.asarray(inputs[0])
    idx = np.asarray(attrs["indices"] if "indices" in attrs else inputs[1]).astype(np.int64)
    axis = int(attrs.get("axis", 0))
    n = x.shape[axis]
    if np.any(idx < -n) or np.any(idx >= n):
        raise ValueError(f"Gather indices {idx.tolist()} out of range for axis size {n}")
    return _keep(np.take(x, np.where(idx < 0, idx + n, idx), axis=axis))


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


# -- ONNX converters -------------------------------------------------------------------

def _onnx_reshape(imp):
    shape = [int(v) for v in imp.const(1, "shape").reshape(-1)]
    if int(imp.attr("allowzero", 0)) and 0 in shape:
        imp.fail("allowzero=1 with a 0 in shape is not supported")
    imp.emit("Reshape", [imp.in_name(0)], imp.cur.output[:1], {"shape": shape})


def _onnx_unsqueeze(imp):
    axes = imp._axes_input(1) if imp.since >= 13 else list(imp.attr("axes") or [])
    if not axes:
        imp.fail("axes are required")
    imp.emit("Unsqueeze", [imp.in_name(0)], imp.cur.output[:1], {"axes": axes})


def _onnx_squeeze(imp):
    axes = imp._axes_input(1) if imp.since >= 13 else imp.attr("axes")
    attrs = {} if axes is None else {"axes": [int(a) for a in axes]}
    imp.emit("Squeeze", [imp.in_name(0)], imp.cur.output[:1], attrs)


def _onnx_gather(imp):
    idx = imp.const(1, "indices")
    if idx.dtype.kind not in "iu":
        imp.fail(f"indices must be integers, got {idx.dtype}")
    data = imp.in_name(0)
    axis = int(imp.attr("axis", 0))
    if data in imp.values:
        imp.emit("Gather", [data], imp.cur.output[:1], {"axis": axis, "indices": idx})
    else:
        imp.emit("Gather", [data], imp.cur.output[:1], {"axis": axis, "indices": idx.tolist()})


def _onnx_pad(imp):
    x = imp.in_name(0)
    rank = len(imp.shape_of(x))
    mode = imp.attr_str("mode", "constant")
    if imp.since < 11:
        pads = [int(p) for p in imp.attr("pads")]
        value = float(imp.attr("value", 0.0))
    else:
        pads = [int(p) for p in imp.const(1, "pads").reshape(-1)]
        v = imp.const(2, "constant_value", optional=True)
        value = 0.0 if v is None or v.size == 0 else float(v.reshape(-1)[0])
        axes = imp._axes_input(3) if imp.since >= 18 else None
        if axes is not None:
            if len(pads) != 2 * len(axes):
                imp.fail(f"pads {pads} must have 2 values per axis of {axes}")
            full = [0] * (2 * rank)
            for k, a in enumerate(axes):
                a = a % rank
                full[a], full[a + rank] = pads[k], pads[k + len(axes)]
            pads = full
    if len(pads) != 2 * rank:
        imp.fail(f"pads {pads} must have {2 * rank} values for a {rank}-D input")
    attrs = {"pads": pads, "mode": mode}
    if mode == "constant":
        attrs["value"] = value
    imp.emit("Pad", [x], imp.cur.output[:1], attrs)


def _onnx_split(imp):
    x = imp.in_name(0)
    shape = imp.shape_of(x)
    axis = int(imp.attr("axis", 0))
    if not -len(shape) <= axis < len(shape):
        imp.fail(f"axis={axis} is out of range for input shape {shape}")
    dim = shape[axis % len(shape)]
    outs = list(imp.cur.output)
    sizes = imp._axes_input(1, "split") if imp.since >= 13 else imp.attr("split")
    if sizes is None or len(sizes) == 0:
        n = int(imp.attr("num_outputs", len(outs))) if imp.since >= 18 else len(outs)
        if n != len(outs):
            imp.fail(f"num_outputs={n} but the node has {len(outs)} outputs")
        if imp.since >= 18:
            chunk = -(-dim // n)
            sizes = [min(chunk, max(dim - k * chunk, 0)) for k in range(n)]
        else:
            if dim % n:
                imp.fail(f"cannot split axis {axis} of size {dim} into {n} equal parts")
            sizes = [dim // n] * n
    imp.emit("Split", [x], outs, {"axis": axis, "split": [int(s) for s in sizes]})


def _onnx_slice(imp):
    if imp.since < 10:
        starts, ends = list(imp.attr("starts")), list(imp.attr("ends"))
        axes = imp.attr("axes")
        steps = None
    else:
        starts = [int(v) for v in imp.const(1, "starts").reshape(-1)]
        ends = [int(v) for v in imp.const(2, "ends").reshape(-1)]
        axes = imp._axes_input(3)
        steps = imp._axes_input(4, "steps")
    attrs = {"starts": [int(v) for v in starts], "ends": [int(v) for v in ends]}
    if axes is not None:
        attrs["axes"] = [int(a) for a in axes]
    if steps is not None:
        attrs["steps"] = steps
    # clamp huge sentinels (INT64_MAX) so attributes stay small Python ints
    big = 2 ** 62
    attrs["starts"] = [max(min(v, big), -big) for v in attrs["starts"]]
    attrs["ends"] = [max(min(v, big), -big) for v in attrs["ends"]]
    imp.emit("Slice", [imp.in_name(0)], imp.cur.output[:1], attrs)


# -- the ops ---------------------------------------------------------------------------

_VERSIONS_25 = (21, 23, 24, 25)     # later definitions only added types

register(OpDef(
    "Concat", inputs=(1, None), attrs=(Attr("axis", "int", REQUIRED, "axis to join along"),),
    shape=_concat_shape, reference=concat, flops=_no_flops,
    onnx=OnnxSpec((4, 11, 13), frozenset({"axis"})), builder="concat",
    doc="join the inputs along axis"))
register(OpDef(
    "Flatten", attrs=(Attr("axis", "int", 1, "axes before it make the rows"),),
    shape=_flatten_shape, reference=flatten, flops=_no_flops,
    onnx=OnnxSpec((9, 11, 13) + _VERSIONS_25, frozenset({"axis"})), builder="flatten",
    doc="reshape to 2-D at axis"))
register(OpDef(
    "Reshape",
    attrs=(Attr("shape", "ints", REQUIRED, "target; 0 copies the input dim, one -1 inferred"),),
    shape=_reshape_shape, reference=reshape, flops=_no_flops,
    onnx=OnnxSpec((5, 13, 14, 19) + _VERSIONS_25, frozenset({"allowzero"}), (5, (1,)),
                  _onnx_reshape),
    builder="reshape", doc="same data, another shape"))
register(OpDef(
    "Transpose", attrs=(Attr("perm", "ints", None, "axis order (default: reversed)"),),
    shape=_transpose_shape, reference=transpose, flops=_no_flops,
    onnx=OnnxSpec((1, 13) + _VERSIONS_25, frozenset({"perm"})), builder="transpose",
    doc="permute the axes"))
register(OpDef(
    "Squeeze", attrs=(Attr("axes", "ints", None, "size-1 axes to drop (default: all)"),),
    shape=_squeeze_shape, reference=squeeze, flops=_no_flops,
    onnx=OnnxSpec((1, 11, 13) + _VERSIONS_25, frozenset({"axes"}), (13, (1,)),
                  _onnx_squeeze),
    builder="squeeze", doc="drop size-1 axes"))
register(OpDef(
    "Unsqueeze", attrs=(Attr("axes", "ints", REQUIRED, "positions of new size-1 axes"),),
    shape=_unsqueeze_shape, reference=unsqueeze, flops=_no_flops,
    onnx=OnnxSpec((1, 11, 13) + _VERSIONS_25, frozenset({"axes"}), (13, (1,)),
                  _onnx_unsqueeze),
    builder="unsqueeze", doc="insert size-1 axes"))
register(OpDef(
    "Gather",
    attrs=(Attr("axis", "int", 0, "axis to take along"),
           Attr("indices", "int tensor", REQUIRED, "constant indices; negative from the end")),
    shape=_gather_shape, reference=gather, flops=_no_flops,
    onnx=OnnxSpec((1, 11, 13), frozenset({"axis"}), (1, (1,)), _onnx_gather),
    builder="gather", doc="take constant indices along axis"))
register(OpDef(
    "Split",
    attrs=(Attr("axis", "int", 0, "axis to cut"),
           Attr("split", "ints", REQUIRED, "sizes, one per output")),
    shape=_split_shape, reference=split, flops=_no_flops,
    onnx=OnnxSpec((2, 11, 13, 18), frozenset({"axis", "split", "num_outputs"}), (13, (1,)),
                  _onnx_split),
    doc="cut along axis into one output per size (several outputs: no builder method)"))
register(OpDef(
    "Slice",
    attrs=(Attr("starts", "ints", REQUIRED, "first index per axis"),
           Attr("ends", "ints", REQUIRED, "end index per axis (exclusive)"),
           Attr("axes", "ints", None, "axes sliced (default 0..)"),
           Attr("steps", "ints", None, "step per axis (default 1s)")),
    shape=_slice_shape, reference=slice_, flops=_no_flops,
    onnx=OnnxSpec((1, 10, 11, 13), frozenset({"starts", "ends", "axes"}), (10, (1, 2, 3, 4)),
                  _onnx_slice),
    builder="slice", doc="strided window of each sliced axis, ONNX clamping"))
register(OpDef(
    "Pad",
    attrs=(Attr("pads", "ints", None, "[begin_0.., end_0..]; negative crops"),
           Attr("mode", "str", "constant", "constant, reflect, edge or wrap"),
           Attr("value", "float", 0.0, "fill value of constant mode")),
    shape=_pad_shape, reference=pad,
    flops=lambda node, ins, outs: math.prod(outs[0]),     # one write per output element
    onnx=OnnxSpec((2, 11, 13, 18, 19) + _VERSIONS_25, frozenset({"mode", "pads", "value"}),
                  (11, (1, 2, 3)), _onnx_pad),
    builder="pad", doc="pad (or crop) each axis"))
