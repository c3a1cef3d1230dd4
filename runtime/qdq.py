"""QDQ models (QuantizeLinear / DequantizeLinear pairs, as onnxruntime's quantize_static,
NNCF or torch's exporter write them): the two rewrites that make them run well.

- ``int8_weights`` (the ONNX importer, at load): a DequantizeLinear of a constant int8 or
  uint8 weight whose every reader is a weight input (input 1) of a 2-D Conv, a Gemm or a
  MatMul with a 2-D A, quantized per tensor or per output channel, becomes jitconv's int8
  weight storage (runtime/ir.py ``Constant``) with its scales, so memory=low keeps it
  quantized and precision=low can run it on the int8-dot kernel. Gemm with transB=0 and
  MatMul become Gemm with transB=1 (a stored row is one output channel), as quantize()
  does. Zero points: 0 (what symmetric quantizers write) is stored exactly (value =
  q * scale, the float32 product ONNX computes); any other zero point, and a uint8
  weight (stored as q - 128), is kept as the storage's float offset zero = -zp * scale,
  which can differ from ONNX's (q - zp) * scale by float32 rounding (a few ulps). Any
  other DequantizeLinear of constants (a ConvTranspose weight, a per-input-channel
  scale, an int32 bias, a weight also read elsewhere) is folded to fp32 at load.
- ``fuse_qdq`` (a Session pass, runtime/passes.optimize): a QuantizeLinear whose readers
  are all DequantizeLinear nodes with equal scale, zero point and axis becomes one
  QuantizeLinear with ``dequantize=1`` per reader ("fake quant": the same float32 numbers
  as the pair, in one pass, with no integer tensor between ops). Activations therefore
  run in float32 between quantization points; int8 activation kernels are later work.
"""
from __future__ import annotations

import numpy as np

from .ir import Constant, Graph, Node
from .passes import _rebuild


def _weight_layout(node, slot, q, axis, shapes):
    """How a quantized constant read by ``node`` at input ``slot`` is stored: 'rows'
    (as is), 'transpose', or None when it cannot be int8 storage."""
    if slot != 1:
        return None
    per_tensor = axis is None
    a = None if per_tensor else axis % q.ndim
    if node.op_type == "Conv" and q.ndim == 4:
        return "rows" if per_tensor or a == 0 else None
    if q.ndim != 2:
        return None
    if node.op_type == "Gemm":
        if int(node.attr("transB", 0)):
            return "rows" if per_tensor or a == 0 else None
        return "transpose" if per_tensor or a == 1 else None
    if node.op_type == "MatMul" and len(shapes.get(node.inputs[0], ())) == 2:
        return "transpose" if per_tensor or a == 1 else None
    return None


def _storage(name, q, scale, zero, transpose):
    """The int8 Constant of integers ``q`` (int8 or uint8) with per-row scales."""
    q = np.ascontiguousarray(q.T) if transpose else np.asarray(q)
    rows = q.shape[0]
    zp = np.zeros(1, np.int64) if zero is None else np.asarray(zero).astype(np.int64).reshape(-1)
    if q.dtype == np.uint8:                  # q - zp == (q - 128) - (zp - 128)
        data = (q.astype(np.int16) - 128).astype(np.int8)
        zp = zp - 128
    else:
        data = q.astype(np.int8)
    s = np.asarray(scale, np.float32).reshape(-1)
    s = np.broadcast_to(s, (rows,)).astype(np.float32).reshape(rows, 1)
    zp = np.broadcast_to(zp, (rows,)).reshape(rows, 1)
    offset = None
    if np.any(zp != 0):
        offset = (-zp.astype(np.float64) * s.astype(np.float64)).astype(np.float32)
    return Constant(name, np.ascontiguousarray(data.reshape(rows, -1)), "int8", s, offset,
                    tuple(q.shape))


def int8_weights(nodes, quantized, shapes, graph_outputs) -> dict:
    """tensor -> int8 ``Constant`` for each folded DequantizeLinear output in ``quantized``
    (tensor -> (q, scale, zero point or None, axis)) read only as a conv/matmul weight;
    rewrites those Gemm (transB) and MatMul (-> Gemm) nodes of ``nodes`` in place."""
    readers = {}
    for node in nodes:
        for i, t in enumerate(node.inputs):
            if t in quantized:
                readers.setdefault(t, []).append((node, i))
    out = {}
    for t, (q, scale, zero, axis) in quantized.items():
        found = readers.get(t)
        if not found or t in graph_outputs or q.ndim < 2:
            continue
        per_tensor = np.asarray(scale).size == 1
        layouts = {_weight_layout(n, i, q, None if per_tensor else axis, shapes)
                   for n, i in found}
        if len(layouts) != 1 or None in layouts:
            continue
        transpose = layouts == {"transpose"}
        out[t] = _storage(t, q, scale, zero, transpose)
        if transpose:
            for n, _ in found:
                if n.op_type == "MatMul":
                    n.op_type = "Gemm"
                    n.attrs.update(alpha=1.0, beta=1.0, transA=0)
                n.attrs["transB"] = 1
    return out


def _same_params(graph, a, b) -> bool:
    """True when nodes a (QuantizeLinear) and b (DequantizeLinear) use the same constant
    scale and zero point along the same axis."""
    consts = graph.constants

    def value(node, i):
        t = node.inputs[i] if len(node.inputs) > i else ""
        if not t:
            return np.zeros(1, np.float32) if i == 2 else None
        c = consts.get(t)
        return None if c is None else c.as_float32().reshape(-1)

    for i in (1, 2):
        va, vb = value(a, i), value(b, i)
        if va is None or vb is None or va.shape != vb.shape or not np.array_equal(va, vb):
            return False
    if value(a, 1).size == 1:
        return True
    return int(a.attr("axis", 1)) == int(b.attr("axis", 1))


def fuse_qdq(graph: Graph) -> Graph:
    """QuantizeLinear -> DequantizeLinear pairs become QuantizeLinear(dequantize=1)."""
    consumers = graph.consumers()
    outputs = {o.name for o in graph.outputs}
    replace, drop = {}, set()
    for node in graph.nodes:
        if node.op_type != "QuantizeLinear" or int(node.attr("dequantize", 0)):
            continue
        t = node.outputs[0]
        readers = consumers.get(t, [])
        if not readers or t in outputs or any(
                r.op_type != "DequantizeLinear" or r.inputs[0] != t or t in r.inputs[1:]
                or not _same_params(graph, node, r) for r in readers):
            continue
        drop.add(node.name)
        for r in readers:
            fused = list(node.attr("_fused", [])) + [node.name]
            replace[r.name] = Node("QuantizeLinear", list(node.inputs), list(r.outputs),
                                   {**node.attrs, "dequantize": 1, "_fused": fused}, r.name)
    return _rebuild(graph, replace, drop, dict(graph.constants))
