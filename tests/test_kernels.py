"""Direct tests of the fp32 CPU Numba kernels against the NumPy reference (runtime.reference)."""

import zlib

import numpy as np
import pytest

from jitconv.kernels import activations, conv_direct, elementwise, gemm, pooling, softmax
from jitconv.runtime.reference import conv_output_hw, pool_output_hw, run_op

RTOL = 1e-4
ATOL = 1e-5


def _seed(obj):
    return zlib.crc32(repr(obj).encode())


def _rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def _close(got, ref, scale_by_max=False):
    assert got.shape == ref.shape, (got.shape, ref.shape)
    atol = ATOL
    if scale_by_max and ref.size:
        atol = ATOL * max(1.0, float(np.max(np.abs(ref))))
    np.testing.assert_allclose(got, ref, rtol=RTOL, atol=atol)


# ----------------------------------------------------------------------------- conv

# (N, C, H, W, M, KH, KW, strides, pads [t,l,b,r], dilations, group, activation)
CONV_CASES = [
    (1, 3, 9, 11, 5, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1, ""),
    (2, 4, 10, 7, 6, 3, 3, (1, 1), (0, 0, 0, 0), (1, 1), 1, "relu"),
    (1, 5, 13, 12, 4, 3, 3, (2, 2), (1, 1, 1, 1), (1, 1), 1, "clip"),
    (2, 6, 11, 9, 6, 3, 3, (1, 2), (1, 0, 2, 1), (2, 1), 2, ""),  # asymmetric pads, dil, groups
    (1, 4, 15, 14, 4, 5, 3, (1, 1), (2, 1, 2, 1), (1, 3), 1, "relu"),
    (2, 8, 9, 10, 8, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 8, "clip"),  # depthwise
    (1, 7, 12, 11, 7, 3, 3, (2, 2), (0, 1, 1, 0), (1, 1), 7, ""),  # depthwise stride 2, asym
    (1, 3, 8, 9, 6, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 3, "relu"),  # channel multiplier 2
    (2, 4, 7, 7, 12, 5, 5, (1, 1), (2, 2, 2, 2), (2, 2), 4, ""),  # multiplier 3, dilated 5x5
    (1, 9, 10, 13, 5, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 1, "relu"),  # 1x1, C not multiple of 4
    (2, 8, 11, 11, 3, 1, 1, (2, 2), (0, 0, 0, 0), (1, 1), 1, ""),  # 1x1 stride 2
    (1, 6, 9, 9, 4, 1, 1, (1, 2), (1, 0, 0, 2), (1, 1), 2, "clip"),  # 1x1 padded, grouped
    (1, 2, 5, 6, 3, 3, 3, (1, 1), (4, 5, 3, 6), (1, 1), 1, ""),  # large padding
    (1, 3, 6, 5, 2, 2, 4, (3, 2), (1, 2, 0, 0), (1, 1), 1, "relu"),  # even kernel, odd strides
    (1, 4, 8, 8, 4, 7, 1, (1, 1), (3, 0, 3, 0), (1, 1), 2, ""),
    (0, 3, 8, 8, 4, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1, "relu"),  # batch 0
    (2, 3, 9, 9, 4, 3, 3, (1, 1), (1, 1, 1, 1), (2, 2), 1, "clip"),  # dilated 3x3 fast path
    (1, 4, 7, 8, 6, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 2, "relu"),  # channel pair spans groups
    (1, 6, 5, 6, 9, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 3, ""),  # 1x1, odd M per group
    (1, 5, 11, 9, 4, 3, 3, (2, 1), (1, 1, 0, 1), (1, 2), 1, "clip"),  # row stride only
]


def _run_conv(x, w, b, strides, pads, dil, group, act, lo=0.0, hi=6.0):
    N, C, H, W = x.shape
    M, _, KH, KW = w.shape
    OH, OW = conv_output_hw((H, W), (KH, KW), strides, dil, pads)
    out = np.full((N, M, OH, OW), np.nan, dtype=np.float32)
    shp = conv_direct.conv2d_scratch_shape(C, H, W, OH, OW, KH, KW, strides[0], strides[1],
                                           pads[0], pads[1], dil[0], dil[1])
    xpad = np.full(shp, np.nan, dtype=np.float32)  # the kernel must overwrite what it reads
    act_code = {"": 0, "relu": 1, "clip": 2}[act]
    conv_direct.conv2d_direct(x, w, b, out, xpad, strides[0], strides[1], pads[0], pads[1],
                              dil[0], dil[1], group, act_code, lo, hi)
    return out


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "x".join(map(str, c[:7])) + f"_g{c[10]}_{c[11] or 'none'}")
def test_conv2d_direct(case):
    N, C, H, W, M, KH, KW, strides, pads, dil, group, act = case
    rng = np.random.default_rng(_seed(case))
    x = _rand(rng, N, C, H, W)
    w = _rand(rng, M, C // group, KH, KW)
    b = _rand(rng, M)
    lo, hi = -0.5, 0.75
    got = _run_conv(x, w, b, strides, pads, dil, group, act, lo, hi)
    attrs = dict(strides=list(strides), pads=list(pads), dilations=list(dil), group=group,
                 activation=act, activation_min=lo, activation_max=hi)
    ref = run_op("Conv", [x, w, b], attrs)
    _close(got, ref, scale_by_max=True)


def test_conv2d_zero_bias_and_reuse_scratch():
    rng = np.random.default_rng(1)
    x = _rand(rng, 3, 4, 6, 7)
    w = _rand(rng, 5, 4, 3, 3)
    b = np.zeros(5, np.float32)
    got = _run_conv(x, w, b, (1, 1), (1, 1, 1, 1), (1, 1), 1, "")
    ref = run_op("Conv", [x, w], dict(pads=[1, 1, 1, 1]))
    _close(got, ref, scale_by_max=True)


def test_conv2d_scratch_shape():
    # bottom/right extent implied by the output shape may exceed H + pt
    assert conv_direct.conv2d_scratch_shape(3, 5, 6, 5, 6, 3, 3, 1, 1, 1, 1, 1, 1) == (3, 7, 8)
    assert conv_direct.conv2d_scratch_shape(3, 5, 6, 0, 6, 3, 3, 1, 1, 1, 1, 1, 1)[1:] == (0, 0)


# ----------------------------------------------------------------------------- pooling

# (N, C, H, W, kernel, strides, pads, dilations, ceil_mode)
MAXPOOL_CASES = [
    (2, 3, 9, 10, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 0),
    (1, 2, 11, 8, (2, 3), (2, 1), (0, 1, 1, 0), (1, 1), 1),
    (1, 4, 12, 13, (3, 3), (1, 2), (2, 2, 2, 2), (2, 2), 0),
    (1, 2, 7, 7, (3, 3), (3, 3), (0, 0, 0, 0), (1, 1), 1),
    (0, 2, 7, 7, (2, 2), (2, 2), (0, 0, 0, 0), (1, 1), 0),
    (1, 3, 112, 112, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 0),  # ResNet's stem pool
    (1, 2, 13, 17, (3, 2), (3, 3), (1, 1, 2, 2), (2, 3), 1),  # stride 3 with dilation
    (1, 2, 9, 20, (2, 5), (1, 4), (0, 2, 0, 2), (1, 2), 0),  # stride 4 across
    (1, 1, 5, 6, (3, 3), (2, 2), (1, 1, 1, 1), (2, 2), 1),  # dilated windows past the edge
]


def test_max_pool2d_propagates_nan():
    x = _rand(np.random.default_rng(5), 1, 1, 8, 8)
    x[0, 0, 3, 4] = np.nan
    out = np.empty((1, 1, 4, 4), np.float32)
    pooling.max_pool2d(x, out, 3, 3, 2, 2, 1, 1, 1, 1)
    ref = run_op("MaxPool", [x], dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]))
    assert np.array_equal(np.isnan(out), np.isnan(ref)) and np.isnan(out).sum() == 2
    np.testing.assert_array_equal(out[~np.isnan(out)], ref[~np.isnan(ref)])


@pytest.mark.parametrize("case", MAXPOOL_CASES)
def test_max_pool2d(case):
    N, C, H, W, k, s, p, d, ceil_mode = case
    rng = np.random.default_rng(_seed(case))
    x = _rand(rng, N, C, H, W)
    OH, OW = pool_output_hw((H, W), k, s, d, p, ceil_mode)
    out = np.full((N, C, OH, OW), np.nan, np.float32)
    pooling.max_pool2d(x, out, k[0], k[1], s[0], s[1], p[0], p[1], d[0], d[1])
    ref = run_op("MaxPool", [x], dict(kernel_shape=list(k), strides=list(s), pads=list(p),
                                      dilations=list(d), ceil_mode=ceil_mode))
    _close(out, ref)


def test_max_pool2d_all_negative_with_padding():
    x = -np.abs(_rand(np.random.default_rng(3), 1, 2, 5, 5)) - 1.0
    out = np.empty((1, 2, 3, 3), np.float32)
    pooling.max_pool2d(x, out, 3, 3, 2, 2, 1, 1, 1, 1)
    ref = run_op("MaxPool", [x], dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]))
    _close(out, ref)
    assert np.all(out < 0)


def test_max_pool2d_empty_window_is_neg_inf():
    # pads larger than the kernel (invalid in ONNX) must not crash: empty windows give -inf
    x = _rand(np.random.default_rng(4), 1, 1, 3, 3)
    out = np.zeros((1, 1, 3, 3), np.float32)
    pooling.max_pool2d(x, out, 1, 1, 2, 2, 2, 2, 1, 1)
    assert np.isneginf(out[0, 0, 0, 0])
    assert out[0, 0, 1, 1] == x[0, 0, 0, 0]


# (N, C, H, W, kernel, strides, pads, ceil_mode, count_include_pad)
AVGPOOL_CASES = [
    (2, 3, 9, 10, (3, 3), (2, 2), (1, 1, 1, 1), 0, 0),
    (2, 3, 9, 10, (3, 3), (2, 2), (1, 1, 1, 1), 0, 1),
    (1, 2, 10, 11, (3, 2), (2, 3), (1, 0, 1, 1), 1, 1),  # ceil_mode overhang not counted
    (1, 2, 10, 11, (3, 2), (2, 3), (1, 0, 1, 1), 1, 0),
    (1, 4, 7, 7, (7, 7), (1, 1), (0, 0, 0, 0), 0, 0),
    (1, 2, 8, 9, (2, 2), (1, 1), (0, 1, 1, 0), 0, 1),
    (0, 2, 8, 8, (2, 2), (2, 2), (0, 0, 0, 0), 0, 0),
]


@pytest.mark.parametrize("case", AVGPOOL_CASES)
def test_avg_pool2d(case):
    N, C, H, W, k, s, p, ceil_mode, cip = case
    rng = np.random.default_rng(_seed(case))
    x = _rand(rng, N, C, H, W)
    OH, OW = pool_output_hw((H, W), k, s, (1, 1), p, ceil_mode)
    out = np.full((N, C, OH, OW), np.nan, np.float32)
    pooling.avg_pool2d(x, out, k[0], k[1], s[0], s[1], p[0], p[1], p[2], p[3], cip)
    ref = run_op("AveragePool", [x], dict(kernel_shape=list(k), strides=list(s), pads=list(p),
                                          ceil_mode=ceil_mode, count_include_pad=cip))
    _close(out, ref)


@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 4, 120, 110), (0, 3, 4, 4), (1, 2, 1, 1)])
def test_global_avg_pool(shape):
    rng = np.random.default_rng(5)
    x = _rand(rng, *shape) + 3.0  # non-zero mean: float32 accumulation would drift
    N, C, H, W = shape
    out = np.full(N * C, np.nan, np.float32)
    pooling.global_avg_pool(x.reshape(N * C, H * W), out)
    ref = run_op("GlobalAveragePool", [x], {})
    _close(out.reshape(N, C, 1, 1), ref)


# ----------------------------------------------------------------------------- elementwise

@pytest.mark.parametrize("n", [0, 1, 37, 1000])
def test_unary_and_same_shape(n):
    rng = np.random.default_rng(n)
    a, b = _rand(rng, n), _rand(rng, n)
    out = np.empty(n, np.float32)
    elementwise.relu(a, out)
    _close(out, run_op("Relu", [a], {}))
    elementwise.clip(a, out, -0.3, 0.8)
    _close(out, run_op("Clip", [a], dict(min=-0.3, max=0.8)))
    elementwise.clip(a, out, -np.inf, 0.1)
    _close(out, run_op("Clip", [a], dict(max=0.1)))
    elementwise.add_same(a, b, out)
    _close(out, run_op("Add", [a, b], {}))
    elementwise.mul_same(a, b, out)
    _close(out, run_op("Mul", [a, b], {}))


def test_relu_clip_keep_nan():
    x = np.array([np.nan, -1.0, 2.0, np.inf, -np.inf], np.float32)
    out = np.empty_like(x)
    elementwise.relu(x, out)
    np.testing.assert_array_equal(out, [np.nan, 0.0, 2.0, np.inf, 0.0])
    elementwise.clip(x, out, 0.0, 6.0)
    np.testing.assert_array_equal(out, [np.nan, 0.0, 2.0, 6.0, 0.0])


def _to6(shape):
    return (1,) * (6 - len(shape)) + tuple(shape)


@pytest.mark.parametrize("sa,sb", [
    ((2, 3, 4, 5), (3, 1, 1)),
    ((1, 5), (4, 1)),
    ((2, 1, 3, 1, 2, 3), (1, 4, 1, 5, 2, 1)),
    ((3, 4), (3, 4)),
    ((0, 3), (1, 3)),
    ((7,), ()),
])
@pytest.mark.parametrize("op", ["Add", "Mul"])
def test_binary_broadcast(sa, sb, op):
    rng = np.random.default_rng(len(sa) * 10 + len(sb))
    a, b = _rand(rng, *sa), _rand(rng, *sb)
    shape = np.broadcast_shapes(_to6(sa), _to6(sb))
    av = np.broadcast_to(a.reshape(_to6(sa)), shape)  # read-only, zero strides
    bv = np.broadcast_to(b.reshape(_to6(sb)), shape)
    out = np.empty(shape, np.float32)
    activations.binary_broadcast(av, bv, out, activations.OP_ADD if op == "Add"
                                 else activations.OP_MUL)
    ref = run_op(op, [a, b], {})
    _close(out.reshape(ref.shape), ref)


@pytest.mark.parametrize("shape", [(2, 5, 7, 3), (1, 3, 1, 1), (0, 4, 2, 2)])
def test_channel_affine_matches_batchnorm(shape):
    rng = np.random.default_rng(6)
    N, C, H, W = shape
    x = _rand(rng, *shape)
    scale, bias, mean = _rand(rng, C), _rand(rng, C), _rand(rng, C)
    var = np.abs(_rand(rng, C)) + 0.1
    eps = 1e-5
    s = (scale / np.sqrt(var.astype(np.float64) + eps)).astype(np.float32)
    t = (bias - mean.astype(np.float64) * s).astype(np.float32)
    out = np.empty((N, C, H * W), np.float32)
    elementwise.channel_affine(x.reshape(N, C, H * W), s, t, out)
    ref = run_op("BatchNormalization", [x, scale, bias, mean, var], dict(epsilon=eps))
    _close(out.reshape(shape), ref, scale_by_max=True)


# ----------------------------------------------------------------------------- gemm / matmul

@pytest.mark.parametrize("M,K,N,transA,transB,c_shape,alpha,beta", [
    (5, 7, 9, 0, 0, None, 1.0, 1.0),
    (1, 300, 13, 0, 1, (13,), 1.0, 1.0),  # FC layer with broadcast bias
    (6, 33, 8, 1, 0, (6, 1), 0.5, -2.0),
    (3, 4, 5, 1, 1, (3, 5), 2.0, 0.25),
    (4, 0, 3, 0, 0, (1, 3), 1.0, 1.0),  # K = 0
    (0, 5, 3, 0, 1, None, 1.0, 1.0),  # M = 0
    (2, 16, 4, 0, 0, (), 1.0, 3.0),  # scalar C
])
def test_gemm_nt(M, K, N, transA, transB, c_shape, alpha, beta):
    rng = np.random.default_rng(M * 100 + K + N)
    A = _rand(rng, *((K, M) if transA else (M, K)))
    B = _rand(rng, *((N, K) if transB else (K, N)))
    a = np.ascontiguousarray(A.T if transA else A)
    bt = np.ascontiguousarray(B if transB else B.T)
    inputs = [A, B]
    if c_shape is None:
        cv = np.broadcast_to(np.zeros((1, 1), np.float32), (M, N))
        has_c = False
    else:
        C = _rand(rng, *c_shape)
        inputs.append(C)
        cv = np.broadcast_to(C, (M, N))
        has_c = True
    out = np.full((M, N), np.nan, np.float32)
    gemm.gemm_nt(a, bt, cv, out, alpha, beta, has_c)
    ref = run_op("Gemm", inputs, dict(alpha=alpha, beta=beta, transA=transA, transB=transB))
    _close(out, ref, scale_by_max=True)


@pytest.mark.parametrize("sa,sb", [
    ((3, 5, 7), (3, 7, 4)),
    ((2, 1, 4, 6), (3, 6, 5)),  # broadcast batch
    ((4, 9), (2, 9, 3)),
    ((2, 3, 8), (8, 1)),
    ((0, 3, 4), (4, 2)),
    ((2, 40), (40, 530)),  # more than one column tile
])
def test_matmul_batched(sa, sb):
    rng = np.random.default_rng(len(sa) + 7 * len(sb))
    A, B = _rand(rng, *sa), _rand(rng, *sb)
    M, K = sa[-2], sa[-1]
    N = sb[-1]
    batch = np.broadcast_shapes(sa[:-2], sb[:-2])
    nb = int(np.prod(batch))
    # a 2-D operand keeps zero strides along the batch (read-only broadcast view)
    if A.ndim == 2:
        a3 = np.broadcast_to(A, (nb, M, K))
    else:
        a3 = np.broadcast_to(A, batch + (M, K)).reshape(nb, M, K)
    if B.ndim == 2:
        b3 = np.broadcast_to(B, (nb, K, N))
    else:
        b3 = np.broadcast_to(B, batch + (K, N)).reshape(nb, K, N)
    out = np.full((nb, M, N), np.nan, np.float32)
    gemm.matmul_batched(a3, b3, out)
    ref = run_op("MatMul", [A, B], {})
    _close(out.reshape(ref.shape), ref, scale_by_max=True)


# ----------------------------------------------------------------------------- softmax

@pytest.mark.parametrize("shape,axis", [
    ((2, 10), -1),
    ((3, 4, 5), 1),
    ((2, 7, 3, 3), 1),
    ((1, 1000), 1),
    ((4, 3), 0),
    ((0, 5), 1),
])
def test_softmax(shape, axis):
    rng = np.random.default_rng(len(shape))
    x = _rand(rng, *shape) * 20.0  # large logits: needs max subtraction
    ax = axis % len(shape)
    O = int(np.prod(shape[:ax]))
    I = int(np.prod(shape[ax + 1:]))
    out = np.full((O, shape[ax], I), np.nan, np.float32)
    softmax.softmax(x.reshape(O, shape[ax], I), out)
    ref = run_op("Softmax", [x], dict(axis=axis))
    _close(out.reshape(shape), ref)
