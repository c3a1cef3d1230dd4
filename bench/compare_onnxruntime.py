"""jitconv vs onnxruntime (and torch when installed), side by side in one process.

    python bench/compare_onnxruntime.py [--threads 2] [--rounds 5] [--runs 10] [--models]

Layers A-I of the CPU-speed issue as single-conv graphs, and (with --models) ResNet-50
and MobileNetV2 end to end, batch 1, NCHW fp32. The same graph goes to both engines
(exported with bench/onnx_export.py). Engines are interleaved round by round; the
table shows the median over rounds of each round's median.
"""
import argparse
import math
import os
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort

sys.path.insert(0, os.path.dirname(__file__))
import jitconv as jc  # noqa: E402
from jitconv.models import CONV_LAYERS, conv_layer, conv_layer_label  # noqa: E402
from jitconv.models import mobilenet_v2, resnet50  # noqa: E402
from onnx_export import to_onnx  # noqa: E402

def _median_of_runs(fn, runs):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def compare(name, graph, threads, rounds, runs):
    feeds = {s.name: np.random.default_rng(1).standard_normal(s.shape).astype(np.float32)
             for s in graph.inputs}
    sess = jc.Session(graph, jc.Config(threads=threads))
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    # NOTE: spinning ORT workers starve Numba's OpenMP threads when the engines alternate
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    ref = ort.InferenceSession(to_onnx(graph).SerializeToString(), so,
                               providers=["CPUExecutionProvider"])
    out_name = graph.outputs[0].name
    got, want = sess.run(feeds)[out_name], ref.run([out_name], feeds)[0]
    err = float(np.max(np.abs(got - want)) / max(1e-30, np.max(np.abs(want))))
    engines = {"jitconv": lambda: sess.run(feeds), "onnxruntime": lambda: ref.run(None, feeds)}
    meds = {k: [] for k in engines}
    for _ in range(rounds):
        for k, fn in engines.items():
            meds[k].append(_median_of_runs(fn, runs))
    ms = {k: statistics.median(v) * 1e3 for k, v in meds.items()}
    flops = sess.info().flops
    kernels = sorted({op.kernel for op in sess.info().ops if op.op_type == "Conv"})
    return ms, flops, err, kernels


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--models", action="store_true", help="also ResNet-50 and MobileNetV2")
    ap.add_argument("--layers", default="ABCDEFGHI", help="which layers (letters)")
    args = ap.parse_args(argv)
    print(f"threads={args.threads}, median over {args.rounds} rounds of medians of "
          f"{args.runs} runs; onnxruntime {ort.__version__}")
    print(f"{'case':22} {'jitconv ms':>10} {'ort ms':>8} {'jc GF/s':>8} {'ort GF/s':>8} "
          f"{'jc/ort':>7} {'rel err':>8}  kernel")
    ratios = []
    cases = [(conv_layer_label(n), conv_layer(n)) for n in CONV_LAYERS if n in args.layers]
    layer_labels = {label for label, _ in cases}
    if args.models:
        cases += [("ResNet-50", resnet50()), ("MobileNetV2", mobilenet_v2())]
    for name, graph in cases:
        ms, flops, err, kernels = compare(name, graph, args.threads, args.rounds, args.runs)
        ratio = ms["onnxruntime"] / ms["jitconv"]
        if name in layer_labels:
            ratios.append(ratio)
        gf = lambda t: flops / (t * 1e-3) / 1e9
        print(f"{name:22} {ms['jitconv']:>10.3f} {ms['onnxruntime']:>8.3f} "
              f"{gf(ms['jitconv']):>8.1f} {gf(ms['onnxruntime']):>8.1f} {ratio:>7.2f} "
              f"{err:>8.1e}  {','.join(kernels) if len(kernels) < 3 else 'mixed'}")
    if ratios:
        geo = math.exp(sum(map(math.log, ratios)) / len(ratios))
        print(f"geometric mean jitconv/onnxruntime throughput over layers: {geo:.2f} "
              f"(min {min(ratios):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
