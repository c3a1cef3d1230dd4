"""The ".jcm" model file: a Graph with its weights kept as stored, memory-mapped on load.

Layout (all integers little-endian)::

    b"JITCONV\\0" | uint32 version (2) | uint64 header length n | uint32 CRC-32 of the header
    | n bytes UTF-8 JSON header | zero padding to a 64-byte boundary
    | data section: one blob per array

The header holds the graph name, inputs/outputs, nodes (attrs as JSON; a non-finite
float is written {"$float": "inf" | "-inf" | "nan"}) and constants. Each constant lists
its arrays (data, and scale/zero for int8/int4) as {dtype, shape, offset, length, crc32},
the offset relative to the data section and a multiple of 64. Arrays are written as kept
(fp16: 2 bytes a value, int4: the packed uint8 array). Nothing is ever pickled.

Checksums: load() checks the header's CRC-32 before parsing it and every array's before
using it (``verify=True``, the default), and names the damaged section. For a mapped file
the array bytes are checksummed through read() in 256 KiB pieces rather than through the
mapping, so verifying does not leave the whole file resident in the process (only the
pages the kernels then read are). Version 1 files (no checksums; a 20-byte prefix) still
load. Every size in the header is checked against the file before anything is read or
allocated: lengths against shapes, ranges against the file size, and arrays against each
other (no two may overlap).
"""
from __future__ import annotations

import json
import math
import mmap as _mmap
import os
import struct
import tempfile
import zlib

import numpy as np

from jitconv.errors import JitconvError

from .ir import STORAGES, Constant, Graph, Node, TensorSpec

MAGIC = b"JITCONV\0"
VERSION = 2
ALIGN = 64
_PREFIX = struct.Struct("<8sIQI")                     # magic, version, header length, CRC
_PREFIX_V1 = struct.Struct("<8sIQ")                   # version 1: no header CRC
_CHUNK = 1 << 18                                      # bytes per read() when verifying
DTYPES = {"float32": "<f4", "float16": "<f2", "int8": "i1", "uint8": "u1"}
_ARRAYS = ("data", "scale", "zero")


class ModelFileError(JitconvError, ValueError):
    """A .jcm file is unreadable or malformed, or a graph cannot be written as one."""


def _align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def _enc(v, where):
    if isinstance(v, (bool, str)) or v is None:
        return v
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return v if math.isfinite(v) else {"$float": repr(v)}   # 'inf', '-inf', 'nan'
    if isinstance(v, (list, tuple)):
        return [_enc(x, where) for x in v]
    raise ModelFileError(f"{where}: value {v!r} of type {type(v).__name__} cannot be "
                         f"saved; attrs hold ints, floats, strings and lists of them")


def _dec(v):
    if isinstance(v, list):
        return [_dec(x) for x in v]
    if isinstance(v, dict):
        if set(v) == {"$float"} and v["$float"] in ("inf", "-inf", "nan"):
            return float(v["$float"])
        raise ValueError(f"attr value {v!r} is not an encoded float")
    return v


def _no_constant(name):
    raise ValueError(f"{name} is not JSON")


def save(graph: Graph, path) -> None:
    """Write ``graph`` to ``path`` atomically (a temp file in the same folder, renamed)."""
    path = os.fspath(path)
    consts, blobs, pos = [], [], 0
    for c in graph.constants.values():
        entry = {"name": c.name, "storage": c.storage,
                 "logical_shape": None if c.logical_shape is None else
                 [int(d) for d in c.logical_shape], "arrays": {}}
        for key in _ARRAYS:
            a = getattr(c, key)
            if a is None:
                continue
            if a.dtype.name not in DTYPES:
                raise ModelFileError(f"{path}: constant {c.name!r}: {key} has dtype "
                                     f"{a.dtype}; a model file holds {', '.join(DTYPES)}")
            a = np.ascontiguousarray(a, dtype=np.dtype(DTYPES[a.dtype.name]))
            flat = memoryview(a.reshape(-1)).cast("B") if a.size else b""
            entry["arrays"][key] = {"dtype": a.dtype.name, "shape": list(a.shape),
                                    "offset": pos, "length": a.nbytes,
                                    "crc32": zlib.crc32(flat)}
            blobs.append((pos, a))
            pos = _align(pos + a.nbytes)
        consts.append(entry)
    def spec(t):
        entry = {"name": t.name, "shape": _enc(list(t.shape), t.name), "dtype": t.dtype}
        if t.dynamic:
            entry["dynamic"] = [int(a) for a in t.dynamic]
        return entry
    header = {"name": graph.name, "fixed_input_shapes": bool(graph.fixed_input_shapes),
              "inputs": [spec(t) for t in graph.inputs],
              "outputs": [spec(t) for t in graph.outputs],
              "nodes": [{"op_type": n.op_type, "name": n.name, "inputs": list(n.inputs),
                         "outputs": list(n.outputs),
                         "attrs": {str(k): _enc(v, f"{path}: {n.describe()} attr {k!r}")
                                   for k, v in n.attrs.items()}} for n in graph.nodes],
              "constants": consts}
    head = json.dumps(header, allow_nan=False, separators=(",", ":")).encode("utf-8")
    start = _align(_PREFIX.size + len(head))
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_PREFIX.pack(MAGIC, VERSION, len(head), zlib.crc32(head)) + head)
            for off, a in blobs:
                f.write(b"\0" * (start + off - f.tell()))
                f.write(memoryview(a.reshape(-1)).cast("B") if a.size else b"")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path, mmap: bool = True, verify: bool = True) -> Graph:
    """Read a .jcm file; with ``mmap`` the constants are read-only views of the mapped file.

    ``verify`` checks the header's and every array's CRC-32 (version 2 files) and raises a
    ModelFileError naming the damaged section."""
    path = os.fspath(path)

    def fail(msg):
        raise ModelFileError(f"{path}: {msg}")

    try:
        f = open(path, "rb")
    except OSError as e:
        fail(f"cannot read: {e}")
    with f:
        return _read(f, path, fail, mmap, verify)


def _read(f, path, fail, mmap, verify):
    try:
        size = os.fstat(f.fileno()).st_size
        if size < _PREFIX_V1.size:
            fail(f"truncated: {size} bytes, shorter than the {_PREFIX_V1.size}-byte prefix")
        buf = (_mmap.mmap(f.fileno(), 0, access=_mmap.ACCESS_READ) if mmap and size
               else f.read())
    except OSError as e:
        fail(f"cannot read: {e}")
    size = len(buf)
    magic, version, hlen = _PREFIX_V1.unpack_from(buf, 0)
    if magic != MAGIC:
        fail(f"not a jitconv model file (magic {magic!r}, expected {MAGIC!r})")
    if version not in (1, VERSION):
        fail(f"format version {version} is not supported; this jitconv reads versions 1 to "
             f"{VERSION}" + (" (the file is from a newer jitconv)" if version > VERSION else ""))
    prefix = _PREFIX if version >= 2 else _PREFIX_V1
    if size < prefix.size:
        fail(f"truncated: {size} bytes, shorter than the {prefix.size}-byte prefix")
    if hlen > size - prefix.size:
        fail(f"truncated: header of {hlen} bytes does not fit in the {size}-byte file")
    head = bytes(buf[prefix.size:prefix.size + hlen])
    if version >= 2 and verify:
        want = _PREFIX.unpack_from(buf, 0)[3]
        got = zlib.crc32(head)
        if got != want:
            fail(f"the header (bytes [{prefix.size}, {prefix.size + hlen})) is damaged: its "
                 f"CRC-32 is {got:#010x}, the file says {want:#010x}")
    try:
        header = json.loads(head.decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:          # bad UTF-8 / JSON, 5000-digit ints
        fail(f"header is not valid JSON: {e}")
    if not isinstance(header, dict):
        fail(f"header is a JSON {type(header).__name__}, not an object")
    start = _align(prefix.size + hlen)
    ranges = []                                        # (first byte, end, where)
    sums = []                                          # (first byte, length, crc, where)

    def checksum(lo, n):
        if not isinstance(buf, _mmap.mmap):
            return zlib.crc32(memoryview(buf)[lo:lo + n])
        crc, piece = 0, bytearray(min(n, _CHUNK))
        view = memoryview(piece)
        f.seek(lo)
        while n:
            got = f.readinto(view[:min(n, _CHUNK)])
            if not got:
                fail(f"bytes from {lo} could not be read (the file shrank while loading?)")
            crc = zlib.crc32(view[:got], crc)
            n -= got
        return crc

    def get(d, key, kind, where):
        if not isinstance(d, dict) or key not in d:
            fail(f"{where}: missing key {key!r}")
        v = d[key]
        ok = (isinstance(v, kind) and not isinstance(v, bool)) if kind is int else \
            isinstance(v, kind)
        if not ok:
            fail(f"{where}: {key!r} is {type(v).__name__}, expected "
                 f"{getattr(kind, '__name__', kind)}")
        return v

    def shape(v, where, allow_none=False):
        if not isinstance(v, list) or not all(
                (isinstance(d, int) and not isinstance(d, bool) and d >= 0)
                or (allow_none and d is None) for d in v):
            fail(f"{where}: shape {v!r} is not a list of non-negative ints")
        return tuple(v)

    def strs(v, where):
        if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
            fail(f"{where}: expected a list of strings, got {v!r}")
        return list(v)

    def array(c, key, where):
        a = get(c, key, dict, where)
        where = f"{where} array {key!r}"
        dt = get(a, "dtype", str, where)
        if dt not in DTYPES:
            fail(f"{where}: dtype {dt!r} not allowed; allowed: {', '.join(DTYPES)}")
        shp = shape(get(a, "shape", list, where), where)
        off, length = get(a, "offset", int, where), get(a, "length", int, where)
        dtype = np.dtype(DTYPES[dt])
        count = math.prod(shp)
        if length != count * dtype.itemsize:
            fail(f"{where}: length {length} bytes != {count} values of {dt}")
        if off < 0 or off % ALIGN:
            fail(f"{where}: offset {off} is not a non-negative multiple of {ALIGN}")
        if start + off + length > size:
            fail(f"{where}: bytes [{start + off}, {start + off + length}) lie past the end "
                 f"of the {size}-byte file (truncated?)")
        if length:
            ranges.append((start + off, start + off + length, where))
        if version >= 2:
            sums.append((start + off, length, get(a, "crc32", int, where), where))
        try:
            return np.frombuffer(buf, dtype, count, start + off).reshape(shp)
        except ValueError as e:
            fail(f"{where}: shape {list(shp)} is unusable: {e}")

    specs = {}
    for side in ("inputs", "outputs"):
        specs[side] = []
        for i, t in enumerate(get(header, side, list, "header")):
            w = f"{side}[{i}]"
            shp = shape(get(t, "shape", list, w), w, True)
            dyn = t.get("dynamic", []) if isinstance(t, dict) else []
            if not isinstance(dyn, list) or not all(
                    isinstance(a, int) and not isinstance(a, bool) and 0 <= a < len(shp)
                    for a in dyn) or len(set(dyn)) != len(dyn):
                fail(f"{w}: dynamic {dyn!r} is not a list of distinct axes of shape {list(shp)}")
            specs[side].append(TensorSpec(get(t, "name", str, w), shp, get(t, "dtype", str, w),
                                          tuple(sorted(dyn))))
    nodes = []
    for i, n in enumerate(get(header, "nodes", list, "header")):
        w = f"nodes[{i}]"
        try:
            attrs = {k: _dec(v) for k, v in get(n, "attrs", dict, w).items()}
        except (ValueError, RecursionError) as e:
            fail(f"{w}: {e}")
        nodes.append(Node(get(n, "op_type", str, w), strs(get(n, "inputs", list, w), w),
                          strs(get(n, "outputs", list, w), w), attrs, get(n, "name", str, w)))
    constants = {}
    for i, c in enumerate(get(header, "constants", list, "header")):
        name = get(c, "name", str, f"constants[{i}]")
        w = f"constant {name!r}"
        if name in constants:
            fail(f"{w} is defined twice")
        storage = get(c, "storage", str, w)
        if storage not in STORAGES:
            fail(f"{w}: unknown storage {storage!r}; known: {', '.join(STORAGES)}")
        ls = c.get("logical_shape")
        ls = None if ls is None else shape(ls, w)
        arrs = get(c, "arrays", dict, w)
        extra = set(arrs) - set(_ARRAYS)
        quant = storage in ("int8", "int4")
        if extra or "data" not in arrs or (not quant and len(arrs) > 1) or \
                (quant and "scale" not in arrs):
            fail(f"{w}: storage {storage} cannot hold arrays {sorted(arrs)}")
        got = {k: array(arrs, k, w) for k in _ARRAYS if k in arrs}
        if quant:
            for k in ("scale", "zero"):
                if k in got and got[k].dtype != np.float32:
                    fail(f"{w}: {k} must be float32, got {got[k].dtype}")
            if ls is None or len(ls) < 1:
                fail(f"{w}: {storage} needs a logical_shape")
            rows, k = ls[0], math.prod(ls[1:])
            want = (rows, k if storage == "int8" else (k + 1) // 2)
            if got["data"].shape != want:
                fail(f"{w}: {storage} data shape {got['data'].shape} != {want} "
                     f"for logical shape {ls}")
            sc = got["scale"].shape
            if len(sc) != 2 or sc[1] == 0:
                fail(f"{w}: scale shape {sc} has no blocks")
            for k in ("scale", "zero"):
                if k in got and not np.isfinite(got[k]).all():
                    fail(f"{w}: {k} holds non-finite values (NaN or inf)")
        try:
            constants[name] = Constant(name, got["data"], storage, got.get("scale"),
                                       got.get("zero"), ls)
        except (JitconvError, ValueError, TypeError, ArithmeticError) as e:
            fail(f"{w}: {e}")
    ranges.sort()
    for (_, end, a), (lo, _, b) in zip(ranges, ranges[1:]):
        if lo < end:
            fail(f"{a} and {b} overlap in the file (bytes from {lo} to {end})")
    for lo, n, want, where in sums if verify else ():   # content, once the layout is sane
        if checksum(lo, n) != want:
            fail(f"{where} is damaged: the CRC-32 of its bytes [{lo}, {lo + n}) does not "
                 f"match the header's {want:#010x}")
    try:
        return Graph(specs["inputs"], specs["outputs"], nodes, constants,
                     get(header, "name", str, "header"),
                     fixed_input_shapes=header.get("fixed_input_shapes", False) is True)
    except (JitconvError, ValueError, TypeError) as e:
        fail(f"invalid graph: {e}")
