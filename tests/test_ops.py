"""Every op through a Session against the NumPy reference, on awkward seeded shapes."""
import numpy as np
import pytest

import jitconv as jc
from helpers import assert_close, rand, run_and_reference

# (N, C, H, W, M, K, stride, padding, dilation, groups, activation)
CONV_CASES = [
    (1, 3, 9, 7, 5, 3, 1, 1, 1, 1, None),
    (2, 4, 11, 13, 6, 3, 2, 1, 1, 2, "relu"),
    (1, 6, 10, 10, 6, 3, 1, 1, 1, 6, "relu6"),          # depthwise
    (1, 5, 8, 9, 10, 3, 2, 2, 1, 5, None),               # channel multiplier 2
    (1, 7, 12, 12, 9, 1, 2, 0, 1, 1, None),              # 1x1 stride 2
    (1, 3, 14, 12, 4, 3, 1, 2, 2, 1, "relu"),            # dilation 2
    (1, 4, 7, 7, 4, 5, 1, (2, 1, 0, 3), 1, 1, None),     # asymmetric pads
    (1, 4, 9, 10, 3, 3, 2, "same", 1, 1, None),
    (1, 4, 9, 10, 3, 3, 1, "valid", 1, 1, "relu"),
    (3, 2, 5, 5, 3, 5, 1, 4, 1, 1, None),                # padding larger than half kernel
    (1, 17, 6, 5, 19, 3, 3, 1, 1, 1, "relu6"),           # odd channels, stride 3
    (0, 3, 8, 8, 4, 3, 1, 1, 1, 1, None),                # batch 0
]


@pytest.mark.parametrize("case", CONV_CASES, ids=[str(i) for i in range(len(CONV_CASES))])
def test_conv(rng, case):
    n, c, h, w, m, k, stride, padding, dil, groups, act = case
    g = jc.GraphBuilder()
    x = g.input("x", (n, c, h, w))
    y = g.conv2d(x, rand(rng, m, c // groups, k, k), rand(rng, m), stride=stride,
                 padding=padding, dilation=dil, groups=groups, activation=act)
    g.output(y, "y")
    feeds = {"x": rand(rng, n, c, h, w)}
    got, ref = run_and_reference(g.build(), feeds)
    assert_close(got["y"], ref["y"], what=str(case))


def test_conv_without_bias_and_clip(rng):
    g = jc.GraphBuilder()
    x = g.input("x", (1, 3, 8, 8))
    g.output(g.conv2d(x, rand(rng, 4, 3, 3, 3), activation="clip", clip=(-0.5, 0.7)), "y")
    got, ref = run_and_reference(g.build(), {"x": rand(rng, 1, 3, 8, 8)})
    assert_close(got["y"], ref["y"])
    assert got["y"].min() >= -0.5 and got["y"].max() <= 0.7


def _single(rng, build, shapes):
    g = jc.GraphBuilder()
    xs = [g.input(f"x{i}", s) for i, s in enumerate(shapes)]
    g.output(build(g, *xs), "y")
    feeds = {f"x{i}": rand(rng, *s) for i, s in enumerate(shapes)}
    got, ref = run_and_reference(g.build(), feeds)
    assert_close(got["y"], ref["y"])
    return got["y"]


ELEMENTWISE = {
    "relu": (lambda g, a: g.relu(a), [(2, 3, 5, 7)]),
    "clip": (lambda g, a: g.clip(a, -0.3, 0.4), [(3, 17)]),
    "relu6": (lambda g, a: g.relu6(g.mul(a, np.float32(5))), [(1, 4, 3, 3)]),
    "add_same": (lambda g, a, b: g.add(a, b), [(2, 3, 4, 5), (2, 3, 4, 5)]),
    "add_bcast": (lambda g, a, b: g.add(a, b), [(2, 3, 4, 5), (3, 1, 1)]),
    "mul_bcast": (lambda g, a, b: g.mul(a, b), [(1, 5), (4, 1)]),
    "add_rank1": (lambda g, a, b: g.add(a, b), [(7,), (2, 3, 7)]),
    "mul_zero": (lambda g, a, b: g.mul(a, b), [(0, 3), (1, 3)]),
}


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_elementwise(rng, name):
    build, shapes = ELEMENTWISE[name]
    _single(rng, build, shapes)


POOLS = {
    "max3s2p1": lambda g, x: g.max_pool(x, 3, stride=2, padding=1),
    "max2ceil": lambda g, x: g.max_pool(x, 2, stride=2, ceil_mode=True),
    "max_dil": lambda g, x: g.max_pool(x, 2, stride=1, dilation=2),
    "max_same": lambda g, x: g.max_pool(x, 3, stride=2, padding="same"),
    "avg3s2p1": lambda g, x: g.average_pool(x, 3, stride=2, padding=1),
    "avg_incl": lambda g, x: g.average_pool(x, 3, stride=2, padding=1, count_include_pad=True),
    "avg_ceil_incl": lambda g, x: g.average_pool(x, 3, stride=2, padding=1, ceil_mode=True,
                                                count_include_pad=True),
    "avg_rect": lambda g, x: g.average_pool(x, (2, 3), stride=(1, 2), padding=(1, 0, 0, 2)),
    "global": lambda g, x: g.global_average_pool(x),
}


@pytest.mark.parametrize("name", sorted(POOLS))
def test_pool(rng, name):
    _single(rng, POOLS[name], [(2, 3, 10, 9)])


LAYOUT = {
    "concat1": (lambda g, a, b: g.concat([a, b], axis=1), [(1, 3, 4, 5), (1, 2, 4, 5)]),
    "concat_neg": (lambda g, a, b: g.concat([a, b], axis=-1), [(2, 3), (2, 5)]),
    "flatten": (lambda g, a: g.flatten(a), [(2, 3, 4, 5)]),
    "flatten2": (lambda g, a: g.flatten(a, axis=-1), [(2, 3, 4, 5)]),
    "reshape": (lambda g, a: g.reshape(a, [0, -1, 5]), [(2, 3, 4, 5)]),
    "transpose": (lambda g, a: g.transpose(a, [0, 2, 3, 1]), [(2, 3, 4, 5)]),
    "softmax": (lambda g, a: g.softmax(a), [(3, 11)]),
    "softmax_ax1": (lambda g, a: g.softmax(a, axis=1), [(2, 5, 3, 2)]),
}


@pytest.mark.parametrize("name", sorted(LAYOUT))
def test_layout_and_softmax(rng, name):
    build, shapes = LAYOUT[name]
    _single(rng, build, shapes)


@pytest.mark.parametrize("trans_a,trans_b,c_shape", [
    (False, False, None), (True, False, (1, 7)), (False, True, (5, 7)), (True, True, (7,)),
])
def test_gemm(rng, trans_a, trans_b, c_shape):
    a_shape = (13, 5) if trans_a else (5, 13)
    b = rand(rng, *((7, 13) if trans_b else (13, 7)))
    c = rand(rng, *c_shape) if c_shape else None
    _single(rng, lambda g, a: g.gemm(a, b, c, alpha=0.7, beta=1.3, trans_a=trans_a,
                                       trans_b=trans_b), [a_shape])


@pytest.mark.parametrize("sa,sb", [((5, 13), (13, 7)), ((2, 3, 4, 6), (6, 5)),
                                   ((3, 1, 4, 6), (2, 6, 5)), ((6,), (2, 6, 3)), ((4, 6), (6,))])
def test_matmul(rng, sa, sb):
    _single(rng, lambda g, a, b: g.matmul(a, b), [sa, sb])


def test_batchnorm_standalone_and_folded(rng):
    c = 6
    params = [rand(rng, c), rand(rng, c), rand(rng, c), np.abs(rand(rng, c)) + 0.1]
    g = jc.GraphBuilder()
    x = g.input("x", (2, c, 5, 5))
    y = g.conv2d(x, rand(rng, c, c, 3, 3), rand(rng, c), padding=1, name="conv")
    y = g.batch_norm(y, *params, name="bn")                 # folds into conv
    z = g.batch_norm(g.relu(y), *params, name="bn2")         # stays standalone
    g.output(z, "y")
    graph = g.build()
    sess = jc.Session(graph, jc.Config(threads=1))
    feeds = {"x": rand(rng, 2, c, 5, 5)}
    from jitconv.runtime.reference import evaluate
    assert_close(sess.run(feeds)["y"], evaluate(graph, feeds)["y"])
    kinds = {op.name: op for op in sess.info().ops}
    assert "bn" not in kinds and "fused bn" in kinds["conv"].reason
    assert kinds["bn2"].kernel == "channel_affine"


@pytest.mark.parametrize("act", [None, "relu", "relu6"])
def test_conv_residual_add_is_fused_before_the_activation(rng, act):
    g = jc.GraphBuilder()
    x = g.input("x", (2, 8, 7, 9))
    skip = g.relu(x, name="skip")
    y = g.conv2d(skip, rand(rng, 8, 8, 3, 3), rand(rng, 8), padding=1, name="conv")
    y = g.add(skip, y, name="residual")
    if act == "relu":
        y = g.relu(y, name="act")
    elif act == "relu6":
        y = g.relu6(y, name="act")
    g.output(y, "y")
    graph = g.build()
    sess = jc.Session(graph, jc.Config(threads=2))
    x_val = rand(rng, 2, 8, 7, 9)
    from jitconv.runtime.reference import evaluate
    assert_close(sess.run(x_val)["y"], evaluate(graph, {"x": x_val})["y"])
    ops = {op.name: op for op in sess.info().ops}
    assert "residual" not in ops and "act" not in ops
    assert "fused residual" in ops["conv"].reason
