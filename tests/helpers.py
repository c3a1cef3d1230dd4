"""Shared test helpers: seeded data and the graph-level NumPy reference."""
import numpy as np

import jitconv as jc
from jitconv.runtime.reference import evaluate


def rand(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def run_and_reference(graph, feeds, config=None):
    """(jitconv outputs, reference outputs) for one graph and feeds."""
    sess = jc.Session(graph, config or jc.Config(threads=2))
    return sess.run(feeds), evaluate(graph, feeds)


def assert_close(got, ref, rtol=1e-4, what=""):
    """Float32 accumulation error: relative to the reference's magnitude."""
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != {ref.shape}"
    scale = max(1.0, float(np.max(np.abs(ref)))) if ref.size else 1.0
    err = float(np.max(np.abs(got - ref))) if ref.size else 0.0
    assert err <= rtol * scale, f"{what}: max abs err {err:.3g} > {rtol} x {scale:.3g}"


# -- weight storages, memory modes, precisions ------------------------------------------

# (weights, block, symmetric): every way quantize() stores a Conv/Gemm weight
STORAGES = [("fp32", None, True), ("fp16", None, True)] + [
    (w, blk, sym) for w in ("int8", "int4") for blk in (None, 16) for sym in (True, False)]
MEMORY_MODES = ("normal", "high", "low")
PRECISIONS = ("normal", "high", "low")


def storage_id(storage):
    """A short name for a STORAGES entry: 'int4-b16-asym'."""
    weights, block, symmetric = storage
    return f"{weights}-b{block}-{'sym' if symmetric else 'asym'}"


def stored(graph, weights, block=None, symmetric=True):
    """``graph`` with its Conv/Gemm weights stored as ``weights`` (fp32: the graph itself).

    evaluate() on the result reads each weight as it is stored (``Constant.as_float32``:
    fp16-rounded, or int8/int4 dequantized), so it is the reference for what a session of
    the stored graph may compute."""
    if weights == "fp32":
        return graph
    return jc.quantize(graph, weights, block=block, symmetric=symmetric)


def kernel_reference(graph, feeds, kernel, conv_input="x"):
    """Reference outputs of ``graph`` for a session whose conv reading the graph input
    ``conv_input`` ran ``kernel``.

    conv2d_int8dot (precision=low, docs/kernel_choice.md) quantizes its input per tensor by
    the documented rule (kernels.int8dot.activation_quant): the reference is then fed the
    same quantized input, and the tolerance stays that of fp32 accumulation. Valid only
    when that conv is the input's sole reader."""
    if "conv2d_int8dot" in kernel:          # a ConvTranspose's phases: conv_transpose(...)
        from jitconv.kernels.int8dot import activation_quant
        qx, sx = activation_quant(feeds[conv_input])
        feeds = {**feeds, conv_input: (qx * sx).astype(np.float32)}
    return evaluate(graph, feeds)


def dynamic_graph(rng):
    """conv + relu, global pool, dense, softmax; input "x" (n, 3, 8, 8) with a dynamic batch."""
    g = jc.GraphBuilder("dyn")
    x = g.input("x", (1, 3, 8, 8), dynamic_axes=(0,))
    y = g.flatten(g.global_average_pool(g.conv2d(x, rand(rng, 6, 3, 3, 3), padding=1,
                                                 activation="relu")))
    g.output(g.softmax(g.dense(y, rand(rng, 5, 6), rand(rng, 5))), "p")
    return g.build()


def blocked(x):
    """x (N, C, H, W) float32 as a channel-blocked NCHW16c array (kernels/reorder.py)."""
    from jitconv.kernels.reorder import blocked_shape, to_blocked
    y = np.empty(blocked_shape(x.shape), np.float32)
    to_blocked(x, y)
    return y


def unblocked(y, c):
    """The NCHW array of c channels a blocked array holds."""
    from jitconv.kernels.reorder import from_blocked
    x = np.empty((y.shape[0], c) + y.shape[2:4], np.float32)
    from_blocked(y, x)
    return x
