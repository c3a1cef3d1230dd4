"""Where a model's conv time goes, shape by shape: jitconv vs onnxruntime on each distinct
conv of a model, as single-conv graphs, in one process (onnxruntime with spinning off).

    python bench/model_convs.py resnet50 [--threads 2] [--rounds 5] [--runs 10]

One row per distinct (C, M, k, stride, pad, H, groups, activation), with how often the
model holds it; "share" is that shape's part of the model's summed jitconv conv time, and
"lost" the milliseconds it costs against onnxruntime over all its copies. Sorted by lost
time, so the top rows are where a kernel change pays most. Rounds interleave the engines;
each cell is the median over rounds of each round's median.
"""
import argparse
import collections
import os
import statistics
import sys

import numpy as np
import onnxruntime as ort

sys.path.insert(0, os.path.dirname(__file__))
import jitconv as jc  # noqa: E402
from jitconv.models import MODELS  # noqa: E402
from jitconv.runtime.builder import GraphBuilder  # noqa: E402
from jitconv.runtime.shapes import infer_shapes  # noqa: E402
from compare_onnxruntime import _median_of_runs as _median  # noqa: E402
from onnx_export import to_onnx  # noqa: E402


def conv_shapes(graph):
    """Counter of (C, M, k, stride, pad, H, W, groups, activation) over the graph's Convs."""
    shapes = infer_shapes(graph, {s.name: s.shape for s in graph.inputs})
    found = collections.Counter()
    for node in graph.nodes:
        if node.op_type != "Conv":
            continue
        _, c, h, w = shapes[node.inputs[0]]
        m, _, kh, kw = graph.constants[node.inputs[1]].shape
        found[(c, m, kh, node.attr("strides")[0], node.attr("pads")[0], h, w,
               node.attr("group", 1), node.attr("activation"))] += 1
    return found


def single_conv(key):
    c, m, k, s, p, h, w, groups, act = key
    rng = np.random.default_rng(0)
    g = GraphBuilder("conv")
    x = g.input("x", (1, c, h, w))
    wt = (rng.standard_normal((m, c // groups, k, k)) * 0.1).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    g.output(g.conv2d(x, wt, b, stride=s, padding=p, groups=groups,
                      activation="relu6" if act == "clip" else act), "y")
    return g.build()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", choices=sorted(MODELS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args(argv)
    found = conv_shapes(MODELS[args.model]())
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    rows = []
    for key, count in found.items():
        graph = single_conv(key)
        x = np.random.default_rng(1).standard_normal(graph.inputs[0].shape).astype(np.float32)
        sess = jc.Session(graph, jc.Config(threads=args.threads, progress=False))
        ref = ort.InferenceSession(to_onnx(graph).SerializeToString(), so,
                                   providers=["CPUExecutionProvider"])
        engines = {"jc": lambda: sess.run(x), "ort": lambda: ref.run(None, {"x": x})}
        for fn in engines.values():
            fn()
        meds = {k: [] for k in engines}
        for _ in range(args.rounds):
            for k, fn in engines.items():
                meds[k].append(_median(fn, args.runs))
        jc_ms, ort_ms = (statistics.median(meds[k]) * 1e3 for k in ("jc", "ort"))
        conv = next(o for o in sess.info().ops if o.op_type == "Conv")
        rows.append((key, count, jc_ms, ort_ms, conv.kernel, sess.info().flops))
    total = sum(r[1] * r[2] for r in rows)
    total_ort = sum(r[1] * r[3] for r in rows)
    print(f"{args.model}, threads={args.threads}: summed conv time jitconv {total:.2f} ms, "
          f"onnxruntime {total_ort:.2f} ms ({total_ort / total:.2f}x)")
    print(f"{'C->M kxk/s p HxW g act':34} {'n':>3} {'jc ms':>7} {'ort ms':>7} {'jc/ort':>6} "
          f"{'GF/s':>5} {'share':>6} {'lost':>6}  kernel")
    rows.sort(key=lambda r: -r[1] * (r[2] - r[3]))
    for (c, m, k, s, p, h, w, groups, act), n, jms, oms, kernel, flops in rows:
        label = f"{c}->{m} {k}x{k}/{s} p{p} {h}x{w} g{groups} {act or '-'}"
        print(f"{label:34} {n:>3} {jms:>7.3f} {oms:>7.3f} {oms / jms:>6.2f} "
              f"{flops / jms / 1e6:>5.0f} {n * jms / total:>6.1%} {n * (jms - oms):>6.2f}  "
              f"{kernel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
