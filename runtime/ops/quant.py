"""Linear quantization: QuantizeLinear and DequantizeLinear (ONNX opsets 10-21, and the
later versions that only added types and the ``precision`` / ``output_dtype`` attributes).

How integers live in jitconv: run-time tensors are float32, so a QuantizeLinear that runs
in a Session writes its integers as float32 values (every int8/uint8/int16/uint16 value
is exact in float32), as ArgMax writes indices; the ``dtype`` attribute (ours, set by the
importer from the zero point or ``output_dtype``) says which integer type it stands for,
and the ONNX backend casts a graph output back to it. A DequantizeLinear reads such
integers. ``runtime/qdq.py`` fuses a QuantizeLinear whose only readers are
DequantizeLinear nodes of the same scale and zero point into one QuantizeLinear with
``dequantize=1``: quantize then dequantize in one pass, no integer tensor in between.
Constant operands are folded at load with the references below, and a DequantizeLinear
of a constant int8/uint8 weight becomes int8 weight storage (runtime/qdq.py).

The references follow the ONNX definitions: y = saturate(round(x / scale) + zero_point),
round half to even, and x = (q - zero_point) * scale. The division x / scale is a float32
division in ONNX (float32 tensors); it is computed here in float64 and rounded to float32,
which gives the same float32 for every pair (float64 holds more than twice float32's
precision, so the double rounding is exact); what follows is exact in float64. Scales
and zero points are per tensor (a scalar or one value) or per axis (1-D, one per index
of ``axis``). Blocked quantization (``block_size`` > 0, opset 21) is refused.
"""
from __future__ import annotations

import math

import numpy as np

from ..opdef import Attr, OnnxSpec, OpDef, register
from ..shapes import _fail

# integer types a QuantizeLinear may produce -> (lowest, highest)
QRANGES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767),
           "uint16": (0, 65535)}
# integer types a DequantizeLinear may read (int32: the biases quantizers write)
DQ_TYPES = tuple(QRANGES) + ("int32",)
# ONNX TensorProto codes of the types above (output_dtype attribute)
ONNX_CODES = {2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32"}
VERSIONS = (10, 13, 19, 21, 23, 24, 25, 28)   # after 21: new types, precision, output_dtype


def axis_index(axis, rank):
    """``axis`` in [-rank, rank) as a non-negative index, or None when out of range."""
    axis = int(axis)
    return axis + rank if -rank <= axis < 0 else (axis if 0 <= axis < rank else None)


def param_problem(x_shape, shape, axis, what):
    """Why a scale or zero point of ``shape`` does not fit input ``x_shape`` at ``axis``
    (None when it fits): a scalar or one value is per tensor, a 1-D array of
    x_shape[axis] values is per axis."""
    shape = tuple(shape)
    if len(shape) == 0 or (len(shape) == 1 and shape[0] == 1):
        return None
    if len(shape) != 1:
        return (f"{what} has shape {shape}; it must be a scalar (per tensor) or 1-D (per "
                f"axis); blocked quantization is not supported")
    a = axis_index(axis, len(x_shape))
    if a is None:
        return (f"axis={axis} is out of range for input of shape {tuple(x_shape)} "
                f"(rank {len(x_shape)})")
    if shape[0] != x_shape[a]:
        return (f"{what} has {shape[0]} values but input axis {axis} has size "
                f"{x_shape[a]} (input shape {tuple(x_shape)})")
    return None


def _along(v, rank, axis):
    """A scale / zero point reshaped to broadcast against an input of ``rank``."""
    v = np.asarray(v)
    if v.size == 1:
        return v.reshape(())
    dims = [1] * rank
    dims[axis_index(axis, rank)] = v.size
    return v.reshape(dims)


def quantize_values(x, scale, zero, axis, dtype):
    """float64 integers of round(x / scale) + zero, saturated to ``dtype``'s range (ONNX
    leaves NaN undefined: here it quantizes to the zero point)."""
    x = np.asarray(x)
    lo, hi = QRANGES[dtype]
    s = _along(np.asarray(scale, np.float32), x.ndim, axis).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = x.astype(np.float64) / s
    if x.dtype.kind == "f":                   # ONNX divides float32 by float32
        ratio = ratio.astype(np.float32).astype(np.float64)
    q = np.where(np.isnan(ratio), 0.0, np.rint(ratio))     # NaN: the zero point
    if zero is not None:
        q = q + _along(np.asarray(zero, np.float64), x.ndim, axis)
    return np.clip(q, lo, hi)


def dequantize_values(q, scale, zero, axis):
    """(q - zero) * scale as float32: each step rounded to float32, as ONNX computes it."""
    q = np.asarray(q)
    d = q.astype(np.float32).astype(np.float64)
    if zero is not None:
        z = _along(np.asarray(zero).astype(np.float32), q.ndim, axis).astype(np.float64)
        d = (d - z).astype(np.float32).astype(np.float64)
    s = _along(np.asarray(scale, np.float32), q.ndim, axis).astype(np.float64)
    return (d * s).astype(np.float32)


def _zero(inputs):
    return inputs[2] if len(inputs) > 2 and inputs[2] is not None else None


def quantize_linear(inputs, attrs) -> np.ndarray:
    """QuantizeLinear: saturate(round_half_even(x / scale) + zero_point) as ``dtype``
    (attr, default uint8); with ``dequantize=1`` the float32 value it stands for."""
    dtype = str(attrs.get("dtype", "uint8"))
    axis = int(attrs.get("axis", 1))
    q = quantize_values(inputs[0], inputs[1], _zero(inputs), axis, dtype)
    if int(attrs.get("dequantize", 0)):
        return dequantize_values(q, inputs[1], _zero(inputs), axis)
    return q.astype(dtype)


def dequantize_linear(inputs, attrs) -> np.ndarray:
    """DequantizeLinear: (x - zero_point) * scale, float32."""
    return dequantize_values(inputs[0], inputs[1], _zero(inputs), int(attrs.get("axis", 1)))


def _shape(node, shapes):
    x = tuple(shapes[0])
    axis = node.attr("axis", 1)
    for i, what in ((1, "scale"), (2, "zero point")):
        if i < len(shapes) and shapes[i] is not None:
            why = param_problem(x, shapes[i], axis, f"input {i} ({what})")
            if why:
                _fail(node, why)
    if len(shapes) > 2 and shapes[2] is not None and \
            math.prod(shapes[1]) != math.prod(shapes[2]):
        _fail(node, f"scale has shape {tuple(shapes[1])} but zero point {tuple(shapes[2])}")
    dtype = node.attr("dtype", "uint8")
    if node.op_type == "QuantizeLinear" and dtype not in QRANGES:
        _fail(node, f"dtype={dtype!r}; QuantizeLinear produces {', '.join(QRANGES)}")
    return [x]


def _flops(node, ins, outs):
    return (6 if node.attr("dequantize", 0) else 4) * math.prod(outs[0])


# -- ONNX import ----------------------------------------------------------------------------

def _np_name(a):
    return np.asarray(a).dtype.name


def _common(imp, op):
    """The checks both ops share; returns (axis, scale tensor, zero point value or None)."""
    block = int(imp.attr("block_size", 0) or 0)
    if block:
        imp.fail(f"block_size={block}: blocked quantization is not supported (per tensor "
                 f"and per axis are)")
    axis = int(imp.attr("axis", 1))
    x, scale = imp.in_name(0), imp.in_name(1)
    if not scale:
        imp.fail("input 1 (scale) is required")
    if scale in imp.values and imp.values[scale].dtype != np.float32:
        imp.fail(f"input 1 (scale) is {_np_name(imp.values[scale])}; jitconv reads float32 "
                 f"scales")
    zero = imp.const(2, "zero point", optional=True)
    x_shape = imp.shape_of(x)
    for i, what, shape in ((1, "scale", imp.shape_of(scale)),
                           (2, "zero point", None if zero is None else zero.shape)):
        if shape is not None:
            why = param_problem(x_shape, shape, axis, f"input {i} ({what})")
            if why:
                imp.fail(why)
    if zero is not None and zero.size != math.prod(imp.shape_of(scale)):
        imp.fail(f"zero point has shape {zero.shape} but scale {imp.shape_of(scale)}")
    if imp.since < 13 and len(imp.shape_of(scale)) and math.prod(imp.shape_of(scale)) != 1:
        imp.fail(f"{op} before opset 13 takes a per-tensor scale; got shape "
                 f"{imp.shape_of(scale)}")
    return axis, x, scale, zero


def _as_float(imp, name, value):
    """A float32 constant holding the integers of ``value`` (run-time ops read float32);
    "" for an absent input."""
    if value is None:
        return ""
    t = imp.fresh(f"{name}_as_float")
    imp.values[t] = np.asarray(value).astype(np.float32)
    return t


def _onnx_quantize(imp):
    axis, x, scale, zero = _common(imp, "QuantizeLinear")
    precision = int(imp.attr("precision", 0) or 0)
    if precision not in (0, 1):
        imp.fail(f"precision={precision}: jitconv divides in float32 (precision 1) only")
    code = int(imp.attr("output_dtype", 0) or 0)
    if code and code not in ONNX_CODES:
        imp.fail(f"output_dtype={code}: jitconv quantizes to {', '.join(QRANGES)}")
    dtype = ONNX_CODES.get(code, "uint8")
    if zero is not None:
        if zero.dtype.name not in QRANGES:
            imp.fail(f"input 2 (zero point) is {zero.dtype.name}; jitconv quantizes to "
                     f"{', '.join(QRANGES)}")
        if code and zero.dtype.name != dtype:
            imp.fail(f"output_dtype={code} ({dtype}) differs from the zero point's type "
                     f"{zero.dtype.name}")
        dtype = zero.dtype.name
    if dtype not in QRANGES:
        imp.fail(f"output type {dtype}: jitconv quantizes to {', '.join(QRANGES)}")
    out = imp.cur.output[0]
    if imp.known(x) and imp.known(scale):
        imp.emit("QuantizeLinear", [x, scale, imp.in_name(2)], [out],
                 {"axis": axis, "dtype": dtype})
        return
    if imp.values.get(x) is not None and imp.values[x].dtype.kind != "f":
        imp.fail(f"input 0 is {_np_name(imp.values[x])}; a run-time QuantizeLinear takes "
                 f"float32")
    imp.emit("QuantizeLinear", [x, scale, _as_float(imp, imp.in_name(2), zero)], [out],
             {"axis": axis, "dtype": dtype})
    imp.int_types[out] = dtype


def _onnx_dequantize(imp):
    axis, x, scale, zero = _common(imp, "DequantizeLinear")
    code = int(imp.attr("output_dtype", 0) or 0)
    if code not in (0, 1):
        imp.fail(f"output_dtype={code}: jitconv dequantizes to float32 only")
    if x in imp.values:
        x_type = imp.values[x].dtype.name
    elif x in imp.int_types:
        x_type = imp.int_types[x]
    else:
        imp.fail(f"input 0 {x!r} is a float32 tensor; DequantizeLinear reads the integers "
                 f"of a QuantizeLinear, a constant or an integer graph input")
    if x_type not in DQ_TYPES:
        imp.fail(f"input 0 is {x_type}; jitconv dequantizes {', '.join(DQ_TYPES)}")
    if zero is not None and zero.dtype.name != x_type:
        imp.fail(f"input 2 (zero point) is {zero.dtype.name} but input 0 is {x_type}; "
                 f"they must have the same type")
    if x_type == "int32" and zero is not None and np.any(zero != 0):
        imp.fail("an int32 input needs a zero point of 0")
    out = imp.cur.output[0]
    if imp.known(x) and imp.known(scale):
        imp.emit("DequantizeLinear", [x, scale, imp.in_name(2)], [out], {"axis": axis})
        if x_type in ("int8", "uint8"):
            imp.quantized[out] = (imp.values[x], imp.values[scale], zero, axis)
        return
    if x in imp.values:              # a constant read with a run-time scale
        x = _as_float(imp, x, imp.values[x])
    imp.emit("DequantizeLinear", [x, scale, _as_float(imp, imp.in_name(2), zero)], [out],
             {"axis": axis})


_AXIS = Attr("axis", "int", 1, "the axis a 1-D scale runs along (per-axis quantization)")
_ONNX_Q = frozenset({"axis", "saturate", "block_size", "output_dtype", "precision"})
_ONNX_DQ = frozenset({"axis", "block_size", "output_dtype"})

register(OpDef(
    "QuantizeLinear", inputs=(2, 3),
    attrs=(_AXIS,
           Attr("dtype", "str", "uint8", "integer type of the output: int8, uint8, int16, "
                "uint16 (the importer takes it from the zero point)"),
           Attr("dequantize", "int", 0, "1: output the dequantized value instead (a "
                "QuantizeLinear -> DequantizeLinear pair fused by runtime/qdq.py)")),
    shape=_shape, reference=quantize_linear, flops=_flops,
    onnx=OnnxSpec(VERSIONS, _ONNX_Q, convert=_onnx_quantize), builder="quantize_linear",
    doc="saturate(round(x / scale) + zero_point), per tensor or per axis"))
register(OpDef(
    "DequantizeLinear", inputs=(2, 3), attrs=(_AXIS,),
    shape=_shape, reference=dequantize_linear, flops=_flops,
    onnx=OnnxSpec(VERSIONS, _ONNX_DQ, convert=_onnx_dequantize), builder="dequantize_linear",
    doc="(x - zero_point) * scale, per tensor or per axis"))
