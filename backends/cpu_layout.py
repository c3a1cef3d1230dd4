"""The channel-blocked layout on the CPU backend: the pass that chooses it and the two
conversions (the conv families that compute in it: backends/cpu_blocked_conv.py).

Layout NCHW16c (runtime/ops/blocked.py): a pixel's 16 channels of a block are one
64-byte line, so a conv's register tile stores whole vectors and reads each input value
as one broadcast, with no transposes (kernels/conv_blocked.py).

The pass (``block_layout``, run by Session through ``Backend.graph_pass`` when
Config.layout is "auto"):

1. Candidates: the Convs whose weights are constants and ``choice.blocked_fits`` (groups
   1 or depthwise, 2-D, weights kept as fp32, or as stored in memory=low: fp16 / int8 /
   int4; AVX-512).
2. In graph order, a candidate is blocked if it reads its input X or its fused residual
   blocked, or if a candidate reads its output that way, directly or through followers
   (MaxPool, which runs blocked whenever its input is; an AveragePool whose windows never
   count a missing cell, run as a depthwise conv; a QDQ model's per-tensor fake-quant
   QuantizeLinear, elementwise). An Add of two blocked tensors of equal channels runs
   blocked (a QDQ model's residual adds). A GlobalAveragePool of a blocked tensor
   reads the blocks and writes NCHW itself (no FromBlocked). A Concat along channels runs
   blocked when one of its inputs is blocked and every input holds whole 16-channel blocks
   (an NCHW input goes through ToBlocked). A lone conv is blocked only when
   each output takes K = C KH KW >= LONE_K multiply-adds (groups 1): then the blocked
   kernel gains more than converting its output back costs; or when it is a stride-2
   stem (``_stem``), which writes its NCHW output itself. Otherwise it keeps NCHW and
   no conversion is paid. The last conv of a chain stays blocked and its output is
   converted once (the conversion is the same size either way).
3. Rewrite: a blocked conv's output is renamed ``<name>@nchw16c``; readers that take
   it blocked read that; when others read it too (or it is a graph output) one
   FromBlocked right after the conv makes the NCHW tensor under the original name. A
   blocked groups-1 conv with fewer than NCHW_MAX_C input channels (a stem) reads an NCHW
   input X as it is (``_in_layout`` "nchw": blocks of 1 channel); other NCHW inputs, and
   NCHW residuals, go through ToBlocked first. A stem whose output nobody reads blocked
   writes it NCHW (``_out_layout`` "nchw": the tiles are transposed as they are stored),
   with an NCHW residual added as it is, and keeps its output's name.

info() shows the result: each blocked conv's kernel is conv2d_blocked with the layout in
its reason (or conv2d_winograd_blocked: a 3x3 stride-1 conv on a blocked input where
``winograd_blocked_cost`` rates Winograd cheaper), and the FromBlocked / ToBlocked steps are
ops of their own.
"""
from __future__ import annotations

import math

from jitconv.kernels.conv_blocked import nchw_out_ok
from jitconv.kernels.reorder import from_blocked, to_blocked
from jitconv.runtime.ir import Graph, Node
from jitconv.errors import JitconvError
from jitconv.runtime.ops.blocked import logical_shape
from jitconv.runtime.shapes import infer_shapes

from .choice import blocked_fits
from .cpu_ops import Simple

BLOCKED = "nchw16c"
SUFFIX = "@" + BLOCKED


# ----------------------------------------------------------------------------- the pass

def _candidates(graph, config, target):
    found = {}
    for node in graph.nodes:
        if node.op_type != "Conv" or len(node.inputs) < 2:
            continue
        w = graph.constants.get(node.inputs[1])
        if w is not None and not blocked_fits(w, node.attrs, config.precision,
                                              config.memory, target):
            found[node.name] = node
    return found


# ops that run blocked when their input X is (their output is then blocked too): MaxPool,
# and an AveragePool whose windows never count a missing cell (avg_pool_blocks)
FOLLOWERS = frozenset({"MaxPool", "AveragePool"})


def avg_pool_blocks(node) -> bool:
    """An AveragePool the blocked depthwise kernel computes exactly (weights 1 / (KH KW),
    taps outside the image add 0): 2-D, no dilation, no ceil_mode overhang, explicit or no
    padding, and every window divided by KH KW (no padding, or count_include_pad)."""
    ks = node.attr("kernel_shape") or []
    pads = node.attr("pads") or [0, 0, 0, 0]
    return (len(ks) == 2 and list(node.attr("dilations") or [1, 1]) == [1, 1]
            and not node.attr("ceil_mode", 0) and node.attr("auto_pad", "NOTSET") == "NOTSET"
            and (not any(pads) or int(node.attr("count_include_pad", 0)) == 1))


def _follows(node) -> bool:
    return node.op_type in FOLLOWERS and (node.op_type != "AveragePool" or
                                          avg_pool_blocks(node))


def _fake_quant(graph, node) -> bool:
    """A QuantizeLinear fused with its DequantizeLinear (dequantize=1, runtime/qdq.py) with
    one scale and zero point: elementwise, so it runs on blocks as they are (it maps the
    padding channels' zeros to zeros), as the activations of a QDQ model between convs."""
    if node.op_type != "QuantizeLinear" or not int(node.attr("dequantize", 0)):
        return False
    for t in node.inputs[1:3]:
        c = graph.constants.get(t) if t else None
        if t and (c is None or math.prod(c.shape) != 1):
            return False
    return True


def _blocked_add(node, made, channels) -> bool:
    """An Add of two blocked tensors of the same channels: elementwise on the blocks."""
    return node.op_type == "Add" and len(node.inputs) == 2 and \
        all(t in made for t in node.inputs) and \
        channels[node.inputs[0]] == channels[node.inputs[1]]


# ops that read a blocked input X when it is blocked but write NCHW (no FromBlocked before
# them): a conv chain's closing GlobalAveragePool
SINKS = frozenset({"GlobalAveragePool"})
# ...and a Concat of channels with at least one blocked input, when every input has a
# whole number of 16-channel blocks: the blocked tensors then concatenate along their block
# axis as they are (an NCHW input goes through ToBlocked)
BLOCK = 16


def _slots(node):
    """The inputs a blocked node reads blocked: a conv's X and residual, a follower's X,
    every input of a Concat."""
    if node.op_type == "Conv":
        return (0, 3)
    if node.op_type in ("Concat", "Add"):
        return tuple(range(len(node.inputs)))
    return (0,)


def _channel_concat(node):
    """True for a Concat along the channels of 4-D tensors (axis 1 or -3)."""
    return node.op_type == "Concat" and int(node.attr("axis", 1)) in (1, -3)


def _takes_blocked(reader, tensor, blocked):
    """True if ``reader`` (a node) reads ``tensor`` in the blocked layout."""
    if reader.name not in blocked:
        return False
    return any(i < len(reader.inputs) and reader.inputs[i] == tensor for i in _slots(reader))


# a lone groups-1 conv is blocked too when each output takes at least this many
# multiply-adds: its blocked kernel then gains more than converting the output back costs
LONE_K = 128
# a conv with fewer input channels reads an NCHW input directly (blocks of 1 channel)
NCHW_MAX_C = 16


def _lone_pays(graph, node):
    c, kh, kw = graph.constants[node.inputs[1]].shape[1:]
    return int(node.attr("group", 1)) == 1 and c * kh * kw >= LONE_K


def _stem(graph, node):
    """A stride-2 groups-1 conv with fewer than NCHW_MAX_C input channels and at least
    one whole block of outputs: its row tiles write an NCHW output themselves
    (conv_blocked.nchw_out_ok), so it runs blocked even alone, paying no conversion on
    either side. Measured as lone convs (Session medians, 2 / 1 threads) against
    conv2d_tiled: 3 -> 32 3x3/2 at 224 1.56x / 1.19x as fast, 3 -> 64 7x7/2 1.29x / 1.12x,
    3 -> 24 3x3/2 at 96 1.94x / 1.06x; at stride 1 it was slower (3 -> 16 at 112: 0.90x /
    0.61x, 1 -> 8 5x5 at 28: 0.69x / 0.41x), and M < 16 computes part of a block for
    nothing."""
    m, c = graph.constants[node.inputs[1]].shape[:2]
    strides = [int(v) for v in (node.attr("strides") or [1, 1])]
    return int(node.attr("group", 1)) == 1 and c < NCHW_MAX_C and m >= BLOCK and \
        strides == [2, 2] and nchw_out_ok(1, strides[1])


def _nchw_channels(graph):
    """{tensor: channels} of the graph's 4-D tensors at its declared input shapes, or {}
    when shape inference cannot run here."""
    try:
        shapes = infer_shapes(graph, {t.name: t.shape for t in graph.inputs})
    except (JitconvError, ValueError, TypeError, KeyError):
        return {}
    return {t: s[1] for t, s in shapes.items() if len(s) == 4}


def _decide(graph, candidates):
    """The nodes that run blocked, in graph order (see the module docstring)."""
    readers = {}
    for node in graph.nodes:
        for t in node.inputs:
            if t:
                readers.setdefault(t, []).append(node)

    def wanted(t, depth=0):
        """A candidate conv reads t blocked, directly or through followers (a channel
        Concat counts when its output is wanted: its other inputs decide later)."""
        for r in readers.get(t, []):
            if r.name in candidates and any(
                    i < len(r.inputs) and r.inputs[i] == t for i in (0, 3)):
                return True
            follows = ((_follows(r) or _fake_quant(graph, r)) and r.inputs[0] == t) or \
                _channel_concat(r) or r.op_type == "Add"
            if follows and depth < 4 and wanted(r.outputs[0], depth + 1):
                return True
        return False

    made, blocked, channels = set(), {}, {}
    nchw = None
    for node in graph.nodes:
        if node.name in candidates:
            fed = any(t in made for t in (node.inputs[0], *node.inputs[3:4]) if t)
            if fed or wanted(node.outputs[0]) or _lone_pays(graph, node) or \
                    _stem(graph, node):
                blocked[node.name] = node
                made.add(node.outputs[0])
                channels[node.outputs[0]] = graph.constants[node.inputs[1]].shape[0]
        elif (_follows(node) or _fake_quant(graph, node)) and node.inputs[0] in made:
            blocked[node.name] = node
            made.add(node.outputs[0])
            channels[node.outputs[0]] = channels[node.inputs[0]]
        elif _blocked_add(node, made, channels):
            blocked[node.name] = node
            made.add(node.outputs[0])
            channels[node.outputs[0]] = channels[node.inputs[0]]
        elif node.op_type in SINKS and node.inputs[0] in made:
            blocked[node.name] = node
        elif _channel_concat(node) and any(t in made for t in node.inputs):
            if nchw is None:
                nchw = _nchw_channels(graph)
            cs = [channels[t] if t in made else nchw.get(t) for t in node.inputs]
            if all(c is not None and c % BLOCK == 0 for c in cs):
                blocked[node.name] = node
                made.add(node.outputs[0])
                channels[node.outputs[0]] = sum(cs)
    return blocked, made, readers, channels


def block_layout(graph: Graph, config, target) -> Graph:
    """The graph with its conv chains in NCHW16c (see the module docstring)."""
    blocked, made, readers, channels = _decide(graph, _candidates(graph, config, target))
    if not blocked:
        return graph
    outputs = {o.name for o in graph.outputs}
    taken = {t for n in graph.nodes for t in (*n.inputs, *n.outputs)} | set(graph.constants)
    nodes, converted = [], {}

    def fresh(base):
        name, i = base, 1
        while name in taken:
            name, i = f"{base}.{i}", i + 1
        taken.add(name)
        return name

    for node in graph.nodes:
        if node.name not in blocked:
            nodes.append(node)
            continue
        ins = list(node.inputs)
        conv = node.op_type == "Conv"
        # the depthwise kernel and the followers read blocks only; a groups-1 conv reads
        # an NCHW input as it is only when it has few channels (a stem): one channel per
        # trip of the tile's inner loop is slow, a conversion costs less from 16 on
        x_blocked = ins[0] in made or not conv or int(node.attr("group", 1)) > 1 or \
            graph.constants[node.inputs[1]].shape[1] >= NCHW_MAX_C
        out = node.outputs[0]
        # nobody reads the output blocked: a stem then writes NCHW itself (no FromBlocked),
        # adding an NCHW residual as it is
        out_nchw = conv and not x_blocked and _stem(graph, node) and \
            not any(_takes_blocked(r, out, blocked) for r in readers.get(out, [])) and \
            (len(ins) < 4 or not ins[3] or ins[3] not in made)
        for i in _slots(node):
            if i >= len(ins) or not ins[i] or (i == 0 and not x_blocked) or \
                    (i == 3 and out_nchw):
                continue
            if ins[i] in made:
                ins[i] += SUFFIX
                continue
            if ins[i] not in converted:
                converted[ins[i]] = fresh(ins[i] + SUFFIX)
                nodes.append(Node("ToBlocked", [ins[i]], [converted[ins[i]]], {},
                                  fresh(f"{node.name}/to_blocked")))
            ins[i] = converted[ins[i]]
        attrs = {**node.attrs, "_layout": BLOCKED}
        if node.op_type in SINKS:
            attrs["channels"] = int(channels[node.inputs[0]])
            nodes.append(Node(node.op_type, ins, [out], attrs, node.name))
            continue
        if conv:
            attrs["_in_layout"] = BLOCKED if x_blocked else "nchw"
        if out_nchw:
            attrs["_out_layout"] = "nchw"
            nodes.append(Node(node.op_type, ins, [out], attrs, node.name))
            continue
        if node.op_type == "Concat":
            attrs["axis"] = 1       # the block axis of (N, C/16, H, W, 16)
        nodes.append(Node(node.op_type, ins, [out + SUFFIX], attrs, node.name))
        taken.add(out + SUFFIX)
        if out in outputs or any(not _takes_blocked(r, out, blocked)
                                 for r in readers.get(out, [])):
            nodes.append(Node("FromBlocked", [out + SUFFIX], [out],
                              {"channels": int(channels[out])},
                              fresh(f"{node.name}/from_blocked")))
    return Graph(list(graph.inputs), list(graph.outputs), nodes, dict(graph.constants),
                 graph.name, graph.fixed_input_shapes)


# ----------------------------------------------------------------------------- shapes

def logical_conv_shapes(node, x, w, out):
    """The NCHW input and output shapes a conv's (possibly blocked) tensors stand for."""
    if node.attr("_layout") != BLOCKED:
        return x, out
    x = logical_shape(node, x, w[1] * int(node.attr("group", 1)))
    return x, (out[0], w[0], out[2], out[3])


# ----------------------------------------------------------------------------- conversions

def create_to_blocked(ctx):
    return Simple("to_blocked", "NCHW -> NCHW16c for the blocked convs (layout pass)",
                  lambda i, o: to_blocked(i[0], o[0]))


def create_from_blocked(ctx):
    return Simple("from_blocked", "NCHW16c -> NCHW for readers outside the blocked convs "
                                  "(layout pass)",
                  lambda i, o: from_blocked(i[0], o[0]))
