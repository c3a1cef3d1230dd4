"""LayerNormalization, GroupNormalization, InstanceNormalization and linear / cubic
Resize: the float64 NumPy reference against onnx's own ReferenceEvaluator, the CPU
kernels against that reference (fp32 tolerances), the channel-LayerNorm pass, and the
errors for what is not supported."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

import jitconv as jc  # noqa: E402
from helpers import assert_close  # noqa: E402
from jitconv.errors import GraphError  # noqa: E402
from jitconv.runtime.onnx_import import import_model  # noqa: E402
from jitconv.runtime.reference import evaluate  # noqa: E402

RNG = np.random.default_rng(20)


def model(op, x_shape, inits, attrs, opset, n_out=1, extra_inputs=()):
    """One-node ONNX model: input x, initializers ``inits`` (name -> array or None for an
    empty input), output y."""
    names = ["x"] + [k for k in inits] + list(extra_inputs)
    node = helper.make_node(op, names, ["y"] + [f"o{i}" for i in range(1, n_out)], **attrs)
    tensors = [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()
               if v is not None]
    node.input[:] = [n if n == "x" or inits.get(n) is not None else "" for n in names]
    graph = helper.make_graph(
        [node], "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in node.output],
        tensors)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def check(m, x, ref_rtol=1e-5):
    """onnx reference == jitconv reference (float64) == jitconv session (fp32). onnx's
    evaluator differs from its own _interpolate_nd (which ours matches to 1e-7) by a few
    float32 ulps on some cubic cases: hence 1e-5 between the two references."""
    want = ReferenceEvaluator(m).run(None, {"x": x})[0]
    graph = import_model(m).graph
    ref = evaluate(graph, {"x": x})["y"]
    assert_close(ref, want.astype(np.float32), rtol=ref_rtol, what="reference vs onnx")
    for memory in ("normal", "low"):
        got = jc.Session(graph, jc.Config(threads=2, memory=memory)).run(x)["y"]
        assert_close(got, ref, rtol=1e-5, what=f"kernel vs reference ({memory})")
    return graph


def f32(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("shape,axis,pshape", [
    ((2, 5, 7), -1, (7,)), ((2, 3, 4, 5), 2, (4, 5)), ((2, 3, 4, 5), 2, (5,)),
    ((3, 6), 0, (3, 6)), ((1, 8, 3, 3), 1, (1,))])
@pytest.mark.parametrize("bias", [True, False])
def test_layer_norm(shape, axis, pshape, bias):
    inits = {"scale": f32(*pshape), "b": f32(*pshape) if bias else None}
    x = (f32(*shape) * 3 + 1.5).astype(np.float32)
    check(model("LayerNormalization", shape, inits, {"axis": axis, "epsilon": 1e-3}, 17), x)


@pytest.mark.parametrize("opset,per", [(18, "group"), (21, "channel")])
@pytest.mark.parametrize("shape,groups", [((2, 6, 5, 4), 3), ((1, 4, 7), 4), ((2, 8, 3, 3), 1)])
def test_group_norm(opset, per, shape, groups):
    n = groups if per == "group" else shape[1]
    inits = {"scale": f32(n), "bias": f32(n)}
    x = (f32(*shape) * 2 - 1).astype(np.float32)
    check(model("GroupNormalization", shape, inits, {"num_groups": groups, "epsilon": 1e-4},
                opset), x)


@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (1, 4, 9), (2, 2, 3, 2, 2)])
def test_instance_norm(shape):
    inits = {"scale": f32(shape[1]), "b": f32(shape[1])}
    check(model("InstanceNormalization", shape, inits, {"epsilon": 1e-5}, 13), f32(*shape))


COORDS = ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric",
          "half_pixel_symmetric"]


def resize_model(shape, *, scales=None, sizes=None, roi=None, axes=None, opset=19, **attrs):
    inits = {"roi": None if roi is None else np.asarray(roi, np.float32),
             "scales": None if scales is None else np.asarray(scales, np.float32),
             "sizes": None if sizes is None else np.asarray(sizes, np.int64)}
    if axes is not None:
        attrs["axes"] = axes
    return model("Resize", shape, inits, attrs, opset)


@pytest.mark.parametrize("coord", COORDS)
@pytest.mark.parametrize("mode", ["linear", "cubic"])
@pytest.mark.parametrize("scales", [(1, 1, 2.0, 2.0), (1, 1, 0.6, 1.7), (1, 1, 1.0, 3.0)])
def test_resize_scales(coord, mode, scales):
    shape = (2, 3, 5, 7)
    check(resize_model(shape, scales=scales, mode=mode,
                       coordinate_transformation_mode=coord), f32(*shape))


@pytest.mark.parametrize("mode,extra", [
    ("cubic", {"cubic_coeff_a": -0.5, "exclude_outside": 1}),
    ("linear", {"antialias": 1}), ("cubic", {"antialias": 1})])
@pytest.mark.parametrize("sizes", [(2, 3, 3, 4), (2, 3, 9, 4)])
def test_resize_sizes_and_kernel_options(mode, extra, sizes):
    shape = (2, 3, 6, 8)
    check(resize_model(shape, sizes=sizes, mode=mode, **extra), f32(*shape))


@pytest.mark.parametrize("policy", ["not_larger", "not_smaller"])
def test_resize_keep_aspect_ratio_and_axes(policy):
    shape = (1, 2, 6, 8)
    check(resize_model(shape, sizes=(9, 9), axes=[2, 3], mode="linear",
                       keep_aspect_ratio_policy=policy), f32(*shape))
    check(resize_model(shape, scales=(2.5,), axes=[3], mode="cubic"), f32(*shape))


@pytest.mark.parametrize("extrap", [0.0, 10.0])
def test_resize_tf_crop_and_resize(extrap):
    shape = (1, 2, 6, 6)
    check(resize_model(shape, sizes=(1, 2, 4, 5), roi=[0, 0, 0.1, -0.2, 1, 1, 0.8, 1.3],
                       mode="linear", coordinate_transformation_mode="tf_crop_and_resize",
                       extrapolation_value=extrap), f32(*shape))
    check(resize_model(shape, sizes=(3, 4), axes=[3, 2], roi=[0.2, 0.1, 0.9, 1.2],
                       mode="cubic", coordinate_transformation_mode="tf_crop_and_resize",
                       extrapolation_value=extrap), f32(*shape))


def test_resize_1d_and_other_axes():
    check(resize_model((2, 3, 7), scales=(1, 1, 2.3), mode="linear"), f32(2, 3, 7))
    check(resize_model((7,), sizes=(12,), mode="cubic"), f32(7))
    # an axis before the last two resized too: a pass of its own through scratch
    check(resize_model((2, 3, 4, 5), scales=(1, 2.0, 1.5, 0.5), mode="linear"), f32(2, 3, 4, 5))
    check(resize_model((2, 3, 4, 3, 5), scales=(1, 1, 2, 1, 1.5), mode="cubic"),
          f32(2, 3, 4, 3, 5))


def test_kernels_plan_per_shape():
    m = resize_model((1, 2, 5, 6), scales=(1, 1, 2, 2), mode="linear")
    graph = import_model(m).graph
    sess = jc.Session(graph, jc.Config(threads=2))
    x = f32(3, 2, 5, 6)
    with pytest.raises(jc.JitconvError):
        sess.run(x)                       # static input: refused, named
    g = jc.GraphBuilder()
    x = g.input("x", (1, 4, 5, 6), dynamic_axes=(0, 2, 3))
    y = g.group_norm(x, f32(4), f32(4), num_groups=2)
    y = g.layer_norm(y, f32(1), axis=3)
    g.output(g.resize(y, scales=[1, 1, 2.0, 2.0], mode="cubic"), "y")
    graph = g.build()
    sess = jc.Session(graph, jc.Config(threads=2))
    for shape in ((1, 4, 5, 6), (3, 4, 7, 4)):
        v = f32(*shape)
        assert_close(sess.run(v)["y"], evaluate(graph, {"x": v})["y"], rtol=1e-5)


# -- the ConvNeXt channel LayerNorm: Transpose -> LayerNormalization -> Transpose ---------

def _channel_ln_graph(extra_reader=False, output_middle=False):
    g = jc.GraphBuilder()
    x = g.input("x", (2, 6, 5, 4))
    t = g.transpose(x, (0, 2, 3, 1))
    y = g.layer_norm(t, f32(6), f32(6), axis=-1, epsilon=1e-6)
    if output_middle:
        g.output(y, "mid")
    y = g.transpose(y, (0, 3, 1, 2))
    if extra_reader:
        g.output(g.relu(t), "side")
    g.output(g.relu(y), "y")
    return g.build()


def test_channel_layernorm_pass_removes_the_transposes():
    graph = _channel_ln_graph()
    sess = jc.Session(graph, jc.Config(threads=2))
    ops = [(op.op_type, op.kernel) for op in sess.info().ops]
    assert ("LayerNormalization", "layer_norm_channels") in ops
    assert not any(o == "Transpose" for o, _ in ops), ops
    x = f32(2, 6, 5, 4)
    assert_close(sess.run(x)["y"], evaluate(graph, {"x": x})["y"], rtol=1e-5)


@pytest.mark.parametrize("extra_reader,output_middle", [(True, False), (False, True)])
def test_channel_layernorm_pass_keeps_shared_tensors(extra_reader, output_middle):
    graph = _channel_ln_graph(extra_reader, output_middle)
    sess = jc.Session(graph, jc.Config(threads=2))
    assert sum(op.op_type == "Transpose" for op in sess.info().ops) == 2
    x = f32(2, 6, 5, 4)
    got, ref = sess.run(x), evaluate(graph, {"x": x})
    for k in ref:
        assert_close(got[k], ref[k], rtol=1e-5, what=k)


# -- conformance cases whose Mean / InvStdDev outputs jitconv refuses: Y alone -------------

def _layer_norm_cases():
    from onnx.backend.test.loader import load_model_tests
    return [t for t in load_model_tests(kind="node")
            if t.name.startswith("test_layer_normalization") and "expanded" not in t.name]


@pytest.mark.parametrize("case", _layer_norm_cases(), ids=lambda t: t.name)
def test_layer_norm_conformance_y_only(case):
    m = onnx.load_model_from_string(case.model.SerializeToString())
    with pytest.raises(GraphError, match="Mean and InvStdDev"):
        import_model(m)
    node = m.graph.node[0]
    node.output[:] = node.output[:1]
    del m.graph.output[1:]
    inputs, outputs = case.data_sets[0]
    feeds = {vi.name: v for vi, v in zip(m.graph.input, inputs)}
    graph = import_model(m).graph
    got = jc.Session(graph, jc.Config(threads=2)).run(feeds)[m.graph.output[0].name]
    assert_close(got, np.asarray(outputs[0]), rtol=1e-5, what=case.name)


def test_clear_errors():
    with pytest.raises(GraphError, match="num_groups=4 must .* divide"):
        import_model(model("GroupNormalization", (1, 6, 3, 3),
                           {"scale": f32(6), "bias": f32(6)}, {"num_groups": 4}, 21))
    with pytest.raises(GraphError, match="Scale has shape"):
        import_model(model("LayerNormalization", (1, 6, 3), {"scale": f32(4)}, {}, 17))
    with pytest.raises(GraphError, match="antialias"):
        import_model(resize_model((1, 1, 4, 4), scales=(1, 1, 0.5, 0.5), antialias=1))
    with pytest.raises(GraphError, match="roi"):
        import_model(resize_model((1, 1, 4, 4), sizes=(1, 1, 2, 2), mode="linear",
                                  coordinate_transformation_mode="tf_crop_and_resize"))
