"""QDQ import: QuantizeLinear / DequantizeLinear (runtime/ops/quant.py), int8 weight
storage from a weight's DequantizeLinear and the Q -> DQ fusion (runtime/qdq.py).

References: the NumPy references are checked against onnx.reference.ReferenceEvaluator
(exact: same integers, same float32 values, ties included); the kernels against the
references (exact); whole QDQ models against onnxruntime on the same model, within one
step of the output's quantization (the float sums before that rounding differ in order,
so a value on a rounding boundary may land one step apart); a model quantized by
onnxruntime's quantize_static within 5% of its max |logit|.
"""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

import jitconv as jc  # noqa: E402
from jitconv.errors import GraphError  # noqa: E402
from jitconv.runtime.onnx_backend import JitconvBackend  # noqa: E402
from jitconv.runtime.onnx_import import import_model  # noqa: E402
from jitconv.kernels.vnni import has_avx512  # noqa: E402
from jitconv.runtime.reference import run_op  # noqa: E402

F32 = TensorProto.FLOAT
NP_CODE = {np.dtype(np.int8): TensorProto.INT8, np.dtype(np.uint8): TensorProto.UINT8,
           np.dtype(np.int32): TensorProto.INT32}


def _model(nodes, inputs, outputs, inits, opset=21):
    graph = helper.make_graph(nodes, "qdq", inputs, outputs,
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8 if opset < 21 else 10
    onnx.checker.check_model(model)
    return model


def _ort(model, feeds):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _jc(model, feeds, **cfg):
    graph = import_model(model).graph
    sess = jc.Session(graph, jc.Config(threads=2, **cfg))
    return sess.run(feeds), sess


def _ties(rng, shape, scale):
    """Values on and near the rounding boundaries of ``scale`` (k + 1/2 steps), and some
    far outside an int8 range (saturation)."""
    k = rng.integers(-300, 300, size=shape).astype(np.float64)
    frac = rng.choice([0.5, -0.5, 0.49, 0.51, 0.0, 0.25], size=shape)
    return ((k + frac) * scale).astype(np.float32)


# -- references against ONNX's own -------------------------------------------------------

CASES = [  # (x shape, scale shape, axis, zero-point dtype)
    ((2, 3, 4, 5), (), 1, np.uint8), ((2, 3, 4, 5), (), 1, np.int8),
    ((2, 3, 4, 5), (3,), 1, np.int8), ((2, 3, 4, 5), (5,), -1, np.uint8),
    ((6, 7), (6,), 0, np.int8), ((6, 7), (1,), 0, np.uint8), ((9,), (), 0, None)]


@pytest.mark.parametrize("xs,ss,axis,zt", CASES)
def test_references_match_onnx_reference_evaluator(rng, xs, ss, axis, zt):
    scale = rng.uniform(0.01, 0.2, size=ss).astype(np.float32)
    x = _ties(rng, xs, float(scale.reshape(-1)[0]))
    zero = None if zt is None else rng.integers(-5, 5, size=ss).astype(np.int64) + \
        (128 if zt == np.uint8 else 0)
    zero = None if zt is None else zero.astype(zt)
    names = ["x", "s"] + ([] if zero is None else ["z"])
    ev = ReferenceEvaluator(_model(
        [helper.make_node("QuantizeLinear", names, ["q"], axis=axis),
         helper.make_node("DequantizeLinear", ["q", "s"] + names[2:], ["y"], axis=axis)],
        [helper.make_tensor_value_info("x", F32, xs)],
        [helper.make_tensor_value_info("q", NP_CODE[np.dtype(zt or np.uint8)], xs),
         helper.make_tensor_value_info("y", F32, xs)],
        {"s": scale, **({} if zero is None else {"z": zero})}))
    q_want, y_want = ev.run(None, {"x": x})
    dtype = np.dtype(zt or np.uint8).name
    ins = [x, scale] + ([] if zero is None else [zero])
    q = run_op("QuantizeLinear", ins, {"axis": axis, "dtype": dtype})
    assert q.dtype == q_want.dtype and np.array_equal(q, q_want)
    y = run_op("DequantizeLinear", [q, scale] + ins[2:], {"axis": axis})
    assert y.dtype == np.float32 and np.array_equal(y, y_want)
    fused = run_op("QuantizeLinear", ins, {"axis": axis, "dtype": dtype, "dequantize": 1})
    assert np.array_equal(fused, y_want)


def test_int32_bias_dequantize_matches_onnx(rng):
    b = rng.integers(-2**20, 2**20, size=(16,)).astype(np.int32)
    s = rng.uniform(1e-5, 1e-3, size=(16,)).astype(np.float32)
    ev = ReferenceEvaluator(_model(
        [helper.make_node("DequantizeLinear", ["b", "s"], ["y"], axis=0)], [],
        [helper.make_tensor_value_info("y", F32, (16,))], {"b": b, "s": s}))
    assert np.array_equal(run_op("DequantizeLinear", [b, s], {"axis": 0}),
                          ev.run(None, {})[0])


# -- kernels: a Session gives the reference's numbers exactly ------------------------------

@pytest.mark.parametrize("opset", [10, 13, 19, 21])
@pytest.mark.parametrize("per_axis,zt", [(False, np.uint8), (False, np.int8),
                                         (True, np.int8), (True, np.uint8)])
def test_quantize_and_pair_run_exactly_as_onnx(rng, opset, per_axis, zt):
    if opset == 10 and per_axis:
        pytest.skip("per-axis scales came in opset 13")
    shape = (2, 4, 32, 72)        # per tensor: 3 rows of 6144 (backends/cpu_quant._rows)
    scale = rng.uniform(0.02, 0.1, size=(4,) if per_axis else ()).astype(np.float32)
    zero = (rng.integers(-3, 3, size=scale.shape) + (128 if zt == np.uint8 else 0)).astype(zt)
    x = _ties(rng, shape, float(scale.reshape(-1)[0]))
    ratio = x[:, 0] / scale.reshape(-1)[0]               # float32, as ONNX divides
    assert np.count_nonzero(ratio - np.floor(ratio) == 0.5) > 10   # ties are exercised
    code = NP_CODE[np.dtype(zt)]
    model = _model(
        [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
         helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"]),
         helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q_out"])],
        [helper.make_tensor_value_info("x", F32, shape)],
        [helper.make_tensor_value_info("y", F32, shape),
         helper.make_tensor_value_info("q_out", code, shape)],
        {"s": scale, "z": zero}, opset=opset)
    y_ort, q_ort = _ort(model, {"x": x})
    ev_model = onnx.ModelProto()
    ev_model.CopyFrom(model)        # ReferenceEvaluator starts at opset 19: same semantics
    ev_model.opset_import[0].version = max(opset, 19)
    y_ev, q_ev = ReferenceEvaluator(ev_model).run(None, {"x": x})
    assert np.array_equal(y_ort, y_ev) and np.array_equal(q_ort, q_ev)
    got, sess = _jc(model, {"x": x})
    assert np.array_equal(got["y"], y_ev)
    assert np.array_equal(got["q_out"], q_ev.astype(np.float32))     # integers as float32
    kernels = sorted(op.kernel for op in sess.info().ops)
    assert kernels == ["quantize_dequantize", "quantize_linear"], kernels   # pair fused
    rep = JitconvBackend.prepare(model)
    y_b, q_b = rep.run({"x": x})
    assert q_b.dtype == zt and np.array_equal(q_b, q_ev) and np.array_equal(y_b, y_ev)


def test_dequantize_kernel_runs_with_a_run_time_scale(rng):
    x = rng.integers(-128, 128, size=(3, 5, 4)).astype(np.int8)
    s = rng.uniform(0.01, 1, size=(5,)).astype(np.float32)
    z = rng.integers(-4, 4, size=(5,)).astype(np.int8)
    model = _model([helper.make_node("DequantizeLinear", ["x", "s", "z"], ["y"], axis=1)],
                   [helper.make_tensor_value_info("x", TensorProto.INT8, x.shape),
                    helper.make_tensor_value_info("s", F32, s.shape)],
                   [helper.make_tensor_value_info("y", F32, x.shape)], {"z": z})
    (want,) = ReferenceEvaluator(model).run(None, {"x": x, "s": s})
    (got,) = JitconvBackend.prepare(model).run({"x": x, "s": s})
    assert np.array_equal(got, want)


# -- QDQ models against onnxruntime --------------------------------------------------------

def _q_params(rng, values, zt):
    """Scale and zero point covering ``values`` (a uint8 zero point sits at the minimum)."""
    lo, hi = float(min(values.min(), 0)), float(max(values.max(), 0))
    if zt == np.uint8:
        s = np.float32((hi - lo) / 255)
        return s, np.uint8(np.clip(round(-lo / s), 0, 255))
    return np.float32(max(-lo, hi) / 127), np.int8(0)


def _qdq(name, out, s_name, z_name, nodes, axis=1):
    nodes.append(helper.make_node("QuantizeLinear", [name, s_name, z_name], [out + "_q"],
                                  axis=axis))
    nodes.append(helper.make_node("DequantizeLinear", [out + "_q", s_name, z_name], [out],
                                  axis=axis))


def _weight(rng, w, per_axis, axis, wt, inits, name):
    """int8 (symmetric) or uint8 (zero point) weight + its DequantizeLinear node."""
    red = tuple(i for i in range(w.ndim) if i != axis) if per_axis else None
    if wt == np.int8:
        s = (np.abs(w).max(axis=red) / 127).astype(np.float32)
        z = np.zeros(s.shape, np.int8)
    else:
        lo, hi = np.minimum(w.min(axis=red), 0), np.maximum(w.max(axis=red), 0)
        s = ((hi - lo) / 255).astype(np.float32)
        z = np.clip(np.rint(-lo / s), 0, 255).astype(np.uint8)
    shape = [1] * w.ndim
    if per_axis:
        shape[axis] = -1
    q = np.clip(np.rint(w / s.reshape(shape)) + z.astype(np.float64).reshape(shape),
                *((-128, 127) if wt == np.int8 else (0, 255))).astype(wt)
    inits.update({name + "_q": q, name + "_s": s, name + "_z": z})
    return helper.make_node("DequantizeLinear", [name + "_q", name + "_s", name + "_z"],
                            [name], axis=axis)


def _layer_model(rng, kind, per_axis, at, wt):
    """x -> QDQ -> one layer (weights via DequantizeLinear) -> QDQ -> y."""
    conv = kind.startswith("conv")
    if conv:
        xs, w = (1, 8, 10, 10), rng.normal(0, 0.3, (16, 8, 3, 3)).astype(np.float32)
    else:
        xs, w = (4, 32), rng.normal(0, 0.3, (16, 32)).astype(np.float32)
    x = rng.normal(0, 1, xs).astype(np.float32)
    inits, nodes = {}, []
    sx, zx = _q_params(rng, x, at)
    inits.update(sx=sx, zx=np.asarray(zx))
    _qdq("x", "xd", "sx", "zx", nodes)
    b = rng.normal(0, 0.5, (16,)).astype(np.float32)
    if kind == "matmul":
        w = np.ascontiguousarray(w.T)                    # (32, 16), output channels axis 1
    waxis = 1 if kind in ("matmul", "gemm_t0", "conv_in_axis") else 0
    if kind == "gemm_t0":
        w = np.ascontiguousarray(w.T)
    nodes.append(_weight(rng, w, per_axis, waxis, wt, inits, "w"))
    if conv:
        # an int32 bias the way quantizers write it: scale = input scale * weight scale
        sb = (sx * inits["w_s"].max()).astype(np.float32) * np.ones(16, np.float32)
        inits.update(b_q=np.rint(b / sb).astype(np.int32), b_s=sb)
        nodes.append(helper.make_node("DequantizeLinear", ["b_q", "b_s"], ["b"], axis=0))
        nodes.append(helper.make_node("Conv", ["xd", "w", "b"], ["h"], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", ["h"], ["r"]))
    else:
        inits["b"] = b
        if kind == "matmul":
            nodes.append(helper.make_node("MatMul", ["xd", "w"], ["m"]))
            nodes.append(helper.make_node("Add", ["m", "b"], ["r"]))
        else:
            nodes.append(helper.make_node("Gemm", ["xd", "w", "b"], ["r"],
                                          transB=0 if kind == "gemm_t0" else 1))
    ys = (1, 16, 10, 10) if conv else (4, 16)
    probe = _model(nodes, [helper.make_tensor_value_info("x", F32, xs)],
                   [helper.make_tensor_value_info("r", F32, ys)], inits)
    (r,) = ReferenceEvaluator(probe).run(None, {"x": x})
    sy, zy = _q_params(rng, r, at)
    inits.update(sy=sy, zy=np.asarray(zy))
    _qdq("r", "y", "sy", "zy", nodes)
    model = _model(nodes, [helper.make_tensor_value_info("x", F32, xs)],
                   [helper.make_tensor_value_info("y", F32, ys)], inits)
    return model, x, float(sy)


@pytest.mark.parametrize("kind", ["conv", "gemm", "gemm_t0", "matmul", "conv_in_axis"])
@pytest.mark.parametrize("per_axis,at,wt", [(True, np.uint8, np.int8),
                                            (False, np.int8, np.int8),
                                            (False, np.uint8, np.uint8),
                                            (True, np.int8, np.uint8)])
def test_layer_models_match_onnxruntime(rng, kind, per_axis, at, wt):
    model, x, step = _layer_model(rng, kind, per_axis, at, wt)
    (want,) = _ort(model, {"x": x})
    (ev,) = ReferenceEvaluator(model).run(None, {"x": x})
    for memory in ("normal", "low"):
        got, sess = _jc(model, {"x": x}, memory=memory)
        assert np.max(np.abs(got["y"] - want)) <= step * 1.001, memory
        assert np.max(np.abs(got["y"] - ev)) <= step * 1.001, memory
        assert np.mean(got["y"] == ev) > 0.98         # boundary cases only
    graph = import_model(model).graph
    weight = next(c for c in graph.constants.values() if len(c.shape) >= 2)
    # the weight stays quantized, and memory=low keeps it so; a scale per input channel
    # has no int8 storage: dequantized to fp32 at load (per tensor, the axis is moot)
    want = "fp32" if kind == "conv_in_axis" and per_axis else "int8"
    assert weight.storage == want
    layer = next(op for op in sess.info().ops if op.op_type in ("Conv", "Gemm"))
    assert layer.storage == want
    dq = [n for n in graph.nodes if n.op_type == "DequantizeLinear"]
    assert len(dq) == 2 and not any(n.inputs[0] in graph.constants for n in dq)


def test_add_and_relu_of_quantized_tensors_match_onnxruntime(rng):
    shape = (2, 6, 5, 5)
    a, b = rng.normal(0, 1, shape).astype(np.float32), rng.normal(0, 2, shape).astype(np.float32)
    nodes, inits = [], {}
    for n, v, t in (("a", a, np.uint8), ("b", b, np.int8)):
        s, z = _q_params(rng, v, t)
        inits.update({f"s{n}": s, f"z{n}": np.asarray(z)})
        _qdq(n, n + "d", f"s{n}", f"z{n}", nodes)
    nodes.append(helper.make_node("Add", ["ad", "bd"], ["c"]))
    sc, zc = _q_params(rng, a + b, np.uint8)
    inits.update(sc=sc, zc=np.asarray(zc))
    _qdq("c", "cd", "sc", "zc", nodes)
    nodes.append(helper.make_node("Relu", ["cd"], ["y"]))
    model = _model(nodes, [helper.make_tensor_value_info(n, F32, shape) for n in "ab"],
                   [helper.make_tensor_value_info("y", F32, shape)], inits)
    feeds = {"a": a, "b": b}
    (want,) = _ort(model, feeds)
    got, sess = _jc(model, feeds)
    assert np.max(np.abs(got["y"] - want)) <= float(sc) * 1.001
    assert [op.kernel for op in sess.info().ops].count("quantize_dequantize") == 3


# -- a model quantized by onnxruntime's own tool -------------------------------------------

def _float_cnn(rng):
    def conv(name, cin, cout, k, stride, x, y, inits, nodes):
        inits[name + "_w"] = rng.normal(0, np.sqrt(2 / (cin * k * k)),
                                        (cout, cin, k, k)).astype(np.float32)
        inits[name + "_b"] = rng.normal(0, 0.1, (cout,)).astype(np.float32)
        nodes.append(helper.make_node("Conv", [x, name + "_w", name + "_b"], [y],
                                      pads=[k // 2] * 4, strides=[stride] * 2))
    inits, nodes = {}, []
    conv("c1", 3, 16, 3, 2, "x", "h1", inits, nodes)
    nodes.append(helper.make_node("Relu", ["h1"], ["r1"]))
    conv("c2", 16, 16, 3, 1, "r1", "h2", inits, nodes)
    nodes.append(helper.make_node("Relu", ["h2"], ["r2"]))
    conv("c3", 16, 16, 1, 1, "r2", "h3", inits, nodes)
    nodes.append(helper.make_node("Add", ["h3", "r1"], ["s"]))
    nodes.append(helper.make_node("Relu", ["s"], ["r3"]))
    conv("c4", 16, 32, 3, 2, "r3", "h4", inits, nodes)
    nodes.append(helper.make_node("Relu", ["h4"], ["r4"]))
    nodes.append(helper.make_node("GlobalAveragePool", ["r4"], ["p"]))
    nodes.append(helper.make_node("Flatten", ["p"], ["f"]))
    inits["fc_w"] = rng.normal(0, 0.2, (10, 32)).astype(np.float32)
    inits["fc_b"] = rng.normal(0, 0.1, (10,)).astype(np.float32)
    nodes.append(helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["y"], transB=1))
    return _model(nodes, [helper.make_tensor_value_info("x", F32, (1, 3, 32, 32))],
                  [helper.make_tensor_value_info("y", F32, (1, 10))], inits, opset=17)


def test_quantize_static_cnn_matches_onnxruntime(rng, tmp_path):
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"x": rng.normal(0, 1, (1, 3, 32, 32)).astype(np.float32)}
                                 for _ in range(4)])

        def get_next(self):
            return next(self.batches, None)

    src, dst = tmp_path / "cnn.onnx", tmp_path / "cnn_qdq.onnx"
    onnx.save(_float_cnn(rng), str(src))
    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8)
    model = onnx.load(str(dst))
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in model.graph.node}
    x = rng.normal(0, 1, (1, 3, 32, 32)).astype(np.float32)
    (want,) = _ort(model, {"x": x})
    graph = jc.load(str(dst))
    convs = [n for n in graph.nodes if n.op_type in ("Conv", "Gemm")]
    assert len(convs) == 5
    assert all(graph.constants[n.inputs[1]].storage == "int8" for n in convs)
    for cfg in ({}, {"memory": "low"}, {"precision": "low"}):
        sess = jc.Session(graph, jc.Config(threads=2, **cfg))
        got = sess.run({"x": x})["y"]
        assert np.max(np.abs(got - want)) <= 0.05 * np.max(np.abs(want)), cfg
        if cfg.get("memory") == "low":
            assert {op.storage for op in sess.info().ops
                    if op.op_type in ("Conv", "Gemm")} == {"int8"}
        if not cfg and has_avx512():
            # the fake-quant ops and the residual Add run on the blocks: no conversion
            # between the convs (backends/cpu_layout.py)
            ops = sess.info().ops
            assert not {"ToBlocked", "FromBlocked"} & {op.op_type for op in ops}
            assert [len(op.out_shape) for op in ops if op.op_type == "Add"] == [5]
            # each conv quantizes its own output (runtime/passes.py fuse_conv_fake_quant);
            # the Add's runs on the blocks (not the input's, the head's)
            assert sum("fused fake-quant" in op.reason for op in ops
                       if op.op_type == "Conv") == 4
            fq = [len(op.out_shape) for op in ops if op.op_type == "QuantizeLinear"]
            assert fq.count(5) == 1 and len(fq) == 5
        if not cfg:
            jc.save(graph, str(tmp_path / "cnn.jcm"))       # the .jcm file keeps it all
            again = jc.load(str(tmp_path / "cnn.jcm"))
            assert again.storages() == graph.storages()
            assert np.array_equal(jc.Session(again, jc.Config(threads=2)).run({"x": x})["y"],
                                  got)


def _conv_qdq_conv(rng, per_axis, pool):
    """x -> conv (-> MaxPool 3x3 stride 1 when ``pool``) -> Q -> DQ -> conv -> y."""
    c = 32
    inits = {"w1": rng.normal(0, 0.2, (c, c, 3, 3)).astype(np.float32),
             "w2": rng.normal(0, 0.2, (c, c, 3, 3)).astype(np.float32)}
    if per_axis:
        inits.update(s=rng.uniform(0.02, 0.05, c).astype(np.float32),
                     z=np.full(c, 128, np.uint8))
    else:
        inits.update(s=np.float32(0.03), z=np.uint8(128))
    nodes = [helper.make_node("Conv", ["x", "w1"], ["h"], pads=[1] * 4)]
    if pool:
        nodes.append(helper.make_node("MaxPool", ["h"], ["hp"], kernel_shape=[3, 3],
                                      pads=[1] * 4))
    _qdq("hp" if pool else "h", "hd", "s", "z", nodes)
    nodes.append(helper.make_node("Conv", ["hd", "w2"], ["y"], pads=[1] * 4))
    model = _model(nodes, [helper.make_tensor_value_info("x", F32, (1, c, 12, 12))],
                   [helper.make_tensor_value_info("y", F32, (1, c, 12, 12))], inits)
    x = rng.normal(0, 1, (1, c, 12, 12)).astype(np.float32)
    got, sess = _jc(model, {"x": x})
    (want,) = _ort(model, {"x": x})
    # a float difference before the rounding may move a value by one step, and the
    # second conv spreads it: bound by one step times the weights' largest row norm
    bound = float(np.max(inits["s"])) * float(np.abs(inits["w2"]).sum(axis=(1, 2, 3)).max())
    assert np.max(np.abs(got["y"] - want)) <= bound
    return sess.info().ops


@pytest.mark.skipif(not has_avx512(), reason="the layout pass blocks convs on AVX-512 only")
@pytest.mark.parametrize("per_axis", [False, True])
def test_fake_quant_after_a_blocked_pool_runs_blocked_when_per_tensor(rng, per_axis):
    """A per-tensor fake-quant after a blocked MaxPool runs on the blocks (no conversions
    between the convs); a per-channel one is not elementwise on blocks: NCHW, converted
    on both sides."""
    ops = _conv_qdq_conv(rng, per_axis, pool=True)
    conversions = [op.op_type for op in ops if op.op_type in ("ToBlocked", "FromBlocked")]
    fq = next(op for op in ops if op.op_type == "QuantizeLinear")
    if per_axis:
        assert len(fq.out_shape) == 4 and len(conversions) == 4
    else:
        assert len(fq.out_shape) == 5 and conversions == ["ToBlocked", "FromBlocked"]


@pytest.mark.parametrize("per_axis", [False, True])
def test_conv_quantizes_its_output_when_per_tensor(rng, per_axis):
    """Conv -> per-tensor fake-quant: one op (runtime/passes.py fuse_conv_fake_quant);
    per channel: the QuantizeLinear stays."""
    ops = _conv_qdq_conv(rng, per_axis, pool=False)
    first = ops[[op.op_type for op in ops].index("Conv")]
    assert ("fused fake-quant" in first.reason) != per_axis
    assert any(op.op_type == "QuantizeLinear" for op in ops) == per_axis


# -- bad input: a GraphError naming the node -----------------------------------------------

def _one_node(node, inits, x_shape=(2, 3, 4), x_type=F32):
    return helper.make_model(
        helper.make_graph([node], "bad", [helper.make_tensor_value_info("x", x_type, x_shape)],
                          [helper.make_tensor_value_info("y", 0, None)],
                          [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()]),
        opset_imports=[helper.make_opsetid("", 21)])


@pytest.mark.parametrize("node,inits,words", [
    (helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="dq_bad_zero"),
     {"q": np.zeros((2, 3, 4), np.int8), "s": np.float32(0.1), "z": np.uint8(3)},
     ["zero point", "uint8", "int8"]),
    (helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], name="q_bad_axis", axis=5),
     {"s": np.full(3, 0.1, np.float32), "z": np.zeros(3, np.int8)}, ["axis=5", "(2, 3, 4)"]),
    (helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], name="q_bad_len", axis=1),
     {"s": np.full(4, 0.1, np.float32), "z": np.zeros(4, np.int8)}, ["4 values", "size 3"]),
    (helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], name="q_blocked", axis=2,
                      block_size=2),
     {"s": np.full((2, 3, 2), 0.1, np.float32), "z": np.zeros((2, 3, 2), np.int8)},
     ["block_size=2"]),
    (helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], name="q_float_zero"),
     {"s": np.float32(0.1), "z": np.float32(0)}, ["zero point", "float32"]),
    (helper.make_node("QuantizeLinear", ["x", "s"], ["y"], name="q_half_scale"),
     {"s": np.float16(0.1)}, ["scale", "float16"]),
    (helper.make_node("DequantizeLinear", ["x", "s"], ["y"], name="dq_of_float"),
     {"s": np.float32(0.1)}, ["float32 tensor"]),
])
def test_bad_quantization_nodes_are_graph_errors_naming_the_node(node, inits, words):
    with pytest.raises(GraphError) as err:
        import_model(_one_node(node, inits))
    msg = str(err.value)
    assert node.name in msg and node.op_type in msg, msg
    for w in words:
        assert w in msg, msg


def test_session_shape_check_names_the_node():
    g = jc.GraphBuilder()
    x = g.input("x", (2, 3, 4))
    with pytest.raises(GraphError, match=r"QuantizeLinear node 'q'.*2 values.*size 3"):
        g.quantize_linear(x, np.full(2, 0.1, np.float32), np.zeros(2, np.float32),
                          axis=1, dtype="int8", name="q")


def test_conv_reference_applies_a_fused_fake_quant(rng):
    x = rng.normal(0, 1, (1, 4, 6, 6)).astype(np.float32)
    w = rng.normal(0, 0.3, (8, 4, 3, 3)).astype(np.float32)
    conv = run_op("Conv", [x, w], {"pads": [1] * 4, "activation": "relu"})
    want = run_op("QuantizeLinear", [conv, np.float32(0.02), np.uint8(3)],
                  {"dtype": "uint8", "dequantize": 1})
    got = run_op("Conv", [x, w], {"pads": [1] * 4, "activation": "relu", "_fq_scale": 0.02,
                                  "_fq_zero": 3.0, "_fq_dtype": "uint8"})
    assert np.array_equal(got, want) and not np.array_equal(got, conv)
