"""The loaders under mutation fuzzing (tests/fuzzing.py), seeded and reduced for CI, and
the findings of the long runs as regression tests."""
import numpy as np
import pytest

import jitconv as jc
from jitconv.runtime.ir import Graph, Node, TensorSpec

import fuzzing

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402


@pytest.mark.parametrize("loader,cases", [("jcm", 400), ("onnx", 250)])
def test_seeded_fuzz_finds_nothing(loader, cases):
    tried, findings = fuzzing.fuzz(loader, cases=cases, seed=17)
    assert tried == cases
    assert not findings, "\n".join(f"--- {what}\n{tb}" for what, tb in findings[:3])


# -- findings, fixed ---------------------------------------------------------------------

def _conv_graph(**attrs):
    w = np.ones((2, 3, 3, 3), np.float32)
    return Graph([TensorSpec("x", (1, 3, 8, 8))], [TensorSpec("y", (1, 2, 8, 8))],
                 [Node("Conv", ["x", "w"], ["y"], dict({"pads": [1, 1, 1, 1]}, **attrs), "c")],
                 {"w": jc.Constant("w", w)})


@pytest.mark.parametrize("key,value,match", [
    ("pads", [1, "x", 1, 1], r"=\[1, .x., 1, 1\] must be a list of int64s"),
    ("pads", 1, "must be a list of int64s"),
    ("strides", [[1], 1], "list of int64s"),
    ("dilations", [2**63, 1], "list of int64s"),
    ("group", "1", "=.1. must be an int64"),
    ("group", 2**70, "must be an int64"),
    ("activation", 3, "must be a string"),
    ("activation_min", "x", "must be a number"),
    ("activation_min", float("nan"), "is NaN"),
])
def test_attributes_of_the_wrong_kind_are_named(key, value, match):
    with pytest.raises(jc.GraphError, match=rf"Conv node 'c': attribute {key}.*{match}"):
        _conv_graph(**{key: value})


def test_an_input_without_a_size_is_named():
    g = jc.GraphBuilder("g")
    x = g.input("x", (1, 3, 8, 8))
    g.output(g.relu(x), "y")
    graph = g.build()
    bad = Graph([TensorSpec("x", (1, 3, 8, None))], graph.outputs, graph.nodes, {})
    with pytest.raises(jc.InputError, match=r"input 'x' has shape \(1, 3, 8, None\)"):
        jc.Session(bad, jc.Config(threads=1))


def test_huge_pads_fail_before_kernel_choice():
    graph = _conv_graph(pads=[1, 10**12, 1, 1])
    with pytest.raises(jc.OutOfMemoryError, match="tensor 'y' of shape"):
        jc.Session(graph, jc.Config(threads=1))


def test_a_huge_pool_stride_with_one_window_runs_at_once():
    g = jc.GraphBuilder("g")
    x = g.input("x", (1, 2, 5, 5))
    g.output(g.max_pool(x, 2, stride=(2, 10**9)), "y")
    sess = jc.Session(g.build(), jc.Config(threads=1))
    x = np.arange(50, dtype=np.float32).reshape(1, 2, 5, 5)
    want = np.stack([x[:, :, 0:2, 0:2].max(axis=(2, 3)), x[:, :, 2:4, 0:2].max(axis=(2, 3))],
                    axis=2)[..., None]
    np.testing.assert_array_equal(sess.run(x)["y"], want)


def test_a_non_utf8_attribute_name_is_reported(tmp_path):
    node = helper.make_node("Relu", ["x"], ["y"])
    node.attribute.add(name="ok", type=onnx.AttributeProto.INT, i=1)
    g = helper.make_graph([node], "m",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    raw = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    path = tmp_path / "m.onnx"
    path.write_bytes(raw.replace(b"\x02ok", b"\x02\xff\xfe"))
    with pytest.raises(jc.JitconvError, match="not valid UTF-8|not a readable"):
        jc.load(path)


def _relu_model(**node_kw):
    node = helper.make_node("Softmax", ["x"], ["y"], **node_kw)
    g = helper.make_graph([node], "m",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _load_model(tmp_path, m):
    path = tmp_path / "m.onnx"
    path.write_bytes(m.SerializeToString())
    return jc.load(path)


def test_an_attribute_of_a_foreign_onnx_type_is_named(tmp_path):
    m = _relu_model(axis=1)
    m.graph.node[0].attribute[0].type = onnx.AttributeProto.TYPE_PROTO
    with pytest.raises(jc.GraphError, match="attribute 'axis' has ONNX attribute type 13"):
        _load_model(tmp_path, m)


def test_a_string_where_an_int_goes_is_named(tmp_path):
    m = _relu_model(axis="one")
    with pytest.raises(jc.GraphError, match=r"Softmax node .*cannot be read: ValueError"):
        _load_model(tmp_path, m)


def test_a_node_without_outputs_is_named(tmp_path):
    m = _relu_model()
    del m.graph.node[0].output[:]
    with pytest.raises(jc.GraphError, match="Softmax node .*has no outputs|never produced"):
        _load_model(tmp_path, m)


def test_an_unknown_input_element_type_is_named(tmp_path):
    m = _relu_model()
    m.graph.input[0].type.tensor_type.elem_type = 101
    with pytest.raises(jc.GraphError, match="input 'x' has element type code 101"):
        _load_model(tmp_path, m)


def test_a_tensor_name_that_is_not_utf8_is_named(tmp_path):
    raw = _relu_model().SerializeToString().replace(b"\x01y", b"\x01\xff")
    path = tmp_path / "m.onnx"
    path.write_bytes(raw)
    with pytest.raises(jc.JitconvError, match="not valid UTF-8|not a readable"):
        jc.load(path)
