"""Reductions: ReduceSum, ReduceMax, ReduceL2, ReduceSumSquare and ArgMax (ReduceMean is
with the normalizing ops). Axes are an attribute here; the ONNX importer reads them from
the attribute or (opset 13 for ReduceSum, 18 for the others) from a constant input."""
from __future__ import annotations

import math

import numpy as np

from ..opdef import Attr, OnnxSpec, OpDef, register
from ..reference import _axes, _f64, _is_int, _out
from ..shapes import _axes_list, _axis, _fail


def reduce_shape(node, shapes):
    """Output shape of a reduction over ``axes`` (all when absent), ``keepdims`` 1 or 0."""
    x = tuple(shapes[0])
    axes = node.attr("axes")
    axes = list(range(len(x))) if axes is None else _axes_list(node, axes, len(x))
    if int(node.attr("keepdims", 1)):
        return [tuple(1 if i in axes else d for i, d in enumerate(x))]
    return [tuple(d for i, d in enumerate(x) if i not in axes)]


def _argmax_shape(node, shapes):
    x = tuple(shapes[0])
    if not x:
        _fail(node, "the input must be at least 1-D")
    axis = _axis(node, int(node.attr("axis", 0)), len(x))
    if x[axis] == 0:
        _fail(node, f"axis {axis} of the input of shape {x} is empty: no largest element")
    if int(node.attr("keepdims", 1)):
        return [tuple(1 if i == axis else d for i, d in enumerate(x))]
    return [tuple(d for i, d in enumerate(x) if i != axis)]


def _axes_of(x, attrs):
    axes = attrs.get("axes")
    return tuple(range(x.ndim)) if axes is None else tuple(_axes(axes, x.ndim))


def reduce_sum(inputs, attrs) -> np.ndarray:
    """ReduceSum over ``axes`` (default all), keepdims 1; the sum of nothing is 0."""
    x = np.asarray(inputs[0])
    keep = bool(int(attrs.get("keepdims", 1)))
    if _is_int(x):
        return np.sum(x, axis=_axes_of(x, attrs), keepdims=keep, dtype=x.dtype)
    return _out(np.sum(_f64(x), axis=_axes_of(x, attrs), keepdims=keep))


def reduce_max(inputs, attrs) -> np.ndarray:
    """ReduceMax over ``axes`` (default all), keepdims 1; the max of nothing is -inf (the
    type's least value for integers, False for bool); NaN wins."""
    x = np.asarray(inputs[0])
    keep = bool(int(attrs.get("keepdims", 1)))
    if _is_int(x):
        least = False if x.dtype == bool else np.iinfo(x.dtype).min
        return np.max(x, axis=_axes_of(x, attrs), keepdims=keep, initial=least)
    return _out(np.max(_f64(x), axis=_axes_of(x, attrs), keepdims=keep, initial=-np.inf))


def reduce_l2(inputs, attrs) -> np.ndarray:
    """ReduceL2 over ``axes`` (default all), keepdims 1: sqrt(sum(x ** 2))."""
    x = _f64(inputs[0])
    keep = bool(int(attrs.get("keepdims", 1)))
    return _out(np.sqrt(np.sum(x * x, axis=_axes_of(x, attrs), keepdims=keep)))


def reduce_sum_square(inputs, attrs) -> np.ndarray:
    """ReduceSumSquare over ``axes`` (default all), keepdims 1: sum(x ** 2); 0 for an empty
    set; over no axes (``axes=[]``) each element squared. Integers stay in their dtype."""
    x = np.asarray(inputs[0])
    keep = bool(int(attrs.get("keepdims", 1)))
    if _is_int(x):
        return np.sum(x * x, axis=_axes_of(x, attrs), keepdims=keep, dtype=x.dtype)
    x = _f64(x)
    return _out(np.sum(x * x, axis=_axes_of(x, attrs), keepdims=keep))


def argmax(inputs, attrs) -> np.ndarray:
    """ArgMax along ``axis`` (0), keepdims 1: int64 index of the first largest element (the
    last one with select_last_index=1); a NaN counts as the largest."""
    x = np.asarray(inputs[0])
    if not _is_int(x):
        x = _f64(x)
    axis = int(attrs.get("axis", 0)) % x.ndim
    if int(attrs.get("select_last_index", 0)):
        idx = x.shape[axis] - 1 - np.argmax(np.flip(x, axis), axis=axis)
    else:
        idx = np.argmax(x, axis=axis)
    if int(attrs.get("keepdims", 1)):
        idx = np.expand_dims(idx, axis)
    return idx.astype(np.int64)


def _onnx_reduce(axes_input_from, noop_is_identity=True):
    """Converter of a Reduce* op whose axes became an input at opset ``axes_input_from``.

    noop_with_empty_axes=1 with no axes reduces over no axis. ONNX still applies the op's
    per-element step then (ReduceL2 gives |x|), so only an op without one
    (``noop_is_identity``) becomes a pass-through; the others keep the node, with
    ``axes=[]``."""
    def convert(imp):
        op = imp.cur.op_type
        keepdims = int(imp.attr("keepdims", 1))
        if imp.since >= axes_input_from:
            axes = imp._axes_input(1)
        else:
            axes = imp.attr("axes")
            axes = None if axes is None else [int(a) for a in axes]
        if not axes:
            if int(imp.attr("noop_with_empty_axes", 0)):
                if noop_is_identity:
                    imp.passthrough(imp.cur.output[0], imp.in_name(0))
                    return
                axes = []
            else:
                axes = None
        attrs = {"keepdims": keepdims}
        if axes is not None:
            attrs["axes"] = axes
        imp.emit(op, [imp.in_name(0)], imp.cur.output[:1], attrs)
    return convert


_REDUCE_ATTRS = (Attr("axes", "ints", None, "axes reduced (default: all)"),
                 Attr("keepdims", "int", 1, "1: keep them as size 1"))
_ONNX_ATTRS = frozenset({"axes", "keepdims", "noop_with_empty_axes"})


def _reduce(op, reference, versions, axes_input_from, flops, builder, doc,
            noop_is_identity=True):
    register(OpDef(
        op, attrs=_REDUCE_ATTRS, shape=reduce_shape, reference=reference, flops=flops,
        onnx=OnnxSpec(versions, _ONNX_ATTRS, (axes_input_from, (1,)),
                      _onnx_reduce(axes_input_from, noop_is_identity)),
        builder=builder, doc=doc))


def _in_elements(k, per_out=0):
    return lambda node, ins, outs: k * math.prod(ins[0]) + per_out * math.prod(outs[0])


# one add per input element
_reduce("ReduceSum", reduce_sum, (1, 11, 13), 13, _in_elements(1), "reduce_sum",
        "sum over axes, float64 accumulation")
# one compare per input element
_reduce("ReduceMax", reduce_max, (1, 11, 12, 13, 18, 20), 18, _in_elements(1), "reduce_max",
        "maximum over axes (NaN wins)")
# a multiply-add per input element, a square root per output element
_reduce("ReduceL2", reduce_l2, (1, 11, 13, 18), 18, _in_elements(2, 1), "reduce_l2",
        "sqrt of the sum of squares over axes, float64 accumulation", noop_is_identity=False)
# a multiply-add per input element
_reduce("ReduceSumSquare", reduce_sum_square, (1, 11, 13, 18), 18, _in_elements(2),
        "reduce_sum_square", "sum of squares over axes, float64 accumulation",
        noop_is_identity=False)
register(OpDef(
    "ArgMax",
    attrs=(Attr("axis", "int", 0, "the axis searched"),
           Attr("keepdims", "int", 1, "1: keep it as size 1"),
           Attr("select_last_index", "int", 0, "1: the last of equal largest values")),
    shape=_argmax_shape, reference=argmax, flops=_in_elements(1),
    onnx=OnnxSpec((1, 11, 12, 13), frozenset({"axis", "keepdims", "select_last_index"})),
    builder="argmax",
    doc="index of the largest element along axis (float32 at run time, int64 when folded)"))
