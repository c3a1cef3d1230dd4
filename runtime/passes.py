"""Graph rewrites run before a session prepares: they return a new Graph.

- fold_batchnorm: Conv -> BatchNormalization becomes one Conv with scaled weights.
- fuse_residual: Conv -> Add(conv, t) becomes one Conv with t as a 4th (residual) input,
  added before the activation; t must have the conv output's shape and be produced
  before the conv runs.
- fuse_erf_gelu: x / sqrt 2 -> Erf -> + 1 -> x * that -> * 0.5 (how torch exports GELU
  below opset 20) becomes one Gelu.
- fuse_activations: Conv -> Relu / Clip becomes one Conv with a fused epilogue; so do
  Conv -> Gelu and Conv -> Sigmoid -> Mul(conv, sigmoid) (SiLU), whose activation the
  conv op applies to its output right after the kernel (kernels/act_vec.py).
- fuse_conv_fake_quant: Conv -> a per-tensor fake-quant QuantizeLinear (a QDQ model's
  activation QuantizeLinear -> DequantizeLinear, fused by fuse_qdq) becomes one Conv
  with private attributes _fq_scale, _fq_zero, _fq_dtype; the conv op quantizes and
  dequantizes its output in place right after the kernel (and its activation).
- fuse_channel_layernorm: Transpose(N,C,...->N,...,C) -> LayerNormalization(last axis)
  -> Transpose(back), as ConvNeXt exports a LayerNorm over channels, becomes one
  LayerNormalization with the private attribute _channels=1 (normalized over axis 1;
  no transposes run).
- fuse_qdq (runtime/qdq.py): QuantizeLinear -> DequantizeLinear pairs become one
  QuantizeLinear(dequantize=1).
All fire only when the intermediate tensors have no other reader and are not graph
outputs.
"""
from __future__ import annotations

import numpy as np

from .ir import Constant, Graph, Node


def _single_reader(graph, consumers, tensor):
    readers = consumers.get(tensor, [])
    is_output = any(o.name == tensor for o in graph.outputs)
    return readers[0] if len(readers) == 1 and not is_output else None


def _fresh_name(taken, base):
    name, i = base, 1
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    taken.add(name)
    return name


def fold_batchnorm(graph: Graph) -> Graph:
    consumers = graph.consumers()
    constants = dict(graph.constants)
    taken = set(constants) | {t for n in graph.nodes for t in n.outputs}
    taken |= {i.name for i in graph.inputs}
    replace, drop = {}, set()
    for node in graph.nodes:
        if node.op_type != "Conv" or node.attr("activation", ""):
            continue
        bn = _single_reader(graph, consumers, node.outputs[0])
        if bn is None or bn.op_type != "BatchNormalization" or bn.inputs[0] != node.outputs[0]:
            continue
        params = [constants.get(t) for t in bn.inputs[1:5]]
        w = constants.get(node.inputs[1])
        has_b = len(node.inputs) > 2 and node.inputs[2]
        b = constants.get(node.inputs[2]) if has_b else None
        if any(p is None for p in params) or w is None or (has_b and b is None):
            continue
        if any(c.storage != "fp32" for c in [w, *params] + ([b] if b is not None else [])):
            continue
        scale, shift, mean, var = (p.as_float32().astype(np.float64) for p in params)
        k = scale / np.sqrt(var + float(bn.attr("epsilon", 1e-5)))
        w_new = (w.as_float32() * k[:, None, None, None]).astype(np.float32)
        b_old = b.as_float32().astype(np.float64) if b is not None else 0.0
        b_new = ((b_old - mean) * k + shift).astype(np.float32)
        wn, bnm = _fresh_name(taken, node.inputs[1] + "_bn"), _fresh_name(taken, node.name + "_bias_bn")
        constants[wn] = Constant(wn, w_new)
        constants[bnm] = Constant(bnm, b_new)
        fused = list(node.attr("_fused", [])) + [bn.name]
        replace[node.name] = Node("Conv", [node.inputs[0], wn, bnm], list(bn.outputs),
                                  {**node.attrs, "_fused": fused}, node.name)
        drop.add(bn.name)
    return _rebuild(graph, replace, drop, constants)


def fuse_residual(graph: Graph) -> Graph:
    consumers = graph.consumers()
    ready = {i.name for i in graph.inputs} | set(graph.constants)
    replace, drop = {}, set()
    for node in graph.nodes:
        fusable = node.op_type == "Conv" and not node.attr("activation", "") and \
            len(node.inputs) <= 3
        add = _single_reader(graph, consumers, node.outputs[0]) if fusable else None
        if add is not None and add.op_type == "Add" and add.name not in drop:
            other = [t for t in add.inputs if t != node.outputs[0]]
            if len(other) == 1 and other[0] in ready and other[0] not in graph.constants:
                inputs = list(node.inputs) + [""] * (3 - len(node.inputs)) + [other[0]]
                fused = list(node.attr("_fused", [])) + [add.name]
                replace[node.name] = Node("Conv", inputs, list(add.outputs),
                                          {**node.attrs, "_fused": fused}, node.name)
                drop.add(add.name)
        ready.update(node.outputs)
    return _rebuild(graph, replace, drop, dict(graph.constants))


def _silu_after(graph, consumers, tensor):
    """(Sigmoid, Mul) when tensor's readers are exactly Sigmoid(tensor) and Mul(tensor,
    that sigmoid) (either order), the sigmoid read by that Mul only, neither tensor a
    graph output; else None."""
    readers = consumers.get(tensor, [])
    if len(readers) != 2 or any(o.name == tensor for o in graph.outputs):
        return None
    sig = next((r for r in readers if r.op_type == "Sigmoid"), None)
    mul = next((r for r in readers if r.op_type == "Mul"), None)
    if sig is None or mul is None or sig.inputs[0] != tensor:
        return None
    if sorted(mul.inputs) != sorted([tensor, sig.outputs[0]]) or \
            _single_reader(graph, consumers, sig.outputs[0]) is not mul:
        return None
    return sig, mul


def fuse_activations(graph: Graph) -> Graph:
    consumers = graph.consumers()
    replace, drop = {}, set()
    for node in graph.nodes:
        if node.op_type != "Conv" or node.attr("activation", ""):
            continue
        attrs = dict(node.attrs)
        act = _single_reader(graph, consumers, node.outputs[0])
        silu = None if act is not None else _silu_after(graph, consumers, node.outputs[0])
        if silu is not None:
            attrs["activation"] = "silu"
            gone = list(silu)
        elif act is None:
            continue
        elif act.op_type == "Relu":
            attrs["activation"] = "relu"
        elif act.op_type == "Clip":
            attrs.update(activation="clip", activation_min=float(act.attr("min", -np.inf)),
                         activation_max=float(act.attr("max", np.inf)))
        elif act.op_type == "Gelu" and act.attr("approximate", "none") in ("none", "tanh"):
            attrs["activation"] = "gelu_tanh" if act.attr("approximate") == "tanh" else "gelu"
        else:
            continue
        if silu is None:
            gone = [act]
        attrs["_fused"] = list(node.attr("_fused", [])) + [n.name for n in gone]
        replace[node.name] = Node("Conv", list(node.inputs), list(gone[-1].outputs), attrs,
                                  node.name)
        drop.update(n.name for n in gone)
    return _rebuild(graph, replace, drop, dict(graph.constants))


def _one_value(graph, name):
    """The value of a one-element constant, or None."""
    c = graph.constants.get(name) if name else None
    if c is None or int(np.prod(c.shape)) != 1:
        return None
    return float(np.asarray(c.as_float32()).reshape(-1)[0])


def fuse_conv_fake_quant(graph: Graph) -> Graph:
    consumers = graph.consumers()
    replace, drop = {}, set()
    for node in graph.nodes:
        if node.op_type != "Conv" or node.attr("_fq_scale") is not None:
            continue
        fq = _single_reader(graph, consumers, node.outputs[0])
        if fq is None or fq.op_type != "QuantizeLinear" or not int(fq.attr("dequantize", 0)) \
                or fq.inputs[0] != node.outputs[0]:
            continue
        scale = _one_value(graph, fq.inputs[1])
        zero = _one_value(graph, fq.inputs[2]) if len(fq.inputs) > 2 and fq.inputs[2] \
            else 0.0
        if scale is None or zero is None:
            continue
        attrs = dict(node.attrs)
        attrs.update(_fq_scale=scale, _fq_zero=zero, _fq_dtype=str(fq.attr("dtype", "uint8")),
                     _fused=list(node.attr("_fused", [])) + [fq.name])
        replace[node.name] = Node("Conv", list(node.inputs), list(fq.outputs), attrs,
                                  node.name)
        drop.add(fq.name)
    return _rebuild(graph, replace, drop, dict(graph.constants))


def _scalar(graph, name, value, rtol=1e-3):
    """True when ``name`` is a one-element constant within rtol of value."""
    v = _one_value(graph, name)
    return v is not None and abs(v - value) <= rtol * abs(value)


def _other(node, tensor):
    """The input of a two-input node that is not ``tensor`` (None if neither or both)."""
    a, b = (list(node.inputs) + [None, None])[:2]
    return b if a == tensor and b != tensor else a if b == tensor and a != tensor else None


def fuse_erf_gelu(graph: Graph) -> Graph:
    consumers = graph.consumers()
    replace, drop = {}, set()

    def next_op(tensor, op_type):
        n = _single_reader(graph, consumers, tensor)
        return n if n is not None and n.op_type == op_type else None

    for node in graph.nodes:
        if node.name in drop or len(node.inputs) != 2:
            continue
        x = node.inputs[0]
        scaled = (node.op_type == "Div" and _scalar(graph, node.inputs[1], 2 ** 0.5)) or \
            (node.op_type == "Mul" and _scalar(graph, node.inputs[1], 2 ** -0.5))
        if not scaled:
            continue
        erf = next_op(node.outputs[0], "Erf")
        add = erf and next_op(erf.outputs[0], "Add")
        if not add or not _scalar(graph, _other(add, erf.outputs[0]), 1.0):
            continue
        mul = next_op(add.outputs[0], "Mul")
        if mul is None or _other(mul, add.outputs[0]) != x:
            continue
        half = next_op(mul.outputs[0], "Mul")
        if half is None or not _scalar(graph, _other(half, mul.outputs[0]), 0.5):
            continue
        chain = [node, erf, add, mul, half]
        attrs = {"approximate": "none",
                 "_fused": [n.name for n in chain[:-1]]}
        replace[half.name] = Node("Gelu", [x], list(half.outputs), attrs, half.name)
        drop.update(n.name for n in chain[:-1])
    return _rebuild(graph, replace, drop, dict(graph.constants))


def _perm_to_last(rank):
    return [0] + list(range(2, rank)) + [1]


def _perm_from_last(rank):
    return [0, rank - 1] + list(range(1, rank - 1))


def fuse_channel_layernorm(graph: Graph) -> Graph:
    consumers = graph.consumers()
    replace, drop = {}, set()
    for node in graph.nodes:
        if node.op_type != "Transpose" or node.name in drop:
            continue
        perm = [int(p) for p in node.attr("perm", [])]
        rank = len(perm)
        if rank < 3 or perm != _perm_to_last(rank):
            continue
        ln = _single_reader(graph, consumers, node.outputs[0])
        if ln is None or ln.op_type != "LayerNormalization" or ln.inputs[0] != node.outputs[0] \
                or int(ln.attr("_channels", 0)) or int(ln.attr("axis", -1)) % rank != rank - 1 \
                or node.outputs[0] in ln.inputs[1:]:
            continue
        back = _single_reader(graph, consumers, ln.outputs[0])
        if back is None or back.op_type != "Transpose" or \
                [int(p) for p in back.attr("perm", [])] != _perm_from_last(rank):
            continue
        attrs = {k: v for k, v in ln.attrs.items() if k != "axis"}
        attrs.update(_channels=1, _fused=list(ln.attr("_fused", [])) + [node.name, back.name])
        replace[ln.name] = Node("LayerNormalization", [node.inputs[0]] + list(ln.inputs[1:]),
                                list(back.outputs), attrs, ln.name)
        drop.update((node.name, back.name))
    return _rebuild(graph, replace, drop, dict(graph.constants))


def _rebuild(graph, replace, drop, constants):
    if not replace:
        return graph
    nodes = [replace.get(n.name, n) for n in graph.nodes if n.name not in drop]
    used = {t for n in nodes for t in n.inputs if t}
    used |= {o.name for o in graph.outputs}
    constants = {k: v for k, v in constants.items() if k in used}
    return Graph(list(graph.inputs), list(graph.outputs), nodes, constants, graph.name,
                 graph.fixed_input_shapes)


def optimize(graph: Graph) -> Graph:
    """The default pass pipeline a Session runs."""
    from .qdq import fuse_qdq  # noqa: PLC0415 (qdq.py imports this module)
    graph = fuse_qdq(graph)
    graph = fuse_erf_gelu(fuse_channel_layernorm(graph))
    return fuse_conv_fake_quant(fuse_activations(fuse_residual(fold_batchnorm(graph))))
