"""ConvTranspose on the CPU: sub-pixel phases, each an ordinary stride-1 Conv.

Output row oy receives kernel tap i from input row iy = (oy + pt - i*dh) / sh when that
divides. Split the output rows by phase r = oy mod sh: for each r only the taps with
(r + pt - i*dh) = 0 mod sh contribute, at input offsets that step evenly, so phase r is a
stride-1 correlation of the input with those taps (reversed, dilation dh / gcd(dh, sh)),
whose q-th output row is output row r + q*sh. The same holds for columns. So a stride-s
ConvTranspose is s_h x s_w small convs with the weights partitioned between them (every
tap belongs to exactly one phase: no weight is held twice, no multiply is spent on an
inserted zero) whose outputs are written interleaved. Each phase is a ``cpu_conv.Conv``:
it chooses its own family per shape (tiled, chanvec, Winograd, the low-memory loaders)
from weights kept exactly as stored, so every storage and memory mode works as for Conv.

Quantized weights are sliced per phase in their stored form; per-channel scales carry
over. Block-wise scales carry over when each block holds whole input channels (its length
a multiple of KH*KW); otherwise the phase weights are decoded to fp32 at prepare and the
reason says so.
"""
from __future__ import annotations

import math

import numpy as np

from jitconv.errors import GraphError
from jitconv.kernels.subpixel import interleave
from jitconv.runtime.ir import Constant, Node
from jitconv.runtime.ops.conv_transpose import geometry

from .base import Kernel, OpContext
from .cpu_conv import Conv

ALIGN = 64


def _aligned(n):
    return -(-int(n) // ALIGN) * ALIGN


def phases(k, s, d, pad_begin):
    """Per output phase r < s along one axis: (taps ordered by increasing input offset,
    the first offset, the offset step between taps)."""
    out = []
    for r in range(s):
        taps = [i for i in range(k) if (r + pad_begin - i * d) % s == 0]
        taps.sort(key=lambda i: -i)                       # offsets increase as i falls
        offs = [(r + pad_begin - i * d) // s for i in taps]
        out.append((taps, offs[0] if offs else 0, offs[1] - offs[0] if len(offs) > 1 else 1))
    return out


def _nibbles(data, k):
    """int4 rows (rows, ceil(k/2)) -> (rows, k) nibble codes 0..15."""
    pair = np.stack([data & 0x0F, data >> 4], axis=-1).reshape(data.shape[0], -1)
    return pair[:, :k]


def _pack_nibbles(codes):
    rows, k = codes.shape
    if k % 2:
        codes = np.concatenate([codes, np.zeros((rows, 1), np.uint8)], axis=1)
    return np.ascontiguousarray(codes[:, 0::2] | (codes[:, 1::2] << 4), dtype=np.uint8)


def slice_taps(const, taps_h, taps_w):
    """The phase weight: ``const`` (conv layout, as stored) at taps (taps_h x taps_w), as a
    Constant of the same storage; or (fp32 Constant, note) when block-wise scales cannot
    follow the slice."""
    m, cg, kh, kw = const.shape
    shape = (m, cg, len(taps_h), len(taps_w))
    name = f"{const.name}[{','.join(map(str, taps_h))};{','.join(map(str, taps_w))}]"

    def pick(a):
        return np.ascontiguousarray(a[:, :, taps_h][:, :, :, taps_w])
    if const.storage in ("fp32", "fp16"):
        return Constant(name, pick(const.data), const.storage), ""
    if const.block_k % (kh * kw):
        note = (f"{const.storage} blocks of {const.block_k} values cut a channel's "
                f"{kh * kw} taps: phase weights decoded to fp32")
        return Constant(name, pick(const.as_float32())), note
    rows, k = const.rows_k
    codes = const.data if const.storage == "int8" else _nibbles(const.data, k)
    sub = pick(codes.reshape(m, cg, kh, kw)).reshape(m, -1)
    data = sub if const.storage == "int8" else _pack_nibbles(sub)
    return Constant(name, np.ascontiguousarray(data), const.storage, const.scale, const.zero,
                    logical_shape=shape), ""


class ConvTranspose(Kernel):
    """ConvTranspose as sub-pixel phase convs (see the module docstring)."""

    def __init__(self, ctx):
        self.node = ctx.node
        # what the phase convs are created with; not ctx itself, whose constants would keep
        # the whole stored weight alive beside the phases' share of it
        self._shapes = (list(ctx.in_shapes), [ctx.out_shapes[0]])
        self._config, self._target = ctx.config, ctx.target
        w, b = ctx.constant(1), ctx.constant(2)
        if w is None:
            raise GraphError(f"{ctx.node.describe()}: ConvTranspose weights must be constants "
                             f"(input 1 is computed at run time)")
        self.source, self.bias_const = w, b
        self.has_runtime_bias = b is None and len(ctx.node.inputs) > 2 and \
            bool(ctx.node.inputs[2])
        m = w.shape[0]
        self.bias = b.as_float32() if b is not None else np.zeros(m, np.float32)
        self.owned_inputs = tuple(i for i, c in ((1, w), (2, b)) if c is not None)
        self.storage = w.storage
        self.name, self.reason = "conv_transpose", "not planned yet"
        self._pads = None            # (pt, pl) the phases were made for
        self._keep_source = ctx.node.attr("output_shape") is not None

    def _make_phases(self, pt, pl):
        """One Conv per (row phase, column phase) with taps, from the stored weights."""
        node, w = self.node, self.source
        s = [int(v) for v in node.attr("strides", [1, 1])]
        d = [int(v) for v in node.attr("dilations", [1, 1])]
        kh, kw = w.shape[2:]
        rows, cols = phases(kh, s[0], d[0], pt), phases(kw, s[1], d[1], pl)
        self.plan_phases, notes = [], set()
        for rh, (th, oh0, dh) in enumerate(rows):
            for rw, (tw, ow0, dw) in enumerate(cols):
                entry = {"r": (rh, rw), "off": (oh0, ow0), "conv": None}
                if th and tw:
                    phase_w, note = slice_taps(w, th, tw)
                    notes.add(note)
                    conv_node = Node("Conv", ["x", "w", "b"], ["y"],
                                     {"strides": [1, 1], "dilations": [dh, dw],
                                      "pads": [0, 0, 0, 0],
                                      "group": int(node.attr("group", 1))},
                                     f"{node.name} phase ({rh},{rw})")
                    consts = {1: phase_w}
                    if self.bias_const is not None:
                        consts[2] = self.bias_const
                    ctx = OpContext(conv_node, *self._shapes, consts, self._config,
                                    self._target)
                    entry["conv"] = Conv(ctx)
                    entry["taps"] = (len(th), len(tw))
                    entry["w"] = tuple(phase_w.shape)
                self.plan_phases.append(entry)
        self.note = "; ".join(n for n in notes if n)
        self._pads = (pt, pl)
        if not self._keep_source:
            self.source = None       # the phases hold the weights from here on

    def resize(self, in_shapes, out_shapes):
        x, w, out = in_shapes[0], in_shapes[1], out_shapes[0]
        pads, s, _, _, out_hw = geometry(self.node, self.node.attrs, x[2:], w[2:])
        if self._pads != (pads[0], pads[1]):
            if self._pads is not None and self.source is None:
                raise GraphError(f"{self.node.describe()}: the padding changed with the input "
                                 f"size; re-create the session")
            self._make_phases(pads[0], pads[1])
        n, c, h, wd = x
        m = out[1]
        self.s = s
        # scratch: every phase's output (read back by one interleave pass), then the crop
        # copy and the inner conv's scratch of the phase being run
        used, tail = 0, 0
        sh, sw = s
        offs = np.full(sh * sw, -1, np.int64)
        hp, wp = np.zeros(sh * sw, np.int64), np.zeros(sh * sw, np.int64)
        for p in self.plan_phases:
            rh, rw = p["r"]
            q = (len(range(rh, out_hw[0], s[0])), len(range(rw, out_hw[1], s[1])))
            p["q"] = q
            conv = p["conv"]
            if conv is None or 0 in q:
                continue
            (th, tw), (oh0, ow0) = p["taps"], p["off"]
            dh, dw = conv.node.attrs["dilations"]
            crop = (max(0, oh0), max(0, ow0))
            hc, wc = h - crop[0], wd - crop[1]
            top, left = max(0, -oh0), max(0, -ow0)
            bottom = max(0, q[0] + (th - 1) * dh - hc - top)
            right = max(0, q[1] + (tw - 1) * dw - wc - left)
            conv.node.attrs["pads"] = [top, left, bottom, right]
            hout = hc + top + bottom - (th - 1) * dh
            wout = wc + left + right - (tw - 1) * dw
            p["crop"], p["out"], p["at"] = crop, (n, m, hout, wout), used
            p["x"] = (n, c, hc, wc)
            k = rh * sw + rw
            offs[k], hp[k], wp[k] = used // 4, hout, wout
            used += _aligned(4 * n * m * hout * wout)
            need = _aligned(4 * n * c * hc * wc) if crop != (0, 0) else 0
            inner = conv.resize([p["x"], p["w"], (m,)], [p["out"]])
            tail = max(tail, need + _aligned(inner))
        self.tables = (offs, hp, wp)
        self.phase_bytes = used
        scratch = used + tail
        live = [p for p in self.plan_phases if p["conv"] is not None]
        kernels = sorted({p["conv"].name for p in live})
        self.name = "conv_transpose(" + "+".join(kernels or ["bias only"]) + ")"
        big = max(live, key=lambda p: p["taps"][0] * p["taps"][1], default=None)
        self.storage = big["conv"].storage if big is not None else self.storage
        self.reason = (f"{len(self.plan_phases)} sub-pixel phases, each a stride-1 conv of "
                       f"the input with its share of the taps, written interleaved"
                       + (f"; {self.note}" if self.note else "")
                       + (f"; largest phase: {big['conv'].reason}" if big is not None else ""))
        return scratch or (ALIGN if math.prod(out) else 0)

    def needs_scratch(self):
        return True

    def run(self, inputs, outputs, scratch):
        x, out = inputs[0], outputs[0]
        b = inputs[2] if self.has_runtime_bias else self.bias
        rest = scratch[self.phase_bytes:]
        for p in self.plan_phases:
            conv = p["conv"]
            if conv is None or 0 in p["q"]:
                continue
            y = scratch[p["at"]:p["at"] + 4 * math.prod(p["out"])].view(np.float32)
            xin, used = x, 0
            if p["crop"] != (0, 0):
                ch, cw = p["crop"]
                xin = rest[:4 * math.prod(p["x"])].view(np.float32).reshape(p["x"])
                np.copyto(xin, x[:, :, ch:, cw:])
                used = _aligned(4 * math.prod(p["x"]))
            conv.run([xin, None, b], [y.reshape(p["out"])], rest[used:])
        if out.size:
            interleave(scratch[:self.phase_bytes].view(np.float32), *self.tables,
                       np.ascontiguousarray(b, dtype=np.float32), out, *self.s)

    def held_arrays(self):
        held = [a for p in getattr(self, "plan_phases", []) if p["conv"] is not None
                for a in p["conv"].held_arrays()]
        if self.source is not None:
            held.extend(self.source.arrays())
        return held + ([self.bias] if self.bias_const is not None else [])


def create_conv_transpose(ctx):
    return ConvTranspose(ctx)
