"""Depthwise conv layers, side by side in one process: onnxruntime vs jitconv kernels.

    python bench/depthwise_layers.py [--threads 2 1] [--rounds 7] [--runs 40] [--act relu]
                                     [--threading-layer default|omp|tbb|workqueue]

For each thread count and layer, three variants run interleaved round by round:
onnxruntime (one ONNX Conv node with group=C, intra_op_num_threads=T), the register-tiled
``conv2d_depthwise`` and the generic ``conv2d_direct`` (numba.set_num_threads(T)). Each
round keeps the median of ``--runs`` calls; the table shows the best round (this VM's
timings drift and a busy neighbour only ever makes a round slower), as ms, GFLOP/s
(2*C*OH*OW*KH*KW) and the ratio of onnxruntime's time to the variant's (> 1: faster).

NOTE: with the default OpenMP layer, a parallel region ends only when every team thread has
run; while another process keeps a core busy, the second thread often gets the CPU only at
the next scheduler tick and every 2-thread call takes ~4-8 ms. Watch for such rows (all
Numba variants at ~4/8/12 ms) and rerun on a quiet machine; tbb lets the caller take the
late thread's work.
"""
import argparse
import statistics
import time

import numba
import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from jitconv.kernels.conv_direct import conv2d_direct, conv2d_scratch_shape
from jitconv.kernels.depthwise import conv2d_depthwise, depthwise_scratch_bytes
from jitconv.runtime.planner import allocate

# name, C, H, W, K, stride, pad
LAYERS = [
    ("D  dw3x3 C144 56x56", 144, 56, 56, 3, 1, 1),
    ("H  dw5x5 C240 14x14", 240, 14, 14, 5, 1, 2),
    ("S2 dw3x3/2 C96 112->56", 96, 112, 112, 3, 2, 1),
    ("T  dw3x3 C960 7x7", 960, 7, 7, 3, 1, 1),
]
ACTS = {"none": (0, ""), "relu": (1, "Relu")}


def ort_session(x, w, b, stride, pad, threads, act):
    C = x.shape[1]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y0" if act else "y"], group=C,
                              strides=[stride, stride], pads=[pad] * 4,
                              kernel_shape=list(w.shape[2:]))]
    if act:
        nodes.append(helper.make_node(act, ["y0"], ["y"]))
    graph = helper.make_graph(
        nodes, "dw", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    return lambda: sess.run(None, {"x": x})[0]


def variants(name, C, H, W, K, s, p, threads, act):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, C, H, W)).astype(np.float32)
    w = (rng.standard_normal((C, 1, K, K)) * 0.3).astype(np.float32)
    b = rng.standard_normal(C).astype(np.float32)
    OH = (H + 2 * p - K) // s + 1
    OW = (W + 2 * p - K) // s + 1
    code, onnx_act = ACTS[act]
    out_dw = np.zeros((1, C, OH, OW), np.float32)
    out_dir = np.zeros((1, C, OH, OW), np.float32)
    scratch = allocate(depthwise_scratch_bytes(x.shape, (K, K), out_dw.shape, s, s, p, p))
    xpad = np.zeros(conv2d_scratch_shape(C, H, W, OH, OW, K, K, s, s, p, p, 1, 1), np.float32)

    def run_dw():
        conv2d_depthwise(x, w, b, out_dw, scratch, s, s, p, p, 1, 1, code, 0.0, 6.0)

    def run_direct():
        conv2d_direct(x, w, b, out_dir, xpad, s, s, p, p, 1, 1, C, code, 0.0, 6.0)

    run_ort = ort_session(x, w, b, s, p, threads, onnx_act)
    ref = run_ort()
    for f, o in ((run_dw, out_dw), (run_direct, out_dir)):
        f()
        err = float(np.max(np.abs(o - ref)))
        assert err <= 1e-4 * max(1.0, float(np.max(np.abs(ref)))), (name, f.__name__, err)
    flops = 2.0 * C * OH * OW * K * K
    return flops, {"onnxruntime": run_ort, "depthwise": run_dw, "direct": run_direct}


def timed(fn, runs):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--act", choices=sorted(ACTS), default="none")
    ap.add_argument("--threading-layer", choices=["default", "omp", "tbb", "workqueue"],
                    default="default", help="Numba threading layer (set before first use)")
    args = ap.parse_args(argv)
    numba.config.THREADING_LAYER = args.threading_layer
    print(f"numba {numba.__version__}, "
          f"onnxruntime {ort.__version__}; act={args.act}; best of {args.rounds} rounds, "
          f"median of {args.runs} runs each")
    print(f"{'T':>2} {'layer':24} {'variant':12} {'ms':>8} {'GFLOP/s':>8} {'ort/this':>8}")
    for T in args.threads:
        numba.set_num_threads(T)
        for layer in LAYERS:
            flops, fns = variants(*layer, T, args.act)
            for fn in fns.values():  # warm-up: JIT, caches, and threads that got a core
                t0 = time.perf_counter()
                while time.perf_counter() - t0 < 0.3:
                    fn()
            best = {k: float("inf") for k in fns}
            for _ in range(args.rounds):
                for k, fn in fns.items():
                    time.sleep(0.01)  # let the other runtime's spinning threads go idle
                    best[k] = min(best[k], timed(fn, args.runs))
            for k, t in best.items():
                print(f"{T:>2} {layer[0]:24} {k:12} {t * 1e3:8.3f} {flops / t * 1e-9:8.1f} "
                      f"{best['onnxruntime'] / t:8.2f}")
    print(f"numba threading layer: {numba.threading_layer()}")


if __name__ == "__main__":
    main()
