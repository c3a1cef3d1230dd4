"""Check jitconv.runtime.reference against second opinions.

* onnx.reference.ReferenceEvaluator on single-node ONNX models (the primary oracle);
* torch.nn.functional (when torch is importable) for Conv, pools, Softmax and Gemm;
* onnxruntime only for the few pooling corners where ReferenceEvaluator itself is
  wrong (each such case says why; see ``ORE_POOL_BUGS``).
"""
from __future__ import annotations

import zlib

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from jitconv.runtime.reference import (
    conv_output_hw,
    pool_output_hw,
    resolve_pads,
    run_op,
)

OPSET = 21
RTOL, ATOL = 1e-4, 1e-5


def rng_for(case) -> np.random.Generator:
    """Return a generator seeded stably from the case's repr."""
    return np.random.default_rng(zlib.crc32(repr(case).encode()))


def randn(rng, *shape) -> np.ndarray:
    """Return standard-normal float32 data of ``shape``."""
    return rng.standard_normal(shape).astype(np.float32)


def make_model(nodes, feeds: dict, inits: dict | None = None):
    """Return an ONNX model of ``nodes`` whose graph inputs are ``feeds`` and last node output is 'y'."""
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(k, TensorProto.FLOAT, v.shape) for k, v in feeds.items()],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=10)


def onnx_eval(nodes, feeds: dict, inits: dict | None = None) -> np.ndarray:
    """Run a small graph through onnx's ReferenceEvaluator."""
    return ReferenceEvaluator(make_model(nodes, feeds, inits)).run(None, feeds)[0]


def onnx_single(op_type: str, inputs: list, attrs: dict) -> np.ndarray:
    """Run one plain ONNX node (inputs named x0, x1, ...; None means omitted)."""
    names = ["" if a is None else f"x{i}" for i, a in enumerate(inputs)]
    feeds = {n: a for n, a in zip(names, inputs) if n}
    return onnx_eval([helper.make_node(op_type, names, ["y"], **attrs)], feeds)


def check(op_type: str, inputs: list, attrs: dict, expected) -> np.ndarray:
    """Run the reference (checking it leaves inputs alone) and compare it to ``expected``."""
    before = [None if a is None else np.array(a, copy=True) for a in inputs]
    got = run_op(op_type, inputs, attrs)
    for a, b in zip(inputs, before):
        if a is not None:
            np.testing.assert_array_equal(a, b)
    assert got.dtype == np.float32
    expected = np.asarray(expected)
    assert got.shape == expected.shape, (got.shape, expected.shape)
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)
    return got


# --------------------------------------------------------------------------- Conv

# (N, C, H, W, M, kh, kw, group, strides, dilations, pads, auto_pad, bias, act, act_min, act_max)
CONV_CASES = [
    (1, 3, 7, 9, 4, 3, 3, 1, [1, 1], [1, 1], [1, 1, 1, 1], "NOTSET", True, "", None, None),
    (2, 4, 11, 6, 6, 3, 2, 2, [2, 1], [1, 2], [0, 1, 2, 0], "NOTSET", True, "relu", None, None),
    (1, 6, 9, 9, 6, 3, 3, 6, [2, 2], [1, 1], [1, 1, 1, 1], "NOTSET", True, "clip", 0.0, 6.0),
    (1, 4, 10, 7, 8, 5, 3, 4, [3, 2], [2, 1], [2, 0, 1, 3], "NOTSET", False, "", None, None),
    (3, 6, 8, 5, 9, 2, 3, 3, [1, 2], [3, 1], [0, 0, 0, 0], "NOTSET", True, "clip", -0.5, None),
    (1, 5, 13, 13, 7, 1, 1, 1, [2, 2], [1, 1], [0, 0, 0, 0], "NOTSET", True, "clip", None, 0.25),
    (1, 2, 5, 4, 3, 5, 4, 1, [1, 1], [1, 1], [0, 0, 0, 0], "NOTSET", True, "", None, None),
    (2, 3, 7, 8, 5, 3, 3, 1, [2, 2], [1, 1], None, "SAME_UPPER", True, "", None, None),
    (2, 3, 7, 8, 5, 3, 3, 1, [2, 2], [1, 1], None, "SAME_LOWER", True, "relu", None, None),
    (1, 4, 9, 6, 4, 2, 4, 2, [3, 1], [2, 1], None, "SAME_UPPER", False, "", None, None),
    (1, 4, 9, 6, 4, 2, 4, 2, [3, 1], [2, 1], None, "SAME_LOWER", False, "", None, None),
    (1, 8, 6, 10, 8, 3, 3, 8, [1, 2], [2, 2], None, "SAME_LOWER", True, "clip", 0.0, 6.0),
    (1, 3, 10, 9, 2, 3, 2, 1, [2, 3], [1, 2], None, "VALID", True, "", None, None),
    (2, 1, 6, 6, 1, 2, 2, 1, [1, 1], [1, 1], [1, 0, 0, 1], "NOTSET", False, "relu", None, None),
]


def _conv_inputs(case):
    n, c, h, w, m, kh, kw, g, strides, dil, pads, auto_pad, bias, act, lo, hi = case
    rng = rng_for(case)
    x, wt = randn(rng, n, c, h, w), randn(rng, m, c // g, kh, kw)
    b = randn(rng, m) if bias else None
    attrs = {"strides": strides, "dilations": dil, "group": g, "auto_pad": auto_pad}
    if pads is not None:
        attrs["pads"] = pads
    ours = dict(attrs, activation=act)
    if lo is not None:
        ours["activation_min"] = lo
    if hi is not None:
        ours["activation_max"] = hi
    inputs = [x, wt] if b is None else [x, wt, b]
    return inputs, attrs, ours


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_vs_onnx(case):
    inputs, attrs, ours = _conv_inputs(case)
    act, lo, hi = case[-3:]
    names = [f"x{i}" for i in range(len(inputs))]
    nodes = [helper.make_node("Conv", names, ["y" if not act else "c"], **attrs)]
    inits = {}
    if act == "relu":
        nodes.append(helper.make_node("Relu", ["c"], ["y"]))
    elif act == "clip":  # opset-13 Clip: min/max are optional inputs
        if lo is not None:
            inits["lo"] = np.float32(lo)
        if hi is not None:
            inits["hi"] = np.float32(hi)
        nodes.append(helper.make_node(
            "Clip", ["c", "lo" if lo is not None else "", "hi" if hi is not None else ""], ["y"]))
    expected = onnx_eval(nodes, dict(zip(names, inputs)), inits)
    check("Conv", inputs, ours, expected)


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_vs_torch(case):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    inputs, attrs, ours = _conv_inputs(case)
    x, wt = (torch.from_numpy(a).double() for a in inputs[:2])
    b = torch.from_numpy(inputs[2]).double() if len(inputs) > 2 else None
    t, l, bt, r = resolve_pads(x.shape[2:], wt.shape[2:], attrs["strides"], attrs["dilations"],
                              attrs.get("pads"), attrs["auto_pad"])
    y = F.conv2d(F.pad(x, (l, r, t, bt)), wt, b, stride=attrs["strides"],
                 dilation=attrs["dilations"], groups=attrs["group"])
    if ours["activation"] == "relu":
        y = torch.relu(y)
    elif ours["activation"] == "clip":
        y = torch.clamp(y, ours.get("activation_min"), ours.get("activation_max"))
    check("Conv", inputs, ours, y.numpy())


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("hw,k,d", [((7, 8), (3, 3), (1, 1)), ((6, 9), (4, 2), (1, 2)), ((5, 5), (2, 3), (2, 1))])
def test_conv_same_upper_stride1_vs_torch_padding_same(hw, k, d):
    """torch's padding='same' puts the odd pad cell at the end, like SAME_UPPER."""
    torch = pytest.importorskip("torch")
    rng = rng_for((hw, k, d))
    x, w = randn(rng, 1, 2, *hw), randn(rng, 3, 2, *k)
    y = torch.nn.functional.conv2d(torch.from_numpy(x).double(), torch.from_numpy(w).double(),
                                   padding="same", dilation=d)
    check("Conv", [x, w], {"auto_pad": "SAME_UPPER", "dilations": list(d)}, y.numpy())


# --------------------------------------------------------------------------- pad/shape helpers

@pytest.mark.parametrize("in_hw,k,s,d,auto_pad,expected", [
    ((7, 7), (3, 3), (2, 2), (1, 1), "SAME_UPPER", [1, 1, 1, 1]),
    ((8, 8), (3, 3), (2, 2), (1, 1), "SAME_UPPER", [0, 0, 1, 1]),
    ((8, 8), (3, 3), (2, 2), (1, 1), "SAME_LOWER", [1, 1, 0, 0]),
    ((7, 6), (2, 4), (1, 1), (2, 1), "SAME_UPPER", [1, 1, 1, 2]),
    ((7, 6), (2, 4), (1, 1), (2, 1), "SAME_LOWER", [1, 2, 1, 1]),
    ((5, 4), (1, 1), (2, 3), (1, 1), "SAME_UPPER", [0, 0, 0, 0]),  # negative total clamps to 0
    ((9, 9), (3, 3), (1, 1), (1, 1), "VALID", [0, 0, 0, 0]),
])
def test_resolve_pads(in_hw, k, s, d, auto_pad, expected):
    pads = resolve_pads(in_hw, k, s, d, None, auto_pad)
    assert pads == expected
    if auto_pad.startswith("SAME"):
        assert conv_output_hw(in_hw, k, s, d, pads) == tuple(-(-i // st) for i, st in zip(in_hw, s))
    assert resolve_pads(in_hw, k, s, d, [1, 2, 3, 4], "NOTSET") == [1, 2, 3, 4]


@pytest.mark.parametrize("size,k,s,d,p", [(5, 3, 2, 1, 1), (4, 2, 2, 1, 1), (7, 3, 3, 1, 0), (10, 2, 3, 2, 1), (6, 3, 2, 1, 1)])
def test_pool_output_hw_vs_torch(size, k, s, d, p):
    torch = pytest.importorskip("torch")
    x = torch.zeros(1, 1, size, size + 1)
    for ceil in (0, 1):
        y = torch.nn.functional.max_pool2d(x, k, s, p, dilation=d, ceil_mode=bool(ceil))
        assert pool_output_hw((size, size + 1), (k, k), (s, s), (d, d), [p] * 4, ceil) == tuple(y.shape[2:])


# --------------------------------------------------------------------------- pools

# (op, shape, attrs): ReferenceEvaluator is right on all of these.
POOL_CASES = [
    ("MaxPool", (1, 2, 7, 7), dict(kernel_shape=[3, 3])),
    ("MaxPool", (2, 3, 9, 8), dict(kernel_shape=[3, 2], strides=[2, 2], pads=[1, 0, 1, 1])),
    ("MaxPool", (1, 2, 7, 8), dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)),
    ("MaxPool", (1, 2, 8, 8), dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1)),
    ("MaxPool", (1, 2, 9, 9), dict(kernel_shape=[2, 2], strides=[3, 3], dilations=[2, 2], ceil_mode=1)),
    ("MaxPool", (1, 3, 10, 11), dict(kernel_shape=[3, 2], strides=[2, 3], dilations=[2, 2], pads=[2, 1, 0, 1])),
    ("MaxPool", (1, 2, 7, 8), dict(kernel_shape=[3, 2], strides=[2, 2], auto_pad="SAME_UPPER")),
    ("MaxPool", (1, 2, 7, 8), dict(kernel_shape=[2, 2], auto_pad="SAME_LOWER")),
    ("MaxPool", (1, 2, 7, 8), dict(kernel_shape=[3, 3], auto_pad="SAME_LOWER", dilations=[2, 2])),
    ("MaxPool", (1, 2, 7, 8), dict(kernel_shape=[2, 3], strides=[3, 1], dilations=[2, 2], auto_pad="VALID")),
    ("MaxPool", (1, 2, 9, 9), dict(kernel_shape=[2, 2], strides=[2, 2], auto_pad="VALID", ceil_mode=1)),
    ("AveragePool", (1, 2, 7, 7), dict(kernel_shape=[3, 3])),
    ("AveragePool", (2, 3, 7, 7), dict(kernel_shape=[3, 3], pads=[1, 0, 0, 2], count_include_pad=0)),
    ("AveragePool", (2, 3, 7, 7), dict(kernel_shape=[3, 3], pads=[1, 0, 0, 2], count_include_pad=1)),
    ("AveragePool", (1, 2, 8, 8), dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1)),
    ("AveragePool", (1, 2, 8, 8), dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1, count_include_pad=1)),
    ("AveragePool", (1, 2, 10, 10), dict(kernel_shape=[3, 3], strides=[4, 4], pads=[1, 1, 1, 1], ceil_mode=1, count_include_pad=1)),
    ("AveragePool", (1, 1, 7, 7), dict(kernel_shape=[3, 3], strides=[3, 3], pads=[0, 1, 1, 0], ceil_mode=1, count_include_pad=1)),
    ("AveragePool", (1, 1, 9, 9), dict(kernel_shape=[3, 3], strides=[2, 2], dilations=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1, count_include_pad=1)),
    ("AveragePool", (1, 2, 7, 8), dict(kernel_shape=[3, 2], strides=[2, 2], auto_pad="SAME_LOWER", count_include_pad=1)),
    ("AveragePool", (1, 2, 7, 8), dict(kernel_shape=[3, 2], strides=[2, 2], auto_pad="SAME_UPPER", count_include_pad=0)),
    ("AveragePool", (1, 2, 7, 8), dict(kernel_shape=[2, 3], strides=[3, 1], auto_pad="SAME_LOWER", count_include_pad=1)),
    ("AveragePool", (1, 2, 6, 9), dict(kernel_shape=[2, 3], strides=[2, 2], auto_pad="VALID")),
]


@pytest.mark.parametrize("op,shape,attrs", POOL_CASES)
def test_pool_vs_onnx(op, shape, attrs):
    x = randn(rng_for((op, shape, attrs)), *shape)
    check(op, [x], attrs, onnx_single(op, [x], attrs))


# ReferenceEvaluator (onnx 1.16-1.23) is wrong on these; the ONNX spec, onnxruntime and
# (where expressible) torch agree with the reference.
ORE_POOL_BUGS = [
    # MaxPool with unit strides/dilations takes a code path that unpacks pads as
    # [top, bottom, left, right] instead of ONNX's [top, left, bottom, right].
    ("MaxPool", (1, 1, 7, 7), dict(kernel_shape=[3, 3], pads=[0, 2, 1, 0])),
    ("MaxPool", (1, 1, 7, 7), dict(kernel_shape=[3, 3], pads=[0, 2, 1, 0], ceil_mode=1)),
    # MaxPool SAME_LOWER with stride > 1 uses floor(in / stride) outputs and the SAME_UPPER split.
    ("MaxPool", (1, 2, 7, 8), dict(kernel_shape=[3, 2], strides=[2, 2], auto_pad="SAME_LOWER")),
    # AveragePool ceil_mode: when the overhang is >= 2 cells, half of it is put at the
    # *start*, shifting every window (seen when stride >= 3).
    ("AveragePool", (1, 1, 7, 7), dict(kernel_shape=[3, 3], strides=[3, 3], ceil_mode=1)),
    ("AveragePool", (1, 1, 7, 7), dict(kernel_shape=[3, 3], strides=[3, 3], ceil_mode=1, count_include_pad=1)),
]


def _ort(op, x, attrs):
    ort = pytest.importorskip("onnxruntime")
    model = make_model([helper.make_node(op, ["x0"], ["y"], **attrs)], {"x0": x})
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x0": x})[0]


@pytest.mark.parametrize("op,shape,attrs", ORE_POOL_BUGS)
def test_pool_where_onnx_reference_is_off_vs_onnxruntime(op, shape, attrs):
    x = randn(rng_for((op, shape, attrs)), *shape)
    check(op, [x], attrs, _ort(op, x, attrs))


@pytest.mark.parametrize("op,shape,attrs", [
    # Spec: SAME pad_total = (out-1)*s + ((k-1)*d+1) - in, i.e. dilation counts. onnxruntime
    # ignores dilation here and ReferenceEvaluator is also off, so compare with the explicit pads.
    ("MaxPool", (1, 2, 7, 8), dict(kernel_shape=[2, 2], strides=[3, 2], dilations=[2, 1], auto_pad="SAME_UPPER")),
    ("MaxPool", (1, 2, 7, 8), dict(kernel_shape=[2, 2], strides=[3, 2], dilations=[2, 1], auto_pad="SAME_LOWER")),
    ("AveragePool", (1, 2, 7, 8), dict(kernel_shape=[2, 3], strides=[3, 1], dilations=[2, 2], auto_pad="SAME_LOWER", count_include_pad=1)),
    ("AveragePool", (1, 2, 7, 8), dict(kernel_shape=[2, 3], strides=[3, 1], dilations=[2, 2], auto_pad="VALID")),
    # Spec: with auto_pad, the output size formulas ignore ceil_mode (onnxruntime applies it to VALID).
    ("AveragePool", (1, 2, 9, 9), dict(kernel_shape=[2, 2], strides=[2, 2], auto_pad="VALID", ceil_mode=1)),
    ("AveragePool", (1, 2, 9, 10), dict(kernel_shape=[3, 2], strides=[2, 3], auto_pad="SAME_UPPER", ceil_mode=1)),
])
def test_pool_auto_pad_equals_spec_explicit_pads(op, shape, attrs):
    x = randn(rng_for((op, shape, attrs)), *shape)
    k, s, d = attrs["kernel_shape"], attrs["strides"], attrs.get("dilations", [1, 1])
    explicit = {key: v for key, v in attrs.items() if key not in ("auto_pad", "ceil_mode")}
    explicit["pads"] = resolve_pads(shape[2:], k, s, d, None, attrs["auto_pad"])
    if attrs["auto_pad"].startswith("SAME"):
        assert pool_output_hw(shape[2:], k, s, d, explicit["pads"]) == tuple(-(-i // j) for i, j in zip(shape[2:], s))
    check(op, [x], attrs, _ort(op, x, explicit))


# (kernel, stride, pad, dilation, ceil_mode, count_include_pad); torch pads symmetrically.
TORCH_POOL_CASES = [
    (3, 2, 1, 1, False, True), (3, 2, 1, 1, True, True), (3, 2, 1, 1, True, False),
    (2, 2, 0, 1, True, False), (3, 3, 1, 1, True, True), (3, 3, 0, 1, True, True),
    (4, 3, 2, 1, True, True), (5, 1, 2, 1, False, False), (2, 3, 1, 2, True, False),
    (3, 2, 0, 2, True, False),
]


@pytest.mark.parametrize("case", TORCH_POOL_CASES)
@pytest.mark.parametrize("hw", [(7, 7), (8, 11)])
def test_pools_vs_torch(case, hw):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    k, s, p, d, ceil, cip = case
    x = randn(rng_for((case, hw)), 2, 3, *hw)
    t = torch.from_numpy(x).double()
    attrs = dict(kernel_shape=[k, k], strides=[s, s], pads=[p] * 4, ceil_mode=int(ceil))
    check("MaxPool", [x], dict(attrs, dilations=[d, d]),
          F.max_pool2d(t, k, s, p, dilation=d, ceil_mode=ceil).numpy())
    if d == 1:
        check("AveragePool", [x], dict(attrs, count_include_pad=int(cip)),
              F.avg_pool2d(t, k, s, p, ceil_mode=ceil, count_include_pad=cip).numpy())


def test_maxpool_padding_never_wins():
    x = -np.arange(1, 17, dtype=np.float32).reshape(1, 1, 4, 4)
    y = run_op("MaxPool", [x], dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
    assert (y < 0).all()
    np.testing.assert_array_equal(y[0, 0, 0], [-1, -1, -2, -3])


@pytest.mark.parametrize("shape", [(1, 3, 5, 7), (2, 4, 1, 1), (2, 2, 6, 3)])
def test_global_average_pool_vs_onnx(shape):
    x = randn(rng_for(shape), *shape)
    check("GlobalAveragePool", [x], {}, onnx_single("GlobalAveragePool", [x], {}))


# --------------------------------------------------------------------------- elementwise

@pytest.mark.parametrize("lo,hi", [(None, None), (0.0, 6.0), (-0.3, None), (None, 0.2), (0.5, -0.5)])
def test_clip_vs_onnx(lo, hi):
    x = randn(rng_for((lo, hi)), 2, 3, 4)
    inits = {}
    if lo is not None:
        inits["lo"] = np.float32(lo)
    if hi is not None:
        inits["hi"] = np.float32(hi)
    node = helper.make_node("Clip", ["x0", "lo" if lo is not None else "", "hi" if hi is not None else ""], ["y"])
    attrs = {k: v for k, v in (("min", lo), ("max", hi)) if v is not None}
    check("Clip", [x], attrs, onnx_eval([node], {"x0": x}, inits))


def test_relu_vs_onnx():
    x = randn(rng_for("relu"), 3, 5, 2)
    check("Relu", [x], {}, onnx_single("Relu", [x], {}))


@pytest.mark.parametrize("op", ["Add", "Mul"])
@pytest.mark.parametrize("sa,sb", [((2, 3, 4, 5), (2, 3, 4, 5)), ((2, 3, 4, 5), (1, 3, 1, 1)), ((4, 1), (3,)), ((2, 1, 5), (1, 4, 1)), ((3,), ())])
def test_binary_vs_onnx(op, sa, sb):
    rng = rng_for((op, sa, sb))
    a, b = randn(rng, *sa), randn(rng, *sb)
    check(op, [a, b], {}, onnx_single(op, [a, b], {}))


# --------------------------------------------------------------------------- shape ops

@pytest.mark.parametrize("shapes,axis", [([(2, 3, 4), (2, 5, 4)], 1), ([(2, 3), (2, 3), (1, 3)], 0), ([(2, 3, 4), (2, 3, 1)], -1), ([(1, 2, 3, 3), (1, 0, 3, 3)], 1)])
def test_concat_vs_onnx(shapes, axis):
    rng = rng_for((shapes, axis))
    xs = [randn(rng, *s) for s in shapes]
    check("Concat", xs, {"axis": axis}, onnx_single("Concat", xs, {"axis": axis}))


@pytest.mark.parametrize("shape,axis", [((2, 3, 4, 5), 1), ((2, 3, 4, 5), 0), ((2, 3, 4, 5), 4), ((2, 3, 4, 5), -1), ((2, 3, 4, 5), -3), ((6,), 1)])
def test_flatten_vs_onnx(shape, axis):
    x = randn(rng_for((shape, axis)), *shape)
    check("Flatten", [x], {"axis": axis}, onnx_single("Flatten", [x], {"axis": axis}))


def test_flatten_default_axis():
    x = randn(rng_for("flat"), 2, 3, 4)
    assert run_op("Flatten", [x], {}).shape == (2, 12)


@pytest.mark.parametrize("shape,target", [((2, 3, 4), [0, -1]), ((2, 3, 4), [-1]), ((2, 3, 4), [4, 0, 2]), ((2, 3, 4), [0, 0, 2, 2]), ((6, 4), [2, -1, 3]), ((1, 8, 1, 1), [1, 8])])
def test_reshape_vs_onnx(shape, target):
    x = randn(rng_for((shape, target)), *shape)
    node = helper.make_node("Reshape", ["x0", "shape"], ["y"])
    expected = onnx_eval([node], {"x0": x}, {"shape": np.array(target, dtype=np.int64)})
    check("Reshape", [x], {"shape": target}, expected)


@pytest.mark.parametrize("shape,perm", [((2, 3, 4), None), ((2, 3, 4, 5), [0, 2, 3, 1]), ((2, 3, 4, 5), [3, 1, 0, 2]), ((5,), [0])])
def test_transpose_vs_onnx(shape, perm):
    x = randn(rng_for((shape, perm)), *shape)
    attrs = {} if perm is None else {"perm": perm}
    check("Transpose", [x], attrs, onnx_single("Transpose", [x], attrs))


# --------------------------------------------------------------------------- linear algebra

# (M, K, N, transA, transB, alpha, beta, C shape or None)
GEMM_CASES = [
    (3, 4, 5, 0, 0, 1.0, 1.0, (5,)),
    (3, 4, 5, 1, 0, 0.5, 2.0, (3, 5)),
    (3, 4, 5, 0, 1, 1.0, 1.0, (3, 1)),
    (7, 2, 6, 1, 1, -1.5, 0.25, (1, 6)),
    (1, 9, 4, 0, 1, 1.0, 1.0, None),
    (4, 3, 2, 0, 0, 2.0, 3.0, ()),
]


def _gemm_inputs(case):
    m, k, n, ta, tb, alpha, beta, cshape = case
    rng = rng_for(case)
    a = randn(rng, *((k, m) if ta else (m, k)))
    b = randn(rng, *((n, k) if tb else (k, n)))
    c = None if cshape is None else randn(rng, *cshape)
    attrs = dict(transA=ta, transB=tb, alpha=alpha, beta=beta)
    return ([a, b] if c is None else [a, b, c]), attrs


@pytest.mark.parametrize("case", GEMM_CASES)
def test_gemm_vs_onnx(case):
    inputs, attrs = _gemm_inputs(case)
    check("Gemm", inputs, attrs, onnx_single("Gemm", inputs, attrs))


@pytest.mark.parametrize("case", GEMM_CASES)
def test_gemm_vs_torch(case):
    torch = pytest.importorskip("torch")
    inputs, attrs = _gemm_inputs(case)
    a, b = (torch.from_numpy(v).double() for v in inputs[:2])
    a = a.T if attrs["transA"] else a
    b = b.T if attrs["transB"] else b
    c = torch.from_numpy(inputs[2]).double() if len(inputs) > 2 else torch.zeros((), dtype=torch.float64)
    y = torch.addmm(c.expand(a.shape[0], b.shape[1]), a, b, beta=attrs["beta"], alpha=attrs["alpha"])
    check("Gemm", inputs, attrs, y.numpy())


@pytest.mark.parametrize("sa,sb", [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((2, 1, 3, 4), (5, 4, 2)), ((4,), (4, 3)), ((3, 4), (4,)), ((4,), (4,))])
def test_matmul_vs_onnx(sa, sb):
    rng = rng_for((sa, sb))
    a, b = randn(rng, *sa), randn(rng, *sb)
    check("MatMul", [a, b], {}, onnx_single("MatMul", [a, b], {}))


@pytest.mark.parametrize("shape,axis", [((3, 7), -1), ((3, 7), 0), ((2, 3, 4, 5), 1), ((2, 3, 4), None)])
def test_softmax_vs_onnx_and_torch(shape, axis):
    x = 4 * randn(rng_for((shape, axis)), *shape)
    attrs = {} if axis is None else {"axis": axis}
    check("Softmax", [x], attrs, onnx_single("Softmax", [x], attrs))
    torch = pytest.importorskip("torch")
    y = torch.softmax(torch.from_numpy(x).double(), dim=-1 if axis is None else axis)
    check("Softmax", [x], attrs, y.numpy())


def test_softmax_large_values_stable():
    x = np.array([[1000.0, 1001.0, 1002.0]], dtype=np.float32)
    y = run_op("Softmax", [x], {})
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y.sum(), 1.0, rtol=1e-6)


@pytest.mark.parametrize("shape,eps", [((2, 3, 4, 5), None), ((1, 6, 3, 3), 1e-3), ((4, 5), 1e-5)])
def test_batchnorm_vs_onnx(shape, eps):
    rng = rng_for((shape, eps))
    c = shape[1]
    x = randn(rng, *shape)
    scale, bias, mean = randn(rng, c), randn(rng, c), randn(rng, c)
    var = rng.uniform(0.1, 2.0, c).astype(np.float32)
    attrs = {} if eps is None else {"epsilon": eps}
    inputs = [x, scale, bias, mean, var]
    check("BatchNormalization", inputs, attrs, onnx_single("BatchNormalization", inputs, attrs))


# --------------------------------------------------------------------------- zero-element tensors

ZERO_CASES = [
    ("Conv", [(0, 3, 7, 7), (4, 3, 3, 3), (4,)], dict(pads=[1, 1, 1, 1], activation="relu"), (0, 4, 7, 7)),
    ("Conv", [(0, 4, 8, 8), (4, 2, 3, 3)], dict(group=2, strides=[2, 2], auto_pad="SAME_LOWER"), (0, 4, 4, 4)),
    ("Conv", [(2, 0, 5, 5), (3, 0, 3, 3), (3,)], {}, (2, 3, 3, 3)),
    ("MaxPool", [(0, 3, 7, 7)], dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1), (0, 3, 3, 3)),
    ("AveragePool", [(0, 3, 7, 7)], dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1), (0, 3, 7, 7)),
    ("GlobalAveragePool", [(0, 5, 3, 3)], {}, (0, 5, 1, 1)),
    ("Relu", [(0, 4)], {}, (0, 4)),
    ("Clip", [(0, 4)], dict(min=0.0, max=6.0), (0, 4)),
    ("Add", [(0, 3, 1, 1), (1, 3, 4, 4)], {}, (0, 3, 4, 4)),
    ("Mul", [(0, 3), (3,)], {}, (0, 3)),
    ("Concat", [(0, 3, 2, 2), (0, 5, 2, 2)], dict(axis=1), (0, 8, 2, 2)),
    ("Flatten", [(0, 3, 4, 5)], {}, (0, 60)),
    ("Reshape", [(0, 3, 4, 5)], dict(shape=[0, -1]), (0, 60)),
    ("Reshape", [(0, 3, 4, 5)], dict(shape=[-1, 20]), (0, 20)),
    ("Transpose", [(0, 3, 4)], dict(perm=[2, 0, 1]), (4, 0, 3)),
    ("Gemm", [(0, 5), (6, 5), (6,)], dict(transB=1), (0, 6)),
    ("Gemm", [(3, 0), (0, 4), (4,)], {}, (3, 4)),
    ("MatMul", [(0, 2, 3), (3, 4)], {}, (0, 2, 4)),
    ("Softmax", [(0, 10)], {}, (0, 10)),
    ("BatchNormalization", [(0, 3, 2, 2), (3,), (3,), (3,), (3,)], {}, (0, 3, 2, 2)),
]


@pytest.mark.parametrize("op,shapes,attrs,out_shape", ZERO_CASES)
def test_zero_element_tensors(op, shapes, attrs, out_shape):
    rng = rng_for((op, shapes))
    inputs = [np.abs(randn(rng, *s)) + 0.1 for s in shapes]
    y = run_op(op, inputs, attrs)
    assert y.dtype == np.float32 and y.shape == out_shape
    if op == "Conv" and shapes[0][1] == 0:  # no input channels: output is the bias
        np.testing.assert_allclose(y, np.broadcast_to(inputs[2].reshape(1, -1, 1, 1), out_shape))
    if op == "Gemm" and shapes[0][1] == 0:  # K == 0: output is beta * C
        np.testing.assert_allclose(y, np.broadcast_to(inputs[2], out_shape))


def test_conv_batch0_vs_torch():
    torch = pytest.importorskip("torch")
    x, w = np.zeros((0, 3, 7, 7), np.float32), randn(rng_for("b0"), 4, 3, 3, 3)
    y = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), stride=2, padding=1)
    check("Conv", [x, w], dict(strides=[2, 2], pads=[1, 1, 1, 1]), y.numpy())


# --------------------------------------------------------------------------- dispatch and errors

def test_unknown_op_raises_keyerror_naming_it():
    with pytest.raises(KeyError, match="FancyOp"):
        run_op("FancyOp", [np.zeros(1, np.float32)], {})


def test_outputs_are_float32_even_for_other_dtypes():
    x = np.arange(12, dtype=np.int64).reshape(3, 4)
    assert run_op("Relu", [x], {}).dtype == np.float32
    assert run_op("MatMul", [x.astype(np.float64), x.T.copy()], {}).dtype == np.float32


@pytest.mark.parametrize("op,inputs,attrs", [
    ("Conv", [np.zeros((1, 3, 5, 5), np.float32), np.zeros((4, 2, 3, 3), np.float32)], {}),
    ("Conv", [np.zeros((1, 3, 2, 2), np.float32), np.zeros((4, 3, 3, 3), np.float32)], {}),
    ("Reshape", [np.zeros((2, 3), np.float32)], {"shape": [-1, -1]}),
    ("Reshape", [np.zeros((2, 3), np.float32)], {"shape": [4, -1]}),
])
def test_invalid_inputs_raise(op, inputs, attrs):
    with pytest.raises(ValueError):
        run_op(op, inputs, attrs)
