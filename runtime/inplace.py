"""Tensors planned inside another tensor's bytes, so that the step that would copy them
has nothing to do: a channel Concat's inputs written straight into their slices of its
output, and a Reshape's output as the same bytes as its input (the session's memory plan,
runtime/session.py, places them; the executor skips those steps). Also a blocked conv's
output in the bytes of the residual it adds, when nothing reads that residual later: the
kernel reads each residual line just before it writes the same line, so the output costs
no cache-line fetch of its own (a bandwidth-bound 1x1 expand conv with its residual,
kernel alone at 2 threads: 0.353 -> 0.322 ms)."""
from __future__ import annotations

import math


def views_in_place(steps, where, shapes):
    """({tensor: (root, byte offset, bytes)}, {step index}): tensors planned inside
    another's bytes, and the steps that then have nothing to do.

    - A Concat that joins along the first axis that is not 1 in size (channels at
      batch 1, NCHW or blocked: each input is then one contiguous run of the output)
      in the host arena, when each input is an arena tensor written by a step of its
      own, named once, not a graph output and not already placed inside another
      tensor: its inputs are written straight into their slices of its output.
    - A Reshape / Flatten / Squeeze / Unsqueeze (the CPU's reshape_copy) of an arena
      tensor: its output is the same bytes as its input.

    - The output of a conv in the blocked layout (every blocked conv kernel adds the
      residual line by line, reading it just before writing there): in the residual's bytes, when the residual is an arena tensor of the same size,
      read by no later step, not the conv's input X, and neither inside another tensor
      nor holding one.

    Placements nest (DenseNet: each layer's input is the previous Concat; a Reshape of
    a Concat's input): a tensor lands in the outermost one."""
    parent, skip = {}, set()
    produced = {t for step in steps for t in step.outputs}
    last_use = {}
    for i, step in enumerate(steps):
        for t in step.inputs:
            last_use[t] = i

    def arena(t):
        return bool(t) and where.get(t) == "host" and t in produced

    for i, step in enumerate(steps):
        if step.space != "host":
            continue
        name = getattr(step.kernel, "name", "")
        out = step.outputs[0] if step.outputs else ""
        shape = shapes.get(out)
        if not arena(out) or shape is None or out in parent:
            continue
        ins = step.inputs
        if step.node.op_type == "Conv" and step.node.attr("_layout") == BLOCKED and \
                len(ins) > 3 and ins[3]:
            res = ins[3]
            if arena(res) and last_use.get(res) == i and res != ins[0] and \
                    res not in parent and shapes.get(res) is not None and \
                    math.prod(shapes[res]) == math.prod(shape) and \
                    all(up != res for up, _, _ in parent.values()):
                parent[out] = (res, 0, 4 * math.prod(shape))
            continue
        if name == "reshape_copy":
            if arena(ins[0]) and shapes.get(ins[0]) is not None and \
                    math.prod(shapes[ins[0]]) == math.prod(shape):
                parent[out] = (ins[0], 0, 4 * math.prod(shape))
                skip.add(i)
            continue
        if name != "concat" or step.node.op_type != "Concat":
            continue
        axis = int(step.node.attr("axis", 1)) % len(shape)
        if math.prod(shape[:axis]) != 1 or len(set(ins)) != len(ins) or not all(
                arena(t) and t not in parent and not _holds(parent, t, out)
                for t in ins):
            continue
        off = 0
        for t in ins:
            nbytes = 4 * math.prod(shapes[t])
            parent[t] = (out, off, nbytes)
            off += nbytes
        skip.add(i)
    inside = {}
    for t, (out, off, nbytes) in parent.items():
        while out in parent:            # nested: into the outermost tensor
            out, up, _ = parent[out]
            off += up
        inside[t] = (out, off, nbytes)
    return inside, skip


# the layout the CPU layout pass marks a blocked conv with (backends/cpu_layout.BLOCKED)
BLOCKED = "nchw16c"


def _holds(parent, t, out):
    """True if ``out`` is already placed inside ``t`` (a cycle would follow)."""
    while out in parent:
        out = parent[out][0]
        if out == t:
            return True
    return False
