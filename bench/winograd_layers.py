"""Winograd F(2,3) / F(4,3) vs onnxruntime vs the direct conv, side by side in one process.

    python bench/winograd_layers.py [--threads 2 1] [--rounds 5] [--runs 10] [--layers A C]

3x3 stride-1 convs, batch 1, fp32, bias, no activation. For each thread count, variants
are interleaved round by round (each round: ``runs`` calls per variant, median kept); the
table shows the best round median, since this VM's timings drift with its neighbours.
GFLOP/s are effective: direct-conv FLOPs (2 * 9 * C * M * OH * OW) over the time.
``vs ort`` is onnxruntime's time over the variant's (> 1: faster than onnxruntime).
Each thread count starts with an FMA-peak loop: what the cores give at that moment (on a
quiet dev machine about 259 GFLOP/s a core; neighbours on the VM's cores lower it).
"""
import argparse
import statistics
import time

import numba
import numpy as np
from numba import carray, njit, prange

from jitconv.kernels import conv_direct, winograd
from jitconv.kernels.stack import stack_f32
from jitconv.runtime.planner import allocate

LAYERS = {  # name: (C, M, H=W, pad)
    "A": (64, 64, 56, 1),
    "B28": (128, 128, 28, 1),
    "C": (256, 256, 14, 1),
    "D7": (512, 512, 7, 1),
}


@njit(parallel=True, fastmath={"contract"})
def _fma_peak(n, nth, out):
    """16 zmm of independent FMA chains per thread (acc = acc * a + b), n rounds."""
    for t in prange(nth):
        acc = stack_f32(256)
        for j in range(256):
            acc[j] = np.float32(j * 1e-3)
        a = np.float32(0.9999)
        b = np.float32(1e-4)
        for _ in range(n):
            for j in range(256):
                acc[j] = acc[j] * a + b
        s = np.float32(0.0)
        for j in range(256):
            s += acc[j]
        out[t] = s


def fma_peak_gflops(threads, n=200_000):
    """What this machine's cores give right now: best of a few FMA-peak loops."""
    out = np.zeros(threads, dtype=np.float32)
    _fma_peak(10, threads, out)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        _fma_peak(n, threads, out)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * 256 * n * threads / best / 1e9


def _ort_session(w, b, x_shape, pad, threads, spin=True):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    M = w.shape[0]
    N, C, H, W = x_shape
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[3, 3],
                            pads=[pad] * 4, strides=[1, 1])
    graph = helper.make_graph(
        [node], "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    if not spin:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    return lambda x: sess.run(None, {"x": x})[0]


def _variants(name, threads, rng, ort_spin=True):
    C, M, H, pad = LAYERS[name]
    x = rng.standard_normal((1, C, H, H)).astype(np.float32)
    w = (rng.standard_normal((M, C, 3, 3)) / np.sqrt(9 * C)).astype(np.float32)
    b = rng.standard_normal(M).astype(np.float32)
    OH = H + 2 * pad - 2
    out_shape = (1, M, OH, OH)
    ort_run = _ort_session(w, b, x.shape, pad, threads, ort_spin)
    ref = ort_run(x)
    var = {"onnxruntime": lambda: ort_run(x)}
    none = np.empty(0, dtype=np.float32)
    info = {}
    for m in (2, 4):
        U = winograd.winograd_pack(w, m)
        nbytes = winograd.winograd_scratch_bytes(x.shape, out_shape, m, pad, pad)
        sc = allocate(nbytes)
        out = np.empty(out_shape, dtype=np.float32)

        def run(U=U, sc=sc, out=out, m=m):
            winograd.conv2d_winograd(x, U, m, b, none, out, sc, pad, pad, 0, 0.0, 0.0)
        run()
        err = float(np.max(np.abs(out - ref)) / np.max(np.abs(ref)))
        info[f"F({m},3)"] = (f"scratch {nbytes / 2**20:.2f} MiB, U {U.nbytes / 2**20:.2f} MiB, "
                             f"max err / max |ort| {err:.1e}")
        var[f"F({m},3)"] = run
    shp = conv_direct.conv2d_scratch_shape(C, H, H, OH, OH, 3, 3, 1, 1, pad, pad, 1, 1)
    xpad = np.empty(shp, dtype=np.float32)
    dout = np.empty(out_shape, dtype=np.float32)
    var["direct"] = lambda: conv_direct.conv2d_direct(x, w, b, dout, xpad, 1, 1, pad, pad,
                                                      1, 1, 1, 0, 0.0, 0.0)
    return var, 2.0 * 9 * C * M * OH * OH, info


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--layers", nargs="+", default=list(LAYERS))
    ap.add_argument("--ort-spin", type=int, default=1,
                    help="onnxruntime worker spinning (its default, 1) or not (0)")
    ap.add_argument("--pause", type=float, default=0.05,
                    help="seconds of sleep before each variant's runs in a round")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"{'thr':>3} {'layer':5} {'variant':12} {'ms':>8} {'GFLOP/s':>8} {'vs ort':>7}")
    notes = []
    for threads in args.threads:
        numba.set_num_threads(threads)
        print(f"{threads:>3} FMA peak loop now: {fma_peak_gflops(threads):.0f} GFLOP/s")
        for name in args.layers:
            var, flops, info = _variants(name, threads, rng, bool(args.ort_spin))
            for f in var.values():  # warm-up: JIT, first touch
                for _ in range(3):
                    f()
            best = {k: float("inf") for k in var}
            for _ in range(args.rounds):
                for k, f in var.items():
                    # NOTE: let the other library's worker threads stop spinning first;
                    # onnxruntime's and OpenMP's spinning workers starve each other's threads
                    time.sleep(args.pause)
                    f()
                    ts = []
                    for _ in range(args.runs):
                        t0 = time.perf_counter()
                        f()
                        ts.append(time.perf_counter() - t0)
                    best[k] = min(best[k], statistics.median(ts))
            for k, t in best.items():
                print(f"{threads:>3} {name:5} {k:12} {t * 1e3:8.3f} {flops / t / 1e9:8.0f} "
                      f"{best['onnxruntime'] / t:7.2f}")
            if threads == args.threads[0]:
                notes += [f"{name} {k}: {v}" for k, v in info.items()]
    print("\n".join(notes))


if __name__ == "__main__":
    main()
