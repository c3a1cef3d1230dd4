"""Make onnxruntime's static QDQ model of a jitconv.models network and check jitconv on it.

    python bench/qdq_resnet50.py [--model resnet50] [--out /tmp/resnet50_qdq.onnx]
        [--batches 4] [--threads 2]

The network (random weights) is written as ONNX (bench/onnx_export.py), quantized with
``onnxruntime.quantization.quantize_static`` (QDQ format, per-channel int8 weights, uint8
activations, ``--batches`` random calibration batches) and saved to ``--out``; then
jitconv (default config, precision=low, memory=low) and onnxruntime run it on one random
input, and the max |difference| is printed as a fraction of the max |logit| (issue 19
asks for <= 5%). Time it with ``bench/compare_engines.py --model-file OUT``.
"""
import argparse
import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def make_qdq(model, out, batches, seed=0):
    """Write the QDQ model of ``jitconv.models.<model>`` to ``out``; returns its input shape."""
    sys.path.insert(0, HERE)
    import onnx
    from onnx_export import to_onnx
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)

    import jitconv.models as models
    graph = getattr(models, model)()
    shape = graph.inputs[0].shape
    name = graph.inputs[0].name
    rng = np.random.default_rng(seed)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{name: rng.standard_normal(shape).astype(np.float32)}
                            for _ in range(batches)])

        def get_next(self):
            return next(self.it, None)

    with tempfile.TemporaryDirectory() as folder:
        src = os.path.join(folder, "fp32.onnx")
        onnx.save(to_onnx(graph), src)
        quantize_static(src, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return name, shape


def check(out, name, shape, threads):
    import onnxruntime as ort

    import jitconv as jc
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    want = ort.InferenceSession(out, so, providers=["CPUExecutionProvider"]).run(
        None, {name: x})[0]
    graph = jc.load(out)
    print(f"{out}: {os.path.getsize(out) / 1e6:.1f} MB; jitconv graph: {len(graph.nodes)} "
          f"nodes, constants by storage {graph.storages()}")
    worst = 0.0
    for cfg in ({}, {"precision": "low"}, {"memory": "low"}):
        sess = jc.Session(graph, jc.Config(threads=threads, **cfg))
        got = next(iter(sess.run({name: x}).values()))
        err = float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
        worst = max(worst, err)
        kept = {op.storage for op in sess.info().ops if op.op_type in ("Conv", "Gemm")}
        print(f"  jitconv {cfg or 'default'}: max |jitconv - onnxruntime| = {err:.2%} of "
              f"max |logit| ({np.max(np.abs(want)):.3g}); weight storage {sorted(kept)}")
    return worst


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--out", default=None)
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    out = args.out or os.path.join(tempfile.gettempdir(), f"{args.model}_qdq.onnx")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    name, shape = make_qdq(args.model, out, args.batches)
    worst = check(out, name, shape, args.threads)
    return 0 if worst <= 0.05 else 1


if __name__ == "__main__":
    sys.exit(main())
