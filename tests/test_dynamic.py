"""Dynamic input axes: ONNX dim_param (and GraphBuilder.input(dynamic_axes=)) lets
Session.run take any size there with no resize() call, re-planning per shape from a
bounded cache; static axes still refuse a wrong size with a named error."""
from __future__ import annotations

import warnings

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn as nn
from onnx import TensorProto, helper, numpy_helper

import jitconv as jc
from helpers import assert_close, dynamic_graph, rand
from jitconv.runtime import session as session_mod
from jitconv.runtime.onnx_import import import_model
from jitconv.runtime.reference import evaluate


class Block(nn.Module):
    def __init__(s, cin, cout, stride):
        super().__init__()
        s.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        s.b1 = nn.BatchNorm2d(cout)
        s.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        s.b2 = nn.BatchNorm2d(cout)
        s.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                               nn.BatchNorm2d(cout)) if stride != 1 or cin != cout else None

    def forward(s, x):
        y = torch.relu(s.b1(s.c1(x)))
        y = s.b2(s.c2(y))
        return torch.relu(y + (x if s.down is None else s.down(x)))


class SmallResNet(nn.Module):
    """ResNet-style: stem, residual stages, pool, and the head as torchvision's old
    models wrote it: x.view(x.size(0), -1), which exports Shape -> ... -> Reshape."""

    def __init__(s):
        super().__init__()
        s.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8),
                               nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        s.layers = nn.Sequential(Block(8, 8, 1), Block(8, 16, 2), Block(16, 32, 2))
        s.fc = nn.Linear(32, 10)

    def forward(s, x):
        y = nn.functional.adaptive_avg_pool2d(s.layers(s.stem(x)), 1)
        return torch.softmax(s.fc(y.view(y.size(0), -1)), dim=1)


@pytest.fixture(scope="module")
def resnet_onnx(tmp_path_factory):
    torch.manual_seed(0)
    net = SmallResNet().eval()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("dyn") / "resnet_dyn.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.randn(1, 3, 32, 32),), str(path), input_names=["x"],
                          output_names=["p"], dynamic_axes={"x": {0: "batch"}},
                          opset_version=17, dynamo=False)
    return path


def test_symbolic_batch_resnet_runs_any_batch_and_matches_onnxruntime(resnet_onnx, rng):
    graph = jc.load(resnet_onnx)
    assert graph.inputs[0].dynamic == (0,)
    assert not graph.fixed_input_shapes, "the view(size(0), -1) head should generalize"
    sess = jc.Session(graph, jc.Config(threads=2))
    ref = ort.InferenceSession(str(resnet_onnx), providers=["CPUExecutionProvider"])
    for n in (1, 3, 8, 3, 1):
        x = rand(rng, n, 3, 32, 32)
        got = sess.run(x)["p"]
        assert got.shape == (n, 10)
        assert_close(got, ref.run(None, {"x": x})[0], rtol=1e-5, what=f"batch {n}")
        assert sess.input_shapes["x"] == (n, 3, 32, 32)


def test_static_axes_refuse_a_wrong_size_by_name(resnet_onnx, rng):
    sess = jc.Session(jc.load(resnet_onnx), jc.Config(threads=1))
    with pytest.raises(jc.InputError, match=r"'x'.*\(2, 3, 33, 32\).*only axis 0 may change"):
        sess.run(rand(rng, 2, 3, 33, 32))
    with pytest.raises(jc.InputError, match=r"'x'.*\(2, 3, 32\)"):
        sess.run(rand(rng, 2, 3, 32))
    sess.resize({"x": (1, 3, 64, 64)})          # an explicit resize may change any axis
    assert sess.run(rand(rng, 1, 3, 64, 64))["p"].shape == (1, 10)


def test_an_unknown_dimension_counts_as_dynamic(rng):
    vi = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    vi.type.tensor_type.shape.dim[0].Clear()        # neither dim_value nor dim_param
    m = helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g", [vi],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]),
        opset_imports=[helper.make_opsetid("", 13)])
    graph = import_model(m).graph
    assert graph.inputs[0].dynamic == (0,)
    x = rand(rng, 5, 4)
    np.testing.assert_array_equal(jc.Session(graph).run(x)["y"], np.maximum(x, 0))


def _fixed_model():
    """x + ConstantOfShape(Shape(x)): a constant that follows the input's shape cannot
    be generalized, so the graph stays fixed to the shape it was imported for."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("ConstantOfShape", ["s"], ["c"],
                              value=numpy_helper.from_array(np.ones(1, np.float32))),
             helper.make_node("Add", ["x", "c"], ["y"])]
    return helper.make_model(helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]),
        opset_imports=[helper.make_opsetid("", 13)])


def test_shape_math_that_cannot_generalize_stays_fixed_with_a_named_error(rng):
    graph = import_model(_fixed_model()).graph
    assert graph.fixed_input_shapes and graph.inputs[0].dynamic == (0,)
    sess = jc.Session(graph, jc.Config(threads=1))
    x = rand(rng, 1, 3)
    np.testing.assert_array_equal(sess.run(x)["y"], x + 1)
    with pytest.raises(jc.InputError, match=r"folded.*re-import it with jc.load"):
        sess.run(rand(rng, 2, 3))
    g2 = import_model(_fixed_model(), input_shapes={"x": (2, 3)}).graph
    x2 = rand(rng, 2, 3)
    np.testing.assert_array_equal(jc.Session(g2).run(x2)["y"], x2 + 1)


def test_reshape_targets_follow_every_symbolic_axis(rng):
    """Shape(x) -> Reshape(x, shape): N, H and W symbolic; each entry becomes 0."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Reshape", ["r", "s"], ["y"])]
    m = helper.make_model(helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]),
        opset_imports=[helper.make_opsetid("", 13)])
    graph = import_model(m, input_shapes={"x": (1, 4, 6, 5)}).graph
    assert not graph.fixed_input_shapes and graph.inputs[0].dynamic == (0, 2, 3)
    sess = jc.Session(graph, jc.Config(threads=1))
    for shape in [(1, 4, 6, 5), (3, 4, 2, 9), (2, 4, 7, 7)]:
        x = rand(rng, *shape)
        np.testing.assert_array_equal(sess.run(x)["y"], np.maximum(x, 0))


def test_plans_are_cached_bounded_and_the_arena_only_grows_at_run(rng, monkeypatch):
    monkeypatch.setattr(session_mod, "PLAN_CACHE", 3)
    graph = dynamic_graph(rng)
    sess = jc.Session(graph, jc.Config(threads=1))
    one = sess.info().arena_bytes
    for n in (1, 2, 5, 9, 4, 2, 1, 7):
        x = rand(rng, n, 3, 8, 8)
        assert_close(sess.run(x)["p"], evaluate(graph, {"x": x})["p"], what=f"batch {n}")
        assert len(sess._plans) <= 3
    grown = sess.info().arena_bytes
    assert grown > one                        # batch 9 needed more; a run does not shrink
    sess.resize({"x": (1, 3, 8, 8)})          # an explicit resize sizes exactly
    assert sess.info().arena_bytes == one


def test_builder_dynamic_axes_survive_a_model_file(rng, tmp_path):
    graph = dynamic_graph(rng)
    assert graph.inputs[0].dynamic == (0,)
    jc.save(graph, tmp_path / "d.jcm")
    back = jc.load(tmp_path / "d.jcm")
    assert back.inputs[0].dynamic == (0,)
    x = rand(rng, 4, 3, 8, 8)
    assert_close(jc.Session(back).run(x)["p"], evaluate(graph, {"x": x})["p"])


@pytest.mark.parametrize("axes", [(4,), (-5,), ("a",), None])
def test_builder_refuses_bad_dynamic_axes(axes):
    g = jc.GraphBuilder()
    with pytest.raises(jc.GraphError, match=r"input 'x': dynamic_axes"):
        g.input("x", (1, 3, 8, 8), dynamic_axes=axes)
