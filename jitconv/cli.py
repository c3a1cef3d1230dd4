"""Command line: `jitconv demo | run | quantize | info` (also `python -m jitconv ...`).

- ``jitconv run MODEL``: prepare a Session, run it and print latency, the memory split and
  the per-op kernel table.
- ``jitconv quantize MODEL -o OUT.jcm --weights fp16|int8|int4``: re-store the weights and
  write a .jcm file; prints sizes before/after and the largest weight error.
- ``jitconv info MODEL``: the graph, and the weight bytes each memory mode keeps.

MODEL is an .onnx or a .jcm file. Errors jitconv raises on purpose print as
``jitconv: error: ...`` and exit with status 2.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

from jitconv.errors import InputError, JitconvError

MEMORY_MODES = ("normal", "high", "low")


def _cmd_demo(args):
    from jitconv.demo import run_demo
    threads = tuple(sorted({1, args.threads})) if args.threads else (1, 2)
    run_demo(input_size=args.size, repeat=args.repeat, threads=threads, seed=args.seed,
             jobs=args.jobs)
    return 0


def _cmd_compile(args):
    import jitconv as jc
    from jitconv.runtime.compile import default_jobs
    from jitconv.runtime.tables import text_table
    if not os.path.exists(args.model):
        raise JitconvError(f"{args.model}: no such file")
    jobs = default_jobs() if args.jobs is None else args.jobs
    if jobs < 1:
        raise InputError(f"--jobs {jobs}: must be at least 1")
    done = _note(f"compiling the kernels of {args.model} in {jobs} process(es)")
    times = jc.precompile(args.model, _config(args), jobs=jobs)
    done()
    rows = [[k, f"{v:.2f}"] for k, v in sorted(times.items(), key=lambda kv: -kv[1])]
    print(text_table(("kernel", "first run s"), rows,
                     f"cache: {_cache_dir()} (NUMBA_CACHE_DIR moves it)"))
    return 0


def _cache_dir():
    from jitconv.kernels.cache import cache_folders
    folders = sorted(cache_folders())
    return folders[0] if len(folders) == 1 else ", ".join(folders) or "none"


# -- helpers -------------------------------------------------------------------------

def _load(path, input_shapes=None):
    import jitconv as jc
    if not os.path.exists(path):
        raise JitconvError(f"{path}: no such file")
    progress = _note(f"loading {path}")
    graph = jc.load(path, input_shapes=input_shapes) if path.lower().endswith(".onnx") \
        else jc.load(path)
    progress()
    return graph


def _note(what):
    """A one-line progress note on stderr for a step that may take a while."""
    t0 = time.perf_counter()
    sys.stderr.write(f"{what} ...\n")
    sys.stderr.flush()

    def done():
        sys.stderr.write(f"{what}: done in {time.perf_counter() - t0:.1f}s\n")
        sys.stderr.flush()
    return done


def _parse_inputs(specs):
    """['name=file.npy' | 'file.npy'] -> {name or None: float32 array}."""
    out = {}
    for spec in specs or []:
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = None, spec
        try:
            arr = np.load(path)
        except FileNotFoundError:
            raise InputError(f"--input {spec}: no such file {path!r}") from None
        except Exception as exc:
            raise InputError(f"--input {spec}: cannot read {path!r} as .npy "
                             f"({type(exc).__name__}: {exc})") from None
        if not isinstance(arr, np.ndarray):
            raise InputError(f"--input {spec}: {path!r} holds no single array (use a .npy)")
        out[name] = arr.astype(np.float32, copy=False)
    return out


def _name_inputs(given, input_names):
    if None in given:
        if len(given) > 1 or len(input_names) != 1:
            raise InputError(f"--input FILE without NAME= needs a model with exactly one "
                             f"input; this one has {input_names}: use --input NAME=FILE.npy")
        given = {input_names[0]: given[None]}
    unknown = sorted(set(given) - set(input_names))
    if unknown:
        raise InputError(f"--input names {unknown} are not model inputs; inputs: {input_names}")
    return given


def _bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.2f} {unit}"
        n /= 1024


def _config(args):
    from jitconv.runtime.config import Config
    return Config(backend=args.backend, threads=args.threads, precision=args.precision,
                  memory=args.memory)


# -- run -----------------------------------------------------------------------------

def _cmd_run(args):
    from jitconv.progress import CompileProgress
    from jitconv.runtime.resident import rss_bytes
    rss_import = rss_bytes()
    from jitconv.runtime.session import Session
    if args.repeat < 1:
        raise InputError(f"--repeat {args.repeat}: must be at least 1")
    given = _parse_inputs(args.input)
    is_onnx = args.model.lower().endswith(".onnx")
    shapes = None
    if given and is_onnx and None not in given:
        shapes = {k: v.shape for k, v in given.items()}
    graph = _load(args.model, shapes)
    names = [s.name for s in graph.inputs]
    given = _name_inputs(given, names)
    rng = np.random.default_rng(args.seed)
    feeds = {}
    for spec in graph.inputs:
        feeds[spec.name] = given.get(spec.name)
        if feeds[spec.name] is None:
            feeds[spec.name] = rng.standard_normal(spec.shape).astype(np.float32)
    sess = Session(graph, _config(args))
    resized = {k: v.shape for k, v in feeds.items() if tuple(v.shape) != sess.input_shapes[k]}
    if resized:
        sess.resize(resized)
    sess.warmup(progress=CompileProgress("compiling/warming"))
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        outputs = sess.run(feeds)
        times.append(time.perf_counter() - t0)
    info = sess.info()
    print(f"model: {args.model} ({graph.name}, {len(graph.nodes)} nodes)")
    for k, v in feeds.items():
        src = "given" if k in given else f"random, seed {args.seed}"
        print(f"input {k}: {tuple(v.shape)} float32 ({src})")
    for k, v in outputs.items():
        print(f"output {k}: {tuple(v.shape)}")
    print(f"latency over {args.repeat} runs: median {statistics.median(times) * 1e3:.3f} ms, "
          f"min {min(times) * 1e3:.3f} ms")
    print(f"memory: weights {_bytes(info.weight_bytes)}, arena {_bytes(info.arena_bytes)}, "
          f"scratch {_bytes(info.scratch_bytes)}")
    rss = rss_bytes()
    if rss and rss_import:
        print(f"process RSS (what top shows): {_bytes(rss)} after the runs, "
              f"{_bytes(rss - rss_import)} over the {_bytes(rss_import)} after import")
    print(info)
    if args.output:
        np.savez(args.output, **outputs)
        print(f"outputs written to {args.output}")
    return 0


# -- quantize ------------------------------------------------------------------------

def _cmd_quantize(args):
    import jitconv as jc
    from jitconv.runtime.quantize import quantize_with_report
    if not args.output.lower().endswith(".jcm"):
        raise InputError(f"-o {args.output}: the output must be a .jcm file")
    graph = _load(args.model)
    done = _note(f"quantizing weights to {args.weights}")
    qgraph, report = quantize_with_report(graph, args.weights, block=args.block,
                                          symmetric=not args.asymmetric)
    done()
    jc.save(qgraph, args.output)
    size_in, size_out = os.path.getsize(args.model), os.path.getsize(args.output)
    worst = max(report.layers, key=lambda r: r.max_abs_error, default=None)
    print(report.summary())
    print(f"weight bytes: {_bytes(graph.weight_bytes)} -> {_bytes(qgraph.weight_bytes)} "
          f"({qgraph.weight_bytes / max(graph.weight_bytes, 1):.1%})")
    print(f"file: {args.model} {_bytes(size_in)} -> {args.output} {_bytes(size_out)}")
    if worst is not None:
        print(f"max weight error: {worst.max_abs_error:.4g} (layer {worst.node!r}, "
              f"{worst.storage})")
    else:
        print("max weight error: 0 (no Conv/Gemm weight to quantize)")
    if report.fallbacks:
        names = report.fallbacks
        more = f", ... ({len(names) - 5} more; -v lists all)" if len(names) > 5 else ""
        print(f"{len(names)} layers fell back to per-channel scales (input channels not a "
              f"multiple of --block): {', '.join(names[:5])}{more}")
    if args.verbose:
        print(report)
    return 0


# -- info ----------------------------------------------------------------------------

def _cmd_info(args):
    from jitconv.runtime.config import Config
    from jitconv.runtime.session import Session
    from jitconv.runtime.shapes import infer_shapes
    graph = _load(args.model)
    shapes = infer_shapes(graph, {s.name: s.shape for s in graph.inputs})
    counts = {}
    for n in graph.nodes:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    print(f"model: {args.model} ({graph.name})")
    for s in graph.inputs:
        print(f"input {s.name}: {tuple(s.shape)} {s.dtype}")
    for s in graph.outputs:
        print(f"output {s.name}: {tuple(shapes[s.name])}")
    print(f"nodes: {len(graph.nodes)} ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})")
    storages = ", ".join(f"{k} {v}" for k, v in sorted(graph.storages().items()))
    print(f"constants: {len(graph.constants)} ({storages or 'none'}), stored weights "
          f"{_bytes(graph.weight_bytes)}")
    rows = [("node", "op", "inputs", "output shape")]
    for n in graph.nodes:
        ins = ", ".join(t + (f" [{graph.constants[t].storage}]" if t in graph.constants else "")
                        for t in n.inputs if t)
        rows.append((n.name, n.op_type, ins, str(tuple(shapes[n.outputs[0]]))))
    if not args.brief:
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        for j, r in enumerate(rows):
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
            if j == 0:
                print("  ".join("-" * w for w in widths))
    print("what each memory mode keeps (a Session prepared per mode, cpu backend):")
    table = [("memory", "weights kept", "arena", "scratch", "kept as")]
    for memory in MEMORY_MODES:
        info = Session(graph, Config(threads=1, memory=memory)).info()
        kept = {}
        for op in info.ops:
            if op.storage != "-":
                kept[op.storage] = kept.get(op.storage, 0) + 1
        table.append((memory, _bytes(info.weight_bytes), _bytes(info.arena_bytes),
                      _bytes(info.scratch_bytes),
                      ", ".join(f"{k} x{v}" for k, v in sorted(kept.items())) or "-"))
    widths = [max(len(r[i]) for r in table) for i in range(5)]
    for r in table:
        print("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


# -- parser --------------------------------------------------------------------------

def _add_config_args(p):
    p.add_argument("--backend", default="cpu", help="backend name: cpu, cuda or auto (cpu)")
    p.add_argument("--threads", type=int, default=None,
                   help="worker threads (default: all cores)")
    p.add_argument("--precision", default="normal", choices=("normal", "high", "low"),
                   help="kernel precision (normal)")
    p.add_argument("--memory", default="normal", choices=MEMORY_MODES,
                   help="what weights stay resident as (normal)")


def build_parser():
    parser = argparse.ArgumentParser(prog="jitconv", description="Numba-compiled CNN inference.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the built-in MobileNetV2-style model under each config",
                          description="Build a MobileNetV2-style model in memory (seeded "
                                      "weights), run it with each supported config and print "
                                      "latency, memory and error against the NumPy reference.")
    demo.add_argument("--size", type=int, default=224, help="input height and width (224)")
    demo.add_argument("--repeat", type=int, default=10, help="timed runs per config (10)")
    demo.add_argument("--threads", type=int, default=None,
                      help="largest thread count to try (default: 1 and 2)")
    demo.add_argument("--seed", type=int, default=0, help="weights and input seed (0)")
    demo.add_argument("--jobs", type=int, default=1,
                      help="processes compiling every config's kernels first (default 1: "
                           "compile in this process as each config runs; more helps on "
                           "machines with more cores)")
    demo.set_defaults(func=_cmd_demo)

    run = sub.add_parser("run", help="run a model and print latency, memory and kernels",
                         description="Load MODEL (.onnx or .jcm), prepare a Session, run it "
                                     "--repeat times and print the latency (median, min), "
                                     "the memory split and the per-op kernel table.")
    run.add_argument("model", metavar="MODEL", help="an .onnx or .jcm file")
    _add_config_args(run)
    run.add_argument("--repeat", type=int, default=10, help="timed runs (10)")
    run.add_argument("--input", action="append", metavar="NAME=FILE.npy",
                     help="an input from a .npy file (repeatable; default: seeded random "
                          "normal data); NAME= may be left out for a one-input model")
    run.add_argument("--output", metavar="FILE.npz", help="write the outputs to a .npz file")
    run.add_argument("--seed", type=int, default=0, help="seed of the random inputs (0)")
    run.set_defaults(func=_cmd_run)

    q = sub.add_parser("quantize", help="re-store the weights as fp16/int8/int4 in a .jcm file",
                       description="Load MODEL (.onnx or .jcm), store its Conv and Gemm/MatMul "
                                   "weights as --weights, write OUT.jcm and print the sizes "
                                   "before and after and the largest weight error.")
    q.add_argument("model", metavar="MODEL", help="an .onnx or .jcm file")
    q.add_argument("-o", "--output", required=True, metavar="OUT.jcm", help="file to write")
    q.add_argument("--weights", required=True, choices=("fp16", "int8", "int4"),
                   help="weight storage")
    q.add_argument("--block", type=int, default=None, metavar="N",
                   help="int8/int4: N input channels per scale (a multiple of 16; default: "
                        "one scale per output channel)")
    q.add_argument("--asymmetric", action="store_true",
                   help="int8/int4: min/max scales with a zero point (default: symmetric)")
    q.add_argument("-v", "--verbose", action="store_true", help="print the per-layer report")
    q.set_defaults(func=_cmd_quantize)

    comp = sub.add_parser("compile", help="compile the kernels a model needs into Numba's cache",
                          description="Load MODEL (.onnx or .jcm) and compile every kernel a "
                                      "session of it runs under the given config, in several "
                                      "processes at once, into Numba's on-disk cache, so later "
                                      "processes start in seconds (a deployment or image "
                                      "build pays once).")
    comp.add_argument("model", metavar="MODEL", help="an .onnx or .jcm file")
    _add_config_args(comp)
    comp.add_argument("--jobs", type=int, default=None,
                      help="processes compiling at once (default: usable cores, at most 8)")
    comp.set_defaults(func=_cmd_compile)

    info = sub.add_parser("info", help="show the graph and the weights each memory mode keeps",
                          description="Load MODEL (.onnx or .jcm) and print its inputs, "
                                      "outputs, nodes and constants, and for each memory mode "
                                      "the weight bytes a Session keeps resident.")
    info.add_argument("model", metavar="MODEL", help="an .onnx or .jcm file")
    info.add_argument("--brief", action="store_true", help="leave out the node table")
    info.set_defaults(func=_cmd_info)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except JitconvError as exc:
        print(f"jitconv: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:         # e.g. `jitconv info model.onnx | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
