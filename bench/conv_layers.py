"""Side-by-side timing of single fp32 Conv layers: jitconv conv2d_tiled vs onnxruntime vs conv2d_direct.

Run: ``python bench/conv_layers.py [--threads 2 1] [--layers A B ...] [--rounds 7] [--direct]``

Prints, per layer and thread count, the best-of-rounds median time (ms), GFLOP/s
(2*M*Cg*KH*KW*OH*OW per image) and the jitconv/onnxruntime throughput ratio, then the
geometric mean of the ratios. All in one process, batch 1; within a round the
implementations run back to back (a short sleep between them lets spinning threads of the
previous one go idle), and each round takes the median of its repetitions. On a shared
2-core VM single runs are noisy: compare the ratio columns of one run, not numbers across runs.
"""

import argparse
import math
import time

import numpy as np

LAYERS = {
    # name: (C, H, W, M, KH, KW, stride, pad)
    "A": (64, 56, 56, 64, 3, 3, 1, 1),
    "B": (256, 56, 56, 64, 1, 1, 1, 0),
    "C": (256, 14, 14, 256, 3, 3, 1, 1),
    "E": (3, 224, 224, 32, 3, 3, 2, 1),
    "F": (1024, 14, 14, 1024, 1, 1, 1, 0),
    "G": (128, 28, 28, 256, 3, 3, 2, 1),
    "I": (32, 112, 112, 192, 1, 1, 1, 0),
}


def _ort_session(x, w, b, stride, pad, threads):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    KH, KW = w.shape[2:]
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[KH, KW],
                            strides=[stride, stride], pads=[pad] * 4)
    graph = helper.make_graph(
        [node], "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return lambda: sess.run(None, {"x": x})[0]


def _median_ms(fn, reps):
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(ts))


def bench_layer(name, threads, rounds, with_direct, min_time=0.025):
    import numba

    from jitconv.kernels.conv_direct import conv2d_direct, conv2d_scratch_shape
    from jitconv.kernels.conv_tiled import conv2d_tiled, pack_weights, tiled_scratch_bytes
    from jitconv.runtime.planner import allocate
    from jitconv.runtime.reference import conv_output_hw

    C, H, W, M, KH, KW, s, p = LAYERS[name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, C, H, W)).astype(np.float32)
    w = (rng.standard_normal((M, C, KH, KW)) / math.sqrt(C * KH * KW)).astype(np.float32)
    b = rng.standard_normal(M).astype(np.float32)
    OH, OW = conv_output_hw((H, W), (KH, KW), (s, s), (1, 1), (p, p, p, p))
    flops = 2.0 * M * C * KH * KW * OH * OW
    numba.set_num_threads(threads)

    packed = pack_weights(w)
    out = np.empty((1, M, OH, OW), np.float32)
    scratch = allocate(max(64, tiled_scratch_bytes(x.shape, w.shape, out.shape, s, s, p, p, 1, 1, 1)))
    no_res = np.zeros(0, np.float32)

    def run_tiled():
        conv2d_tiled(x, packed, w.shape, b, no_res, out, scratch, s, s, p, p, 1, 1, 1, 0, 0.0, 0.0)

    impls = {"jitconv": run_tiled, "onnxruntime": _ort_session(x, w, b, s, p, threads)}
    if with_direct:
        xpad = np.empty(conv2d_scratch_shape(C, H, W, OH, OW, KH, KW, s, s, p, p, 1, 1), np.float32)
        out_d = np.empty_like(out)
        impls["direct"] = lambda: conv2d_direct(x, w, b, out_d, xpad, s, s, p, p, 1, 1, 1, 0, 0.0, 0.0)

    ref = impls["onnxruntime"]()
    run_tiled()
    err = float(np.max(np.abs(out - ref)))
    assert err <= 1e-4 * max(1.0, float(np.max(np.abs(ref)))), f"layer {name}: max abs err {err}"

    reps = {}
    for k, fn in impls.items():
        fn()
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        reps[k] = max(5, min(200, int(min_time / max(dt, 1e-6))))
    best = {k: float("inf") for k in impls}
    for _ in range(rounds):
        for k, fn in impls.items():
            time.sleep(0.02)
            fn()
            best[k] = min(best[k], _median_ms(fn, reps[k]))
    return flops, best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    ap.add_argument("--layers", nargs="+", default=list(LAYERS))
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--direct", action="store_true", help="also time kernels.conv_direct")
    args = ap.parse_args(argv)
    import os

    import numba
    print(f"numba {numba.__version__}, threading layer {numba.config.THREADING_LAYER}, "
          f"load average {os.getloadavg()[0]:.2f}")
    for t in args.threads:
        print(f"\n== {t} thread(s), batch 1, fp32 ==")
        hdr = f"{'layer':<5} {'jitconv ms':>10} {'GF/s':>6} {'ort ms':>8} {'GF/s':>6} {'ratio':>6}"
        if args.direct:
            hdr += f" {'direct ms':>9} {'GF/s':>6}"
        print(hdr)
        ratios = []
        for name in args.layers:
            flops, best = bench_layer(name, t, args.rounds, args.direct)
            gj = flops / best["jitconv"] / 1e6
            go = flops / best["onnxruntime"] / 1e6
            ratios.append(gj / go)
            line = (f"{name:<5} {best['jitconv']:>10.3f} {gj:>6.0f} {best['onnxruntime']:>8.3f} "
                    f"{go:>6.0f} {gj / go:>6.2f}")
            if args.direct:
                line += f" {best['direct']:>9.3f} {flops / best['direct'] / 1e6:>6.0f}"
            print(line, flush=True)
        gm = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
        print(f"geometric-mean ratio jitconv/onnxruntime: {gm:.2f}   min: {min(ratios):.2f}"
              f"   (load average {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
