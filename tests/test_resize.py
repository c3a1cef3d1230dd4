"""Session.resize for every op type the CPU backend runs: batch 3, then a new spatial size
where the op allows one, each against the NumPy reference (ONNX-made cases against
onnxruntime too). Kernels must plan from the shapes they are given, never from the
shapes they were created with."""
from __future__ import annotations

import numpy as np
import pytest

import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

import jitconv as jc
from helpers import assert_close, rand
from jitconv.backends.cpu import CREATORS
from jitconv.runtime.onnx_import import import_model
from jitconv.runtime.reference import evaluate

BASE = (1, 4, 6, 5)
BATCH3 = (3, 4, 6, 5)
SPATIAL = (2, 4, 9, 7)
W = np.random.default_rng(7)      # weights: fixed per case, the same on every shape


def w(*shape):
    return (W.standard_normal(shape) * 0.5).astype(np.float32)


def b_classifier(g, x):
    y = g.conv2d(x, w(6, 4, 3, 3), w(6), padding=1, activation="relu")
    y = g.flatten(g.global_average_pool(y))
    return g.softmax(g.dense(y, w(10, 6), w(10)))


def b_conv_pools(g, x):
    y = g.batch_norm(x, w(4) + 2, w(4), w(4), np.abs(w(4)) + 0.5)   # standalone affine
    y = g.relu(g.conv2d(y, w(5, 4, 3, 3), stride=2, padding=1))
    y = g.max_pool(y, 2, stride=1, padding=1)
    return g.average_pool(y, 3, stride=1, padding=1)


def b_blocked(g, x):
    """A conv chain the CPU layout pass blocks: the input as an NCHW residual (ToBlocked),
    a blocked max pool, the output converted back (FromBlocked)."""
    y = g.conv2d(x, w(16, 4, 3, 3), w(16), padding=1, activation="relu")
    y = g.add(g.conv2d(y, w(4, 16, 3, 3), None, padding=1), x)
    return g.max_pool(g.conv2d(y, w(8, 4, 1, 1), w(8)), 2, stride=1, padding=1)


def b_same_then_broadcast(g, x):
    """Add/Mul of equal shapes at batch 1 are a broadcast at batch 3."""
    y = g.add(x, g.constant(w(1, 4, 6, 5)))
    return g.mul(y, g.constant(w(1, 4, 6, 5)))


def b_elementwise(g, x):
    y = g.add(x, g.relu(x))                       # same shapes at every size
    y = g.mul(y, g.constant(w(4, 1, 1)))          # broadcast at every size
    return g.relu6(g.clip(y, -1.5, 2.0))


def b_layout(g, x):
    y = g.concat([x, g.relu(x)], axis=1)
    y = g.transpose(y, (0, 2, 3, 1))
    y = g.reshape(y, (0, -1, 8))
    return g.softmax(y, axis=1)


def b_matmul(g, x):
    """x (N, 4, H, 5) @ (5, 3): batch and H may change, W (the K axis) may not."""
    y = g.matmul(x, g.constant(w(5, 3)))
    return g.gemm(g.reshape(y, (-1, 3)), w(3, 2), w(2))


def b_norms_linear_resize(g, x):
    y = g.group_norm(x, w(4), w(4), num_groups=2)
    y = g.instance_norm(y, w(4), w(4))
    t = g.layer_norm(g.transpose(y, (0, 2, 3, 1)), w(4), w(4), axis=-1)
    y = g.transpose(t, (0, 3, 1, 2))              # fused: a channel-wise LayerNorm
    y = g.layer_norm(y, w(1), axis=2)             # over H and W, Scale broadcast
    return g.resize(y, scales=[1, 1, 2.0, 1.5], mode="linear")
def b_math(g, x):
    """Gelu, Pow, variadic Max/Min, the comparisons, Where and a float16 Cast."""
    y = g.pow(g.abs(g.gelu(x, approximate="tanh")), g.constant(np.float32(1.5)))
    y = g.min(g.max(y, x, g.constant(w(4, 1, 1))), g.constant(np.float32(2.0)))
    c = g.equal(g.greater(x, g.constant(w(1, 4, 1, 1))), g.less(x, g.constant(w(4, 1, 1))))
    d = g.equal(g.greater_or_equal(x, g.constant(w(4, 1, 1))),
                g.less_or_equal(g.constant(w(1, 4, 1, 1)), x))
    return g.where(g.equal(c, d), y, g.cast(x, to=10))


def b_reduce(g, x):
    """ReduceSum/Max/L2/SumSquare and ArgMax, added back together with broadcasting."""
    y = g.add(g.reduce_sum(x, axes=[1, 3]), g.reduce_max(x, axes=[2]))
    y = g.add(y, g.reduce_sum_square(x, axes=[2, 3]))
    return g.add(g.add(y, g.reduce_l2(x, axes=[1])), g.argmax(x, axis=1))


def b_copies_einsum(g, x):
    """Einsum (W is its summed axis), Expand and Tile, concatenated."""
    e = g.einsum(x, g.constant(w(5, 3)), equation="nchw,wk->nchk")
    return g.concat([e, g.expand(g.reduce_max(x, axes=[3]), shape=[1, 1, 1, 5]),
                     g.tile(x, repeats=[1, 1, 1, 2])], axis=3)


BUILDER = {  # name -> (build, spatial size allowed)
    "classifier": (b_classifier, True),
    "conv_pools": (b_conv_pools, True),
    "blocked": (b_blocked, True),
    "same_then_broadcast": (b_same_then_broadcast, False),
    "elementwise": (b_elementwise, True),
    "layout": (b_layout, False),
    "matmul": (b_matmul, False),
    "norms_linear_resize": (b_norms_linear_resize, True),
    "math": (b_math, True),
    "reduce": (b_reduce, True),
    "copies_einsum": (b_copies_einsum, False),
}


def i64(*v):
    return np.array(v, dtype=np.int64)


def onnx_model(nodes, inits, opset=14):
    graph = helper.make_graph(
        nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                             ir_version=7)


N = helper.make_node
ONNX = {  # name -> (nodes, initializers, spatial size allowed)
    "activations": ([N("Sigmoid", ["x"], ["a"]), N("HardSigmoid", ["a"], ["b"], alpha=0.3),
                     N("HardSwish", ["x"], ["c"]), N("LeakyRelu", ["c"], ["d"], alpha=0.2),
                     N("PRelu", ["d", "slope"], ["e"]), N("Sub", ["b", "e"], ["f"]),
                     N("Div", ["f", "den"], ["g"]), N("Sum", ["g", "x", "b"], ["y"])],
                    {"slope": w(4, 1, 1), "den": np.abs(w(1, 4, 1, 1)) + 1}, True),
    "same_sub_div": ([N("Sub", ["x", "c1"], ["a"]), N("Div", ["a", "c2"], ["y"])],
                     {"c1": w(1, 4, 6, 5), "c2": np.abs(w(1, 4, 6, 5)) + 1}, False),
    "pad_slice_resize": ([N("Pad", ["x", "p"], ["a"], mode="reflect"),
                          N("Slice", ["a", "st", "en", "ax"], ["b"]),
                          N("Resize", ["b", "", "sc"], ["c"], mode="nearest"),
                          N("LRN", ["c"], ["y"], size=3)],
                         {"p": i64(0, 0, 1, 1, 0, 0, 1, 1), "st": i64(1), "en": i64(-1),
                          "ax": i64(2), "sc": np.array([1, 1, 2, 1], np.float32)}, True),
    "split_gather_reduce": ([N("Split", ["x"], ["a", "b"], axis=1),
                             N("Gather", ["a", "gi"], ["c"], axis=3),
                             N("ReduceMean", ["b"], ["d"], axes=[2, 3]),
                             N("Sub", ["c", "d"], ["y"])],
                            {"gi": i64(0, -1)}, True),
    "conv_transpose": ([N("ConvTranspose", ["x", "wt", "bt"], ["a"], strides=[2, 2],
                          pads=[1, 1, 1, 1], output_padding=[1, 1]),
                        N("ConvTranspose", ["a", "wu"], ["y"], strides=[2, 1])],
                       {"wt": w(4, 3, 3, 3), "bt": w(3), "wu": w(3, 2, 2, 2)}, True),
    "squeeze_unsqueeze": ([N("ReduceMean", ["x"], ["a"], axes=[1], keepdims=1),
                           N("Squeeze", ["a", "ax1"], ["b"]),
                           N("Unsqueeze", ["b", "ax0"], ["u"]),
                           N("Identity", ["u"], ["y"])],        # kept: a graph output
                          {"ax1": i64(1), "ax0": i64(0)}, True),
    "quantize": ([N("QuantizeLinear", ["x", "qs", "qz"], ["q"], axis=1),
                  N("DequantizeLinear", ["q", "ds", "qz"], ["a"], axis=1),  # other scale
                  N("QuantizeLinear", ["a", "ps", "pz"], ["b"]),
                  N("DequantizeLinear", ["b", "ps", "pz"], ["y"])],          # fused pair
                 {"qs": np.full(4, 0.02, np.float32) + np.abs(w(4)) / 10,
                  "qz": np.array([0, 3, -5, 1], np.int8), "ds": np.abs(w(4)) + 0.1,
                  "ps": np.float32(0.05), "pz": np.uint8(120)}, True),
}


def _shapes(spatial):
    return [BATCH3, SPATIAL] if spatial else [BATCH3]


def _graph(kind, name):
    if kind == "builder":
        build, spatial = BUILDER[name]
        g = jc.GraphBuilder(name)
        g.output(build(g, g.input("x", BASE)), "y")
        return g.build(), None, spatial
    nodes, inits, spatial = ONNX[name]
    m = onnx_model(nodes, inits)
    return import_model(m, input_shapes={"x": BASE}).graph, m, spatial


CASES = [("builder", n) for n in BUILDER] + [("onnx", n) for n in ONNX]


@pytest.mark.parametrize("kind,name", CASES, ids=[f"{k}-{n}" for k, n in CASES])
def test_resize_every_op(rng, kind, name):
    graph, m, spatial = _graph(kind, name)
    sess = jc.Session(graph, jc.Config(threads=2))
    for shape in [BASE] + _shapes(spatial) + [BASE]:
        if shape != sess.input_shapes["x"]:
            sess.resize({"x": shape})
        x = rand(rng, *shape)
        got = sess.run(x)["y"]
        assert_close(got, evaluate(graph, {"x": x})["y"], what=f"{name} at {shape}")
        if m is not None:
            want = ort.InferenceSession(m.SerializeToString(),
                                        providers=["CPUExecutionProvider"]).run(None, {"x": x})
            assert_close(got, want[0], rtol=1e-5, what=f"{name} at {shape} vs onnxruntime")


def test_the_cases_cover_every_cpu_op_type():
    """A new op type in the CPU table needs a resize case here."""
    seen = set()
    for kind, name in CASES:
        graph, _, _ = _graph(kind, name)
        seen |= {op.op_type for op in jc.Session(graph, jc.Config(threads=1)).info().ops}
    assert set(CREATORS) - seen == set()


def test_classifier_changes_batch_without_resize_error(rng):
    """The reported bug: conv -> pool -> flatten -> dense -> softmax at batch 4."""
    g = jc.GraphBuilder()
    x = g.input("x", (1, 3, 8, 8))
    y = g.flatten(g.global_average_pool(g.conv2d(x, rand(rng, 10, 3, 3, 3), padding=1)))
    g.output(g.softmax(g.dense(y, rand(rng, 10, 10))), "p")
    graph = g.build()
    sess = jc.Session(graph, jc.Config(threads=1))
    sess.resize({"x": (4, 3, 8, 8)})
    x4 = rand(rng, 4, 3, 8, 8)
    got = sess.run(x4)["p"]
    assert got.shape == (4, 10)
    assert_close(got, evaluate(graph, {"x": x4})["p"])
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-5)
