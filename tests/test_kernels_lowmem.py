"""Low-memory kernels (weights kept as fp16 / int8 / int4) against the NumPy reference.

Quantized weights are built here from the ``runtime.ir.Constant`` docstring (value =
q * scale + zero, block-wise along K, int4 nibbles low first); the reference runs with
``Constant.as_float32()``, the reference decoding, so only the kernels are under test.
"""

import zlib

import numpy as np
import pytest

from jitconv.kernels import conv_direct, conv_lowmem, gemm_lowmem, half
from jitconv.runtime.ir import Constant
from jitconv.runtime.reference import conv_output_hw, run_op

RTOL = 1e-4
NO_ZERO = np.zeros((0, 0), np.float32)


def _seed(obj):
    return zlib.crc32(repr(obj).encode())


def _rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def _close(got, ref):
    """Error within RTOL of max |ref| (float32 accumulation vs the float64 reference)."""
    assert got.shape == ref.shape, (got.shape, ref.shape)
    if ref.size == 0:
        return
    scale = max(1.0, float(np.max(np.abs(ref))))
    err = float(np.max(np.abs(got.astype(np.float64) - ref)))
    assert err <= RTOL * scale, f"max abs err {err:.3g} > {RTOL} x {scale:.3g}"


# ----------------------------------------------------------------------------- weight builders

def pack_int4(q):
    """q int (rows, K) in [-8, 7] -> uint8 (rows, ceil(K/2)), value k in nibble k % 2 (low first)."""
    rows, k = q.shape
    nib = (q.astype(np.int16) & 0x0F).astype(np.uint8)
    if k % 2:
        nib = np.concatenate([nib, np.zeros((rows, 1), np.uint8)], axis=1)
    return (nib[:, 0::2] | (nib[:, 1::2] << 4)).astype(np.uint8)


def quantize(name, w, storage, nb=1, asym=False):
    """A Constant holding w (float32, any shape) as fp16 / int8 / int4 with nb blocks per row."""
    if storage == "fp16":
        return Constant(name, np.clip(w, -65504, 65504).astype(np.float16), "fp16")
    bits = {"int8": 8, "int4": 4}[storage]
    rows = w.shape[0]
    k = int(np.prod(w.shape[1:], dtype=np.int64))
    blk = w.reshape(rows, nb, k // nb if nb else 0).astype(np.float64)
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    if asym:  # scale = (max - min) / (2^b - 1); min maps to qmin
        mn = blk.min(axis=2) if k else np.zeros((rows, nb))
        mx = blk.max(axis=2) if k else np.zeros((rows, nb))
        scale = (mx - mn) / (2 ** bits - 1)
        scale[scale == 0] = 1.0
        zero = mn - qmin * scale
        q = np.rint((blk - zero[:, :, None]) / scale[:, :, None])
    else:  # scale = absmax / (2^(b-1) - 1)
        amax = np.abs(blk).max(axis=2) if k else np.zeros((rows, nb))
        scale = amax / qmax
        scale[scale == 0] = 1.0
        zero = None
        q = np.rint(blk / scale[:, :, None])
    q = np.clip(q, qmin, qmax).astype(np.int8).reshape(rows, k)
    data = q if storage == "int8" else pack_int4(q)
    return Constant(name, data, storage, scale=scale.astype(np.float32),
                    zero=None if zero is None else zero.astype(np.float32),
                    logical_shape=tuple(w.shape))


def kernel_weights(const):
    """The argument tuple a low-memory kernel takes for this constant (before bias)."""
    if const.storage == "fp16":
        return (const.data.view(np.uint16),)
    zero = const.zero if const.zero is not None else NO_ZERO
    return (const.data, const.scale, zero)


# (storage, blocks: first of these dividing K (else 1), asymmetric)
SCHEMES = [
    ("fp16", (1,), False),
    ("int8", (1,), False),  # per output channel, symmetric
    ("int8", (4, 3, 2), True),  # block-wise, asymmetric
    ("int4", (3, 2, 4), False),  # block-wise, symmetric (odd blocks cross byte boundaries)
    ("int4", (1,), True),  # per channel, asymmetric
]


def _nblocks(k, choices):
    return next((nb for nb in choices if k and k % nb == 0), 1)


def _scheme_id(s):
    return f"{s[0]}_{'asym' if s[2] else 'sym'}_nb{'-'.join(map(str, s[1]))}"


# ----------------------------------------------------------------------------- fp16 bits

def test_half_to_float_all_patterns():
    bits = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    out = np.empty(65536, np.float32)
    half.fp16_bits_to_f32(bits, out)
    ref = bits.view(np.float16).astype(np.float32)
    np.testing.assert_array_equal(out, ref)  # NaN == NaN here
    assert np.array_equal(np.isnan(out), np.isnan(ref))
    # same bits for everything but NaN payloads
    fin = ~np.isnan(ref)
    assert np.array_equal(out[fin].view(np.uint32), ref[fin].view(np.uint32))


def test_fp16_to_f32_helper():
    a = np.array([[0.0, -0.0, 1.5], [65504.0, -np.inf, 6e-8]], np.float16)
    np.testing.assert_array_equal(half.fp16_to_f32(a), a.astype(np.float32))


# ----------------------------------------------------------------------------- conv

# (N, C, H, W, M, KH, KW, strides, pads [t,l,b,r], dilations, group, activation)
CONV_CASES = [
    (1, 9, 10, 13, 5, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 1, "relu"),  # 1x1, C % 4 != 0
    (1, 4, 9, 11, 6, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1, ""),  # 3x3
    (2, 8, 9, 10, 8, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 8, "clip"),  # depthwise, batch 2
    (1, 7, 12, 11, 7, 3, 3, (2, 2), (0, 1, 1, 0), (1, 1), 7, ""),  # depthwise stride 2
    (1, 6, 11, 9, 6, 3, 3, (1, 2), (1, 0, 2, 1), (2, 1), 2, ""),  # grouped, dilated rows
    (1, 4, 7, 8, 6, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 2, "relu"),  # pair spans groups
    (1, 5, 13, 12, 4, 3, 3, (2, 2), (1, 1, 1, 1), (1, 1), 1, "clip"),  # stride 2
    (2, 3, 9, 9, 4, 3, 3, (1, 1), (1, 1, 1, 1), (2, 2), 1, "clip"),  # dilation 2, batch 2
    (2, 8, 11, 11, 3, 1, 1, (2, 2), (0, 0, 0, 0), (1, 1), 1, ""),  # 1x1 stride 2, odd M
    (1, 6, 5, 6, 9, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 3, ""),  # 1x1 grouped, odd M/group
    (1, 7, 8, 9, 5, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1, "relu"),  # odd C and M
    (1, 4, 15, 14, 4, 5, 3, (1, 1), (2, 1, 2, 1), (1, 3), 1, "relu"),  # generic path
    (2, 4, 7, 7, 12, 5, 5, (1, 1), (2, 2, 2, 2), (2, 2), 4, ""),  # multiplier 3, dilated 5x5
    (1, 3, 6, 5, 2, 2, 4, (3, 2), (1, 2, 0, 0), (1, 1), 1, "relu"),  # even kernel, odd strides
    (1, 3, 6, 6, 1, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1, ""),  # single output channel
    (1, 33, 6, 7, 10, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1, "relu"),  # more pairs than chunks
    (0, 3, 8, 8, 4, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1, "relu"),  # batch 0
    (1, 3, 5, 5, 0, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1, ""),  # M = 0
    (1, 0, 5, 5, 3, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1, "relu"),  # C = 0 (K = 0): bias only
]


def _conv_id(c):
    return "x".join(map(str, c[:7])) + f"_s{c[7][0]}{c[7][1]}_d{c[9][0]}{c[9][1]}_g{c[10]}_{c[11] or 'none'}"


def run_lowmem_conv(const, x, b, strides, pads, dil, group, act, lo=0.0, hi=6.0):
    N, C, H, W = x.shape
    M, _, KH, KW = const.shape
    OH, OW = conv_output_hw((H, W), (KH, KW), strides, dil, pads)
    out = np.full((N, M, OH, OW), np.nan, dtype=np.float32)
    shp = conv_direct.conv2d_scratch_shape(C, H, W, OH, OW, KH, KW, strides[0], strides[1],
                                           pads[0], pads[1], dil[0], dil[1])
    xpad = np.full(shp, np.nan, dtype=np.float32)  # the kernel must overwrite what it reads
    tail = (b, out, xpad, strides[0], strides[1], pads[0], pads[1], dil[0], dil[1], group,
            {"": 0, "relu": 1, "clip": 2}[act], lo, hi)
    wargs = kernel_weights(const)
    if const.storage == "fp16":
        conv_lowmem.conv2d_fp16w(x, *wargs, *tail)
    elif const.storage == "int8":
        conv_lowmem.conv2d_int8w(x, *wargs, KH, KW, *tail)
    else:
        conv_lowmem.conv2d_int4w(x, *wargs, KH, KW, *tail)
    return out


@pytest.mark.parametrize("scheme", SCHEMES, ids=_scheme_id)
@pytest.mark.parametrize("case", CONV_CASES, ids=_conv_id)
def test_conv_lowmem(case, scheme):
    N, C, H, W, M, KH, KW, strides, pads, dil, group, act = case
    storage, blocks, asym = scheme
    rng = np.random.default_rng(_seed((case, scheme)))
    x = _rand(rng, N, C, H, W)
    w = _rand(rng, M, C // group, KH, KW)
    b = _rand(rng, M)
    k = (C // group) * KH * KW
    const = quantize("w", w, storage, _nblocks(k, blocks), asym)
    if storage != "fp16" and k > 1 and M:
        assert const.scale.shape[1] == _nblocks(k, blocks)
    lo, hi = -0.5, 0.75
    got = run_lowmem_conv(const, x, b, strides, pads, dil, group, act, lo, hi)
    attrs = dict(strides=list(strides), pads=list(pads), dilations=list(dil), group=group,
                 activation=act, activation_min=lo, activation_max=hi)
    # (Constant.as_float32 cannot reshape a 0-row int4 array; nothing to decode then anyway)
    wref = const.as_float32() if M else np.zeros(w.shape, np.float32)
    ref = run_op("Conv", [x, wref, b], attrs)
    _close(got, ref)


@pytest.mark.parametrize("scheme", SCHEMES, ids=_scheme_id)
def test_conv_lowmem_matches_fp32_kernel_on_decoded_weights(scheme):
    """Same compute as conv2d_direct: identical results when given the decoded weights."""
    storage, blocks, asym = scheme
    rng = np.random.default_rng(_seed(scheme))
    x = _rand(rng, 2, 12, 10, 9)
    w = _rand(rng, 7, 12, 3, 3)
    b = _rand(rng, 7)
    const = quantize("w", w, storage, _nblocks(12 * 9, blocks), asym)
    got = run_lowmem_conv(const, x, b, (1, 1), (1, 1, 1, 1), (1, 1), 1, "relu")
    ref = np.full_like(got, np.nan)
    xpad = np.full((12, 12, 11), np.nan, np.float32)
    conv_direct.conv2d_direct(x, const.as_float32(), b, ref, xpad, 1, 1, 1, 1, 1, 1, 1, 1, 0.0, 0.0)
    # decoding may round q*scale+zero once (fma) where NumPy rounds twice: allow 1-2 ulp
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * float(np.abs(ref).max()))
    if storage in ("fp16", "int8") and not asym:
        np.testing.assert_array_equal(got, ref)  # exact decodes: bit-identical compute


def test_conv_lowmem_reuses_buffers():
    """Two calls on the same out / scratch buffers give the same result (no leftover state)."""
    rng = np.random.default_rng(3)
    x = _rand(rng, 1, 6, 8, 8)
    const = quantize("w", _rand(rng, 4, 6, 3, 3), "int4", 2, True)
    b = _rand(rng, 4)
    first = run_lowmem_conv(const, x, b, (1, 1), (1, 1, 1, 1), (1, 1), 1, "")
    second = run_lowmem_conv(const, x, b, (1, 1), (1, 1, 1, 1), (1, 1), 1, "")
    np.testing.assert_array_equal(first, second)


# ----------------------------------------------------------------------------- gemm

def run_lowmem_gemm(const, a, cv, out, alpha, beta, has_c):
    wargs = kernel_weights(const)
    fn = {"fp16": gemm_lowmem.gemm_nt_fp16w, "int8": gemm_lowmem.gemm_nt_int8w,
          "int4": gemm_lowmem.gemm_nt_int4w}[const.storage]
    fn(a, *wargs, cv, out, alpha, beta, has_c)


@pytest.mark.parametrize("scheme", SCHEMES, ids=_scheme_id)
@pytest.mark.parametrize("M,K,N,c_shape,alpha,beta", [
    (1, 300, 13, (13,), 1.0, 1.0),  # FC layer with broadcast bias
    (5, 36, 9, None, 1.0, 1.0),
    (6, 33, 8, (6, 1), 0.5, -2.0),  # odd K
    (3, 27, 5, (3, 5), 2.0, 0.25),
    (17, 64, 3, (3,), 1.0, 1.0),  # few columns: rows split across tasks
    (2, 48, 130, None, 1.0, 1.0),  # many column blocks: several per chunk
    (4, 0, 3, (1, 3), 1.0, 1.0),  # K = 0
    (0, 5, 3, None, 1.0, 1.0),  # M = 0
    (2, 8, 0, None, 1.0, 1.0),  # N = 0
    (2, 16, 4, (), 1.0, 3.0),  # scalar C
])
def test_gemm_lowmem(M, K, N, c_shape, alpha, beta, scheme):
    storage, blocks, asym = scheme
    rng = np.random.default_rng(_seed((M, K, N, scheme)))
    a = _rand(rng, M, K)
    b = _rand(rng, N, K)
    const = quantize("b", b, storage, _nblocks(K, blocks), asym)
    bt = const.as_float32() if N else b  # (as_float32 cannot reshape a 0-row int4 array)
    inputs = [a, bt]
    if c_shape is None:
        cv = np.broadcast_to(np.zeros((1, 1), np.float32), (M, N))
        has_c = False
    else:
        C = _rand(rng, *c_shape)
        inputs.append(C)
        cv = np.broadcast_to(C, (M, N))
        has_c = True
    out = np.full((M, N), np.nan, np.float32)
    run_lowmem_gemm(const, a, cv, out, alpha, beta, has_c)
    ref = run_op("Gemm", inputs, dict(alpha=alpha, beta=beta, transB=1))
    _close(out, ref)


# ----------------------------------------------------------------------------- builders

def test_quantize_roundtrip_sanity():
    """The test's own builder: decoded values are within half a step of the originals."""
    rng = np.random.default_rng(0)
    w = _rand(rng, 5, 3, 3, 3)  # K = 27, odd
    for storage, bits in (("int8", 8), ("int4", 4)):
        for asym in (False, True):
            const = quantize("w", w, storage, 3, asym)
            err = np.abs(const.as_float32() - w).reshape(5, 3, 9)
            step = const.scale[:, :, None]
            assert np.all(err <= 0.5 * step + 1e-6), (storage, asym)
    q = np.array([[-8, 7, -1, 0, 3]], np.int8)
    packed = pack_int4(q)
    assert packed.tolist() == [[0x78, 0x0F, 0x03]]
