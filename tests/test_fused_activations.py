"""SiLU and GELU fused into the conv before them: the vector activations
(kernels/act_vec.py) against float64 formulas, the passes that fuse them (Conv -> Sigmoid
-> Mul, Conv -> Gelu, torch's Div -> Erf -> Add -> Mul -> Mul form of GELU) and sessions
with them in every layout, storage and memory mode against the reference."""
import math

import numpy as np
import pytest

import jitconv as jc
from jitconv.kernels.act_vec import CHUNK, apply_activation
from jitconv.kernels.epilogue import ACT_GELU, ACT_GELU_TANH, ACT_RELU, ACT_SILU
from jitconv.runtime.passes import optimize
from jitconv.runtime.reference import evaluate

from helpers import MEMORY_MODES, assert_close, rand, stored

_erf = np.vectorize(math.erf)


def _want(x, code):
    x = x.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        if code == ACT_SILU:
            return x / (1.0 + np.exp(-x))
        if code == ACT_GELU:
            return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


@pytest.mark.parametrize("code", [ACT_SILU, ACT_GELU, ACT_GELU_TANH])
@pytest.mark.parametrize("n", [1, 15, 16, 37, CHUNK + 5, 3 * CHUNK])
def test_vector_activations_match_float64(code, n):
    rng = np.random.default_rng(n + code)
    x = np.concatenate([np.linspace(-40, 40, n), rng.standard_normal(n) * 4])[:n]
    x = x.astype(np.float32)
    buf = np.concatenate([[7.0], x, [7.0]]).astype(np.float32)
    apply_activation(buf[1:-1], code)
    want = _want(x, code)
    err = np.abs(buf[1:-1] - want) / np.maximum(np.abs(want), 1.0)
    assert err.max() <= 1e-6, (err.max(), x[err.argmax()])
    assert buf[0] == 7.0 and buf[-1] == 7.0, "nothing outside the array is written"


@pytest.mark.parametrize("code", [ACT_SILU, ACT_GELU, ACT_GELU_TANH])
def test_vector_activations_keep_nan_and_limits(code):
    x = np.array([np.nan, np.inf, -np.inf, 0.0, 1e-30, 200.0, -200.0], np.float32)
    y = x.copy()
    apply_activation(y, code)
    assert np.isnan(y[0]) and y[1] == np.inf and y[3] == 0.0 and y[5] == 200.0
    assert abs(y[4]) <= 1e-29 and abs(y[6]) <= 1e-30


def test_apply_activation_refuses_other_codes():
    with pytest.raises(ValueError, match="activation code"):
        apply_activation(np.zeros(4, np.float32), ACT_RELU)


# ----------------------------------------------------------------------------- the passes

def _conv_act(act, *, residual=False, c=8, m=24, size=10, seed=0, extra_reader=False):
    """x -> conv (+ r) -> the activation written as ONNX ops ("silu", "silu_swapped",
    "gelu", "gelu_tanh", "erf_gelu") -> y; extra_reader: the conv's sigmoid is also a
    graph output."""
    rng = np.random.default_rng(seed)
    g = jc.GraphBuilder(f"conv_{act}")
    x = g.input("x", (1, c, size, size))
    t = g.conv2d(x, rand(rng, m, c, 3, 3, scale=0.3), rand(rng, m), padding=1, name="conv")
    if residual:
        t = g.add(t, g.input("r", (1, m, size, size)))
    if act.startswith("silu"):
        s = g.sigmoid(t)
        y = g.mul(s, t) if act == "silu_swapped" else g.mul(t, s)
        if extra_reader:
            g.output(s, "s")
    elif act == "erf_gelu":
        e = g.erf(g.div(t, g.constant(np.float32(math.sqrt(2.0)))))
        y = g.mul(g.mul(t, g.add(e, g.constant(np.float32(1.0)))), g.constant(np.float32(0.5)))
    else:
        y = g.gelu(t, approximate="tanh" if act == "gelu_tanh" else "none")
    g.output(y, "y")
    return g.build()


def _fused(graph):
    convs = [n for n in optimize(graph).nodes if n.op_type == "Conv"]
    return convs[0].attr("activation", "") if len(convs) == 1 else None


@pytest.mark.parametrize("act,want", [("silu", "silu"), ("silu_swapped", "silu"),
                                      ("gelu", "gelu"), ("gelu_tanh", "gelu_tanh"),
                                      ("erf_gelu", "gelu")])
def test_activation_is_fused_into_the_conv(act, want):
    g = _conv_act(act)
    assert _fused(g) == want
    assert [n.op_type for n in optimize(g).nodes] == ["Conv"]


def test_silu_not_fused_when_the_sigmoid_is_read_elsewhere():
    g = _conv_act("silu", extra_reader=True)
    assert _fused(g) == ""
    assert {"Sigmoid", "Mul"} <= {n.op_type for n in optimize(g).nodes}


def test_erf_gelu_needs_its_constants():
    rng = np.random.default_rng(1)
    g = jc.GraphBuilder()
    x = g.input("x", (1, 4, 5, 5))
    t = g.conv2d(x, rand(rng, 4, 4, 1, 1), None, name="conv")
    e = g.erf(g.div(t, g.constant(np.float32(1.5))))          # not sqrt 2
    g.output(g.mul(g.mul(t, g.add(e, g.constant(np.float32(1.0)))),
                   g.constant(np.float32(0.5))), "y")
    graph = g.build()
    assert "Erf" in {n.op_type for n in optimize(graph).nodes}
    feeds = {"x": rand(rng, 1, 4, 5, 5)}
    assert_close(jc.Session(graph, jc.Config(threads=2)).run(feeds)["y"],
                 evaluate(graph, feeds)["y"])


# ----------------------------------------------------------------------------- sessions

def _feeds(graph, seed=3):
    rng = np.random.default_rng(seed)
    return {t.name: rand(rng, *t.shape, scale=2.0) for t in graph.inputs}


@pytest.mark.parametrize("layout", ["auto", "nchw"])
@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("act", ["silu", "gelu", "gelu_tanh", "erf_gelu"])
def test_fused_sessions_match_reference(act, residual, layout):
    g = _conv_act(act, residual=residual, size=12)
    feeds = _feeds(g)
    sess = jc.Session(g, jc.Config(threads=2, progress=False, layout=layout))
    conv = next(o for o in sess.info().ops if o.name == "conv")
    assert "fused" in conv.reason and "after the kernel" in conv.reason
    assert_close(sess.run(feeds)["y"], evaluate(g, feeds)["y"], what=f"{act} {layout}")


@pytest.mark.parametrize("memory", MEMORY_MODES)
@pytest.mark.parametrize("weights", ["fp32", "fp16", "int8", "int4"])
def test_fused_silu_in_every_storage_and_memory_mode(weights, memory):
    g = stored(_conv_act("silu", c=16, m=40, size=9), weights)
    feeds = _feeds(g)
    sess = jc.Session(g, jc.Config(threads=2, progress=False, memory=memory))
    assert [o.op_type for o in sess.info().ops if o.op_type in ("Sigmoid", "Mul")] == []
    assert_close(sess.run(feeds)["y"], evaluate(g, feeds)["y"], what=f"{weights} {memory}")


def test_int8_dot_conv_applies_the_fused_gelu():
    g = jc.quantize(_conv_act("gelu", c=16, m=32, size=8), "int8")
    feeds = _feeds(g)
    sess = jc.Session(g, jc.Config(threads=2, progress=False, precision="low"))
    conv = next(o for o in sess.info().ops if o.name == "conv")
    assert "fused gelu" in conv.reason
    # the int8 dot kernel quantizes its input: compare with the fp32-weight reference
    # at the int8 rounding bound (the input spans about 4 sigma of a unit normal x 2)
    want = evaluate(g, feeds)["y"]
    err = np.abs(sess.run(feeds)["y"] - want).max()
    assert err <= 0.05 * np.abs(want).max(), err
