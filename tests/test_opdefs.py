"""One definition per op (runtime/opdef.py, runtime/ops/): every op is complete, every
reader reads it, and an op registered from here (Softsign, below) runs end to end."""
from __future__ import annotations

import math
import pathlib
import re

import numpy as np
import pytest

import jitconv as jc
from helpers import assert_close, rand
from jitconv.backends import default_registry
from jitconv.errors import RegistryError
from jitconv.kernels.unary import code_digest
from jitconv.runtime import opdef
from jitconv.runtime.info import op_flops
from jitconv.runtime.ir import Graph, Node, TensorSpec
from jitconv.runtime.opdef import OPDEFS, Attr, OpDef
from jitconv.runtime.reference import OPS, evaluate, run_op
from jitconv.runtime.shapes import infer_node

DOCS = (pathlib.Path(__file__).parents[1] / "docs" / "ops.md").read_text()
KINDS = ("int", "ints", "float", "floats", "str", "strs", "int tensor", "tensor")
LAYOUT = {"Concat", "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Gather",
          "Split", "Slice", "Identity", "Expand", "Tile",
          "ToBlocked", "FromBlocked"}                               # data movement: 0 FLOPs
X = (2, 3, 6, 5)

# op -> (input shapes, attributes, outputs) of a small node; ops not listed take one or
# more inputs of shape X (as many as they need) and their default attributes
EXAMPLES = {
    "Conv": ([X, (4, 3, 3, 3), (4,)], {"pads": [1, 1, 1, 1]}, 1),
    "MaxPool": ([X], {"kernel_shape": [2, 2]}, 1),
    "AveragePool": ([X], {"kernel_shape": [3, 3], "strides": [2, 2]}, 1),
    "PRelu": ([X, (3, 1, 1)], {}, 1),
    "Gemm": ([(4, 6), (6, 5), (5,)], {}, 1),
    "MatMul": ([(2, 4, 6), (6, 3)], {}, 1),
    "BatchNormalization": ([X, (3,), (3,), (3,), (3,)], {}, 1),
    "LRN": ([X], {"size": 3}, 1),
    "Concat": ([X, X], {"axis": 1}, 1),
    "Reshape": ([X], {"shape": [2, -1]}, 1),
    "Unsqueeze": ([X], {"axes": [0]}, 1),
    "Gather": ([X], {"axis": 1, "indices": [2, 0]}, 1),
    "Split": ([X], {"axis": 1, "split": [1, 2]}, 2),
    "Slice": ([X], {"starts": [1], "ends": [5], "axes": [2]}, 1),
    "Pad": ([X], {"pads": [0, 0, 1, 1, 0, 0, 1, 1]}, 1),
    "Resize": ([X], {"scales": [1.0, 1.0, 2.0, 2.0]}, 1),
    "LayerNormalization": ([X, (6, 5), (5,)], {"axis": 2}, 1),
    "GroupNormalization": ([X, (3,), (3,)], {"num_groups": 3}, 1),
    "InstanceNormalization": ([X, (3,), (3,)], {}, 1),
    "Cast": ([X], {"to": 10}, 1),
    "Expand": ([X], {"shape": [4, 1, 1, 1, 1]}, 1),
    "Tile": ([X], {"repeats": [1, 2, 1, 3]}, 1),
    "Einsum": ([(2, 3, 4), (2, 4, 5)], {"equation": "bij,bjk->bik"}, 1),
    "FromBlocked": ([(2, 1, 6, 5, 16)], {"channels": 3}, 1),
    "QuantizeLinear": ([X, (3,), (3,)], {"dtype": "int8"}, 1),
    "DequantizeLinear": ([X, (), ()], {}, 1),
}


def _runtime_ops():
    return sorted(k for k, d in OPDEFS.items() if d.runtime)


def _example(op):
    if op in EXAMPLES:
        return EXAMPLES[op]
    lo = OPDEFS[op].inputs[0]
    return [X] * max(lo, 2 if OPDEFS[op].inputs[1] is None else lo), {}, 1


def _node(op, shapes, attrs, n_out=1):
    return Node(op, [f"i{k}" for k in range(len(shapes))], [f"o{k}" for k in range(n_out)],
                attrs, op.lower())


# -- every op is complete ------------------------------------------------------------------

@pytest.mark.parametrize("op", sorted(OPDEFS))
def test_every_op_has_every_part(op):
    d = OPDEFS[op]
    assert d.op_type == op and d.doc and "\n" not in d.doc
    assert all(isinstance(a, Attr) and a.kind in KINDS and a.doc for a in d.attrs), d.attrs
    if d.internal:      # inserted by a backend pass inside a session only
        assert d.runtime and d.onnx is None and d.builder is None, op
        assert d.shape and d.reference and d.flops, f"{op}: a runtime op needs all three"
    elif d.runtime:
        assert d.shape and d.reference and d.flops, f"{op}: a runtime op needs all three"
        assert d.onnx is not None, f"{op}: no ONNX spec"
        if op != "Split":            # several outputs: GraphBuilder methods return one
            assert d.builder and hasattr(jc.GraphBuilder(), d.builder), op
    else:
        assert d.onnx is not None and d.builder is None, op
    if d.onnx is not None:
        assert d.onnx.versions == tuple(sorted(d.onnx.versions)), op
    assert re.search(rf"\b{op}\b", DOCS), f"{op} is not in docs/ops.md"


def test_every_runtime_op_has_a_cpu_kernel_creator():
    cpu = default_registry.get("cpu")
    assert [op for op in _runtime_ops() if cpu.creator(op) is None] == []


def test_readers_are_derived_from_the_opdefs():
    from jitconv.runtime.onnx_import import ATTRS, KNOWN_VERSIONS, PARAM_INPUTS
    assert set(OPS) == {k for k, d in OPDEFS.items() if d.reference is not None}
    assert set(KNOWN_VERSIONS) == {k for k, d in OPDEFS.items() if d.onnx is not None}
    assert KNOWN_VERSIONS["Exp"] == (6, 13) and KNOWN_VERSIONS["Tanh"] == (6, 13)
    assert ATTRS["HardSigmoid"] == {"alpha", "beta"}
    assert PARAM_INPUTS["Slice"] == (10, (1, 2, 3, 4)) and "Relu" not in PARAM_INPUTS


@pytest.mark.parametrize("op", _runtime_ops())
def test_flops_of_a_small_example(op):
    shapes, attrs, n_out = _example(op)
    node = _node(op, shapes, attrs, n_out)
    outs = infer_node(node, shapes)
    flops = op_flops(node, shapes, outs)
    if op in LAYOUT:
        assert flops == 0, f"{op} moves data only"
    else:
        assert flops >= math.prod(outs[0]) > 0, f"{op}: {flops} FLOPs for {outs}"


# -- Exp and Tanh, added as one OpDef each -------------------------------------------------

@pytest.mark.parametrize("op", ["Exp", "Tanh"])
def test_exp_tanh_builder_session_matches_reference(rng, op):
    g = jc.GraphBuilder()
    x = g.input("x", (2, 3, 17, 5))
    g.output(getattr(g, op.lower())(x), "y")
    graph = g.build()
    a = rand(rng, 2, 3, 17, 5, scale=3.0)
    got = jc.Session(graph, jc.Config(threads=2)).run(a)["y"]
    want = evaluate(graph, {"x": a})["y"]
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(want, getattr(np, op.lower())(a.astype(np.float64)),
                               rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("op", ["Exp", "Tanh"])
def test_exp_tanh_match_onnxruntime(rng, op):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper
    from jitconv.runtime.onnx_import import import_model
    model = helper.make_model(
        helper.make_graph([helper.make_node(op, ["x"], ["y"])], "m",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, 9])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4, 9])]),
        opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model)
    a = rand(rng, 2, 4, 9, scale=3.0)
    got = jc.Session(import_model(model).graph, jc.Config(threads=1)).run(a)["y"]
    want = ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, {"x": a})[0]
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6)


# -- an op added from here: one OpDef with a scalar, nothing else --------------------------

def softsign_scalar(x):
    return x / (1.0 + abs(x))


def softsign(inputs, attrs):
    x = np.asarray(inputs[0], np.float64)
    return (x / (1.0 + np.abs(x))).astype(np.float32)


def scaled_tanh_scalar(x, alpha, beta):
    return alpha * math.tanh(beta * x)


def scaled_tanh(inputs, attrs):
    x = np.asarray(inputs[0], np.float64)
    return (attrs.get("alpha", 1.0) * np.tanh(attrs.get("beta", 1.0) * x)).astype(np.float32)


def _same(node, shapes):
    return [tuple(shapes[0])]


def _elements(node, ins, outs):
    return 3 * math.prod(outs[0])


@pytest.fixture
def test_ops():
    added = [
        opdef.register(OpDef("Softsign", shape=_same, reference=softsign, flops=_elements,
                             builder="softsign", scalar=softsign_scalar,
                             doc="x / (1 + |x|)")),
        opdef.register(OpDef("ScaledTanh", attrs=(Attr("alpha", "float", 1.0, "scale"),
                                                  Attr("beta", "float", 1.0, "input scale")),
                             shape=_same, reference=scaled_tanh, flops=_elements,
                             builder="scaled_tanh", scalar=scaled_tanh_scalar,
                             doc="alpha tanh(beta x)"))]
    yield added
    for d in added:
        opdef.unregister(d.op_type)


def test_an_op_registered_from_a_test_runs_end_to_end(rng, test_ops):
    g = jc.GraphBuilder()
    x = g.input("x", (3, 4, 10))
    y = g.scaled_tanh(g.softsign(x), alpha=1.5, beta=-2.0)
    g.output(y, "y")
    assert "softsign" in dir(g)
    graph = g.build()
    sess = jc.Session(graph, jc.Config(threads=2))
    a = rand(rng, 3, 4, 10, scale=4.0)
    assert_close(sess.run(a)["y"], evaluate(graph, {"x": a})["y"], rtol=1e-5)
    info = sess.info()
    assert [op.kernel for op in info.ops] == ["unary_softsign", "unary_scaledtanh"]
    assert info.flops == 2 * 3 * a.size


def test_a_registered_op_is_gone_after_unregister():
    d = opdef.register(OpDef("Softsign", shape=_same, reference=softsign, flops=_elements,
                             builder="softsign", scalar=softsign_scalar, doc="x / (1 + |x|)"))
    opdef.unregister(d.op_type)
    assert "Softsign" not in OPDEFS and not hasattr(jc.GraphBuilder(), "softsign")
    with pytest.raises(KeyError, match="Softsign"):
        run_op("Softsign", [np.zeros(2, np.float32)])


def test_code_digest_follows_the_body():
    def a(x):
        return math.exp(x)

    def b(x):
        return math.tanh(x)

    def c(x):
        return x * 2.0
    digests = {code_digest(f) for f in (a, b, c)}
    assert len(digests) == 3 and min(digests) >= 0 and code_digest(a) == code_digest(a)


# -- registry errors and clear graph errors ------------------------------------------------

def test_register_rejects_a_duplicate_and_missing_parts():
    with pytest.raises(RegistryError, match="'Relu' is already registered"):
        opdef.register(OpDef("Relu", shape=_same, reference=softsign, flops=_elements,
                             doc="again"))
    with pytest.raises(RegistryError, match="'Foo'.*needs reference"):
        opdef.register(OpDef("Foo", shape=_same, flops=_elements, doc="no reference"))
    with pytest.raises(RegistryError, match="'Foo'.*kind"):
        opdef.register(OpDef("Foo", attrs=(Attr("a", "complex"),), shape=_same,
                             reference=softsign, flops=_elements, doc="bad kind"))
    assert "Foo" not in OPDEFS


def test_unknown_op_is_named_with_the_supported_ones():
    g = jc.GraphBuilder()
    x = g.input("x", (1, 4))
    with pytest.raises(jc.GraphError, match=r"Foo node 'foo': op type 'Foo' is not "
                                            r"supported; supported: .*Relu"):
        g.node("Foo", [x])
    with pytest.raises(jc.GraphError, match="op type 'Foo'"):
        opdef.get("Foo")


def test_wrong_input_count_names_node_and_op():
    g = jc.GraphBuilder()
    x = g.input("x", (1, 4))
    with pytest.raises(jc.GraphError, match=r"Sigmoid node 's': takes 1..1 inputs, got 2"):
        g.node("Sigmoid", [x, x], name="s")
    with pytest.raises(jc.GraphError, match=r"Exp node 'exp': takes 1..1 inputs, got 2"):
        g.exp(x, x)


def test_wrong_attribute_kind_names_node_and_op():
    with pytest.raises(jc.GraphError,
                       match=r"HardSigmoid node 'h': attribute alpha='x' must be a number"):
        Graph([TensorSpec("x", (1, 4))], [TensorSpec("y", (1, 4))],
              [Node("HardSigmoid", ["x"], ["y"], {"alpha": "x"}, "h")], {})
    g = jc.GraphBuilder()
    x = g.input("x", (1, 4))
    with pytest.raises(jc.GraphError, match=r"hard_sigmoid \(HardSigmoid\): attribute "
                                            r"alpha='x' must be of kind 'float'"):
        g.hard_sigmoid(x, alpha="x")
    with pytest.raises(jc.GraphError, match=r"leaky_relu \(LeakyRelu\): no attribute "
                                            r"slope; its attributes: alpha"):
        g.leaky_relu(x, slope=0.1)
    with pytest.raises(jc.GraphError, match=r"lrn \(LRN\): attribute size is required"):
        g.lrn(g.reshape(x, (1, 4, 1)))


def test_generated_builder_methods_coerce_attributes(rng):
    g = jc.GraphBuilder()
    x = g.input("x", (1, 3, 4, 4))
    y = g.pad(g.leaky_relu(x, alpha=np.float32(0.2)), pads=(0, 0, 1, 1, 0, 0, 1, 1))
    g.output(g.reduce_mean(y, axes=(2, 3), keepdims=0), "y")
    graph = g.build()
    assert graph.nodes[1].attrs == {"pads": [0, 0, 1, 1, 0, 0, 1, 1]}
    a = rand(rng, 1, 3, 4, 4)
    got = jc.Session(graph, jc.Config(threads=1)).run(a)["y"]
    assert_close(got, evaluate(graph, {"x": a})["y"])
