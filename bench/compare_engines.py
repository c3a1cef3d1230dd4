"""jitconv vs onnxruntime vs OpenVINO end to end, each engine in a process of its own.

    python bench/compare_engines.py [--models resnet50 mobilenet_v2] [--threads 1 2]
        [--rounds 7] [--runs 10] [--busy] [--engines jitconv onnxruntime openvino]
        [--batch 1 8 32]

The model (from jitconv.models, random weights, fp32, at each --batch size: throughput
runs give images per second too) is written once as an ONNX
file and every engine loads that same file at its default options, as a user meets it:
onnxruntime with only intra_op_num_threads set (its pool spins), OpenVINO on "CPU" with
PERFORMANCE_HINT=LATENCY and INFERENCE_NUM_THREADS, jitconv with Config(threads=T).
OpenVINO's default computes in bfloat16 on CPUs with AVX512-BF16 (Zen 4 does): the
"openvino-f32" engine is the same with INFERENCE_PRECISION_HINT=f32, the fp32 peer.

Each (engine, threads) pair lives in a worker process started once; the parent asks the
workers in turn for one round (the median of --runs runs), so rounds are interleaved and
no engine's threads share a process with another's. Between two workers' turns the parent
waits --gap seconds, so a pool that spins after its run has stopped before the next one.

``--checkout NAME=PATH`` adds an engine ``jitconv@NAME``: jitconv imported from another
checkout of this repository (e.g. a ``git worktree`` of an older commit), so a change is
measured against its parent in the same interleaved run, each with its own Numba cache.

``--model-file PATH`` times an ONNX file of your own instead (e.g. a QDQ model from
bench/qdq_resnet50.py), with every engine; ``jitconv-low`` is jitconv with
Config(precision="low") (int8 weights run on the int8-dot kernel where it fits), and
``jitconv-memlow`` jitconv with Config(memory="low") (weights kept as the file stores them:
give it .jcm files of each storage, ``jc.save(jc.quantize(graph, "int8"), path)``).

``--busy`` starts one more process spinning in a plain Python loop for the whole
measurement (it keeps one core busy, as another user's job would). The table gives, per
model and engine, the median of the round medians, the spread (slowest / fastest round
median) and the speed ratio to onnxruntime at the same thread count.
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
ENGINES = ("jitconv", "jitconv-low", "jitconv-memlow", "onnxruntime", "openvino",
           "openvino-f32")


# ----------------------------------------------------------------------------- worker side

def _import_checkout(root):
    """Make ``import jitconv`` (and jitconv.kernels / runtime / backends, which sit at the
    top of a checkout) load from the checkout at ``root`` instead of the installed one."""
    import importlib.machinery

    class Checkout:
        @staticmethod
        def find_spec(name, path=None, target=None):
            parts = name.split(".")
            if parts[0] != "jitconv":
                return None
            if len(parts) == 1:
                return importlib.machinery.PathFinder.find_spec(name, [root])
            if parts[1] in ("kernels", "runtime", "backends"):
                where = os.path.join(root, *parts[1:-1])
                return importlib.machinery.PathFinder.find_spec(name, [where])
            return importlib.machinery.PathFinder.find_spec(
                name, [os.path.join(root, *parts[:-1])])
    sys.meta_path.insert(0, Checkout)


def _make_runner(engine, path, threads):
    """Load ``path`` in ``engine`` with ``threads`` threads; return a no-argument run()."""
    import numpy as np
    where = ""
    if engine.startswith("jitconv@"):
        where = engine.split("@", 1)[1].split("=", 1)[1]
        _import_checkout(where)
        engine = "jitconv"
    if engine in ("jitconv", "jitconv-low", "jitconv-memlow"):
        import jitconv as jc
        precision = "low" if engine == "jitconv-low" else "normal"
        memory = "low" if engine == "jitconv-memlow" else "normal"
        sess = jc.Session(jc.load(path), jc.Config(threads=threads, precision=precision,
                                                   memory=memory))
        feeds = {s.name: _input(s.shape) for s in sess.graph.inputs}
        return lambda: sess.run(feeds), lambda: _describe_jitconv(sess) + (
            f" from {where}" if where else "")
    if engine == "onnxruntime":
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        feeds = {i.name: _input(i.shape) for i in sess.get_inputs()}
        return lambda: sess.run(None, feeds), lambda: f"onnxruntime {ort.__version__}"
    if engine.startswith("openvino"):
        import openvino as ov
        core = ov.Core()
        props = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
        if engine == "openvino-f32":
            props["INFERENCE_PRECISION_HINT"] = "f32"
        compiled = core.compile_model(core.read_model(path), "CPU", props)
        req = compiled.create_infer_request()
        feeds = {i.get_any_name(): _input(tuple(i.get_shape())) for i in compiled.inputs}
        prec = compiled.get_property("INFERENCE_PRECISION_HINT")
        return lambda: req.infer(feeds), lambda: f"{engine} {ov.__version__} ({prec})"
    raise SystemExit(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")


def _input(shape):
    import numpy as np
    return np.random.default_rng(1).standard_normal(shape).astype(np.float32)


def _describe_jitconv(sess):
    import jitconv as jc
    return f"jitconv {jc.__version__} ({sess.info().threading})"


def worker(engine, path, threads):
    """Answer each line "round RUNS" on stdin with the JSON median of RUNS runs."""
    run, label = _make_runner(engine, path, threads)
    for _ in range(3):
        run()
    print(json.dumps({"ready": label()}), flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] != "round":
            break
        times = []
        for _ in range(int(cmd[1])):
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
        print(json.dumps({"median": statistics.median(times)}), flush=True)


# ----------------------------------------------------------------------------- parent side

def _export(model, folder, batch=1):
    sys.path.insert(0, HERE)
    from onnx_export import to_onnx
    import jitconv.models as models
    path = os.path.join(folder, f"{model}_b{batch}.onnx")
    with open(path, "wb") as f:
        f.write(to_onnx(getattr(models, model)(batch=batch)).SerializeToString())
    return path


class Worker:
    def __init__(self, engine, path, threads):
        self.key = (engine, threads)
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", engine, path, str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
            env={**os.environ, "JITCONV_PROGRESS": "0"})
        self.label = self._read()["ready"]

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"{self.key[0]} worker ({self.key[1]} threads) died; "
                             f"run it alone with --worker to see why")
        return json.loads(line)

    def round(self, runs):
        self.proc.stdin.write(f"round {runs}\n")
        return self._read()["median"]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def _spinner():
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def measure(model, engines, threads, rounds, runs, gap, busy, batch=1):
    with tempfile.TemporaryDirectory() as folder:
        path = model if model.endswith((".onnx", ".jcm")) else _export(model, folder, batch)
        workers = [Worker(e, path, t) for t in threads for e in engines]
        spin = _spinner() if busy else None
        try:
            meds = {w.key: [] for w in workers}
            for _ in range(rounds):
                for w in workers:
                    time.sleep(gap)
                    meds[w.key].append(w.round(runs))
        finally:
            if spin is not None:
                spin.kill()
            for w in workers:
                w.close()
    return meds, {w.key: w.label for w in workers}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["resnet50", "mobilenet_v2"])
    ap.add_argument("--model-file", nargs="+", default=[], metavar="PATH",
                    help="ONNX files to time instead of --models (batch as in the file)")
    ap.add_argument("--engines", nargs="+", default=["jitconv", "onnxruntime", "openvino"],
                    choices=ENGINES)
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--gap", type=float, default=0.05, help="seconds between workers' turns")
    ap.add_argument("--busy", action="store_true", help="keep one core busy meanwhile")
    ap.add_argument("--checkout", action="append", default=[], metavar="NAME=PATH",
                    help="also run jitconv from the checkout at PATH, as engine jitconv@NAME")
    ap.add_argument("--batch", nargs="+", type=int, default=[1],
                    help="batch sizes (images/s is batch / median time)")
    args = ap.parse_args(argv)
    for spec in args.checkout:
        name, _, where = spec.partition("=")
        if not name or not os.path.isdir(os.path.join(where, "kernels")):
            raise SystemExit(f"--checkout {spec!r}: give NAME=PATH of a jitconv checkout")
        args.engines.append(f"jitconv@{name}={os.path.abspath(where)}")
    print(f"{'busy core' if args.busy else 'quiet'}: median of {args.rounds} interleaved "
          f"rounds, each the median of {args.runs} runs; spread = slowest / fastest round")
    print(f"{'model':13} {'batch':>5} {'engine':16} {'thr':>3} {'ms':>8} {'img/s':>8} "
          f"{'spread':>7} {'speed/ort':>9}")
    labels = {}
    models = [os.path.abspath(p) for p in args.model_file] or args.models
    for model in models:
        for batch in ([1] if model.endswith(".onnx") else args.batch):
            meds, lab = measure(model, args.engines, args.threads, args.rounds, args.runs,
                                args.gap, args.busy, batch)
            labels.update(lab)
            for t in args.threads:
                ort = meds.get(("onnxruntime", t))
                for e in args.engines:
                    m = meds[(e, t)]
                    sec = statistics.median(m)
                    ratio = (f"{statistics.median(ort) / sec:9.2f}" if ort else f"{'':9}")
                    name = os.path.basename(model)[:13]
                    print(f"{name:13} {batch:>5} {e.split('=')[0]:16} {t:>3} {sec * 1e3:8.2f} "
                          f"{batch / sec:8.1f} {max(m) / min(m):7.2f} {ratio}", flush=True)
    print("engines: " + "; ".join(sorted(set(labels.values()))))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        sys.exit(main())
