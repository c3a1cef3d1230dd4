"""The .jcm model file: round trips, memory mapping, and rejecting bad files."""
import json
import math
import mmap
import os
import struct
import zlib
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jitconv as jc
from jitconv.errors import JitconvError
from jitconv.runtime import modelfile
from jitconv.runtime.ir import Constant, Graph
from jitconv.runtime.modelfile import ModelFileError, load, save
from jitconv.runtime.passes import optimize
from jitconv.runtime.reference import evaluate


def _rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def small_graph(rng):
    """conv+relu6, depthwise conv, clip to (-inf, 4) fused later, ceil max_pool, dense, softmax."""
    g = jc.GraphBuilder("small")
    x = g.input("x", (1, 3, 12, 12))
    y = g.conv2d(x, _rand(rng, 8, 3, 3, 3), _rand(rng, 8), padding=1, activation="relu6",
                 name="conv1")
    y = g.conv2d(y, _rand(rng, 8, 1, 3, 3), padding=1, groups=8, name="dw")
    y = g.clip(y, -np.inf, 4.0, name="clip")
    y = g.max_pool(y, 3, stride=2, ceil_mode=True)
    y = g.flatten(g.global_average_pool(y))
    y = g.dense(y, _rand(rng, 10, 8), _rand(rng, 10), name="fc")
    g.output(g.softmax(y), "probs")
    return g.build()


def quantize(name, w, storage, blocks=1, asym=False):
    """A Constant of ``storage`` built by hand, following the Constant docstring."""
    if storage == "fp16":
        return Constant(name, w.astype(np.float16), "fp16")
    rows, k = w.shape[0], int(np.prod(w.shape[1:]))
    flat = w.reshape(rows, blocks, k // blocks)
    qmax = 127 if storage == "int8" else 7
    scale = (np.abs(flat).max(axis=2) / qmax + 1e-8).astype(np.float32)
    zero = (flat.mean(axis=2) * 0.1).astype(np.float32) if asym else None
    q = np.round((flat - (zero[:, :, None] if asym else 0)) / scale[:, :, None])
    q = np.clip(q, -qmax, qmax).astype(np.int8).reshape(rows, k)
    if storage == "int8":
        return Constant(name, q, "int8", scale, zero, w.shape)
    nib = (q.astype(np.uint8) & 0x0F)
    if k % 2:
        nib = np.concatenate([nib, np.zeros((rows, 1), np.uint8)], axis=1)
    packed = (nib[:, 0::2] | (nib[:, 1::2] << 4)).astype(np.uint8)
    return Constant(name, packed, "int4", scale, zero, w.shape)


def with_storages(graph, storages):
    """A copy of ``graph`` with some constants replaced: {name: (storage, blocks, asym)}."""
    consts = dict(graph.constants)
    for name, (storage, blocks, asym) in storages.items():
        consts[name] = quantize(name, graph.constants[name].as_float32(), storage, blocks, asym)
    return Graph(list(graph.inputs), list(graph.outputs), list(graph.nodes), consts,
                 graph.name)


def mapped(a):
    """True when ``a`` is a read-only view whose memory is an mmap of the file."""
    base = a
    while isinstance(base, np.ndarray):
        base = base.base
    obj = base.obj if isinstance(base, memoryview) else base
    return isinstance(obj, mmap.mmap) and not a.flags.writeable and not a.flags.owndata


def assert_same(g, h):
    assert h.name == g.name
    assert h.inputs == g.inputs and h.outputs == g.outputs
    assert len(h.nodes) == len(g.nodes)
    for a, b in zip(g.nodes, h.nodes):
        assert (a.op_type, a.name, a.inputs, a.outputs) == (b.op_type, b.name, b.inputs,
                                                              b.outputs)
        assert json.dumps(a.attrs, sort_keys=True) == json.dumps(b.attrs, sort_keys=True)
        for k, v in a.attrs.items():
            assert type(b.attrs[k]) is type(v) or isinstance(v, tuple), k
    assert list(h.constants) == list(g.constants)
    for name, c in g.constants.items():
        d = h.constants[name]
        assert (d.storage, d.shape) == (c.storage, c.shape)
        assert len(d.arrays()) == len(c.arrays())
        for a, b in zip(c.arrays(), d.arrays()):
            assert a.dtype == b.dtype and a.shape == b.shape
            assert a.tobytes() == b.tobytes()
        np.testing.assert_array_equal(c.as_float32(), d.as_float32())


def test_round_trip_fp32(tmp_path, rng):
    g = small_graph(rng)
    path = tmp_path / "m.jcm"
    save(g, path)
    h = load(path)
    assert_same(g, h)
    assert next(n for n in h.nodes if n.op_type == "MaxPool").attrs["ceil_mode"] == 1
    assert h.nodes[0].attrs["activation_max"] == 6.0
    assert all(mapped(a) for c in h.constants.values() for a in c.arrays())
    x = _rand(rng, 1, 3, 12, 12)
    np.testing.assert_array_equal(evaluate(g, {"x": x})["probs"],
                                  evaluate(h, {"x": x})["probs"])


def test_inf_and_internal_attrs_survive(tmp_path, rng):
    g = optimize(small_graph(rng))            # Clip(-inf, 4) fused into the dw conv
    dw = next(n for n in g.nodes if n.name == "dw")
    assert dw.attrs["activation_min"] == -np.inf and dw.attrs["_fused"] == ["clip"]
    save(g, tmp_path / "o.jcm")
    h = load(tmp_path / "o.jcm")
    assert_same(g, h)
    dw2 = next(n for n in h.nodes if n.name == "dw")
    assert dw2.attrs["activation_min"] == -math.inf
    assert dw2.attrs["_fused"] == ["clip"]
    n = jc.Node("Custom", [], ["y"], {"a": [math.inf, -math.inf, 1.5, 2, "s"],
                                      "nan": math.nan, "flag": True})
    h = load(_saved(tmp_path, Graph([], [jc.TensorSpec("y", (1,))], [n], {})))
    a = h.nodes[0].attrs
    assert a["a"] == [math.inf, -math.inf, 1.5, 2, "s"] and type(a["a"][3]) is int
    assert math.isnan(a["nan"]) and a["flag"] is True


def _saved(tmp_path, graph, name="g.jcm"):
    save(graph, tmp_path / name)
    return tmp_path / name


@pytest.mark.parametrize("storage,blocks,asym", [
    ("fp16", 1, False), ("int8", 1, False), ("int8", 3, True), ("int4", 1, False),
    ("int4", 3, True)])
@pytest.mark.parametrize("use_mmap", [True, False])
def test_round_trip_storages(tmp_path, rng, storage, blocks, asym, use_mmap):
    g = small_graph(rng)
    conv_w = g.nodes[0].inputs[1]           # (8, 3, 3, 3): K = 27, odd, for int4
    fc_w = g.nodes[-2].inputs[1]            # (10, 8)
    q = with_storages(g, {conv_w: (storage, blocks, asym), fc_w: (storage, 1, False)})
    assert q.constants[conv_w].storage == storage
    if storage == "int4":
        assert q.constants[conv_w].data.shape == (8, 14)
    h = load(_saved(tmp_path, q), mmap=use_mmap)
    assert_same(q, h)
    for name in (conv_w, fc_w):
        for a in h.constants[name].arrays():
            assert mapped(a) == use_mmap
            assert not a.flags.writeable
    x = _rand(rng, 1, 3, 12, 12)
    np.testing.assert_array_equal(evaluate(q, {"x": x})["probs"],
                                  evaluate(h, {"x": x})["probs"])


def big_graph(rng, storage):
    g = jc.GraphBuilder("big")
    x = g.input("x", (1, 1024))
    y = g.dense(x, _rand(rng, 1024, 1024), name="fc1")
    g.output(g.dense(y, _rand(rng, 16, 1024), name="fc2"), "y")
    graph = g.build()
    if storage == "fp32":
        return graph
    return with_storages(graph, {graph.nodes[0].inputs[1]: (storage, 4, False)})


def test_file_size_is_the_kept_bytes(tmp_path, rng):
    sizes = {}
    for storage in ("fp32", "fp16", "int8", "int4"):
        g = big_graph(rng, storage)
        sizes[storage] = os.path.getsize(_saved(tmp_path, g, storage + ".jcm"))
        assert g.weight_bytes <= sizes[storage] <= g.weight_bytes + 16 * 1024
    assert 0.49 < sizes["fp16"] / sizes["fp32"] < 0.52
    assert 0.24 < sizes["int8"] / sizes["fp32"] < 0.27
    assert 0.12 < sizes["int4"] / sizes["fp32"] < 0.15


def test_load_maps_instead_of_allocating(tmp_path, rng, monkeypatch):
    rows, k = 4096, 4096                        # 16 MiB of int8 weights
    data = rng.integers(-127, 128, (rows, k), dtype=np.int8)
    w = Constant("w", data, "int8", np.full((rows, 1), 0.01, np.float32), None, (rows, k))
    n = jc.Node("Gemm", ["x", "w"], ["y"], {"transB": 1}, "fc")
    g = Graph([jc.TensorSpec("x", (1, k))], [jc.TensorSpec("y", (1, rows))], [n], {"w": w})
    path = _saved(tmp_path, g)
    assert os.path.getsize(path) > 16 * 2**20

    def no_decode(self):
        raise AssertionError("load decoded a constant")
    monkeypatch.setattr(Constant, "as_float32", no_decode)
    tracemalloc.start()
    try:
        h = load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 * 2**20, f"load allocated {peak} bytes"
    assert mapped(h.constants["w"].data)
    assert np.array_equal(h.constants["w"].data[-1], data[-1])


def test_save_is_atomic_and_mapped_arrays_outlive_overwrite(tmp_path, rng):
    g = small_graph(rng)
    path = _saved(tmp_path, g)
    h = load(path)
    before = {k: c.data.copy() for k, c in h.constants.items()}
    save(with_storages(g, {g.nodes[0].inputs[1]: ("int8", 1, False)}), path)
    for k, c in h.constants.items():             # the old mapping still reads the old file
        assert np.array_equal(c.data, before[k])
    assert sorted(os.listdir(tmp_path)) == ["g.jcm"]          # no temp files left
    assert load(path).constants[g.nodes[0].inputs[1]].storage == "int8"


def test_save_rejects_unencodable_attr(tmp_path):
    n = jc.Node("Custom", [], ["y"], {"bad": {"a": 1}}, "n")
    with pytest.raises(ModelFileError, match="attr 'bad'"):
        save(Graph([], [jc.TensorSpec("y", (1,))], [n], {}), tmp_path / "x.jcm")
    assert os.listdir(tmp_path) == []


# -- malformed files -------------------------------------------------------------------

@pytest.fixture
def good(tmp_path, rng):
    g = with_storages(small_graph(rng), {})
    path = _saved(tmp_path, g, "good.jcm")
    return path, path.read_bytes()


P = modelfile._PREFIX.size          # the header starts here (version 2)


def _header(raw):
    n = struct.unpack_from("<Q", raw, 12)[0]
    return json.loads(raw[P:P + n])


def _with_header(raw, header):
    """The file with a new header and its right CRC (a hostile file, not a damaged one:
    the checks behind the checksum must hold on their own); blob offsets are relative to
    the data section."""
    old = struct.unpack_from("<Q", raw, 12)[0]
    data = raw[modelfile._align(P + old):]
    head = header if isinstance(header, bytes) else json.dumps(header).encode()
    pad = b"\0" * (modelfile._align(P + len(head)) - P - len(head))
    return raw[:12] + struct.pack("<QI", len(head), zlib.crc32(head)) + head + pad + data


def _expect(tmp_path, blob, match):
    bad = tmp_path / "bad.jcm"
    bad.write_bytes(blob)
    with pytest.raises(ModelFileError, match=match) as info:
        load(bad)
    assert str(bad) in str(info.value)
    assert isinstance(info.value, JitconvError) and isinstance(info.value, ValueError)
    with pytest.raises(ModelFileError):
        load(bad, mmap=False)
    return str(info.value)


def test_unmodified_good_file_loads(good):
    load(good[0])


@pytest.mark.parametrize("where", ["empty", "magic", "version", "crc", "header", "blob",
                                   "last"])
def test_truncated(tmp_path, good, where):
    raw = good[1]
    hlen = struct.unpack_from("<Q", raw, 12)[0]
    cut = {"empty": 0, "magic": 5, "version": 10, "crc": 22, "header": P + hlen // 2,
           "blob": (modelfile._align(P + hlen) + len(raw)) // 2, "last": len(raw) - 1}[where]
    _expect(tmp_path, raw[:cut], "truncated|past the end")


def test_bad_magic(tmp_path, good):
    _expect(tmp_path, b"NOTAJCM\0" + good[1][8:], "not a jitconv model file")


def test_newer_version(tmp_path, good):
    msg = _expect(tmp_path, good[1][:8] + struct.pack("<I", 99) + good[1][12:],
                  "version 99")
    assert "reads versions 1 to 2" in msg and "newer" in msg


def test_corrupt_json(tmp_path, good):
    raw = good[1]
    hlen = struct.unpack_from("<Q", raw, 12)[0]
    _expect(tmp_path, _with_header(raw, b"{" * hlen), "not valid JSON")
    _expect(tmp_path, _with_header(raw, b"\xff" * hlen), "not valid JSON")
    _expect(tmp_path, _with_header(raw, [1, 2]), "not an object")
    text = json.dumps(_header(raw)).encode()
    for repl, match in [(b"NaN", "NaN is not JSON"), (b"9" * 5000, "digits"),
                        (b"[" * 10**5, "not valid JSON")]:
        _expect(tmp_path, _with_header(raw, text.replace(b'"small"', repl, 1)), match)


def test_huge_header_length(tmp_path, good):
    raw = good[1]
    _expect(tmp_path, raw[:12] + struct.pack("<Q", 2**63) + raw[20:], "header of")


def _mutate(raw, fn):
    h = _header(raw)
    fn(h)
    return _with_header(raw, h)


def _data(h, i=0, key="data"):
    return h["constants"][i]["arrays"][key]


@pytest.mark.parametrize("fn,match", [
    (lambda h: _data(h).update(dtype="float64"), "dtype 'float64' not allowed"),
    (lambda h: _data(h).update(dtype="object"), "not allowed"),
    (lambda h: _data(h).update(offset=10**9), "past the end"),
    (lambda h: _data(h).update(offset=-64), "non-negative multiple"),
    (lambda h: _data(h).update(offset=_data(h)["offset"] + 8), "multiple of 64"),
    (lambda h: _data(h).update(length=_data(h)["length"] - 4), "length"),
    (lambda h: _data(h).update(shape=[2, -1]), "non-negative ints"),
    (lambda h: _data(h).update(shape=[0, 10**30], length=0), "unusable"),
    (lambda h: _data(h).update(shape="8"), "expected list"),
    (lambda h: h["constants"][0].pop("storage"), "missing key 'storage'"),
    (lambda h: h["constants"][0].update(storage="int2"), "unknown storage"),
    (lambda h: h["constants"][0].update(storage="fp16"), "float16 data"),
    (lambda h: h["constants"][0].update(storage="int8"), "cannot hold arrays"),
    (lambda h: h["constants"][0]["arrays"].update(extra=_data(h)), "cannot hold"),
    (lambda h: h["constants"].append(h["constants"][0]), "defined twice"),
    (lambda h: h.pop("nodes"), "missing key 'nodes'"),
    (lambda h: h["nodes"][0].update(inputs=["x", 1]), "list of strings"),
    (lambda h: h["nodes"][0].update(attrs={"a": {"x": 1}}), "not an encoded float"),
    (lambda h: h["nodes"][0].update(inputs=["nope"]), "invalid graph.*'nope'"),
    (lambda h: h["outputs"][0].update(name="nope"), "invalid graph"),
    (lambda h: h["inputs"][0].update(shape=[1, True]), "non-negative ints"),
    (lambda h: h.update(name=3), "'name' is int"),
])
def test_bad_header(tmp_path, good, fn, match):
    _expect(tmp_path, _mutate(good[1], fn), match)


def test_bad_quantized_header(tmp_path, rng):
    g = small_graph(rng)
    w = g.nodes[0].inputs[1]
    raw = _saved(tmp_path, with_storages(g, {w: ("int4", 3, True)}), "q.jcm").read_bytes()
    i = [c["name"] for c in _header(raw)["constants"]].index(w)

    def setc(**kw):
        return lambda h: h["constants"][i].update(**kw)
    cases = [
        (setc(storage="int8"), "int8 needs int8 data|data shape"),
        (setc(logical_shape=[8, 3, 3, 4]), "data shape"),
        (setc(logical_shape=None), "needs a logical_shape"),
        (lambda h: h["constants"][i]["arrays"].pop("scale"), "cannot hold arrays"),
        (lambda h: _data(h, i, "scale").update(dtype="float16", length=8 * 3 * 2),
         "scale must be float32"),
        (lambda h: _data(h, i, "scale").update(shape=[8, 0], length=0), "no blocks"),
        (lambda h: _data(h, i, "zero").update(shape=[4, 3], length=48), "zero shape"),
    ]
    for fn, match in cases:
        _expect(tmp_path, _mutate(raw, fn), match)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])
@given(blob=st.one_of(st.binary(max_size=200),
                      st.binary(max_size=200).map(lambda b: b"JITCONV\0\x01\0\0\0" + b)))
def test_random_bytes_only_raise_modelfileerror(tmp_path, blob):
    bad = tmp_path / "rand.jcm"
    bad.write_bytes(blob)
    for use_mmap in (True, False):
        try:
            load(bad, mmap=use_mmap)
        except ModelFileError as e:
            assert str(bad) in str(e)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])
@given(pos=st.integers(0, 10**6), val=st.integers(0, 255), cut=st.integers(0, 10**6))
def test_corrupted_good_file_only_raises_modelfileerror(tmp_path, good, pos, val, cut):
    raw = bytearray(good[1])
    raw[pos % len(raw)] = val
    bad = tmp_path / "flip.jcm"
    bad.write_bytes(bytes(raw[:len(raw) - cut % 64]))
    try:
        load(bad)
    except ModelFileError as e:
        assert str(bad) in str(e)


def test_no_pickle_anywhere():
    src = open(modelfile.__file__).read()
    assert "pickle" not in src.replace("Nothing is ever pickled", "")
    assert "np.load" not in src


# -- checksums (format version 2) --------------------------------------------------------

def _arrays(raw):
    """[(constant name, array key, first byte, length)] of a version 2 file."""
    h = _header(raw)
    start = modelfile._align(P + struct.unpack_from("<Q", raw, 12)[0])
    return [(c["name"], k, start + a["offset"], a["length"])
            for c in h["constants"] for k, a in c["arrays"].items()]


@pytest.mark.parametrize("use_mmap", [True, False])
def test_a_flipped_bit_in_any_array_is_named(tmp_path, rng, use_mmap):
    g = small_graph(rng)
    w = g.nodes[0].inputs[1]
    raw = _saved(tmp_path, with_storages(g, {w: ("int8", 3, True)}), "q.jcm").read_bytes()
    arrays = [a for a in _arrays(raw) if a[3]]
    assert {k for _, k, _, _ in arrays} >= {"data", "scale", "zero"}
    for name, key, lo, n in arrays:
        for pos in (lo, lo + n // 2, lo + n - 1):
            bad = bytearray(raw)
            bad[pos] ^= 1 << (pos % 8)
            path = tmp_path / "flip.jcm"
            path.write_bytes(bytes(bad))
            with pytest.raises(ModelFileError,
                               match=f"constant '{name}' array '{key}' is damaged"):
                load(path, mmap=use_mmap)
            load(path, mmap=use_mmap, verify=False)      # opting out loads it as it is


def test_a_flipped_bit_in_the_header_is_named(tmp_path, good):
    raw = good[1]
    hlen = struct.unpack_from("<Q", raw, 12)[0]
    for pos in (P, P + hlen // 2, P + hlen - 1):
        bad = bytearray(raw)
        bad[pos] ^= 0x20          # stays valid-looking text: only the CRC can tell
        _expect(tmp_path, bytes(bad), r"the header \(bytes .*\) is damaged")
    bad = bytearray(raw)
    bad[20] ^= 1                                          # the stored CRC itself
    _expect(tmp_path, bytes(bad), "header .* is damaged")


def test_version_1_files_still_load(tmp_path, rng):
    g = small_graph(rng)
    raw = _saved(tmp_path, g).read_bytes()
    h = _header(raw)
    for c in h["constants"]:
        for a in c["arrays"].values():
            del a["crc32"]
    head = json.dumps(h).encode()
    old_start = modelfile._align(P + struct.unpack_from("<Q", raw, 12)[0])
    v1 = (modelfile.MAGIC + struct.pack("<IQ", 1, len(head)) + head
          + b"\0" * (modelfile._align(20 + len(head)) - 20 - len(head)) + raw[old_start:])
    path = tmp_path / "v1.jcm"
    path.write_bytes(v1)
    got = load(path)
    for k, c in g.constants.items():
        assert np.array_equal(got.constants[k].data, c.data)


def test_overlapping_arrays_are_refused(tmp_path, good):
    raw = good[1]

    def overlap(h):
        a, b = _data(h, 0), _data(h, 1)
        b["offset"] = a["offset"]
        if b["length"] > a["length"]:
            b["length"], b["shape"] = a["length"], [a["length"] // 4]
    _expect(tmp_path, _mutate(raw, overlap), "overlap")


@pytest.mark.parametrize("count", [10**12, 2**62])
def test_hostile_sizes_fail_before_allocating(tmp_path, good, count):
    raw = good[1]
    fn = lambda h: _data(h).update(shape=[count], length=4 * count)  # noqa: E731
    tracemalloc.start()
    try:
        _expect(tmp_path, _mutate(raw, fn), "past the end")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**22


def test_checksums_are_what_save_wrote(tmp_path, good):
    raw = good[1]
    for c in _header(raw)["constants"]:
        for a in c["arrays"].values():
            lo = modelfile._align(P + struct.unpack_from("<Q", raw, 12)[0]) + a["offset"]
            assert a["crc32"] == zlib.crc32(raw[lo:lo + a["length"]])


def test_non_finite_scales_are_refused(tmp_path, rng):
    g = small_graph(rng)
    w = g.nodes[0].inputs[1]
    q = with_storages(g, {w: ("int8", 1, True)})
    for key, bad in (("scale", np.inf), ("zero", np.nan)):
        c = q.constants[w]
        arr = getattr(c, key).copy()
        arr[0, 0] = bad
        consts = dict(q.constants)
        consts[w] = Constant(w, c.data, "int8", arr if key == "scale" else c.scale,
                             arr if key == "zero" else c.zero, c.logical_shape)
        path = _saved(tmp_path, Graph(q.inputs, q.outputs, q.nodes, consts, q.name), "nf.jcm")
        with pytest.raises(ModelFileError, match=f"{key} holds non-finite"):
            load(path)
