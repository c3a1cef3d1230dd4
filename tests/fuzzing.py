"""Mutation fuzzing of the .jcm and ONNX loaders (and of Session on what they accept).

Each case starts from a small valid model and changes it: random byte flips, sets and
truncations of the file; and structured changes that keep the file well-formed (a .jcm
header value replaced by a hostile one with the CRC recomputed, an ONNX dim, dtype,
attribute, op type or input name changed). The loader must then return a Graph or raise
a JitconvError; an accepted Graph must build a Session and run, or raise a JitconvError.
Anything else (a TypeError, an IndexError, a NumPy or Numba error, a hang, a crash) is a
finding.

    python tests/fuzzing.py --seconds 600 [--loader jcm|onnx|both] [--seed 0]

prints the inputs tried and the findings. tests/test_fuzz.py runs a fixed number of
seeded cases of each kind in CI.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import random
import struct
import sys
import tempfile
import time
import traceback
import zlib

import numpy as np

import jitconv as jc
from jitconv.runtime import modelfile

HOSTILE = [-1, 0, 1, 3, 7, 2**31, 2**63, 10**12, -(2**63), 1.5, float("1e308"), "x", "",
           None, True, [], {}, [0], [-1], [10**12], [1, 2, 3, 4, 5, 6, 7, 8, 9],
           [[1]], {"$float": "nan"}, "float64", "int8", "Conv", "\u00e9\u0000"]


def seed_graph():
    """conv (fp32), depthwise (int8 blocks), conv (int4), pooling, dense (fp16), softmax."""
    rng = np.random.default_rng(0)
    g = jc.GraphBuilder("fuzz")
    x = g.input("x", (1, 3, 9, 9), dynamic_axes=(0,))
    y = g.conv2d(x, rng.standard_normal((6, 3, 3, 3)).astype(np.float32),
                 rng.standard_normal(6).astype(np.float32), padding=1, activation="relu")
    y = g.conv2d(y, rng.standard_normal((6, 1, 3, 3)).astype(np.float32), padding=1,
                 groups=6)
    y = g.conv2d(y, rng.standard_normal((4, 6, 1, 1)).astype(np.float32), stride=2)
    y = g.max_pool(y, 2, stride=2, ceil_mode=True)
    y = g.flatten(g.global_average_pool(y))
    y = g.dense(y, rng.standard_normal((5, 4)).astype(np.float32))
    g.output(g.softmax(y), "p")
    graph = g.build()
    names = [n.name for n in graph.nodes if n.op_type in ("Conv", "Gemm")]
    return jc.quantize(graph, "int8", block=16, symmetric=False,
                       overrides=dict(zip(names, ("fp32", "int8", "int4", "fp16"))))


def _try_run(graph):
    """Session + one run of what a loader accepted; only JitconvErrors may come out."""
    sess = jc.Session(graph, jc.Config(threads=1))
    feeds = {s.name: np.ones(s.shape, np.float32) for s in graph.inputs}
    sess.run(feeds)


# -- .jcm -------------------------------------------------------------------------------

def _split(raw):
    hlen = struct.unpack_from("<Q", raw, 12)[0]
    p = modelfile._PREFIX.size
    return json.loads(raw[p:p + hlen]), raw[modelfile._align(p + hlen):]


def _join(raw, header, data):
    p = modelfile._PREFIX.size
    head = json.dumps(header).encode()
    pad = b"\0" * (modelfile._align(p + len(head)) - p - len(head))
    return raw[:12] + struct.pack("<QI", len(head), zlib.crc32(head)) + head + pad + data


def _paths(tree, at=()):
    """Every (path, value) in a JSON tree."""
    yield at, tree
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _paths(v, at + (k,))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            yield from _paths(v, at + (i,))


def _set(tree, path, value, delete=False):
    for k in path[:-1]:
        tree = tree[k]
    if delete and isinstance(tree, dict):
        del tree[path[-1]]
    elif delete and isinstance(tree, list):
        tree.pop(path[-1])
    else:
        tree[path[-1]] = value


def mutate_jcm(raw: bytes, r: random.Random) -> tuple[bytes, bool, str]:
    """(mutated file, verify flag to load it with, what was done)."""
    kind = r.choice(["flip", "set", "cut", "header", "header", "header", "header2"])
    if kind in ("flip", "set"):
        b = bytearray(raw)
        for _ in range(r.randint(1, 4)):
            i = r.randrange(len(b))
            b[i] = b[i] ^ (1 << r.randrange(8)) if kind == "flip" else r.randrange(256)
        return bytes(b), r.random() < 0.5, kind
    if kind == "cut":
        return raw[:r.randrange(len(raw))], True, kind
    header, data = _split(raw)
    what = []
    for _ in range(1 if kind == "header" else r.randint(2, 5)):
        paths = [p for p, _ in _paths(header) if p]
        path = r.choice(paths)
        if r.random() < 0.15:
            _set(header, path, None, delete=True)
            what.append(f"del {path}")
        else:
            v = copy.deepcopy(r.choice(HOSTILE))
            _set(header, path, v)
            what.append(f"{path}={v!r}")
    return _join(raw, header, data), True, "; ".join(what)


def check_jcm(blob: bytes, verify: bool, folder: str) -> None:
    path = os.path.join(folder, "case.jcm")
    with open(path, "wb") as f:
        f.write(blob)
    for use_mmap in (True, False):
        try:
            graph = jc.load(path, mmap=use_mmap, verify=verify)
        except jc.JitconvError:
            continue
        try:
            _try_run(graph)
        except jc.JitconvError:
            pass


# -- ONNX -------------------------------------------------------------------------------

def seed_onnx():
    import onnx
    from onnx import TensorProto, helper
    rng = np.random.default_rng(0)

    def init(name, *shape):
        return onnx.numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32),
                                            name)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], group=4, pads=[1, 1, 1, 1],
                         strides=[2, 2]),
        helper.make_node("Add", ["c2", "s"], ["a"]),
        helper.make_node("MaxPool", ["a"], ["m"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["m"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["o"], transB=1),
        helper.make_node("Softmax", ["o"], ["y"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "fuzz", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 9, 9])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 5])],
        [init("w1", 4, 3, 3, 3), init("b1", 4), init("w2", 4, 1, 3, 3), init("s", 1, 4, 1, 1),
         init("wf", 5, 4), init("bf", 5)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


_ONNX_VALUES = [-1, 0, 1, 2, 3, 5, 2**31 - 1, 10**9, -(2**40)]


def mutate_onnx(model, r: random.Random):
    """(serialized mutated model, what was done)."""
    from onnx import TensorProto
    kind = r.choice(["bytes", "dims", "dtype", "attr", "op", "input", "drop", "raw"])
    m = copy.deepcopy(model)
    g = m.graph
    if kind == "bytes":
        b = bytearray(m.SerializeToString())
        for _ in range(r.randint(1, 4)):
            b[r.randrange(len(b))] = r.randrange(256)
        if r.random() < 0.3:
            b = b[:r.randrange(len(b))]
        return bytes(b), kind
    if kind == "dims":
        t = r.choice(list(g.initializer))
        i = r.randrange(len(t.dims) + 1)
        if i < len(t.dims):
            t.dims[i] = r.choice(_ONNX_VALUES)
        else:
            t.dims.append(r.choice(_ONNX_VALUES))
        return m.SerializeToString(), f"{kind} {t.name} -> {list(t.dims)}"
    if kind == "dtype":
        t = r.choice(list(g.initializer))
        t.data_type = r.choice([TensorProto.FLOAT16, TensorProto.INT64, TensorProto.DOUBLE,
                                TensorProto.STRING, TensorProto.BOOL, 0, 99])
        return m.SerializeToString(), f"{kind} {t.name} -> {t.data_type}"
    if kind == "raw":
        t = r.choice(list(g.initializer))
        t.raw_data = t.raw_data[:r.randrange(len(t.raw_data) + 1)] + b"\x7f" * r.randrange(9)
        return m.SerializeToString(), f"{kind} {t.name} -> {len(t.raw_data)} bytes"
    node = r.choice(list(g.node))
    if kind == "attr" and node.attribute:
        a = r.choice(list(node.attribute))
        if a.ints:
            a.ints[r.randrange(len(a.ints))] = r.choice(_ONNX_VALUES)
        elif a.type == a.INT:
            a.i = r.choice(_ONNX_VALUES)
        return m.SerializeToString(), f"{kind} {node.op_type}.{a.name}"
    if kind == "op":
        node.op_type = r.choice(["Conv", "Relu", "Add", "MaxPool", "Gemm", "Softmax",
                                 "Flatten", "Nope", "ConvTranspose", "Reshape"])
        return m.SerializeToString(), f"{kind} -> {node.op_type}"
    if kind == "input" and node.input:
        node.input[r.randrange(len(node.input))] = r.choice(["x", "w1", "nope", "", "y", "s"])
        return m.SerializeToString(), f"{kind} {node.op_type} -> {list(node.input)}"
    if kind == "drop":
        victims = list(g.initializer)
        t = r.choice(victims)
        g.initializer.remove(t)
        return m.SerializeToString(), f"{kind} {t.name}"
    return m.SerializeToString(), "unchanged"


def check_onnx(blob: bytes, folder: str) -> None:
    path = os.path.join(folder, "case.onnx")
    with open(path, "wb") as f:
        f.write(blob)
    try:
        graph = jc.load(path)
    except jc.JitconvError:
        return
    try:
        _try_run(graph)
    except jc.JitconvError:
        pass


# -- driver -----------------------------------------------------------------------------

def fuzz(loader: str, cases: int | None = None, seconds: float | None = None, seed: int = 0):
    """Run cases until ``cases`` or ``seconds``; returns (tried, [(what, traceback)])."""
    r = random.Random(seed)
    findings, tried = [], 0
    t_end = time.monotonic() + seconds if seconds else None
    with tempfile.TemporaryDirectory() as folder:
        if loader == "jcm":
            path = os.path.join(folder, "seed.jcm")
            jc.save(seed_graph(), path)
            with open(path, "rb") as f:
                raw = f.read()
        else:
            model = seed_onnx()
        while (cases is None or tried < cases) and (t_end is None or time.monotonic() < t_end):
            tried += 1
            if loader == "jcm":
                blob, verify, what = mutate_jcm(raw, r)
                run = lambda: check_jcm(blob, verify, folder)  # noqa: E731
            else:
                blob, what = mutate_onnx(model, r)
                run = lambda: check_onnx(blob, folder)  # noqa: E731
            try:
                run()
            except Exception:
                findings.append((what, traceback.format_exc(limit=-3)))
    return tried, findings


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--loader", default="both", choices=["jcm", "onnx", "both"])
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    bad = 0
    for loader in (["jcm", "onnx"] if a.loader == "both" else [a.loader]):
        t0 = time.monotonic()
        tried, findings = fuzz(loader, seconds=a.seconds, seed=a.seed)
        print(f"{loader}: {tried} inputs in {time.monotonic() - t0:.0f} s, "
              f"{len(findings)} findings")
        seen = set()
        for what, tb in findings:
            last = tb.strip().splitlines()[-1]
            if last not in seen:
                seen.add(last)
                print(f"--- {what}\n{tb}")
        bad += len(findings)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
