"""int8-dot conv (precision=low, int8 weights, activations quantized per run): kernels/int8dot.py.

Two references, both ``runtime.reference.run_op("Conv", ...)`` in float64 with the
dequantized weights ``wdeq = q * scale``:

- **tight**: on x' = ``activation_quant(x)`` (the kernel's documented rule, restated in NumPy).
  The kernel's int32 accumulation is exact, so the only error is the float32 epilogue:
  max |out - ref| <= 1e-4 * max |ref|.
- **end to end**: on the unquantized x. Each activation moves by at most scale_x / 2
  (round to nearest; padding is exactly 0), the conv is linear and relu / clip are
  1-Lipschitz, so for output channel m
      |out - ref| <= scale_x / 2 * sum_k |wdeq[m, k]|  (+ the tight tolerance).
  That bound is rigorous (it holds for any data), so the test asserts it on every case.

Every geometry runs on the VNNI path (when the CPU has it) and on the portable int32 path,
and the two must agree bit for bit (same CPU target; across targets the
float epilogue may differ by an ulp: FMA or not).
"""

import os
import re
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pytest
from numba import njit

from jitconv.kernels import int8dot, vnni
from jitconv.runtime.reference import conv_output_hw, run_op

TIGHT = 1e-4
PATHS = [pytest.param(True, id="vnni", marks=pytest.mark.skipif(
    not vnni.has_vnni(), reason="CPU without AVX-512 VNNI")), pytest.param(False, id="portable")]


def _rng(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def _quant_weights(w):
    """Symmetric per-output-channel int8: q (M, K) int8, scale (M, 1) float32."""
    M = w.shape[0]
    flat = w.reshape(M, -1)
    scale = (np.abs(flat).max(axis=1, keepdims=True) / 127).astype(np.float32)
    scale[scale == 0] = 1
    q = np.clip(np.rint(flat / scale), -127, 127).astype(np.int8)
    return q, scale


def _run(x, q, scale, w_shape, bias, strides, pads, dil, act, lo, hi, use_vnni):
    M, C, KH, KW = w_shape
    N, _, H, W = x.shape
    OH, OW = conv_output_hw((H, W), (KH, KW), strides, dil, pads)
    out = np.full((N, M, OH, OW), np.nan, np.float32)
    packed, wsum, wscale = int8dot.pack_int8dot(q, scale, w_shape)
    nb = int8dot.int8dot_scratch_bytes(x.shape, w_shape, out.shape, strides[0], strides[1],
                                       pads[0], pads[1], dil[0], dil[1])
    # garbage in the scratch must not matter
    scratch = np.full(nb + 7, 0xA5, np.uint8)
    sx = int8dot.conv2d_int8dot(x, packed, wsum, wscale, w_shape, bias, out, scratch,
                                strides[0], strides[1], pads[0], pads[1], dil[0], dil[1],
                                act, lo, hi, vnni=use_vnni)
    return out, sx


def _attrs(strides, pads, dil, act, lo, hi):
    a = dict(strides=list(strides), pads=list(pads), dilations=list(dil))
    if act == 1:
        a["activation"] = "relu"
    elif act == 2:
        a.update(activation="clip", activation_min=lo, activation_max=hi)
    return a


# (N, C, H, W, M, KH, KW, strides, pads [t, l, b, r], dilations, act, lo, hi)
CASES = {
    "1x1": (1, 16, 7, 9, 8, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 0, 0.0, 0.0),
    "1x1_s2_oddC": (1, 5, 9, 9, 7, 1, 1, (2, 2), (0, 0, 0, 0), (1, 1), 0, 0.0, 0.0),
    "1x1_many_tiles": (1, 12, 20, 21, 17, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 1, 0.0, 0.0),
    "3x3_pad1": (1, 8, 10, 12, 16, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 0, 0.0, 0.0),
    "3x3_pad1_relu_K576": (1, 64, 14, 14, 40, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1, 0.0, 0.0),
    "3x3_s2_asympad_batch2": (2, 5, 9, 11, 13, 3, 3, (2, 2), (1, 2, 0, 1), (1, 1), 0, 0.0, 0.0),
    "3x2_dil23_s12_oddC": (1, 7, 12, 12, 9, 3, 2, (1, 2), (2, 1, 2, 1), (2, 3), 0, 0.0, 0.0),
    "3x3_s2_C3_relu_batch2": (2, 3, 16, 16, 10, 3, 3, (2, 2), (1, 1, 1, 1), (1, 1), 1, 0.0, 0.0),
    "3x3_clip": (1, 12, 8, 8, 20, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 2, -0.5, 0.7),
    "5x5_pad2_C6": (1, 6, 11, 10, 5, 5, 5, (1, 1), (2, 2, 2, 2), (1, 1), 0, 0.0, 0.0),
    "M3_lt_MR_C2": (1, 2, 6, 6, 3, 3, 3, (1, 1), (0, 1, 2, 0), (1, 1), 0, 0.0, 0.0),
    "3x3_s3_dil2": (1, 9, 17, 15, 11, 3, 3, (3, 2), (2, 2, 1, 1), (2, 2), 0, 0.0, 0.0),
    "batch0": (0, 16, 7, 7, 8, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 0, 0.0, 0.0),
}


def _case(name):
    N, C, H, W, M, KH, KW, strides, pads, dil, act, lo, hi = CASES[name]
    rng = _rng(name)
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    w = rng.standard_normal((M, C, KH, KW)).astype(np.float32)
    b = rng.standard_normal(M).astype(np.float32)
    q, scale = _quant_weights(w)
    wdeq = (q.astype(np.float32) * scale).reshape(M, C, KH, KW)
    return x, q, scale, wdeq, b, (M, C, KH, KW), strides, pads, dil, act, lo, hi


@pytest.mark.parametrize("use_vnni", PATHS)
@pytest.mark.parametrize("name", list(CASES))
def test_conv_matches_reference(name, use_vnni):
    x, q, scale, wdeq, b, w_shape, strides, pads, dil, act, lo, hi = _case(name)
    out, sx = _run(x, q, scale, w_shape, b, strides, pads, dil, act, lo, hi, use_vnni)
    attrs = _attrs(strides, pads, dil, act, lo, hi)
    qx, sx_ref = int8dot.activation_quant(x)
    assert sx == pytest.approx(float(sx_ref), rel=0, abs=0)
    # tight: the kernel's own activation quantization applied in the reference
    ref_q = run_op("Conv", [qx.astype(np.float32) * sx_ref, wdeq, b], attrs)
    assert out.shape == ref_q.shape
    if out.size == 0:
        return
    assert np.isfinite(out).all()
    top = float(np.max(np.abs(ref_q)))
    err_q = float(np.max(np.abs(out.astype(np.float64) - ref_q)))
    assert err_q <= TIGHT * top + 1e-6, f"tight: max err {err_q:.3g} vs max|ref| {top:.3g}"
    # end to end: unquantized activations, per-channel bound scale_x/2 * sum|w|
    ref = run_op("Conv", [x, wdeq, b], attrs)
    bound = 0.5 * float(sx_ref) * np.abs(wdeq.astype(np.float64)).reshape(w_shape[0], -1).sum(1)
    err = np.abs(out.astype(np.float64) - ref).max(axis=(0, 2, 3))
    assert (err <= bound + TIGHT * top + 1e-6).all(), \
        f"end to end: err {err.max():.3g} > bound {bound[err.argmax()]:.3g}"


@pytest.mark.skipif(not vnni.has_vnni(), reason="CPU without AVX-512 VNNI")
@pytest.mark.parametrize("name", [n for n in CASES if n != "batch0"])
def test_vnni_and_portable_identical(name):
    x, q, scale, wdeq, b, w_shape, strides, pads, dil, act, lo, hi = _case(name)
    a, _ = _run(x, q, scale, w_shape, b, strides, pads, dil, act, lo, hi, True)
    p, _ = _run(x, q, scale, w_shape, b, strides, pads, dil, act, lo, hi, False)
    np.testing.assert_array_equal(a, p)


@pytest.mark.parametrize("use_vnni", PATHS)
def test_end_to_end_relative_error_model_like(use_vnni):
    """Typical accuracy on a realistic layer (He-init weights, relu'd-like inputs): the
    per-tensor activation quantization costs well under 1% of max |ref| here (documented
    figure; the rigorous per-channel bound is checked in test_conv_matches_reference)."""
    rng = _rng("model-like")
    C = M = 64
    x = np.maximum(rng.standard_normal((1, C, 14, 14)), 0).astype(np.float32)
    w = (rng.standard_normal((M, C, 3, 3)) * np.sqrt(2 / (C * 9))).astype(np.float32)
    b = (0.1 * rng.standard_normal(M)).astype(np.float32)
    q, scale = _quant_weights(w)
    wdeq = (q.astype(np.float32) * scale).reshape(w.shape)
    out, _ = _run(x, q, scale, w.shape, b, (1, 1), (1, 1, 1, 1), (1, 1), 1, 0.0, 0.0, use_vnni)
    ref = run_op("Conv", [x, wdeq, b], _attrs((1, 1), (1, 1, 1, 1), (1, 1), 1, 0, 0))
    rel = float(np.max(np.abs(out - ref)) / np.max(np.abs(ref)))
    assert rel < 1e-2, rel


@pytest.mark.parametrize("use_vnni", PATHS)
def test_zero_input_gives_bias(use_vnni):
    x = np.zeros((1, 4, 5, 5), np.float32)
    q = _rng("z").integers(-127, 128, (6, 36)).astype(np.int8)
    scale = np.full((6, 1), 0.5, np.float32)
    b = np.arange(6, dtype=np.float32) - 2
    out, sx = _run(x, q, scale, (6, 4, 3, 3), b, (1, 1), (1, 1, 1, 1), (1, 1), 0, 0, 0, use_vnni)
    assert sx == 1.0
    np.testing.assert_array_equal(out, np.broadcast_to(b[None, :, None, None], out.shape))


@pytest.mark.parametrize("use_vnni", PATHS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_is_never_silent(use_vnni, bad):
    x, q, scale, wdeq, b, w_shape, strides, pads, dil, _, _, _ = _case("3x3_pad1")
    x[0, 3, 4, 5] = bad
    out, sx = _run(x, q, scale, w_shape, b, strides, pads, dil, 0, 0, 0, use_vnni)
    assert not np.isfinite(sx)
    assert not np.isfinite(out).any()


@pytest.mark.parametrize("use_vnni", PATHS)
def test_extreme_values_exact(use_vnni):
    """Weights at -128 / 127 and activations at +-amax (u8 1 and 255): int32 stays exact."""
    C, M = 64, 8
    x = np.where(_rng("e").random((1, C, 4, 4)) < 0.5, -3.0, 3.0).astype(np.float32)
    q = np.where(_rng("e2").random((M, C * 9)) < 0.5, -128, 127).astype(np.int8)
    scale = np.full((M, 1), 1.0, np.float32)
    b = np.zeros(M, np.float32)
    out, sx = _run(x, q, scale, (M, C, 3, 3), b, (1, 1), (1, 1, 1, 1), (1, 1), 0, 0, 0, use_vnni)
    qx, _ = int8dot.activation_quant(x)
    assert set(np.unique(qx)) == {-127, 127}
    ref = run_op("Conv", [qx.astype(np.float64), q.reshape(M, C, 3, 3).astype(np.float64), b],
                 _attrs((1, 1), (1, 1, 1, 1), (1, 1), 0, 0, 0))
    np.testing.assert_array_equal(np.rint(out / np.float32(sx)), ref)


# ----------------------------------------------------------------------------- pieces

def test_activation_quant_rule():
    x = np.array([[-2.0, -1.0, 0.0, 0.3, 2.0]], np.float32)
    qx, sx = int8dot.activation_quant(x)
    assert sx == np.float32(2.0) / np.float32(127)
    assert qx.tolist() == [[-127, -64, 0, 19, 127]]  # -63.5 -> -64 (half to even)
    qx, sx = int8dot.activation_quant(np.zeros((0, 3), np.float32))
    assert sx == 1.0 and qx.shape == (0, 3)


def test_pack_layout_and_wsum():
    M, C, KH, KW = 11, 6, 3, 2
    q = _rng("p").integers(-128, 128, (M, C * KH * KW)).astype(np.int8)
    packed, wsum, wscale = int8dot.pack_int8dot(q, np.ones((M, 1), np.float32) * 3,
                                                (M, C, KH, KW))
    C4 = (C + 3) // 4
    MR = int8dot.MR
    assert packed.dtype == np.int32 and packed.shape == (-(-M // MR), C4 * KH * KW, MR)
    np.testing.assert_array_equal(wsum, q.astype(np.int64).sum(1))
    np.testing.assert_array_equal(wscale, np.full(M, 3, np.float32))
    b = packed.view(np.int8).reshape(packed.shape[0], C4, KH, KW, MR, 4)
    q4 = q.reshape(M, C, KH, KW)
    for m in range(packed.shape[0] * MR):
        for c in range(C4 * 4):
            for kh in range(KH):
                for kw in range(KW):
                    want = q4[m, c, kh, kw] if m < M and c < C else 0
                    assert b[m // MR, c // 4, kh, kw, m % MR, c % 4] == want


def test_pack_rejects_unsupported():
    q = np.zeros((4, 18), np.int8)
    with pytest.raises(ValueError, match="per-channel"):
        int8dot.pack_int8dot(q, np.ones((4, 2), np.float32), (4, 2, 3, 3))
    with pytest.raises(ValueError, match="does not fit"):
        int8dot.pack_int8dot(q, np.ones((4, 1), np.float32), (4, 3, 3, 3))
    with pytest.raises(ValueError, match="int8"):
        int8dot.pack_int8dot(q.astype(np.int16), np.ones((4, 1), np.float32), (4, 2, 3, 3))
    with pytest.raises(ValueError, match="overflow"):
        big = np.zeros((1, 65796), np.int8)
        int8dot.pack_int8dot(big, np.ones((1, 1), np.float32), (1, 65796, 1, 1))


def test_conv_argument_checks(monkeypatch):
    x = np.ones((1, 4, 5, 5), np.float32)
    q = np.ones((8, 36), np.int8)
    packed, wsum, wscale = int8dot.pack_int8dot(q, np.ones((8, 1), np.float32), (8, 4, 3, 3))
    out = np.zeros((1, 8, 3, 3), np.float32)
    b = np.zeros(8, np.float32)
    nb = int8dot.int8dot_scratch_bytes(x.shape, (8, 4, 3, 3), out.shape, 1, 1, 0, 0, 1, 1)
    with pytest.raises(ValueError, match="scratch"):
        int8dot.conv2d_int8dot(x, packed, wsum, wscale, (8, 4, 3, 3), b, out,
                               np.zeros(nb - 1, np.uint8), 1, 1, 0, 0, 1, 1, 0, 0, 0)
    with pytest.raises(ValueError, match="layout"):
        int8dot.conv2d_int8dot(x, packed[:, :-1], wsum, wscale, (8, 4, 3, 3), b, out,
                               np.zeros(nb, np.uint8), 1, 1, 0, 0, 1, 1, 0, 0, 0)
    # on a CPU without VNNI, asking for it must raise, never compile (LLVM would abort)
    monkeypatch.setattr(int8dot, "has_vnni", lambda: False)
    with pytest.raises(RuntimeError, match="VNNI"):
        int8dot.conv2d_int8dot(x, packed, wsum, wscale, (8, 4, 3, 3), b, out,
                               np.zeros(nb, np.uint8), 1, 1, 0, 0, 1, 1, 0, 0, 0, vnni=True)


def test_scratch_bytes_zero_when_nothing_to_do():
    assert int8dot.int8dot_scratch_bytes((0, 4, 5, 5), (8, 4, 3, 3), (0, 8, 3, 3),
                                         1, 1, 0, 0, 1, 1) == 0
    assert int8dot.int8dot_scratch_bytes((1, 4, 5, 5), (0, 4, 3, 3), (1, 0, 3, 3),
                                         1, 1, 0, 0, 1, 1) == 0


def test_dot4_and_pack4_intrinsics():
    rng = _rng("d4")
    xs = rng.integers(0, 256, (500, 4)).astype(np.uint8)
    ws = rng.integers(-128, 128, (500, 4)).astype(np.int8)
    xs[:4] = 255
    ws[:2] = -128
    ws[2:4] = 127
    a0 = rng.integers(-2 ** 20, 2 ** 20, 500).astype(np.int32)

    @njit
    def both(a0, xw, ww, xb, out_dot, out_pack):
        for i in range(a0.shape[0]):
            out_dot[i] = vnni.dot4_u8s8(a0[i], xw[i], ww[i])
            out_pack[i] = vnni.pack4_u8(xb[i, 0], xb[i, 1], xb[i, 2], xb[i, 3])

    d = np.empty(500, np.int32)
    p = np.empty(500, np.int32)
    both(a0, xs.view(np.int32).ravel(), ws.view(np.int32).ravel(), xs.astype(np.int64), d, p)
    np.testing.assert_array_equal(d, a0 + (xs.astype(np.int32) * ws).sum(1))
    np.testing.assert_array_equal(p, xs.view(np.int32).ravel())


@pytest.mark.skipif(not vnni.has_vnni(), reason="CPU without AVX-512 VNNI")
def test_dpbusd16_exact_and_emits_vpdpbusd():
    @njit(boundscheck=False)
    def tile(xw, wt, out):
        acc = vnni.stack_i32(64)
        for q in range(4):
            vnni.zero16(acc, q * 16)
        for k in range(wt.shape[0]):
            for i in range(4):
                vnni.dpbusd16(acc, i * 16, xw, k * 16, wt[k, i])
        for q in range(64):
            out[q] = acc[q]

    rng = _rng("dp")
    K = 37
    xb = rng.integers(0, 256, (K, 16, 4)).astype(np.uint8)
    wb = rng.integers(-128, 128, (K, 4, 4)).astype(np.int8)
    xb[0] = 255
    wb[0] = -128
    out = np.empty(64, np.int32)
    tile(xb.view(np.int32).ravel(), wb.view(np.int32).reshape(K, 4), out)
    ref = np.einsum("kpb,kib->ip", xb.astype(np.int64), wb.astype(np.int64))
    np.testing.assert_array_equal(out.reshape(4, 16), ref)
    lines = next(iter(tile.inspect_asm().values())).splitlines()
    at = [i for i, ln in enumerate(lines) if ln.split()[:1] == ["vpdpbusd"]]
    assert at, "no vpdpbusd instruction"
    body = "\n".join(lines[at[0]:at[-1] + 1])
    assert not re.search(r"zmm\d+, -?\d*\(%rsp\)|\(%rsp\), %zmm", body), \
        "accumulators spilled to the stack inside the K loop"


def test_portable_path_on_a_cpu_target_without_vnni(tmp_path):
    """NUMBA_CPU_NAME=generic compiles as for a CPU without AVX-512: has_vnni() must say
    False and the default path must be the portable one (compiling the VNNI kernel there
    aborts the whole process: "LLVM ERROR: Do not know how to split the result of this
    operator!"), with the same results as here."""
    name = "3x3_s2_asympad_batch2"
    x, q, scale, wdeq, b, w_shape, strides, pads, dil, act, lo, hi = _case(name)
    here, _ = _run(x, q, scale, w_shape, b, strides, pads, dil, act, lo, hi, False)
    np.savez(tmp_path / "case.npz", x=x, q=q, scale=scale, b=b)
    code = textwrap.dedent(f"""
        import numpy as np
        from jitconv.kernels import int8dot
        assert not int8dot.has_vnni()
        d = np.load({str(tmp_path / 'case.npz')!r})
        w_shape, s, p, dl = {w_shape!r}, {strides!r}, {pads!r}, {dil!r}
        x = d["x"]
        OH = (x.shape[2] + p[0] + p[2] - dl[0] * (w_shape[2] - 1) - 1) // s[0] + 1
        OW = (x.shape[3] + p[1] + p[3] - dl[1] * (w_shape[3] - 1) - 1) // s[1] + 1
        out = np.zeros((x.shape[0], w_shape[0], OH, OW), np.float32)
        pk = int8dot.pack_int8dot(d["q"], d["scale"], w_shape)
        scr = np.zeros(int8dot.int8dot_scratch_bytes(x.shape, w_shape, out.shape, s[0], s[1],
                                                     p[0], p[1], dl[0], dl[1]), np.uint8)
        int8dot.conv2d_int8dot(x, *pk, w_shape, d["b"], out, scr, s[0], s[1], p[0], p[1],
                               dl[0], dl[1], {act}, {lo}, {hi})
        np.save({str(tmp_path / 'out.npy')!r}, out)
    """)
    env = dict(os.environ, NUMBA_CPU_NAME="generic", NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    # the int32 sums are identical; only the float epilogue may differ by an ulp (an FMA
    # here, a multiply then an add without FMA)
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), here, rtol=1e-6, atol=1e-6)
