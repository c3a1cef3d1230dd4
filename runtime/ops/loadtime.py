"""Ops that exist only while an ONNX model loads: their values are computed (folded) at
load with these references, or they are removed; none reaches a Session, so none has a
shape rule, FLOP count or kernel. The exception is Cast, which also runs in a Session
between float types (float32 in and out: a cast to float16 rounds to half precision).
CastLike is imported as that Cast, its ``to`` read from the element type of its second
input."""
from __future__ import annotations

import numpy as np

from ..limits import check_bytes
from ..opdef import REQUIRED, Attr, OnnxSpec, OpDef, register
from ..reference import run_op
from .elementwise import identity


def shape(inputs, attrs) -> np.ndarray:
    """Shape: the input's shape as int64, sliced by ``start``/``end`` (opset 15)."""
    dims = np.asarray(inputs[0]).shape
    r = len(dims)
    start = int(attrs.get("start", 0))
    end = attrs.get("end")
    end = r if end is None else int(end)
    start, end = (min(max(v + r if v < 0 else v, 0), r) for v in (start, end))
    return np.array(dims[start:end], dtype=np.int64)


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
    with np.errstate(over="ignore", invalid="ignore"):    # out of range: inf (floats)
        return np.asarray(inputs[0]).astype(CAST_TYPES[to])


# numpy dtype -> ONNX type number, for the dtypes Cast folds to
ONNX_TYPE_OF = {np.dtype(v): k for k, v in CAST_TYPES.items()}


def cast_like(inputs, attrs) -> np.ndarray:
    """CastLike: input 0 cast to the dtype of input 1, whose values are not read (one of
    CAST_TYPES' dtypes, as Cast)."""
    dtype = np.asarray(inputs[1]).dtype
    if dtype not in ONNX_TYPE_OF:
        raise ValueError(f"CastLike to {dtype} is not supported")
    return cast(inputs[:1], {"to": ONNX_TYPE_OF[dtype]})


# float types a run-time (float32) tensor may be cast to: float32 and float64 change
# nothing (the importer removes such a Cast), float16 rounds each value to half precision
RUNTIME_CASTS = (1, 10, 11)


def _cast_shape(node, shapes):
    to = int(node.attr("to"))
    if to not in RUNTIME_CASTS:
        from ..shapes import _fail  # noqa: PLC0415
        _fail(node, f"to={to}: a run-time Cast goes to a float type only (1 float, 10 "
                    f"float16, 11 double); other types fold at load")
    return [tuple(shapes[0])]


def _onnx_dropout(imp):
    if imp.since >= 12:
        training = imp.const(2, "training_mode", optional=True)
        if training is not None and bool(np.asarray(training).reshape(-1)[0]):
            imp.fail("training_mode=True is not supported (inference only)")
    out = list(imp.cur.output)
    x = imp.in_name(0)
    imp.passthrough(out[0], x)
    if len(out) > 1 and out[1]:
        imp.values[out[1]] = np.ones(imp.shape_of(x), dtype=bool)


def _emit_cast(imp, x, to, what):
    """x cast to ONNX type ``to`` (described as ``what`` in errors): a Cast folded at load
    when x is known there, else the run-time Cast between float types (none to float or
    double: every run-time tensor is float32)."""
    if x in imp.values or to == 10:
        imp.emit("Cast", [x], imp.cur.output[:1], {"to": to})
    elif to in (1, 11):
        imp.passthrough(imp.cur.output[0], x)
    else:
        imp.fail(f"casts a run-time tensor to {what}; jitconv runs float32 tensors and "
                 f"casts them at run time to float types only (float, double, float16); "
                 f"integer tensors must fold away at load")


def _onnx_cast(imp):
    to = int(imp.attr("to"))
    _emit_cast(imp, imp.in_name(0), to, f"ONNX type {to}")


def _onnx_cast_like(imp):
    """CastLike(x, like): folded when x is known at load, else the run-time Cast (or its
    removal) to like's element type. Only that type is read, so ``like`` may be a
    run-time tensor: its type is then the one the model declares or ONNX infers."""
    x, like = imp.in_name(0), imp.in_name(1)
    if not like:
        imp.fail("input 1 (like) is required")
    if x in imp.values and like in imp.values:
        imp.emit("CastLike", [x, like], imp.cur.output[:1])
        return
    if like in imp.values:
        dtype = imp.values[like].dtype
        to = ONNX_TYPE_OF.get(dtype)
        if to is None:
            imp.fail(f"input 1 (like) {like!r} is a {dtype} tensor; CastLike casts to "
                     f"numpy's types only")
    else:
        to = imp.elem_type(imp.cur.input[1])
        if to is None:
            imp.fail(f"the element type of input 1 (like) {like!r} is unknown: the model "
                     f"declares none and ONNX type inference finds none")
    what = f"ONNX type {to} (the type of input 1, {like!r})"
    if x in imp.values and to not in CAST_TYPES:
        imp.fail(f"casts to {what}; the fold at load casts to numpy's types only")
    _emit_cast(imp, x, to, what)


def _onnx_constant(imp):
    v = None
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        a = imp.attr(key)
        if a is None:
            continue
        if key == "value":
            v = imp.tensor(a, f"{imp.where}: attribute 'value'")
        elif key.startswith("value_float"):
            v = np.asarray(a, dtype=np.float32)
        else:
            v = np.asarray(a, dtype=np.int64)
    if v is None:
        imp.fail("needs one of value, value_float(s), value_int(s) (sparse and string "
                 "constants are not supported)")
    imp.values[imp.cur.output[0]] = v


def _onnx_constant_of_shape(imp):
    dims_in = imp.const(0, "shape")
    value = imp.attr("value")
    value = imp.tensor(value, f"{imp.where}: attribute 'value'") if value is not None \
        else np.zeros(1, np.float32)
    dims = [int(d) for d in np.asarray(dims_in).reshape(-1)]
    if any(d < 0 for d in dims):
        imp.fail(f"shape {dims} has negative sizes")
    check_bytes(int(np.prod(dims, dtype=object)) * value.dtype.itemsize,
                f"{imp.where}: a constant of shape {dims}")
    imp.values[imp.cur.output[0]] = run_op("ConstantOfShape", [dims_in], {"value": value})


def _onnx_shape(imp):
    attrs = imp._attrs("start", "end") if imp.since >= 15 else {}
    x = imp.in_name(0)
    if x not in imp.values:
        imp.fixed_input_shapes = True     # folded for the declared input shapes
    dummy = imp.values[x] if x in imp.values else \
        np.broadcast_to(np.uint8(0), imp.shape_of(x))
    imp.values[imp.cur.output[0]] = run_op("Shape", [dummy], attrs)


def size(inputs, attrs) -> np.ndarray:
    """Size: the input's element count as a 0-d int64."""
    return np.array(np.asarray(inputs[0]).size, dtype=np.int64)


def _onnx_size(imp):
    x = imp.in_name(0)
    if x not in imp.values:
        imp.fixed_input_shapes = True     # folded for the declared input shapes
    dummy = imp.values[x] if x in imp.values else \
        np.broadcast_to(np.uint8(0), imp.shape_of(x))
    imp.values[imp.cur.output[0]] = run_op("Size", [dummy], {})


_LATER = (19, 21, 23, 24, 25)     # later definitions only added types

register(OpDef(
    "Shape", inputs=(1, 1), reference=shape, runtime=False,
    attrs=(Attr("start", "int", 0, "first axis"), Attr("end", "int", None, "end axis")),
    onnx=OnnxSpec((1, 13, 15) + _LATER, frozenset({"start", "end"}), convert=_onnx_shape),
    doc="the input's shape as int64 (folded at load)"))
register(OpDef(
    "Size", inputs=(1, 1), reference=size, runtime=False,
    onnx=OnnxSpec((1, 13) + _LATER, frozenset(), convert=_onnx_size),
    doc="the input's element count as int64 (folded at load)"))
register(OpDef(
    "Constant", inputs=(0, 0), reference=constant, runtime=False,
    attrs=(Attr("value", "tensor", REQUIRED, "the array"),),
    onnx=OnnxSpec((9, 11, 12, 13) + _LATER,
                  frozenset({"value", "value_float", "value_floats", "value_int",
                             "value_ints"}), convert=_onnx_constant),
    doc="a constant array (folded at load)"))
register(OpDef(
    "ConstantOfShape", reference=constant_of_shape, runtime=False,
    attrs=(Attr("value", "tensor", None, "one-element fill value (default float32 0)"),),
    onnx=OnnxSpec((9, 20, 21, 23, 24, 25), frozenset({"value"}), (9, (0,)),
                  _onnx_constant_of_shape),
    doc="an array of the shape input 0 holds, filled with value (folded at load)"))
register(OpDef(
    "Cast", reference=cast, shape=_cast_shape,
    flops=lambda node, ins, outs: int(np.prod(outs[0], dtype=np.int64)),
    attrs=(Attr("to", "int", REQUIRED, "ONNX TensorProto data type number"),),
    onnx=OnnxSpec((9, 13) + _LATER + (28,), frozenset({"to", "saturate", "round_mode"}),
                  convert=_onnx_cast), builder="cast",
    doc="change dtype (folded at load; at run time float only: to float16 rounds, "
        "to float/double is removed)"))
register(OpDef(
    "CastLike", inputs=(2, 2), reference=cast_like, runtime=False,
    onnx=OnnxSpec((15, 19, 21, 23, 24, 25), frozenset({"saturate", "round_mode"}),
                  convert=_onnx_cast_like),
    doc="cast input 0 to the element type of input 1 (imported as Cast, or folded)"))
register(OpDef(
    "Dropout", inputs=(1, 3), reference=identity, runtime=False,
    onnx=OnnxSpec((7, 10, 12, 13, 22), frozenset({"ratio", "seed"}), (12, (1, 2)),
                  _onnx_dropout),
    doc="removed at import (inference): output 0 is input 0, the mask all true"))
