"""Resident memory as users measure it: each engine and config in a fresh process.

    python bench/memory_rss.py [--models resnet50 mobilenet_v2] [--runs 10] [--threads 2]
        [--storages fp32 fp16 int8 int4] [--modes normal high low] [--no-peers]

Per model, the fp32 ONNX file goes to onnxruntime and OpenVINO (f32, default options
otherwise) and .jcm files of each weight storage to jitconv in each memory mode. Each
(engine, config) runs in a process of its own that reports: RSS after importing the engine
(the baseline), steady RSS after the runs, its growth over the baseline, whole-process
peak RSS (VmHWM, which counts the import too), the median latency, and for jitconv what
info() says (weights + arena + scratch) and the ratio of growth to it. Each row runs twice
and the second is shown: the first may compile kernels (Numba's compiler leaves tens of MiB
resident), the second loads them from the cache as a deployed process would. Linux only
(/proc). Run nothing else meanwhile.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MiB = 2 ** 20


def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak():
    """VmHWM: this process's peak RSS (getrusage's ru_maxrss would count the parent's peak
    from before the exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def worker(engine, path, threads, memory, runs):
    """Print one JSON line: the measurements of one (engine, config) in this process."""
    import numpy as np
    if engine == "jitconv":
        import jitconv as jc
        base = _rss()
        sess = jc.Session(jc.load(path), jc.Config(threads=threads, memory=memory,
                                                   progress=False))
        x = {s.name: np.zeros(s.shape, np.float32) for s in sess.graph.inputs}
        run = lambda: sess.run(x)   # noqa: E731
    elif engine == "onnxruntime":
        import onnxruntime as ort
        base = _rss()
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        x = {i.name: np.zeros(i.shape, np.float32) for i in s.get_inputs()}
        run = lambda: s.run(None, x)   # noqa: E731
    else:
        import openvino as ov
        base = _rss()
        c = ov.Core().compile_model(path, "CPU", {"PERFORMANCE_HINT": "LATENCY",
                                                  "INFERENCE_NUM_THREADS": threads,
                                                  "INFERENCE_PRECISION_HINT": "f32"})
        req = c.create_infer_request()
        x = {i.get_any_name(): np.zeros(tuple(i.get_shape()), np.float32) for i in c.inputs}
        run = lambda: req.infer(x)   # noqa: E731
    times = []
    for _ in range(runs + 2):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    out = {"base": base, "steady": _rss(), "ms": statistics.median(times[2:]) * 1e3,
           "peak": _peak()}
    if engine == "jitconv":
        i = sess.info()
        out["info"] = i.weight_bytes + i.arena_bytes + i.scratch_bytes
    print(json.dumps(out))


def _measure(engine, path, threads, memory, runs):
    p = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", engine, path,
                        str(threads), memory, str(runs)], capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{engine} {memory} on {path} failed:\n{p.stderr}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["resnet50", "mobilenet_v2"])
    ap.add_argument("--storages", nargs="+", default=["fp32", "fp16", "int8", "int4"])
    ap.add_argument("--modes", nargs="+", default=["normal", "high", "low"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--no-peers", action="store_true", help="jitconv only")
    args = ap.parse_args(argv)
    sys.path.insert(0, HERE)
    import jitconv as jc
    import jitconv.models as models
    from onnx_export import to_onnx
    print(f"{'model':12} {'engine':12} {'storage':7} {'memory':6} {'ms':>8} {'peak MiB':>9} "
          f"{'base MiB':>9} {'steady MiB':>10} {'growth MiB':>10} {'info MiB':>9} "
          f"{'growth/info':>11}")
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models:
            graph = getattr(models, name)()
            onnx_path = os.path.join(folder, f"{name}.onnx")
            with open(onnx_path, "wb") as f:
                f.write(to_onnx(graph).SerializeToString())
            rows = []
            if not args.no_peers:
                rows += [("onnxruntime", "fp32", "-", onnx_path),
                         ("openvino-f32", "fp32", "-", onnx_path)]
            for storage in args.storages:
                path = os.path.join(folder, f"{name}_{storage}.jcm")
                jc.save(graph if storage == "fp32" else jc.quantize(graph, storage), path)
                rows += [("jitconv", storage, mode, path) for mode in args.modes]
            for engine, storage, mode, path in rows:
                for _ in range(2):      # the first run of a row may compile: see above
                    m = _measure(engine.split("-")[0], path, args.threads,
                                 mode if mode != "-" else "normal", args.runs)
                growth = m["steady"] - m["base"]
                info = m.get("info")
                print(f"{name:12} {engine:12} {storage:7} {mode:6} {m['ms']:8.2f} "
                      f"{m['peak'] / MiB:9.1f} {m['base'] / MiB:9.1f} {m['steady'] / MiB:10.1f} "
                      f"{growth / MiB:10.1f} "
                      + (f"{info / MiB:9.1f} {growth / info:11.2f}" if info else
                         f"{'':9} {'':11}"), flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], int(sys.argv[6]))
    else:
        sys.exit(main())
