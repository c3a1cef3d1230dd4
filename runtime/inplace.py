"""Tensors planned inside another tensor's bytes, so that the step that would copy them
has nothing to do: a channel Concat's inputs written straight into their slices of its
output, and a Reshape's output as the same bytes as its input (the session's memory plan,
runtime/session.py, places them; the executor skips those steps)."""
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

    Placements nest (DenseNet: each layer's input is the previous Concat; a Reshape of
    a Concat's input): a tensor lands in the outermost one."""
    parent, skip = {}, set()
    produced = {t for step in steps for t in step.outputs}

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


def _holds(parent, t, out):
    """True if ``out`` is already placed inside ``t`` (a cycle would follow)."""
    while out in parent:
        out = parent[out][0]
        if out == t:
            return True
    return False
