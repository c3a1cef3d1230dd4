"""Symbolic input dimensions: make a graph whose shape math was folded for one input shape
hold for every size of the symbolic axes.

Exporters compute Reshape targets from the input's shape (``x.view(x.size(0), -1)``
becomes Shape -> Gather -> Unsqueeze -> Concat -> Reshape). The importer folds that chain
for the shapes it imports with, so the graph is first valid only there
(``fixed_input_shapes``). ``generalize`` imports the model twice more with the symbolic
axes set to other sizes (the probes) and compares the three graphs. If they differ only in
Reshape targets, and each differing entry either copies the Reshape input's size on the
same axis (written as ONNX's 0) or is the one entry left to infer (written as -1), the
rewritten graph is checked against every probe's shapes and returned as valid for all
sizes. Anything else that follows the input's shape (a ConstantOfShape, Slice bounds,
Resize sizes, a folded output) keeps the graph fixed, as before.
"""
from __future__ import annotations

import numpy as np

from jitconv.errors import JitconvError

from .ir import Graph, Node
from .shapes import infer_shapes


def _probe_shapes(graph, k):
    """Input shapes with every dynamic axis of size d set to d * (k + 1) + k."""
    return {s.name: tuple(d * (k + 1) + k if a in s.dynamic else d
                          for a, d in enumerate(s.shape)) for s in graph.inputs}


def _same_structure(a: Graph, b: Graph) -> bool:
    if [n.name for n in a.nodes] != [n.name for n in b.nodes]:
        return False
    if set(a.constants) != set(b.constants) or \
            [o.name for o in a.outputs] != [o.name for o in b.outputs]:
        return False
    for n, m in zip(a.nodes, b.nodes):
        if (n.op_type, n.inputs, n.outputs) != (m.op_type, m.inputs, m.outputs):
            return False
        keys = set(n.attrs) | set(m.attrs)
        if n.op_type == "Reshape":
            keys.discard("shape")
        if any(not _equal(n.attrs.get(k), m.attrs.get(k)) for k in keys):
            return False
    return all(np.array_equal(a.constants[k].data, b.constants[k].data)
               and a.constants[k].data.shape == b.constants[k].data.shape
               for k in a.constants)


def _equal(u, v):
    if isinstance(u, np.ndarray) or isinstance(v, np.ndarray):
        return np.array_equal(np.asarray(u), np.asarray(v))
    return u == v


def _target(targets, x_shapes):
    """One Reshape target for every probe, or None. ``targets[k]`` is the folded target
    and ``x_shapes[k]`` the Reshape input's shape in probe k."""
    if len({len(t) for t in targets}) != 1:
        return None
    out, free = [], []
    for j, vals in enumerate(zip(*targets)):
        if len(set(vals)) == 1:
            out.append(vals[0])
        elif all(j < len(x) and v == x[j] for v, x in zip(vals, x_shapes)):
            out.append(0)
        else:
            out.append(None)
            free.append(j)
    if len(free) > 1 or (free and -1 in out):
        return None
    if free:
        out[free[0]] = -1
    return out


def generalize(result, reimport):
    """``result`` (an OnnxImport with fixed_input_shapes) made valid for every size of its
    dynamic axes, or ``result`` itself when the probes show it cannot be.
    ``reimport(input_shapes)`` imports the same model for other input shapes."""
    base = result.graph
    probes = []
    for k in (1, 2):
        shapes = _probe_shapes(base, k)
        try:
            probes.append((shapes, reimport(shapes)))
        except JitconvError:
            return result
    graphs = [base] + [r.graph for _, r in probes]
    if not all(_same_structure(base, g) for g in graphs[1:]):
        return result
    if any(set(r.folded_outputs) != set(result.folded_outputs) or
           any(not np.array_equal(r.folded_outputs[t], v) for t, v in
               result.folded_outputs.items()) for _, r in probes):
        return result
    all_shapes = [{s.name: s.shape for s in base.inputs}] + [s for s, _ in probes]
    inferred = [infer_shapes(g, s) for g, s in zip(graphs, all_shapes)]
    nodes = []
    for i, node in enumerate(base.nodes):
        if node.op_type != "Reshape":
            nodes.append(node)
            continue
        targets = [list(g.nodes[i].attr("shape")) for g in graphs]
        if all(t == targets[0] for t in targets):
            nodes.append(node)
            continue
        x_shapes = [sh[node.inputs[0]] for sh in inferred]
        target = _target(targets, x_shapes)
        if target is None:
            return result
        nodes.append(Node(node.op_type, list(node.inputs), list(node.outputs),
                          {**node.attrs, "shape": target}, node.name))
    graph = Graph(list(base.inputs), list(base.outputs), nodes, dict(base.constants),
                  base.name, fixed_input_shapes=False)
    for shapes, want in zip(all_shapes, inferred):
        try:
            got = infer_shapes(graph, shapes)
        except JitconvError:
            return result
        if any(got.get(t) != s for t, s in want.items()):
            return result
    return type(result)(graph, result.opset, result.folded_outputs)
