"""Broadcasting math, comparison and selection ops, and the broadcast-copy layout ops:
Pow, Max, Min, Equal, Less, Greater, LessOrEqual, GreaterOrEqual, Where, Expand and Tile.

Runtime tensors are float32: the comparisons (Equal, Less, Greater, LessOrEqual,
GreaterOrEqual) write 1.0 / 0.0 at run time and Where reads
a float32 condition (nonzero is true). The references keep ONNX's dtypes (a comparison
returns bool; integers keep their dtype) so that the importer folds shape arithmetic as
ONNX defines it.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from ..opdef import REQUIRED, Attr, OnnxSpec, OpDef, register
from ..reference import _f64, _is_int, _keep, _out
from ..shapes import _fail, broadcast_shape


def _all_shape(node, shapes):
    out = tuple(shapes[0])
    for s in shapes[1:]:
        out = broadcast_shape(node, out, s)
    return [out]


def _expand_shape(node, shapes):
    target = [int(v) for v in node.attr("shape")]
    if any(v < 0 for v in target):
        _fail(node, f"shape {target} has negative sizes")
    try:
        return [tuple(np.broadcast_shapes(tuple(shapes[0]), tuple(target)))]
    except ValueError:
        _fail(node, f"input of shape {tuple(shapes[0])} does not broadcast to shape {target}")


def _tile_shape(node, shapes):
    x = tuple(shapes[0])
    reps = [int(v) for v in node.attr("repeats")]
    if len(reps) != len(x) or any(r < 0 for r in reps):
        _fail(node, f"repeats {reps} must hold {len(x)} non-negative ints (one per axis of "
                    f"the input of shape {x})")
    return [tuple(d * r for d, r in zip(x, reps))]


def _per_element(k):
    return lambda node, ins, outs: k * math.prod(outs[0])


# -- references ------------------------------------------------------------------------

def pow_(inputs, attrs) -> np.ndarray:
    """Pow: x ** y, numpy broadcasting; the output has x's type (integer x: truncated)."""
    x, y = np.asarray(inputs[0]), np.asarray(inputs[1])
    if _is_int(x):
        return np.power(x.astype(np.float64), y.astype(np.float64)).astype(x.dtype)
    with np.errstate(all="ignore"):
        return _out(np.power(_f64(x), _f64(y)))


def _variadic(fn):
    def ref(inputs, attrs):
        if _is_int(*inputs):
            return functools.reduce(fn, [np.asarray(a) for a in inputs])
        out = functools.reduce(fn, [_f64(a) for a in inputs])
        dtype = np.result_type(*inputs)      # float16 / float64 data folds in its dtype
        return out.astype(dtype if dtype.kind == "f" else np.float32)
    return ref


_max = _variadic(np.maximum)
_min = _variadic(np.minimum)


def max_(inputs, attrs) -> np.ndarray:
    """Max: elementwise maximum of one or more inputs, numpy broadcasting (NaN wins)."""
    return _max(inputs, attrs)


def min_(inputs, attrs) -> np.ndarray:
    """Min: elementwise minimum of one or more inputs, numpy broadcasting (NaN wins)."""
    return _min(inputs, attrs)


def _compare(fn):
    def ref(inputs, attrs):
        a, b = np.asarray(inputs[0]), np.asarray(inputs[1])
        if not _is_int(a, b):
            a, b = _f64(a), _f64(b)
        return fn(a, b)
    return ref


_eq, _lt, _gt = _compare(np.equal), _compare(np.less), _compare(np.greater)
_le, _ge = _compare(np.less_equal), _compare(np.greater_equal)


def equal(inputs, attrs) -> np.ndarray:
    """Equal: a == b, numpy broadcasting; bool (a run-time kernel writes 1.0 / 0.0)."""
    return _eq(inputs, attrs)


def less(inputs, attrs) -> np.ndarray:
    """Less: a < b, numpy broadcasting; bool (a run-time kernel writes 1.0 / 0.0)."""
    return _lt(inputs, attrs)


def greater(inputs, attrs) -> np.ndarray:
    """Greater: a > b, numpy broadcasting; bool (a run-time kernel writes 1.0 / 0.0)."""
    return _gt(inputs, attrs)


def less_or_equal(inputs, attrs) -> np.ndarray:
    """LessOrEqual: a <= b, numpy broadcasting; bool (a run-time kernel writes 1.0 / 0.0);
    false wherever either side is NaN."""
    return _le(inputs, attrs)


def greater_or_equal(inputs, attrs) -> np.ndarray:
    """GreaterOrEqual: a >= b, numpy broadcasting; bool (a run-time kernel writes 1.0 /
    0.0); false wherever either side is NaN."""
    return _ge(inputs, attrs)


def where(inputs, attrs) -> np.ndarray:
    """Where: x where the condition is true (nonzero) else y, numpy broadcasting of all
    three."""
    cond = np.asarray(inputs[0]) != 0
    x, y = np.asarray(inputs[1]), np.asarray(inputs[2])
    if _is_int(x, y):
        return np.where(cond, x, y)
    return _out(np.where(cond, _f64(x), _f64(y)))


def expand(inputs, attrs) -> np.ndarray:
    """Expand: the input broadcast (both ways, numpy rules) with ``shape``."""
    x = np.asarray(inputs[0])
    target = tuple(int(v) for v in attrs["shape"])
    return _keep(np.broadcast_to(x, np.broadcast_shapes(x.shape, target)))


def tile(inputs, attrs) -> np.ndarray:
    """Tile: the input repeated ``repeats[i]`` times along each axis i."""
    return _keep(np.tile(np.asarray(inputs[0]), [int(r) for r in attrs["repeats"]]))


# -- ONNX converters -------------------------------------------------------------------

def _as_float(imp, t, what):
    """Tensor ``t`` for a run-time node: a known integer/bool constant becomes a float32
    copy (a run-time tensor is float32); other tensors are returned as they are."""
    if t and t in imp.values and imp.values[t].dtype.kind != "f":
        v = imp.values[t]
        if v.dtype.kind == "u" or v.dtype.kind == "i":
            if v.size and np.max(np.abs(v.astype(np.float64))) > 2 ** 24:
                imp.fail(f"{what} {t!r} holds integers beyond 2**24, not exact in float32")
        elif v.dtype.kind != "b":
            imp.fail(f"{what} {t!r} of dtype {v.dtype} cannot be a run-time operand")
        name = imp.fresh(f"{t}_f32")
        imp.values[name] = v.astype(np.float32)
        return name
    return t


def _runtime_inputs(imp, convert):
    """The node's inputs; if any is computed at run time, the known integer/bool ones at
    positions ``convert`` become float32 constants."""
    ins = [imp.in_name(i) for i in range(len(imp.cur.input))]
    if all(imp.known(t) for t in ins):
        return ins
    return [_as_float(imp, t, f"input {i}") if i in convert else t for i, t in enumerate(ins)]


def _onnx_pow(imp):
    x = imp.in_name(0)
    if x in imp.values and imp.values[x].dtype.kind != "f" and not imp.known(imp.in_name(1)):
        imp.fail(f"base {x!r} is a {imp.values[x].dtype} constant and the exponent is "
                 f"computed at run time; ONNX gives an integer result, jitconv runs float32")
    imp.emit("Pow", _runtime_inputs(imp, (1,)), imp.cur.output[:1])


def _onnx_where(imp):
    imp.emit("Where", _runtime_inputs(imp, (0,)), imp.cur.output[:1])


def _onnx_compare(imp):
    imp.emit(imp.cur.op_type, _runtime_inputs(imp, (0, 1)), imp.cur.output[:1])


def _onnx_expand(imp):
    shape = [int(v) for v in np.asarray(imp.const(1, "shape")).reshape(-1)]
    imp.emit("Expand", [imp.in_name(0)], imp.cur.output[:1], {"shape": shape})


def _onnx_tile(imp):
    reps = [int(v) for v in np.asarray(imp.const(1, "repeats")).reshape(-1)]
    imp.emit("Tile", [imp.in_name(0)], imp.cur.output[:1], {"repeats": reps})


# -- the ops ---------------------------------------------------------------------------

register(OpDef(
    "Pow", inputs=(2, 2), shape=_all_shape, reference=pow_, flops=_per_element(1),
    onnx=OnnxSpec((7, 12, 13, 15), convert=_onnx_pow), builder="pow",
    doc="x ** y, numpy broadcasting"))
register(OpDef(
    "Max", inputs=(1, None), shape=_all_shape, reference=max_,
    flops=lambda node, ins, outs: max(1, len(ins) - 1) * math.prod(outs[0]),
    onnx=OnnxSpec((8, 12, 13)), builder="max",
    doc="elementwise maximum of the inputs, broadcasting"))
register(OpDef(
    "Min", inputs=(1, None), shape=_all_shape, reference=min_,
    flops=lambda node, ins, outs: max(1, len(ins) - 1) * math.prod(outs[0]),
    onnx=OnnxSpec((8, 12, 13)), builder="min",
    doc="elementwise minimum of the inputs, broadcasting"))
for _op, _ref, _versions, _builder, _what in (
        ("Equal", equal, (7, 11, 13, 19), "equal", "a == b"),
        ("Less", less, (9, 13), "less", "a < b"),
        ("Greater", greater, (9, 13), "greater", "a > b"),
        # ONNX 12 added them; 16 only widened the types (bfloat16)
        ("LessOrEqual", less_or_equal, (12, 16), "less_or_equal", "a <= b"),
        ("GreaterOrEqual", greater_or_equal, (12, 16), "greater_or_equal", "a >= b")):
    register(OpDef(
        _op, inputs=(2, 2), shape=_all_shape, reference=_ref, flops=_per_element(1),
        onnx=OnnxSpec(_versions, convert=_onnx_compare), builder=_builder,
        doc=f"{_what} as 1.0 / 0.0 (float32) at run time, broadcasting"))
register(OpDef(
    "Where", inputs=(3, 3), shape=_all_shape, reference=where, flops=_per_element(1),
    onnx=OnnxSpec((9, 16), convert=_onnx_where), builder="where",
    doc="x where condition != 0 else y, broadcasting all three"))
register(OpDef(
    "Expand", attrs=(Attr("shape", "ints", REQUIRED, "the shape broadcast with"),),
    shape=_expand_shape, reference=expand, flops=lambda node, ins, outs: 0,
    onnx=OnnxSpec((8, 13), params=(8, (1,)), convert=_onnx_expand), builder="expand",
    doc="broadcast to shape (numpy rules, both ways; a copy: 0 FLOPs)"))
register(OpDef(
    "Tile", attrs=(Attr("repeats", "ints", REQUIRED, "copies along each axis"),),
    shape=_tile_shape, reference=tile, flops=lambda node, ins, outs: 0,
    onnx=OnnxSpec((6, 13), params=(6, (1,)), convert=_onnx_tile), builder="tile",
    doc="the input repeated along each axis (a copy: 0 FLOPs)"))
