"""Elementwise ops: activations, broadcasting arithmetic, Sum and Identity."""
from __future__ import annotations

import math

import numpy as np

from ..opdef import Attr, OnnxSpec, OpDef, register
from ..reference import _clip, _f64, _is_int, _keep, _out
from ..shapes import _fail, broadcast_shape


def _same(node, shapes):
    return [tuple(shapes[0])]


def _binary(node, shapes):
    return [broadcast_shape(node, shapes[0], shapes[1])]


def _prelu_shape(node, shapes):
    x, slope = tuple(shapes[0]), tuple(shapes[1])
    if broadcast_shape(node, x, slope) != x:
        _fail(node, f"slope of shape {slope} does not broadcast to the input shape {x}")
    return [x]


def _sum_shape(node, shapes):
    out = tuple(shapes[0])
    for s in shapes[1:]:
        out = broadcast_shape(node, out, s)
    return [out]


def _per_element(k):
    """FLOPs: ``k`` per output element."""
    return lambda node, ins, outs: k * math.prod(outs[0])


# -- references ------------------------------------------------------------------------

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


def exp(inputs, attrs) -> np.ndarray:
    """Exp: e ** x."""
    with np.errstate(over="ignore"):
        return _out(np.exp(_f64(inputs[0])))


def exp_scalar(x):
    return math.exp(x)


def tanh(inputs, attrs) -> np.ndarray:
    """Tanh: (e ** x - e ** -x) / (e ** x + e ** -x)."""
    return _out(np.tanh(_f64(inputs[0])))


def tanh_scalar(x):
    return math.tanh(x)


def identity(inputs, attrs) -> np.ndarray:
    """Identity (and Dropout at inference): a copy."""
    return _keep(inputs[0])


# -- math (issue 20): each a reference in float64 and a scalar the CPU kernel is made of

def log(inputs, attrs) -> np.ndarray:
    """Log: natural logarithm (log 0 = -inf, log of a negative = NaN)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return _out(np.log(_f64(inputs[0])))


def log_scalar(x):
    return math.log(x) if x > 0 else (-math.inf if x == 0 else math.nan)


_erf = np.frompyfunc(math.erf, 1, 1)


def erf(inputs, attrs) -> np.ndarray:
    """Erf: the Gauss error function, 2 / sqrt(pi) * integral of exp(-t^2) from 0 to x."""
    return _out(_erf(_f64(inputs[0])).astype(np.float64))


def erf_scalar(x):
    return math.erf(x)


def softplus(inputs, attrs) -> np.ndarray:
    """Softplus: ln(exp(x) + 1) (computed as logaddexp(0, x): no overflow for large x)."""
    return _out(np.logaddexp(0.0, _f64(inputs[0])))


def softplus_scalar(x):
    if x > 0:
        return x + math.log1p(math.exp(-x))
    return math.log1p(math.exp(x))


def mish(inputs, attrs) -> np.ndarray:
    """Mish: x * tanh(softplus(x))."""
    x = _f64(inputs[0])
    return _out(x * np.tanh(np.logaddexp(0.0, x)))


def mish_scalar(x):
    sp = x + math.log1p(math.exp(-x)) if x > 0 else math.log1p(math.exp(x))
    return x * math.tanh(sp)


def sqrt(inputs, attrs) -> np.ndarray:
    """Sqrt: square root (NaN for a negative input)."""
    with np.errstate(invalid="ignore"):
        return _out(np.sqrt(_f64(inputs[0])))


def sqrt_scalar(x):
    return math.sqrt(x) if x >= 0 else math.nan


def reciprocal(inputs, attrs) -> np.ndarray:
    """Reciprocal: 1 / x (1 / 0 = inf, as IEEE)."""
    with np.errstate(divide="ignore"):
        return _out(1.0 / _f64(inputs[0]))


def reciprocal_scalar(x):
    return 1.0 / x


def neg(inputs, attrs) -> np.ndarray:
    """Neg: -x (integers keep their dtype, for folding)."""
    if _is_int(inputs[0]):
        return np.negative(inputs[0])
    return _out(-_f64(inputs[0]))


def neg_scalar(x):
    return -x


def abs_(inputs, attrs) -> np.ndarray:
    """Abs: |x| (integers keep their dtype, for folding)."""
    if _is_int(inputs[0]):
        return np.abs(inputs[0])
    return _out(np.abs(_f64(inputs[0])))


def abs_scalar(x):
    return abs(x)


GELU_MODES = ("none", "tanh")


def gelu(inputs, attrs) -> np.ndarray:
    """Gelu (opset 20): 0.5 x (1 + erf(x / sqrt 2)); approximate="tanh":
    0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))."""
    x = _f64(inputs[0])
    mode = attrs.get("approximate", "none")
    if mode == "tanh":
        return _out(0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3))))
    if mode != "none":
        raise ValueError(f"Gelu approximate={mode!r}: expected one of {GELU_MODES}")
    return _out(0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64)))


def _gelu_shape(node, shapes):
    mode = node.attr("approximate", "none")
    if mode not in GELU_MODES:
        _fail(node, f"approximate={mode!r} must be one of {GELU_MODES}")
    return [tuple(shapes[0])]


# -- ONNX converters -------------------------------------------------------------------

def _onnx_clip(imp):
    if imp.since < 11:
        attrs = imp._attrs("min", "max")
    else:
        attrs = {}
        for i, key in ((1, "min"), (2, "max")):
            v = imp.const(i, key, optional=True)
            if v is not None:
                if v.size != 1:
                    imp.fail(f"{key} must be a scalar, got shape {v.shape}")
                attrs[key] = float(v.reshape(-1)[0])
    imp.emit("Clip", [imp.in_name(0)], imp.cur.output[:1], attrs)


def _onnx_prelu(imp):
    xs, ss = imp.shape_of(imp.in_name(0)), imp.shape_of(imp.in_name(1))
    try:
        ok = np.broadcast_shapes(tuple(xs), tuple(ss)) == tuple(xs)
    except ValueError:
        ok = False
    if not ok:
        imp.fail(f"slope of shape {ss} does not broadcast to the input shape {xs} "
                 f"(ONNX PRelu broadcasts the slope numpy-style, from the last axis)")
    imp._simple("PRelu")


def _onnx_identity(imp):
    imp.passthrough(imp.cur.output[0], imp.in_name(0))


# -- the ops ---------------------------------------------------------------------------

def _unary(op_type, reference, flops, versions, builder, doc, attrs=(), scalar=None, **kw):
    register(OpDef(op_type, attrs=attrs, shape=_same, reference=reference,
                   flops=_per_element(flops),
                   onnx=OnnxSpec(versions, frozenset(a.name for a in attrs), **kw),
                   builder=builder, scalar=scalar, doc=doc))


def _binary_op(op_type, reference, versions, builder, doc):
    register(OpDef(op_type, inputs=(2, 2), shape=_binary, reference=reference,
                   flops=_per_element(1), onnx=OnnxSpec(versions), builder=builder, doc=doc))


_unary("Relu", relu, 1, (6, 13, 14), "relu", "max(x, 0)")
_unary("Clip", clip, 1, (6, 11, 12, 13), "clip", "min(max(x, min), max)",
       attrs=(Attr("min", "float", -math.inf, "lower bound"),
              Attr("max", "float", math.inf, "upper bound")),
       params=(11, (1, 2)), convert=_onnx_clip)
# sigmoid: negate, exp, add, divide
_unary("Sigmoid", sigmoid, 4, (6, 13), "sigmoid", "1 / (1 + exp(-x))")
# hard sigmoid: multiply-add, clamp
_unary("HardSigmoid", hard_sigmoid, 3, (6, 22), "hard_sigmoid",
       "max(0, min(1, alpha x + beta))",
       attrs=(Attr("alpha", "float", 0.2, "slope"), Attr("beta", "float", 0.5, "offset")))
# hard swish: multiply-add, clamp, multiply
_unary("HardSwish", hard_swish, 4, (14, 22), "hard_swish", "x max(0, min(1, x / 6 + 0.5))")
# leaky relu: compare, multiply
_unary("LeakyRelu", leaky_relu, 2, (6, 16), "leaky_relu", "x if x >= 0 else alpha x",
       attrs=(Attr("alpha", "float", 0.01, "slope below 0"),))
_unary("Exp", exp, 1, (6, 13), "exp", "e ** x", scalar=exp_scalar)
_unary("Tanh", tanh, 1, (6, 13), "tanh", "hyperbolic tangent", scalar=tanh_scalar)
_unary("Identity", identity, 0, (1, 13, 14, 16, 19, 21, 23, 24, 25), "identity",
       "a copy (no arithmetic: 0 FLOPs)", convert=_onnx_identity)

# math (issue 20); FLOPs count the scalar's arithmetic roughly (a transcendental as 1)
_unary("Log", log, 1, (6, 13), "log", "natural logarithm", scalar=log_scalar)
_unary("Erf", erf, 1, (9, 13), "erf", "Gauss error function", scalar=erf_scalar)
_unary("Softplus", softplus, 3, (1, 22), "softplus", "ln(exp(x) + 1)", scalar=softplus_scalar)
_unary("Mish", mish, 5, (18, 22), "mish", "x tanh(softplus(x))", scalar=mish_scalar)
_unary("Sqrt", sqrt, 1, (6, 13), "sqrt", "square root", scalar=sqrt_scalar)
_unary("Reciprocal", reciprocal, 1, (6, 13), "reciprocal", "1 / x", scalar=reciprocal_scalar)
_unary("Neg", neg, 1, (6, 13), "neg", "-x", scalar=neg_scalar)
_unary("Abs", abs_, 1, (6, 13), "abs", "|x|", scalar=abs_scalar)
# gelu: the string attribute picks the vector form (backends/cpu_math.py's create_gelu)
register(OpDef("Gelu", attrs=(Attr("approximate", "str", "none", '"none" (erf) or "tanh"'),),
               shape=_gelu_shape, reference=gelu, flops=_per_element(8),
               onnx=OnnxSpec((20,), frozenset({"approximate"})), builder="gelu",
               doc="0.5 x (1 + erf(x / sqrt 2)), or the tanh approximation"))

_binary_op("Add", add, (7, 13, 14), "add", "a + b, numpy broadcasting")
_binary_op("Sub", sub, (7, 13, 14), "sub", "a - b, numpy broadcasting")
_binary_op("Mul", mul, (7, 13, 14), "mul", "a * b, numpy broadcasting")
_binary_op("Div", div, (7, 13, 14), "div", "a / b, numpy broadcasting")

register(OpDef(
    "PRelu", inputs=(2, 2), shape=_prelu_shape, reference=prelu, flops=_per_element(2),
    onnx=OnnxSpec((9, 16), convert=_onnx_prelu), builder="prelu",
    doc="x if x >= 0 else slope x; slope broadcasts to x"))

register(OpDef(
    "Sum", inputs=(1, None), shape=_sum_shape, reference=sum_,
    flops=lambda node, ins, outs: (len(ins) - 1) * math.prod(outs[0]),
    onnx=OnnxSpec((8, 13)), builder="sum", doc="elementwise sum of the inputs, broadcasting"))
