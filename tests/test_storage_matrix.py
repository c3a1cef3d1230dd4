"""Every weight storage x memory mode x precision x conv kind prepares, runs and matches
the reference computed with the dequantized weights. MNN broke exactly here.

Each conv's own output is a graph output, compared pixel by pixel: one wrong pixel is
not averaged away by the pool and the dense layer that follow it (whose output "y" is
checked too: the Gemm runs on the same storage)."""
import itertools

import numpy as np
import pytest

import jitconv as jc
from helpers import (MEMORY_MODES, PRECISIONS, STORAGES, assert_close, kernel_reference, rand,
                     storage_id, stored)

# name -> (C, M, k, stride, padding, dilation, groups)
CONV_KINDS = {
    "1x1": (32, 24, 1, 1, 0, 1, 1),
    "3x3": (32, 16, 3, 1, 1, 1, 1),
    "depthwise": (32, 32, 3, 1, 1, 1, 32),
    "grouped": (32, 32, 3, 1, 1, 1, 2),
    "strided": (32, 16, 3, 2, 1, 1, 1),
    "dilated": (32, 16, 3, 1, 2, 2, 1),
    "1x1_stride2": (32, 16, 1, 2, 0, 1, 1),
    # ConvTranspose (runtime/ops/conv_transpose.py): sub-pixel phases of ordinary convs
    "transposed": (32, 16, 3, 2, 1, 1, 1),
    "transposed_2x2": (32, 16, 2, 2, 0, 1, 1),
}


def _graph(kind, seed=0):
    c, m, k, stride, pad, dil, groups = CONV_KINDS[kind]
    rng = np.random.default_rng(seed)
    g = jc.GraphBuilder(kind)
    x = g.input("x", (1, c, 9, 11))
    if kind.startswith("transposed"):
        y = g.conv_transpose2d(x, rand(rng, c, m // groups, k, k, scale=0.3), rand(rng, m),
                               stride=stride, padding=pad, output_padding=stride - 1,
                               dilation=dil, groups=groups, name="conv")
    else:
        y = g.conv2d(x, rand(rng, m, c // groups, k, k, scale=0.3), rand(rng, m),
                     stride=stride, padding=pad, dilation=dil, groups=groups,
                     activation="relu6", name="conv")
    g.output(y, "conv_out")         # every pixel of the conv itself
    y = g.flatten(g.global_average_pool(y))
    g.output(g.dense(y, rand(rng, 10, m, scale=0.3), rand(rng, 10), name="fc"), "y")
    return g.build()


_QUANTIZED = {}


def _quantized(kind, weights, block, symmetric):
    key = (kind, weights, block, symmetric)
    if key not in _QUANTIZED:
        _QUANTIZED[key] = stored(_graph(kind), weights, block, symmetric)
    return _QUANTIZED[key]


@pytest.mark.parametrize("kind", sorted(CONV_KINDS))
@pytest.mark.parametrize("storage", STORAGES, ids=storage_id)
def test_every_combination_runs_and_matches(kind, storage):
    graph = _quantized(kind, *storage)
    x = np.random.default_rng(1).standard_normal((1, 32, 9, 11)).astype(np.float32)
    stored_as = graph.constants[graph.nodes[0].inputs[1]].storage
    assert [o.name for o in graph.outputs] == ["conv_out", "y"]
    for memory, precision in itertools.product(MEMORY_MODES, PRECISIONS):
        sess = jc.Session(graph, jc.Config(threads=2, memory=memory, precision=precision))
        got = sess.run(x)
        conv = next(op for op in sess.info().ops if op.name == "conv")
        # precision=low may run conv2d_int8dot, which quantizes the conv's input per tensor
        # (documented rule): the reference then sees the same quantized input, so the
        # check stays at 1e-4
        want = kernel_reference(graph, {"x": x}, conv.kernel)
        what = f"{kind} {storage_id(storage)} {memory} {precision} {conv.kernel}"
        assert_close(got["conv_out"], want["conv_out"], rtol=1e-4, what=f"conv output: {what}")
        assert_close(got["y"], want["y"], rtol=1e-4, what=f"y: {what}")
        if memory == "low" or stored_as == "fp32" or "conv2d_int8dot" in conv.kernel:
            # (the int8 dot kernel reads int8 weights as stored in every memory mode)
            assert conv.storage == stored_as
        else:
            assert conv.storage == f"fp32 (from {stored_as})"
        assert conv.weight_bytes > 0


def _model_m(seed=0):
    """4 x (3x3 conv 128->128 + ReLU) at 56x56 (the issue's model M)."""
    rng = np.random.default_rng(seed)
    g = jc.GraphBuilder("model_m")
    x = g.input("x", (1, 128, 56, 56))
    for i in range(4):
        x = g.conv2d(x, rand(rng, 128, 128, 3, 3, scale=0.03), rand(rng, 128), padding=1,
                     activation="relu", name=f"conv{i}")
    g.output(x, "y")
    return g.build()


@pytest.mark.parametrize("weights,limit", [("fp16", 0.52), ("int8", 0.27), ("int4", 0.15)])
def test_low_memory_weight_bytes(weights, limit):
    graph = _model_m()
    fp32 = jc.Session(graph, jc.Config(memory="low")).info().weight_bytes
    q = jc.quantize(graph, weights)
    low = jc.Session(q, jc.Config(memory="low")).info()
    normal = jc.Session(q, jc.Config(memory="normal")).info()
    # bytes really held: the arrays of the kept constants, counted from the arrays
    assert low.weight_bytes == sum(a.nbytes for c in q.constants.values() for a in c.arrays())
    # normal decodes to fp32 and may pack for a faster kernel (Winograd: bigger)
    assert normal.weight_bytes >= sum(c.as_float32().nbytes for c in q.constants.values())
    assert low.weight_bytes / fp32 <= limit
    assert sum(op.weight_bytes for op in low.ops) == low.weight_bytes


def test_zero_byte_kept_weights_is_an_internal_error():
    from jitconv.backends.choice import choose_conv
    from jitconv.runtime.ir import Constant
    empty = Constant("w", np.zeros((0, 4), np.int8), "int8", scale=np.zeros((0, 1), np.float32),
                     logical_shape=(0, 4, 1, 1))
    assert choose_conv("Conv node 'c'", {}, empty, decoded_from="int8", precision="normal",
                       memory="low").kernel == "conv2d_int8w"     # no elements: fine
    # a kept weight claiming elements but holding no bytes (what MNN's loader produced)
    from types import SimpleNamespace
    bogus = SimpleNamespace(shape=(8, 4, 3, 3), data=np.zeros(0, np.int8), storage="int8",
                            nbytes=0)
    with pytest.raises(jc.InternalError, match="Conv node 'c'.*kept 0 bytes"):
        choose_conv("Conv node 'c'", {}, bogus, decoded_from="int8", precision="normal",
                    memory="low")


def test_constant_rejects_data_that_does_not_fit_its_shape():
    from jitconv.runtime.ir import Constant
    with pytest.raises(jc.GraphError, match="constant 'w'.*int8 data shape"):
        Constant("w", np.zeros((8, 35), np.int8), "int8", scale=np.ones((8, 1), np.float32),
                 logical_shape=(8, 4, 3, 3))
    with pytest.raises(jc.GraphError, match="constant 'w'.*int4 data shape"):
        Constant("w", np.zeros((8, 17), np.uint8), "int4", scale=np.ones((8, 1), np.float32),
                 logical_shape=(8, 4, 3, 3))
