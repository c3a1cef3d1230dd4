"""Weight quantization as a graph rewrite (MNN's ``--fp16`` / ``--weightQuantBits``).

Only the weight of Conv, ConvTranspose (input 1, conv layout: a row is an output channel)
and Gemm (input 1, B) nodes is re-stored, when it is a Constant; biases and every other constant are left as they are. A MatMul whose B is a
2-D Constant and whose A is 2-D becomes a Gemm, and every Gemm weight is stored with
transB=1, so a quantized row is always one output channel. Storage layouts are those of
``jitconv.runtime.ir.Constant``; ``Constant.as_float32`` decodes them.

- fp16: IEEE half, clamped to +-65504.
- int8 / int4, symmetric: scale = absmax / (2^(b-1) - 1), q = round(w / scale).
- int8 / int4, asymmetric: scale = (max - min) / (2^b - 1), q in [-2^(b-1), 2^(b-1) - 1],
  value = q * scale + zero with zero = min + 2^(b-1) * scale.
- per output channel (block=None) or block-wise: a block is ``block`` input channels times
  the kernel window (Gemm: ``block`` consecutive K values); block must be a positive
  multiple of 16; a layer whose input channels per group are not a multiple of it falls
  back to per channel (the report says so). An all-constant row/block gets scale 0.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from jitconv.errors import ConfigError, GraphError

from .ir import QUANT_BITS, STORAGES, Constant, Graph, Node
from .passes import _fresh_name
from .shapes import infer_shapes
from .tables import html_table, text_table

FP16_MAX = 65504.0


@dataclass
class LayerQuant:
    """What quantize() did to one layer's weight."""
    node: str
    op: str
    weight: str
    storage: str
    block: int | None
    fell_back_to_per_channel: bool
    reason: str
    bytes_before: int
    bytes_after: int
    max_abs_error: float
    shared: bool = False      # the weight was already re-stored for an earlier node


_COLS = ("node", "op", "weight", "storage", "block", "fallback", "bytes before",
         "bytes after", "max |err|", "reason")


@dataclass
class QuantReport:
    """Per-layer report of a quantize() call; str() is a text table, Jupyter shows HTML."""
    weights: str
    block: int | None
    symmetric: bool
    layers: list = field(default_factory=list)

    @property
    def bytes_before(self) -> int:
        return sum(r.bytes_before for r in self.layers if not r.shared)

    @property
    def bytes_after(self) -> int:
        return sum(r.bytes_after for r in self.layers if not r.shared)

    @property
    def fallbacks(self) -> list:
        """Names of the nodes that fell back to per-channel scales."""
        return [r.node for r in self.layers if r.fell_back_to_per_channel]

    def layer(self, node: str) -> LayerQuant:
        for r in self.layers:
            if r.node == node:
                return r
        raise KeyError(node)

    def rows(self) -> list:
        return [(r.node, r.op, r.weight, r.storage, "-" if r.block is None else str(r.block),
                 "yes" if r.fell_back_to_per_channel else "", str(r.bytes_before),
                 str(r.bytes_after), f"{r.max_abs_error:.3g}", r.reason) for r in self.layers]

    def summary(self) -> str:
        ratio = self.bytes_after / self.bytes_before if self.bytes_before else 1.0
        return (f"quantize(weights={self.weights!r}, block={self.block}, symmetric="
                f"{self.symmetric}): {len(self.layers)} layers, weight bytes "
                f"{self.bytes_before} -> {self.bytes_after} ({ratio:.1%})")

    def __str__(self) -> str:
        return text_table(_COLS, self.rows(), self.summary())

    def _repr_html_(self) -> str:
        return html_table(_COLS, self.rows(), self.summary())


def _quantize_rows(w2, bits, nblocks, symmetric):
    """(rows, K) float64 -> (q int8 (rows, K), scale f32 (rows, nb), zero f32 or None)."""
    rows, k = w2.shape
    wb = w2.reshape(rows, nblocks, k // nblocks)
    if symmetric:
        qmax = 2 ** (bits - 1) - 1
        qmin = -qmax
        scale = (np.abs(wb).max(axis=2) / qmax).astype(np.float32)
        zero, centred = None, wb
    else:
        qmin, qmax = -2 ** (bits - 1), 2 ** (bits - 1) - 1
        lo, hi = wb.min(axis=2), wb.max(axis=2)
        scale = ((hi - lo) / (2 ** bits - 1)).astype(np.float32)
        zero = (lo + 2 ** (bits - 1) * scale.astype(np.float64)).astype(np.float32)
        centred = wb - zero.astype(np.float64)[:, :, None]
    s = scale.astype(np.float64)[:, :, None]
    q = np.divide(centred, s, out=np.zeros_like(wb), where=s > 0)  # scale 0 -> q 0
    q = np.clip(np.rint(q), qmin, qmax).astype(np.int8).reshape(rows, k)
    return q, scale, zero


def _pack_int4(q):
    """(rows, K) int8 in [-8, 7] -> (rows, ceil(K/2)) uint8, low nibble = even k."""
    nib = (q & 0x0F).astype(np.uint8)
    if nib.shape[1] % 2:
        nib = np.concatenate([nib, np.zeros((nib.shape[0], 1), np.uint8)], axis=1)
    return nib[:, 0::2] | (nib[:, 1::2] << 4)


def _encode(name, w, storage, block, symmetric):
    """Store float32 ``w`` (output channels first) -> (Constant, block used, fell back, note)."""
    if storage == "fp32":
        return Constant(name, np.ascontiguousarray(w, np.float32)), None, False, ""
    if storage == "fp16":
        n = int(np.count_nonzero(np.abs(w) > FP16_MAX))
        note = f"{n} values clamped to +-65504" if n else ""
        data = np.clip(w, -FP16_MAX, FP16_MAX).astype(np.float16)
        return Constant(name, data, "fp16"), None, False, note
    rows = w.shape[0]
    cin = w.shape[1] if w.ndim > 1 else 1
    nb, note, fell = 1, "per channel", False
    if block is not None:
        if cin % block == 0:
            nb, note = cin // block, f"block {block}"
        else:
            what = "K" if w.ndim == 2 else "input channels per group"
            fell, note = True, f"{what} = {cin} not a multiple of block {block}: per channel"
    q, scale, zero = _quantize_rows(w.reshape(rows, -1).astype(np.float64),
                                    QUANT_BITS[storage], nb, symmetric)
    data = q if storage == "int8" else _pack_int4(q)
    c = Constant(name, data, storage, scale, zero, tuple(w.shape))
    return c, (None if block is None or fell else block), fell, note


def quantize_weight(name: str, w, storage: str, block: int | None = None,
                    symmetric: bool = True) -> Constant:
    """One float32 weight (output channels first) stored as ``storage``, as quantize() would
    store it. A block that does not divide the input channels falls back to per channel."""
    if storage not in STORAGES:
        raise ConfigError(f"quantize_weight: storage must be one of {STORAGES}, got {storage!r}")
    return _encode(name, np.asarray(w, np.float32), storage, block, symmetric)[0]


def quantize_with_report(graph: Graph, weights: str, block: int | None = None,
                         symmetric: bool = True, overrides: dict | None = None, *,
                         print_report: bool = False):
    """Like :func:`quantize`, but returns ``(new_graph, QuantReport)``."""
    if weights not in STORAGES:
        raise GraphError(f"quantize: weights={weights!r}; allowed values: "
                         f"{', '.join(map(repr, STORAGES))}")
    if block is not None and (isinstance(block, bool) or not isinstance(block, (int, np.integer))
                              or block <= 0 or block % 16):
        raise GraphError(f"quantize: block={block!r}; use None (per output channel) or a "
                         f"positive multiple of 16")
    block = None if block is None else int(block)
    overrides = dict(overrides or {})
    names = {n.name for n in graph.nodes}
    unknown = sorted(k for k in overrides if k not in names)
    if unknown:
        raise GraphError(f"quantize: overrides name nodes not in graph {graph.name!r}: "
                         f"{', '.join(map(repr, unknown))}")
    bad = {k: v for k, v in overrides.items() if v not in STORAGES}
    if bad:
        raise GraphError(f"quantize: overrides {bad!r} use unknown storages; allowed: "
                         f"{', '.join(map(repr, STORAGES))}")
    try:
        shapes = infer_shapes(graph, {i.name: i.shape for i in graph.inputs})
    except GraphError:
        shapes = {}      # ranks unknown: MatMul nodes stay MatMul
    consts = graph.constants
    nodes, slots = [], []       # slots: (node, weight name, transpose, storage, notes)
    for old in graph.nodes:
        node = Node(old.op_type, list(old.inputs), list(old.outputs), dict(old.attrs), old.name)
        nodes.append(node)
        c = consts.get(node.inputs[1]) if len(node.inputs) > 1 else None
        notes = []
        if (node.op_type == "MatMul" and c is not None and len(c.shape) == 2
                and len(shapes.get(node.inputs[0], ())) == 2):
            node.op_type = "Gemm"
            node.attrs.update(alpha=1.0, beta=1.0, transA=0, transB=0)
            notes.append("MatMul -> Gemm")
        if c is None or node.op_type not in ("Conv", "ConvTranspose", "Gemm"):
            continue
        transpose = node.op_type == "Gemm" and not node.attr("transB", 0)
        if transpose:
            node.attrs["transB"] = 1
            notes.append("transB 0 -> 1")
        storage = overrides.get(node.name, weights)
        if node.name in overrides:
            notes.append("override")
        slots.append((node, node.inputs[1], transpose, storage, notes))
    no_weight = sorted(k for k in overrides if k not in {s[0].name for s in slots})
    if no_weight:
        raise GraphError(f"quantize: overrides name nodes without a constant Conv/ConvTranspose/Gemm/MatMul "
                         f"weight: {', '.join(map(repr, no_weight))}")

    # a constant keeps its name when it is re-stored one way only and read nowhere else
    keys, other_use = {}, {o.name for o in graph.outputs}
    slot_ids = {(id(s[0]), 1) for s in slots}
    for node in nodes:
        other_use.update(t for i, t in enumerate(node.inputs) if (id(node), i) not in slot_ids)
    for _, wname, transpose, storage, _ in slots:
        keys.setdefault(wname, []).append((transpose, storage))
    taken = {i.name for i in graph.inputs} | set(consts) | {t for n in nodes for t in n.outputs}
    new_consts = dict(consts)
    done = {}   # (weight, transpose, storage) -> (name, block, fell back, note, first user, err)
    report = QuantReport(weights, block, bool(symmetric))
    for node, wname, transpose, storage, notes in slots:
        key = (wname, transpose, storage)
        old = consts[wname]
        shared = key in done
        if not shared:
            if len(set(keys[wname])) == 1 and wname not in other_use:
                new_name = wname
                new_consts.pop(wname)
            else:
                new_name = _fresh_name(taken, f"{wname}_{storage}" + ("_T" if transpose else ""))
            w = old.as_float32()
            w = np.ascontiguousarray(w.T) if transpose else w
            c, used, fell, note = _encode(new_name, w, storage, block, symmetric)
            new_consts[new_name] = c
            err = float(np.max(np.abs(c.as_float32() - w))) if w.size else 0.0
            done[key] = (new_name, used, fell, note, node.name, err)
        new_name, used, fell, note, first, err = done[key]
        node.inputs[1] = new_name
        reason = ", ".join(notes + ([note] if note else []) +
                           ([f"shared with {first!r}"] if shared else []))
        report.layers.append(LayerQuant(node.name, node.op_type, new_name, storage, used, fell,
                                        reason, old.nbytes, new_consts[new_name].nbytes, err,
                                        shared))
    used_names = {t for n in nodes for t in n.inputs if t} | {o.name for o in graph.outputs}
    new_consts = {k: v for k, v in new_consts.items() if k in used_names}
    out = Graph(list(graph.inputs), list(graph.outputs), nodes, new_consts, graph.name,
                graph.fixed_input_shapes)
    if print_report:
        print(report)
    return out, report


def quantize(graph: Graph, weights: str, block: int | None = None, symmetric: bool = True,
             overrides: dict | None = None, *, print_report: bool = False) -> Graph:
    """A new Graph whose Conv/ConvTranspose/Gemm/MatMul constant weights are stored as
    ``weights``.

    ``weights``: "fp16", "int8" or "int4" ("fp32" re-stores as float32: only the Gemm
    rewrites happen). ``block``: None (per output channel) or a multiple of 16 input
    channels per block. ``symmetric``: absmax scales, else min/max with a zero point.
    ``overrides``: node name -> storage for that node's weight. ``print_report``: print
    the per-layer table. The input graph is not modified; see quantize_with_report.
    """
    return quantize_with_report(graph, weights, block, symmetric, overrides,
                                print_report=print_report)[0]
