"""int8-dot conv (precision=low, int8 weights) vs the fp32 and int8-weight kernels, side by side.

    python bench/int8dot.py [--threads 2] [--rounds 7] [--runs 10]

Workloads (batch 1, NCHW):
  M: 4 x (3x3 conv 128->128, pad 1, + ReLU) at 56x56 (the model of bench/storage_ratios.py)
  C: 3x3 conv 256->256, pad 1, at 14x14

Kernels, each called directly (no Session): conv2d_direct (fp32, today's precision=normal
kernel), conv2d_int8w (int8 weights dequantized per panel, fp32 math), conv2d_int8dot with
vpdpbusd (when the CPU has AVX-512 VNNI) and with its portable int32 loop, and
conv2d_tiled (fp32 register-tiled) when kernels/conv_tiled.py is importable.

Variants are interleaved round by round; each round keeps each variant's median of
``runs`` calls; the table shows the median and the best of those round medians (this VM's
timings drift), GFLOP/s from the median, and time relative to conv2d_direct.
The error column is max |out - fp32 reference on the same dequantized weights| / max |ref|
of each variant's final output.

On a shared 2-core VM, another busy process makes OpenMP's spinning threads collapse the
2-thread medians (10x and worse); ``OMP_WAIT_POLICY=passive`` in the environment keeps the
ratios meaningful, and the "best ms" column shows the least disturbed round.
"""
import argparse
import statistics
import sys
import time

import numba
import numpy as np

from jitconv.kernels import conv_direct, conv_lowmem, int8dot
from jitconv.kernels.conv_direct import conv2d_scratch_shape

try:
    from jitconv.kernels import conv_tiled
except ImportError:  # the register-tiled fp32 kernel is not everywhere yet
    conv_tiled = None

NO_ZERO = np.zeros((0, 0), np.float32)


def quantize_per_channel(w):
    """Symmetric per-output-channel int8: (q (M, K) int8, scale (M, 1) float32)."""
    M = w.shape[0]
    flat = w.reshape(M, -1).astype(np.float32)
    scale = (np.abs(flat).max(axis=1, keepdims=True) / 127).astype(np.float32)
    scale[scale == 0] = 1
    q = np.clip(np.rint(flat / scale), -127, 127).astype(np.int8)
    return q, scale


def make_layers(rng, n, C, M, H, W, k, pad, act):
    layers = []
    c = C
    for _ in range(n):
        w = (rng.standard_normal((M, c, k, k)) * np.sqrt(2.0 / (c * k * k))).astype(np.float32)
        q, s = quantize_per_channel(w)
        wdeq = (q.astype(np.float32) * s).reshape(w.shape)
        b = (rng.standard_normal(M) * 0.1).astype(np.float32)
        layers.append(dict(q=q, s=s, wdeq=wdeq, b=b, shape=(M, c, k, k), pad=pad, act=act,
                           packed=int8dot.pack_int8dot(q, s, (M, c, k, k)),
                           tiled=(conv_tiled.pack_weights(wdeq) if conv_tiled else None)))
        c = M
    shapes = []
    h, wd = H, W
    for L in layers:
        M_, c_, k_, _ = L["shape"]
        oh, ow = h + 2 * L["pad"] - k_ + 1, wd + 2 * L["pad"] - k_ + 1
        L["in"] = (1, c_, h, wd)
        L["out"] = np.empty((1, M_, oh, ow), np.float32)
        shapes.append((1, c_, h, wd))
        h, wd = oh, ow
    return layers


def scratch_for(layers):
    nb = 0
    for L in layers:
        M, c, k, _ = L["shape"]
        p = L["pad"]
        out = L["out"]
        nb = max(nb, 4 * int(np.prod(conv2d_scratch_shape(c, L["in"][2], L["in"][3], out.shape[2],
                                                           out.shape[3], k, k, 1, 1, p, p, 1, 1))))
        nb = max(nb, int8dot.int8dot_scratch_bytes(L["in"], L["shape"], out.shape, 1, 1, p, p,
                                                   1, 1))
        if conv_tiled:
            nb = max(nb, conv_tiled.tiled_scratch_bytes(L["in"], L["shape"], out.shape, 1, 1, p,
                                                        p, 1, 1, 1))
    return np.zeros(nb + 64, np.uint8)


def runners(layers, scratch):
    def f32_view(L):
        M, c, k, _ = L["shape"]
        shp = conv2d_scratch_shape(c, L["in"][2], L["in"][3], L["out"].shape[2],
                                   L["out"].shape[3], k, k, 1, 1, L["pad"], L["pad"], 1, 1)
        return scratch[:4 * int(np.prod(shp))].view(np.float32).reshape(shp)

    def direct(x):
        for L in layers:
            conv_direct.conv2d_direct(x, L["wdeq"], L["b"], L["out"], f32_view(L), 1, 1, L["pad"],
                                      L["pad"], 1, 1, 1, L["act"], 0.0, 0.0)
            x = L["out"]
        return x

    def int8w(x):
        for L in layers:
            k = L["shape"][2]
            conv_lowmem.conv2d_int8w(x, L["q"], L["s"], NO_ZERO, k, k, L["b"], L["out"],
                                     f32_view(L), 1, 1, L["pad"], L["pad"], 1, 1, 1, L["act"],
                                     0.0, 0.0)
            x = L["out"]
        return x

    def dot(vnni):
        def run(x):
            for L in layers:
                pk, ws, wsc = L["packed"]
                int8dot.conv2d_int8dot(x, pk, ws, wsc, L["shape"], L["b"], L["out"], scratch, 1,
                                       1, L["pad"], L["pad"], 1, 1, L["act"], 0.0, 0.0,
                                       vnni=vnni)
                x = L["out"]
            return x
        return run

    def tiled(x):
        for L in layers:
            conv_tiled.conv2d_tiled(x, L["tiled"], L["shape"], L["b"], None, L["out"], scratch,
                                    1, 1, L["pad"], L["pad"], 1, 1, 1, L["act"], 0.0, 0.0)
            x = L["out"]
        return x

    v = {"conv2d_direct fp32": direct, "conv2d_int8w": int8w}
    if conv_tiled:
        v["conv2d_tiled fp32"] = tiled
    if int8dot.has_vnni():
        v["conv2d_int8dot vnni"] = dot(True)
    v["conv2d_int8dot portable"] = dot(False)
    return v


def bench(name, layers, x, args):
    scratch = scratch_for(layers)
    vs = runners(layers, scratch)
    flops = sum(2 * int(np.prod(L["shape"])) * L["out"].shape[2] * L["out"].shape[3]
                for L in layers)
    ref = vs["conv2d_direct fp32"](x).copy()
    errs = {}
    for k, f in vs.items():
        got = f(x)  # warm-up (compiles) + accuracy
        errs[k] = float(np.max(np.abs(got - ref)) / max(np.max(np.abs(ref)), 1e-30))
    meds = {k: [] for k in vs}
    for _ in range(args.rounds):
        for k, f in vs.items():
            ts = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                f(x)
                ts.append(time.perf_counter() - t0)
            meds[k].append(statistics.median(ts))
    base = statistics.median(meds["conv2d_direct fp32"])
    print(f"\n{name}: {flops / 1e9:.2f} GFLOP, {args.threads} threads, "
          f"{args.rounds} rounds x {args.runs} runs")
    print(f"{'kernel':26} {'median ms':>10} {'best ms':>9} {'GFLOP/s':>8} {'time/direct':>11} "
          f"{'max err/max|ref|':>17}")
    for k in vs:
        med = statistics.median(meds[k])
        print(f"{k:26} {med * 1e3:>10.3f} {min(meds[k]) * 1e3:>9.3f} {flops / med / 1e9:>8.1f} "
              f"{med / base:>11.2f} {errs[k]:>17.2e}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--only", choices=("M", "C"), default=None)
    args = ap.parse_args(argv)
    numba.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"has_vnni: {int8dot.has_vnni()}; numba {numba.__version__}, "
          f"threading layer after first run below")
    if args.only in (None, "M"):
        layers = make_layers(rng, 4, 128, 128, 56, 56, 3, 1, conv_direct.ACT_RELU)
        x = rng.standard_normal((1, 128, 56, 56)).astype(np.float32)
        bench("model M: 4 x (3x3 128->128 pad 1 + relu) 56x56", layers, x, args)
    if args.only in (None, "C"):
        layers = make_layers(rng, 1, 256, 256, 14, 14, 3, 1, conv_direct.ACT_NONE)
        x = rng.standard_normal((1, 256, 14, 14)).astype(np.float32)
        bench("layer C: 3x3 256->256 pad 1, 14x14", layers, x, args)
    print(f"threading layer: {numba.threading_layer()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
