"""One definition per op type (OpDef): everything jitconv knows about an op, in one place.

Shape inference (runtime/shapes.py), the NumPy reference (runtime/reference.py), FLOP
counts (runtime/info.py), attribute checks (runtime/attrs.py), the ONNX importer
(runtime/onnx_import.py), the GraphBuilder's generated methods (runtime/builder.py) and
the CPU backend's generic elementwise kernels (backends/cpu.py) all read ``OPDEFS``.
The op families live in runtime/ops/, one file each; adding an op is one ``register``
call there (or anywhere: a test may register and unregister its own op).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from jitconv.errors import GraphError, RegistryError

KINDS = ("int", "ints", "float", "floats", "str", "strs", "int tensor", "tensor")


class _Required:
    def __repr__(self):
        return "REQUIRED"


REQUIRED = _Required()       # Attr default: the attribute must be given


@dataclass(frozen=True)
class Attr:
    """One attribute of an op: its name, kind (runtime/attrs.py), default and meaning."""
    name: str
    kind: str
    default: object = None
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


@dataclass(frozen=True)
class OnnxSpec:
    """How the ONNX importer reads the op.

    versions: the ONNX since_versions the importer maps; attrs: the ONNX attribute names
    accepted; params: (first version, input indices that must be known at load) or None;
    convert(imp): reads the current node with the ``_Importer`` ``imp`` and emits IR
    nodes. None: the op is emitted with its inputs, its first output and the ONNX
    attributes that are also attributes of the OpDef.
    """
    versions: tuple
    attrs: frozenset = frozenset()
    params: tuple | None = None
    convert: Callable | None = None


@dataclass(frozen=True)
class OpDef:
    """Everything about one op type.

    inputs: (least, most) input count, most None for any number. shape(node, shapes)
    -> output shapes; reference(inputs, attrs) -> array (a list for several outputs);
    flops(node, in_shapes, out_shapes) -> int; onnx: OnnxSpec or None; builder: the
    GraphBuilder method name (hand-written, or generated from this OpDef); scalar: a
    module-level ``scalar(x, *params)`` of floats (params: the float attributes in
    ``attrs`` order) from which the CPU backend makes an elementwise kernel; runtime:
    False for ops that only exist at load (folded or removed by the importer); internal:
    True for ops a backend's pass inserts inside a session (no ONNX name, no builder).
    """
    op_type: str
    inputs: tuple = (1, 1)
    attrs: tuple = ()
    shape: Callable | None = None
    reference: Callable | None = None
    flops: Callable | None = None
    onnx: OnnxSpec | None = None
    builder: str | None = None
    scalar: Callable | None = None
    runtime: bool = True
    internal: bool = False
    doc: str = ""

    def attr(self, name):
        """The Attr called ``name``, or None."""
        return next((a for a in self.attrs if a.name == name), None)

    def scalar_params(self, node) -> tuple:
        """The float attribute values of ``node`` passed to ``scalar``, in attrs order."""
        out = []
        for a in self.attrs:
            if a.kind == "float":
                v = node.attr(a.name, a.default)
                if v is REQUIRED or v is None:
                    raise GraphError(f"{node.describe()}: attribute {a.name} is required")
                out.append(float(v))
        return tuple(out)


class _OpDefs(dict):
    """op type -> OpDef; reading it first loads the built-in families (runtime/ops)."""

    def __getitem__(self, k):
        _load()
        return super().__getitem__(k)

    def get(self, k, default=None):
        _load()
        return super().get(k, default)

    def __contains__(self, k):
        _load()
        return super().__contains__(k)

    def __iter__(self):
        _load()
        return super().__iter__()

    def __len__(self):
        _load()
        return super().__len__()

    def keys(self):
        _load()
        return super().keys()

    def values(self):
        _load()
        return super().values()

    def items(self):
        _load()
        return super().items()


OPDEFS: dict = _OpDefs()
_loaded = False


def _check(d: OpDef) -> None:
    if not isinstance(d, OpDef) or not d.op_type:
        raise RegistryError(f"register expects an OpDef with an op_type, got {d!r}")
    where = f"OpDef {d.op_type!r}"
    lo, hi = d.inputs
    if lo < 0 or (hi is not None and hi < lo):
        raise RegistryError(f"{where}: inputs={d.inputs} must be (least, most or None)")
    for a in d.attrs:
        if not isinstance(a, Attr) or a.kind not in KINDS:
            raise RegistryError(f"{where}: attribute {a!r} must be an Attr of a kind in {KINDS}")
    if len({a.name for a in d.attrs}) != len(d.attrs):
        raise RegistryError(f"{where}: an attribute name repeats")
    missing = [p for p in ("reference", "shape", "flops") if getattr(d, p) is None]
    if d.runtime and missing:
        raise RegistryError(f"{where}: a runtime op needs {', '.join(missing)}")
    if not d.runtime and d.onnx is None:
        raise RegistryError(f"{where}: a load-time op (runtime=False) needs an OnnxSpec")
    if not d.doc:
        raise RegistryError(f"{where}: give a one-line doc")
    if d.scalar is not None and (getattr(d.scalar, "__closure__", None)
                                 or d.inputs != (1, 1)):
        raise RegistryError(f"{where}: scalar must be a plain module-level function, of "
                            f"an op with one input")


def register(d: OpDef) -> OpDef:
    """Add an op; a RegistryError for a duplicate op type or a definition missing parts."""
    _load()
    _check(d)
    if d.op_type in OPDEFS:
        raise RegistryError(f"op {d.op_type!r} is already registered")
    dict.__setitem__(OPDEFS, d.op_type, d)
    return d


def unregister(op_type: str) -> None:
    """Remove an op (tests that register their own)."""
    _load()
    if op_type not in OPDEFS:
        raise RegistryError(f"op {op_type!r} is not registered")
    dict.__delitem__(OPDEFS, op_type)


def get(op_type: str, node=None) -> OpDef:
    """The OpDef of ``op_type``; a GraphError (naming ``node`` if given) listing the
    supported ops for an unknown one."""
    d = find(op_type)
    if d is None:
        where = f"{node.describe()}: " if node is not None else ""
        raise GraphError(f"{where}op type {op_type!r} is not supported; supported: "
                         f"{', '.join(sorted(k for k, v in OPDEFS.items() if v.runtime))}")
    return d


def find(op_type: str):
    """The OpDef of ``op_type``, or None."""
    _load()
    return OPDEFS.get(op_type)


def all_opdefs() -> dict:
    """Every registered OpDef by op type (loads the built-in families first)."""
    _load()
    return OPDEFS


def _load() -> None:
    """Import runtime/ops (which registers the built-in ops) once, on first use."""
    global _loaded
    if not _loaded:
        _loaded = True
        try:
            from . import ops  # noqa: F401, PLC0415
        except BaseException:
            _loaded = False
            raise
