"""What kind of value each node attribute holds, checked when a Graph is built.

A graph from the builder or the ONNX importer has attributes of the right kinds, but a
hand-made Graph or a damaged (or hostile) .jcm header may hold a string where strides
go, or 2**70 for a group. Checked here once, those become a GraphError naming the node
and the attribute, instead of a TypeError deep in shape inference or a Numba typing
error in a kernel.

Each op's attributes and their kinds are its OpDef's ``attrs`` (runtime/ops/). The
attributes jitconv's own passes add (the fused epilogue: activation, activation_min/max,
_fused; the CPU layout pass's _layout) are checked by name here, whatever the op. Other
names are not checked.
"""
from __future__ import annotations

import math

from jitconv.errors import GraphError

INT64 = 2**63

# attributes the passes add to a node (runtime/passes.py), checked by name on every op
PRIVATE = {"activation": "str", "activation_min": "float", "activation_max": "float",
           "_fused": "strs", "_layout": "str",
           "_in_layout": "str", "_out_layout": "str",
           "_fq_scale": "float", "_fq_zero": "float", "_fq_dtype": "str"}


def _is_int(v) -> bool:
    import numpy as np
    return isinstance(v, (int, np.integer)) and -INT64 <= int(v) < INT64


def _is_float(v) -> bool:
    import numpy as np
    return isinstance(v, (int, float, np.integer, np.floating)) and \
        (not isinstance(v, (int, np.integer)) or abs(int(v)) < INT64)


def _int_tensor(v) -> bool:
    """An int, or a (nested, rectangular) list of ints."""
    if _is_int(v):
        return True
    if not isinstance(v, (list, tuple)) or not v:
        return isinstance(v, (list, tuple))
    if all(_is_int(x) for x in v):
        return True
    lens = {len(x) if isinstance(x, (list, tuple)) else -1 for x in v}
    return len(lens) == 1 and -1 not in lens and all(_int_tensor(x) for x in v)


def _ok(kind, v) -> bool:
    import numpy as np
    if kind == "int":
        return _is_int(v)
    if kind == "float":
        return _is_float(v)
    if kind == "str":
        return isinstance(v, str)
    if kind == "int tensor":
        return _int_tensor(v)
    if kind == "tensor":
        return True              # a load-time array (folded away before any check)
    seq = v.tolist() if isinstance(v, np.ndarray) else v
    if not isinstance(seq, (list, tuple)):
        return False
    item = {"ints": _is_int, "floats": _is_float, "strs": lambda x: isinstance(x, str)}[kind]
    return all(item(x) for x in seq)


def kind_of(node, key):
    """The kind of ``node``'s attribute ``key`` (its OpDef's, or a private one's), or None."""
    from .opdef import find  # noqa: PLC0415
    if key in PRIVATE:
        return PRIVATE[key]
    d = find(node.op_type)
    a = d.attr(key) if d is not None else None
    return a.kind if a is not None else None


def check_node(node) -> None:
    """Raise GraphError for the first attribute of ``node`` of the wrong kind."""
    for key, v in node.attrs.items():
        kind = kind_of(node, key)
        if kind is not None and not _ok(kind, v):
            what = {"int": "an int64", "float": "a number", "str": "a string",
                    "ints": "a list of int64s", "floats": "a list of numbers",
                    "strs": "a list of strings",
                    "int tensor": "an int64 or a rectangular list of them",
                    "tensor": "an array"}[kind]
            shown = repr(v)
            if len(shown) > 60:
                shown = shown[:57] + "..."
            raise GraphError(f"{node.describe()}: attribute {key}={shown} must be {what}")
        if kind == "float" and isinstance(v, float) and math.isnan(v) and key != "value":
            raise GraphError(f"{node.describe()}: attribute {key} is NaN")
