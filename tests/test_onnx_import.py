"""ONNX import: every opset form the importer maps, checked against onnxruntime; folding;
errors. Models are made with onnx.helper (tests/test_onnx_torch.py exports real nets)."""
from __future__ import annotations

import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import jitconv as jc  # noqa: E402
from jitconv.errors import GraphError, JitconvError  # noqa: E402
from jitconv.runtime.onnx_import import import_model, inputs_needing_values  # noqa: E402
from jitconv.runtime.reference import evaluate  # noqa: E402

F = TensorProto.FLOAT


def model(nodes, inputs, outputs, opset, inits=None, name="m"):
    """inputs/outputs: {name: shape} (float32); inits: {name: array}."""
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info(k, F, s) for k, s in inputs.items()],
        [helper.make_tensor_value_info(k, F, s) for k, s in outputs.items()],
        initializer=[numpy_helper.from_array(np.asarray(v), k)
                     for k, v in (inits or {}).items()])
    ir = 7 if opset < 15 else 8 if opset < 19 else 9 if opset < 21 else 10
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                             ir_version=ir)


def ort_run(m, feeds):
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


def check(m, feeds, config=None, rtol=1e-5):
    """jitconv (Session and NumPy reference) against onnxruntime on every output."""
    graph = import_model(m).graph
    got = jc.Session(graph, config or jc.Config(threads=2)).run(feeds)
    ref = evaluate(graph, feeds)
    want = ort_run(m, feeds)
    for k, w in want.items():
        scale = max(1.0, float(np.max(np.abs(w)))) if w.size else 1.0
        for what, g in (("session", got[k]), ("reference", ref[k])):
            assert g.shape == w.shape, (what, k, g.shape, w.shape)
            err = float(np.max(np.abs(g - w))) if w.size else 0.0
            assert err <= rtol * scale, f"{what} output {k}: max abs err {err:.3g}"
    return graph


def rnd(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def i64(*v):
    return np.array(v, dtype=np.int64)


# --------------------------------------------------------------------------- opset forms

@pytest.mark.parametrize("opset", [9, 11, 13])
def test_clip_attribute_or_constant_inputs(rng, opset):
    x = rnd(rng, 2, 3, 4, 5)
    if opset < 11:
        node = helper.make_node("Clip", ["x"], ["y"], min=-0.5, max=0.7)
        inits = {}
    else:
        node = helper.make_node("Clip", ["x", "lo", "", ][:2] + ["hi"], ["y"])
        inits = {"lo": np.float32(-0.5), "hi": np.float32(0.7)}
    g = check(model([node], {"x": x.shape}, {"y": None}, opset, inits), {"x": x})
    assert g.nodes[0].attrs == {"min": -0.5, "max": pytest.approx(0.7)}


def test_clip_with_only_max_input(rng):
    x = rnd(rng, 3, 7)
    node = helper.make_node("Clip", ["x", "", "hi"], ["y"])
    check(model([node], {"x": x.shape}, {"y": None}, 13, {"hi": np.float32(0.2)}), {"x": x})


@pytest.mark.parametrize("opset", [11, 13, 18])
def test_squeeze_unsqueeze_axes(rng, opset):
    x = rnd(rng, 2, 1, 3, 1)
    if opset < 13:
        nodes = [helper.make_node("Squeeze", ["x"], ["s"], axes=[1, -1]),
                 helper.make_node("Unsqueeze", ["s"], ["y"], axes=[0, 3])]
        inits = {}
    else:
        nodes = [helper.make_node("Squeeze", ["x", "ax"], ["s"]),
                 helper.make_node("Unsqueeze", ["s", "ax2"], ["y"])]
        inits = {"ax": i64(1, -1), "ax2": i64(0, 3)}
    check(model(nodes, {"x": x.shape}, {"y": None}, opset, inits), {"x": x})


def test_squeeze_without_axes_drops_all_ones(rng):
    x = rnd(rng, 1, 4, 1, 2)
    check(model([helper.make_node("Squeeze", ["x"], ["y"])], {"x": x.shape}, {"y": None}, 13),
          {"x": x})


@pytest.mark.parametrize("opset,form", [(11, "attr"), (11, "equal"), (13, "input"),
                                        (18, "num_outputs"), (18, "input")])
def test_split_forms_multi_output(rng, opset, form):
    x = rnd(rng, 2, 7 if form == "num_outputs" else 6, 3)
    outs = ["a", "b", "c"]
    inits = {}
    if form == "attr":
        node = helper.make_node("Split", ["x"], outs, axis=1, split=[1, 2, 3])
    elif form == "equal":
        node = helper.make_node("Split", ["x"], outs, axis=1)
    elif form == "input":
        node = helper.make_node("Split", ["x", "sp"], outs, axis=-2)
        inits = {"sp": i64(3, 0, 3)}
    else:
        node = helper.make_node("Split", ["x"], outs, axis=1, num_outputs=3)
    relu = [helper.make_node("Relu", [o], [o + "r"]) for o in outs]
    m = model([node] + relu, {"x": x.shape}, {o + "r": None for o in outs}, opset, inits)
    g = check(m, {"x": x})
    assert [n.op_type for n in g.nodes].count("Split") == 1


@pytest.mark.parametrize("opset", [9, 10, 13])
def test_slice_attribute_and_input_forms(rng, opset):
    x = rnd(rng, 3, 8, 9)
    if opset < 10:
        node = helper.make_node("Slice", ["x"], ["y"], starts=[1, -7], ends=[100, -1],
                                axes=[1, 2])
        inits = {}
    else:
        node = helper.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["y"])
        inits = {"st": i64(-1, 1), "en": i64(-100, 9223372036854775807), "ax": i64(2, 1),
                 "sp": i64(-2, 3)}
    check(model([node], {"x": x.shape}, {"y": None}, opset, inits), {"x": x})


def test_slice_default_axes_and_steps(rng):
    x = rnd(rng, 5, 6)
    node = helper.make_node("Slice", ["x", "st", "en"], ["y"])
    check(model([node], {"x": x.shape}, {"y": None}, 13, {"st": i64(1, 0), "en": i64(4, 5)}),
          {"x": x})


@pytest.mark.parametrize("opset,mode", [(9, "constant"), (9, "reflect"), (9, "edge"),
                                        (11, "constant"), (13, "reflect"), (18, "edge"),
                                        (19, "wrap"), (21, "constant")])
def test_pad_forms_and_modes(rng, opset, mode):
    x = rnd(rng, 1, 2, 5, 6)
    pads = [0, 0, 2, 1, 0, 0, 1, 3] if mode != "constant" else [0, 1, 2, -1, 1, 0, 1, 3]
    if opset < 11:
        node = helper.make_node("Pad", ["x"], ["y"], pads=pads, mode=mode, value=0.5)
        inits = {}
    elif opset >= 18 and mode != "constant":
        node = helper.make_node("Pad", ["x", "p", "", "ax"], ["y"], mode=mode)
        inits = {"p": i64(2, 1, 1, 3), "ax": i64(2, -1)}
    else:
        node = helper.make_node("Pad", ["x", "p", "v"], ["y"], mode=mode)
        inits = {"p": np.array(pads, np.int64), "v": np.float32(-1.5)}
    check(model([node], {"x": x.shape}, {"y": None}, opset, inits), {"x": x})


@pytest.mark.parametrize("opset,case", [
    (9, "upsample"), (10, "resize10"), (11, "half_pixel"), (11, "align_corners_sizes"),
    (13, "asymmetric_ceil"), (13, "pytorch_half_pixel_down"), (18, "axes_not_larger"),
    (19, "half_pixel_symmetric")])
def test_resize_nearest_forms(rng, opset, case):
    x = rnd(rng, 1, 2, 5, 7)
    inits = {}
    if case == "upsample":
        node = helper.make_node("Upsample", ["x", "s"], ["y"], mode="nearest")
        inits["s"] = np.array([1, 1, 2, 3], np.float32)
    elif case == "resize10":
        node = helper.make_node("Resize", ["x", "s"], ["y"], mode="nearest")
        inits["s"] = np.array([1, 1, 0.6, 2.5], np.float32)
    elif case == "half_pixel":
        node = helper.make_node("Resize", ["x", "roi", "s"], ["y"], mode="nearest")
        inits.update(roi=np.zeros(0, np.float32), s=np.array([1, 1, 1.7, 0.8], np.float32))
    elif case == "align_corners_sizes":
        node = helper.make_node("Resize", ["x", "roi", "noscale", "sz"], ["y"], mode="nearest",
                                coordinate_transformation_mode="align_corners",
                                nearest_mode="round_prefer_ceil")
        inits.update(roi=np.zeros(0, np.float32), noscale=np.zeros(0, np.float32),
                     sz=i64(1, 2, 9, 4))
    elif case == "asymmetric_ceil":
        node = helper.make_node("Resize", ["x", "", "s"], ["y"], mode="nearest",
                                coordinate_transformation_mode="asymmetric", nearest_mode="ceil")
        inits["s"] = np.array([1, 1, 2, 1.5], np.float32)
    elif case == "pytorch_half_pixel_down":
        node = helper.make_node("Resize", ["x", "", "", "sz"], ["y"], mode="nearest",
                                coordinate_transformation_mode="pytorch_half_pixel",
                                nearest_mode="floor")
        inits["sz"] = i64(1, 2, 3, 1)
    elif case == "axes_not_larger":
        node = helper.make_node("Resize", ["x", "", "", "sz"], ["y"], mode="nearest",
                                axes=[3, 2], keep_aspect_ratio_policy="not_larger")
        inits["sz"] = i64(20, 11)
    else:
        node = helper.make_node("Resize", ["x", "", "s"], ["y"], mode="nearest",
                                coordinate_transformation_mode="half_pixel_symmetric")
        inits["s"] = np.array([1, 1, 2.6, 0.7], np.float32)
    check(model([node], {"x": x.shape}, {"y": None}, opset, inits), {"x": x})


@pytest.mark.parametrize("opset,keepdims,axes", [(13, 1, [2, 3]), (13, 0, [1]), (13, 1, None),
                                                 (18, 0, [0, 2]), (18, 1, [-1]),
                                                 (18, 1, None)])
def test_reduce_mean_axes_attribute_or_input(rng, opset, keepdims, axes):
    x = rnd(rng, 2, 3, 4, 5)
    inits = {}
    if opset < 18:
        kw = {} if axes is None else {"axes": axes}
        node = helper.make_node("ReduceMean", ["x"], ["y"], keepdims=keepdims, **kw)
    else:
        ins = ["x"] if axes is None else ["x", "ax"]
        node = helper.make_node("ReduceMean", ins, ["y"], keepdims=keepdims)
        if axes is not None:
            inits["ax"] = np.array(axes, np.int64)
    check(model([node], {"x": x.shape}, {"y": None}, opset, inits), {"x": x})


def test_reduce_mean_noop_with_empty_axes(rng):
    x = rnd(rng, 2, 3)
    node = helper.make_node("ReduceMean", ["x"], ["y"], noop_with_empty_axes=1)
    g = check(model([node], {"x": x.shape}, {"y": None}, 18), {"x": x})
    assert [n.op_type for n in g.nodes] == ["Identity"]


@pytest.mark.parametrize("opset,axis", [(11, 1), (11, 2), (11, -1), (9, 0), (13, 1), (13, -2)])
def test_softmax_legacy_flattens_at_axis(rng, opset, axis):
    x = rnd(rng, 2, 3, 4, 5)
    node = helper.make_node("Softmax", ["x"], ["y"], axis=axis)
    g = check(model([node], {"x": x.shape}, {"y": None}, opset), {"x": x})
    legacy = opset < 13 and axis % 4 != 3
    assert [n.op_type for n in g.nodes] == (["Flatten", "Softmax", "Reshape"] if legacy
                                            else ["Softmax"])


@pytest.mark.parametrize("opset", [9, 13])
def test_dropout_is_identity_at_inference(rng, opset):
    x = rnd(rng, 2, 8)
    if opset < 12:
        d = helper.make_node("Dropout", ["x"], ["d"], ratio=0.3)
        inits = {}
    else:
        d = helper.make_node("Dropout", ["x", "r"], ["d"])
        inits = {"r": np.float32(0.3)}
    nodes = [d, helper.make_node("Relu", ["d"], ["y"])]
    g = check(model(nodes, {"x": x.shape}, {"y": None}, opset, inits), {"x": x})
    assert [n.op_type for n in g.nodes] == ["Relu"]


@pytest.mark.parametrize("indices", [i64(2), i64(0, -1, 2), np.array([[1, 0], [3, 3]])])
def test_gather_with_constant_indices(rng, indices):
    x = rnd(rng, 3, 4, 5)
    node = helper.make_node("Gather", ["x", "i"], ["y"], axis=1)
    check(model([node], {"x": x.shape}, {"y": None}, 13, {"i": indices.astype(np.int64)}),
          {"x": x})


@pytest.mark.parametrize("op,attrs", [("Sigmoid", {}), ("HardSigmoid", {}),
                                      ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}),
                                      ("HardSwish", {}), ("LeakyRelu", {}),
                                      ("LeakyRelu", {"alpha": 0.2}), ("Relu", {}),
                                      ("Identity", {})])
def test_unary_activations(rng, op, attrs):
    x = rnd(rng, 2, 3, 5, 7) * 4
    check(model([helper.make_node(op, ["x"], ["y"], **attrs)], {"x": x.shape}, {"y": None}, 17),
          {"x": x})


@pytest.mark.parametrize("op", ["Sub", "Div", "Add", "Mul"])
@pytest.mark.parametrize("sa,sb", [((2, 3, 4), (2, 3, 4)), ((2, 3, 4), (3, 1)), ((4,), (2, 3, 4))])
def test_binary_broadcast(rng, op, sa, sb):
    a, b = rnd(rng, *sa), rnd(rng, *sb)
    if op == "Div":
        b = np.where(np.abs(b) < 0.2, 1.0, b).astype(np.float32)
    check(model([helper.make_node(op, ["a", "b"], ["y"])], {"a": sa, "b": sb}, {"y": None}, 14),
          {"a": a, "b": b})


def test_sum_of_three_with_broadcast_and_one_input(rng):
    a, b, c = rnd(rng, 2, 3, 4), rnd(rng, 3, 1), rnd(rng, 4)
    nodes = [helper.make_node("Sum", ["a", "b", "c"], ["y"]),
             helper.make_node("Sum", ["a"], ["z"])]
    check(model(nodes, {"a": a.shape, "b": b.shape, "c": c.shape}, {"y": None, "z": None}, 13),
          {"a": a, "b": b, "c": c})


@pytest.mark.parametrize("slope_shape", [(3, 1, 1), (1,), (5,)])
def test_prelu_slope_broadcast(rng, slope_shape):
    x = rnd(rng, 2, 3, 4, 5)
    node = helper.make_node("PRelu", ["x", "s"], ["y"])
    check(model([node], {"x": x.shape}, {"y": None}, 16,
                {"s": rnd(rng, *slope_shape)}), {"x": x})


@pytest.mark.parametrize("size", [1, 3, 5])
def test_lrn(rng, size):
    x = rnd(rng, 2, 6, 4, 5)
    node = helper.make_node("LRN", ["x"], ["y"], size=size, alpha=0.01, beta=0.6, bias=1.5)
    check(model([node], {"x": x.shape}, {"y": None}, 13), {"x": x})


@pytest.mark.parametrize("op,attrs", [
    ("Conv", dict(kernel_shape=[3], pads=[1, 2], strides=[2], dilations=[1], group=2)),
    ("MaxPool", dict(kernel_shape=[3], pads=[1, 1], strides=[2])),
    ("AveragePool", dict(kernel_shape=[2], count_include_pad=1, pads=[1, 0])),
    ("GlobalAveragePool", {})])
def test_one_dimensional_ops_are_lifted_to_2d(rng, op, attrs):
    x = rnd(rng, 2, 4, 11)
    ins, inits = ["x"], {}
    if op == "Conv":
        ins += ["w", "b"]
        inits = {"w": rnd(rng, 6, 2, 3), "b": rnd(rng, 6)}
    g = check(model([helper.make_node(op, ins, ["y"], **attrs)], {"x": x.shape}, {"y": None},
                    13, inits), {"x": x})
    assert all(len(g.constants[c].shape) != 3 for c in g.constants if c.startswith("w"))


def test_average_pool_with_dilations(rng):
    x = rnd(rng, 1, 2, 9, 9)
    node = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 3], dilations=[2, 2],
                            pads=[1, 1, 1, 1], count_include_pad=1, ceil_mode=1, strides=[2, 1])
    check(model([node], {"x": x.shape}, {"y": None}, 19), {"x": x})


# --------------------------------------------------------------------------- folding

def test_shape_arithmetic_folds_away(rng):
    """x.view(x.size(0), -1) as exporters write it: Shape/Gather/Unsqueeze/Concat."""
    x = rnd(rng, 2, 3, 4, 5)
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Constant", [], ["zero"],
                              value=numpy_helper.from_array(np.array(0, np.int64))),
             helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             helper.make_node("Unsqueeze", ["n", "ax"], ["n1"]),
             helper.make_node("Constant", [], ["m1"], value_ints=[-1]),
             helper.make_node("Concat", ["n1", "m1"], ["shape"], axis=0),
             helper.make_node("Cast", ["shape"], ["shape64"], to=TensorProto.INT64),
             helper.make_node("Reshape", ["x", "shape64"], ["y"])]
    g = check(model(nodes, {"x": x.shape}, {"y": None}, 13, {"ax": i64(0)}), {"x": x})
    assert [n.op_type for n in g.nodes] == ["Reshape"]
    assert g.nodes[0].attrs["shape"] == [2, -1]
    assert not g.constants


def test_constant_subgraphs_fold_and_initializers_become_fp32_constants(rng):
    w = rnd(rng, 4, 3, 3, 3)
    nodes = [helper.make_node("ConstantOfShape", ["cs"], ["ones"],
                              value=numpy_helper.from_array(np.array([2.0], np.float64))),
             helper.make_node("Mul", ["w", "ones"], ["w2"]),
             helper.make_node("Cast", ["w2"], ["w3"], to=TensorProto.FLOAT),
             helper.make_node("Conv", ["x", "w3"], ["y"], pads=[1, 1, 1, 1])]
    x = rnd(rng, 1, 3, 6, 6)
    g = check(model(nodes, {"x": x.shape}, {"y": None}, 13,
                    {"w": w.astype(np.float64), "cs": i64(4, 3, 3, 3)}), {"x": x})
    assert [n.op_type for n in g.nodes] == ["Conv"]
    (c,) = g.constants.values()
    assert c.storage == "fp32" and c.data.dtype == np.float32
    np.testing.assert_allclose(c.data, 2 * w, rtol=1e-6)


def test_batchnorm_stays_a_node_and_the_session_folds_it(rng):
    x = rnd(rng, 1, 3, 6, 6)
    inits = {"w": rnd(rng, 4, 3, 3, 3), "sc": rnd(rng, 4), "bi": rnd(rng, 4),
             "mu": rnd(rng, 4), "var": np.abs(rnd(rng, 4)) + 0.5}
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]),
             helper.make_node("BatchNormalization", ["c", "sc", "bi", "mu", "var"], ["y"],
                              epsilon=1e-3)]
    g = check(model(nodes, {"x": x.shape}, {"y": None}, 15, inits), {"x": x})
    assert [n.op_type for n in g.nodes] == ["Conv", "BatchNormalization"]
    info = jc.Session(g, jc.Config(threads=1)).info()
    assert len(info.ops) == 1 and "BatchNormalization" in info.ops[0].reason


def test_identity_output_and_input_output(rng):
    x = rnd(rng, 2, 3)
    nodes = [helper.make_node("Identity", ["x"], ["y"]), helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Identity", ["r"], ["z"])]
    check(model(nodes, {"x": x.shape}, {"y": None, "z": None}, 13), {"x": x})


def test_input_shapes_override_symbolic_dims(rng, tmp_path):
    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", F, ["N", 3])],
                              [helper.make_tensor_value_info("y", F, None)])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    path = tmp_path / "sym.onnx"
    onnx.save(m, str(path))
    assert jc.load(path).inputs[0].shape == (1, 3)
    g = jc.load(str(path), input_shapes={"x": (5, 3)})
    assert g.inputs[0].shape == (5, 3) and g.name == "sym"
    x = rnd(rng, 5, 3)
    np.testing.assert_array_equal(jc.Session(g).run(x)["y"], np.maximum(x, 0))


def test_old_opset_is_upgraded_with_the_version_converter(rng):
    x = rnd(rng, 1, 2, 5, 5)
    node = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    m = model([node], {"x": x.shape}, {"y": None}, 7)
    g = import_model(m).graph
    np.testing.assert_allclose(jc.Session(g).run(x)["y"], ort_run(m, {"x": x})["y"],
                               rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- errors

def test_unsupported_ops_are_listed_with_type_name_and_opset():
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="fine"),
             helper.make_node("Sin", ["a"], ["b"], name="t1"),
             helper.make_node("Cos", ["b"], ["y"], name="e1")]
    m = model(nodes, {"x": (2, 2)}, {"y": None}, 13)
    with pytest.raises(GraphError) as e:
        import_model(m)
    msg = str(e.value)
    assert "Sin node 't1' (opset 13)" in msg and "Cos node 'e1' (opset 13)" in msg
    assert "fine" not in msg


def test_unsupported_attribute_and_attribute_value():
    m = model([helper.make_node("Conv", ["x", "w"], ["y"], name="c", foo=1)],
              {"x": (1, 1, 3, 3)}, {"y": None}, 13, {"w": np.ones((1, 1, 1, 1), np.float32)})
    with pytest.raises(GraphError, match=r"Conv node 'c' \(opset 13\): attribute foo"):
        import_model(m)
    m = model([helper.make_node("Resize", ["x", "", "s"], ["y"], name="r", mode="area")],
              {"x": (1, 1, 3, 3)}, {"y": None}, 13, {"s": np.ones(4, np.float32)})
    with pytest.raises(GraphError, match=r"Resize node 'r' \(opset 13\): mode='area'"):
        import_model(m)


def test_runtime_parameter_input_is_a_clear_error():
    node = helper.make_node("Reshape", ["x", "s"], ["y"], name="rs")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", F, [2, 3]),
                                            helper.make_tensor_value_info("s", TensorProto.INT64,
                                                                          [2])],
                              [helper.make_tensor_value_info("y", F, None)])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(GraphError, match="graph input 's'.*int64.*bind"):
        import_model(m)
    assert inputs_needing_values(m) == {"s"}
    g = import_model(m, bind={"s": i64(3, 2)}).graph
    assert g.nodes[0].attrs["shape"] == [3, 2]
    m2 = model([helper.make_node("Clip", ["x", "lo"], ["y"], name="cl")],
               {"x": (2,), "lo": ()}, {"y": None}, 13)
    with pytest.raises(GraphError, match=r"Clip node 'cl' \(opset 13\): input 1 \(min\) 'lo' "
                                         r"must be a constant"):
        import_model(m2)
    assert inputs_needing_values(m2) == {"lo"}


def test_int64_tensor_at_run_time_names_the_node():
    m = model([helper.make_node("Cast", ["x"], ["i"], name="to_int", to=TensorProto.INT64),
               helper.make_node("Cast", ["i"], ["y"], to=TensorProto.FLOAT)],
              {"x": (2,)}, {"y": None}, 13)
    with pytest.raises(GraphError, match=r"Cast node 'to_int' \(opset 13\).*float32"):
        import_model(m)


def test_opset_out_of_range():
    m = model([helper.make_node("Relu", ["x"], ["y"])], {"x": (2,)}, {"y": None}, 13)
    m.opset_import[0].version = 99
    with pytest.raises(GraphError, match="opset 99"):
        import_model(m)


def test_missing_onnx_package_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(JitconvError, match=r"pip install \"jitconv\[onnx\]\""):
        jc.load(tmp_path / "x.onnx")


def test_unreadable_file_is_a_model_file_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf at all \xff\xfe")
    with pytest.raises(JitconvError, match="bad.onnx"):
        jc.load(bad)
    with pytest.raises(JitconvError, match="no such file"):
        jc.load(tmp_path / "missing.onnx")


def test_input_without_shape_needs_input_shapes(rng):
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", F, None)],
                              [helper.make_tensor_value_info("y", F, None)])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(GraphError, match="input_shapes"):
        import_model(m)
    assert import_model(m, input_shapes={"x": (2, 5)}).graph.inputs[0].shape == (2, 5)


def test_session_resize_replans_the_new_ops(rng):
    """Pad, Slice, Resize, ReduceMean, Split, Gather, PRelu and LRN plan per shape."""
    nodes = [helper.make_node("Pad", ["x", "p"], ["a"], mode="reflect"),
             helper.make_node("Slice", ["a", "st", "en", "ax"], ["b"]),
             helper.make_node("Resize", ["b", "", "sc"], ["c"], mode="nearest"),
             helper.make_node("PRelu", ["c", "slope"], ["d"]),
             helper.make_node("LRN", ["d"], ["e"], size=3),
             helper.make_node("Split", ["e"], ["f", "g"], axis=1),
             helper.make_node("Gather", ["f", "gi"], ["h"], axis=3),
             helper.make_node("ReduceMean", ["g"], ["y"], axes=[2, 3]),
             helper.make_node("Sub", ["h", "y"], ["z"])]
    inits = {"p": i64(0, 0, 1, 1, 0, 0, 1, 1), "st": i64(1), "en": i64(-1), "ax": i64(2),
             "sc": np.array([1, 1, 2, 1], np.float32), "slope": rnd(rng, 4, 1, 1),
             "gi": i64(0, -1)}
    m = model(nodes, {"x": ("N", 4, "H", "W")}, {"z": None}, 13, inits)
    g = import_model(m, input_shapes={"x": (1, 4, 6, 5)}).graph
    sess = jc.Session(g, jc.Config(threads=2))
    for shape in [(1, 4, 6, 5), (3, 4, 9, 7), (2, 4, 3, 3)]:
        x = rnd(rng, *shape)
        if shape != sess.input_shapes["x"]:
            sess.resize({"x": shape})
        got = sess.run(x)["z"]
        want = ort_run(m, {"x": x})["z"]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_backend_run_node_and_folded_int_outputs(rng):
    from jitconv.runtime.onnx_backend import JitconvBackend
    x = rnd(rng, 2, 3, 4)
    (y,) = JitconvBackend.run_node(helper.make_node("HardSwish", ["x"], ["y"]), [x])
    np.testing.assert_allclose(y, x * np.clip(x / 6 + 0.5, 0, 1), rtol=1e-6, atol=1e-7)
    (s,) = JitconvBackend.run_node(helper.make_node("Shape", ["x"], ["s"], start=1), [x])
    assert s.dtype == np.int64 and s.tolist() == [3, 4]
    assert not JitconvBackend.supports_device("CUDA")


def test_resize_refuses_a_graph_whose_shape_math_was_folded(rng):
    """Shape -> ConstantOfShape folded for (1, 4, 6, 5): resizing would silently add a
    constant of the wrong shape (a Reshape target would be generalized instead)."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("ConstantOfShape", ["s"], ["c"],
                              value=numpy_helper.from_array(np.ones(1, np.float32))),
             helper.make_node("Add", ["x", "c"], ["y"]),
             helper.make_node("Relu", ["y"], ["z"])]
    m = model(nodes, {"x": ("N", 4, "H", "W")}, {"z": None}, 13, {})
    g = import_model(m, input_shapes={"x": (1, 4, 6, 5)}).graph
    assert g.fixed_input_shapes
    sess = jc.Session(g, jc.Config(threads=1))
    with pytest.raises(jc.InputError, match="re-import it with jc.load"):
        sess.resize({"x": (2, 4, 6, 5)})
    sess.resize({"x": (1, 4, 6, 5)})           # the same shapes are fine
    x = rnd(rng, 1, 4, 6, 5)
    np.testing.assert_array_equal(sess.run(x)["z"], np.maximum(x + 1, 0))
