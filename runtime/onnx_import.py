"""Import an ONNX model (opsets 9-21, and newer where an op only gained types) as a Graph.

``load_onnx(path)`` / ``import_model(model)`` turn an ONNX ModelProto into a jitconv
Graph whose nodes use the op semantics of docs/ops.md:

- Initializers become constants: float ones as fp32 ``Constant``s, integer ones stay
  NumPy values the importer folds with.
- Every node whose inputs are all known at load (initializers, Constant nodes, shapes of
  runtime tensors) is folded with the NumPy reference (``reference.run_op``), so the
  Shape -> Gather -> Unsqueeze -> Concat chains exporters emit around Reshape disappear.
- Opset differences are mapped to one form: parameters that later opsets moved from
  attributes to inputs (Clip min/max, Reshape shape, Squeeze/Unsqueeze axes, Split
  sizes, Slice starts/ends/axes/steps, Pad pads/value, Resize scales/sizes, ReduceMean
  axes, Gather indices) must be constant and become attributes; Softmax before opset 13
  (softmax of the input flattened to 2-D at ``axis``) becomes Flatten -> Softmax ->
  Reshape; 1-D Conv and pools are lifted to 2-D between Unsqueeze and Squeeze;
  Upsample and Resize-10 become a nearest Resize with onnxruntime's legacy rounding.
- Dropout (inference), Identity and Cast-to-float are removed (kept as a copy when their
  output is a graph output). CastLike is read as a Cast to its second input's element
  type (``elem_type``). BatchNormalization stays a node: the Session folds it.
- QDQ models (runtime/ops/quant.py, runtime/qdq.py): a DequantizeLinear of a constant
  int8/uint8 Conv/Gemm/MatMul weight becomes int8 weight storage with its scales; a
  run-time QuantizeLinear writes its integers as float32 values (its ``dtype`` attribute
  names their type), and the Session fuses it with its DequantizeLinear readers.
- Runtime tensors are float32. An integer tensor that cannot be folded at load, an
  unsupported op, op version or attribute is a ``GraphError`` naming the node, its op
  type and the opset, raised before anything runs.

Shape computations are folded for the input shapes the model declares (symbolic
dimensions count as 1 unless ``input_shapes`` says otherwise). Symbolic input axes are
marked dynamic (``TensorSpec.dynamic``): Session.run accepts any size there. Where the
folded shape math is a Reshape target that follows those axes (``x.view(x.size(0), -1)``),
runtime/onnx_dynamic.py rewrites it with Reshape's 0 / -1 so the graph holds for every
size; where it cannot, the graph stays ``fixed_input_shapes`` and other sizes need a
re-import with other ``input_shapes``.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from jitconv.errors import GraphError, JitconvError

from .attrs import check_node
from .ir import Constant, Graph, Node, TensorSpec
from .limits import check_bytes
from .modelfile import ModelFileError
from .opdef import OPDEFS
from .qdq import int8_weights
from .reference import run_op
from .shapes import infer_node

MIN_OPSET = 9
TARGET_MAX_OPSET = 21     # what the importer is written against; later opsets are
                          # accepted per op when the op's definition is one listed below

class _FromOpDefs(Mapping):
    """op type -> what ``pick(OnnxSpec)`` gives, for every op with an ONNX spec; read
    from the OpDefs (runtime/ops/) on each use."""

    def __init__(self, pick):
        self._pick = pick

    def _table(self):
        return {k: self._pick(d.onnx) for k, d in OPDEFS.items()
                if d.onnx is not None and self._pick(d.onnx) is not None}

    def __getitem__(self, op_type):
        d = OPDEFS.get(op_type)
        v = self._pick(d.onnx) if d is not None and d.onnx is not None else None
        if v is None:
            raise KeyError(op_type)
        return v

    def __iter__(self):
        return iter(self._table())

    def __len__(self):
        return len(self._table())


# op type -> the ONNX since_versions of its definitions the importer maps
# (after 21 only type additions: bfloat16, float8, int4, ...).
KNOWN_VERSIONS = _FromOpDefs(lambda spec: tuple(spec.versions))
# attributes each op may carry (anything else is reported as unsupported)
ATTRS = _FromOpDefs(lambda spec: frozenset(spec.attrs))
# op type -> (first version, input indices that must be known at load): the "parameter"
# inputs of later opsets. The ONNX backend binds graph inputs feeding these.
PARAM_INPUTS = _FromOpDefs(lambda spec: spec.params)


def _onnx():
    try:
        import onnx  # noqa: PLC0415
        import onnx.numpy_helper  # noqa: F401, PLC0415
        import onnx.version_converter  # noqa: F401, PLC0415
    except ImportError:
        raise JitconvError("reading ONNX models needs the onnx package: "
                           "pip install \"jitconv[onnx]\"") from None
    return onnx


@dataclass
class OnnxImport:
    """What import_model produced: the Graph, plus what only an ONNX caller needs.

    ``folded_outputs`` maps graph outputs that were computed at load to their values in
    the ONNX dtype (the Graph holds them as fp32 constants); ``opset`` is the model's
    default-domain opset.
    """
    graph: Graph
    opset: int
    folded_outputs: dict = field(default_factory=dict)


def load_onnx(path, *, input_shapes=None, bind=None, name=None) -> Graph:
    """Read an .onnx file and return the Graph (see the module docstring)."""
    onnx = _onnx()
    try:
        model = onnx.load(str(path))
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file") from None
    except Exception as exc:
        raise ModelFileError(f"{path}: not a readable ONNX model ({type(exc).__name__}: "
                             f"{exc})") from exc
    name = name or os.path.splitext(os.path.basename(str(path)))[0]
    return import_model(model, input_shapes=input_shapes, bind=bind, name=name).graph


def upgrade(model):
    """The model itself, or for opsets 7-8 (old exporters) a copy converted to opset 9 by
    onnx.version_converter; a GraphError when that is impossible."""
    opset = _declared_opset(model)
    if opset is not None and opset < MIN_OPSET:
        try:
            return _onnx().version_converter.convert_version(model, MIN_OPSET)
        except Exception as exc:
            raise GraphError(f"ONNX model uses opset {opset}; converting it to opset "
                             f"{MIN_OPSET} failed: {exc}") from None
    return model


def _declared_opset(model):
    opset = None
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            opset = int(imp.version)
    return opset


def model_opset(model) -> int:
    """The model's default-domain (ai.onnx) opset; a GraphError if outside what we read."""
    opset = _declared_opset(model)
    if opset is None:
        raise GraphError("ONNX model imports no default-domain (ai.onnx) opset")
    newest = _onnx().defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise GraphError(f"ONNX model uses opset {opset}; jitconv reads opsets {MIN_OPSET} "
                         f"to {newest} (written for {MIN_OPSET}-{TARGET_MAX_OPSET}); "
                         f"convert it with onnx.version_converter first")
    return opset


def _node_label(node, index):
    return node.name or f"{node.op_type}_{index}"


def check_supported(model) -> None:
    """GraphError listing every node whose op, op version or attribute jitconv lacks."""
    onnx = _onnx()
    model = upgrade(model)
    opset = model_opset(model)
    problems = []
    for i, node in enumerate(model.graph.node):
        where = f"{node.op_type} node {_node_label(node, i)!r} (opset {opset})"
        if node.domain not in ("", "ai.onnx"):
            problems.append(f"{where}: domain {node.domain!r} is not supported")
            continue
        if node.op_type not in KNOWN_VERSIONS:
            problems.append(f"{where}: op type {node.op_type!r} is not supported")
            continue
        try:
            since = onnx.defs.get_schema(node.op_type, opset, "").since_version
        except Exception:
            problems.append(f"{where}: ONNX defines no {node.op_type} at this opset")
            continue
        if since not in KNOWN_VERSIONS[node.op_type]:
            problems.append(f"{where}: version {since} of {node.op_type} is not supported "
                            f"(known: {', '.join(map(str, KNOWN_VERSIONS[node.op_type]))})")
            continue
        extra = sorted(a.name if isinstance(a.name, str) else repr(a.name)  # bytes: bad UTF-8
                       for a in node.attribute if a.name not in ATTRS.get(node.op_type, set()))
        if extra:
            problems.append(f"{where}: attribute {', '.join(extra)} is not supported")
    if problems:
        raise GraphError("ONNX model has unsupported nodes:\n  " + "\n  ".join(problems))


def inputs_needing_values(model) -> set:
    """Graph inputs whose values must be known at load: non-float inputs, and inputs that
    feed (through any chain of ops) a parameter input of PARAM_INPUTS."""
    onnx = _onnx()
    model = upgrade(model)
    opset = model_opset(model)
    inits = {t.name for t in model.graph.initializer}
    producer = {}
    for node in model.graph.node:
        for t in node.output:
            producer[t] = node
    need, stack = set(), []
    for node in model.graph.node:
        rule = PARAM_INPUTS.get(node.op_type)
        if rule is None:
            continue
        try:
            since = onnx.defs.get_schema(node.op_type, opset, "").since_version
        except Exception:
            continue
        if since >= rule[0]:
            stack.extend(node.input[i] for i in rule[1] if i < len(node.input) and node.input[i])
    while stack:
        t = stack.pop()
        if t in need or t in inits:
            continue
        need.add(t)
        node = producer.get(t)
        if node is not None and node.op_type != "Shape":
            stack.extend(x for x in node.input if x)
    out = set()
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        elem = vi.type.tensor_type.elem_type if vi.type.HasField("tensor_type") else 0
        if vi.name in need or elem != 1:
            out.add(vi.name)
    return out


def import_model(model, *, input_shapes=None, bind=None, name=None) -> OnnxImport:
    """Convert an ONNX ModelProto to a Graph.

    Parameters
    ----------
    model : onnx.ModelProto
    input_shapes : dict, optional
        Graph input name -> shape, overriding the declared shapes (symbolic dims are 1).
    bind : dict, optional
        Graph input name -> array: treat that input as a constant of this value (for
        integer inputs, or inputs that feed a shape or other load-time parameter).
    """
    _check_strings(model)
    model = upgrade(model)
    check_supported(model)
    result = _Importer(model, input_shapes or {}, bind or {}, name).run()
    if result.graph.fixed_input_shapes and any(s.dynamic for s in result.graph.inputs):
        from .onnx_dynamic import generalize  # noqa: PLC0415
        result = generalize(result, lambda shapes: _Importer(model, shapes, bind or {},
                                                             name).run())
    return result


def _check_strings(model):
    """Every name in the graph is text: protobuf hands a string field that is not valid
    UTF-8 back as bytes, which no later step expects."""
    g = model.graph

    def bad(v):
        return not isinstance(v, str)
    for kind, items in (("input", g.input), ("output", g.output),
                        ("initializer", g.initializer), ("value_info", g.value_info)):
        for i, item in enumerate(items):
            if bad(item.name):
                raise GraphError(f"ONNX model: graph {kind} #{i} has a name that is not "
                                 f"valid UTF-8: {item.name!r}")
    for i, node in enumerate(g.node):
        fields = [node.name, node.op_type, node.domain, *node.input, *node.output,
                  *(a.name for a in node.attribute)]
        if any(bad(v) for v in fields):
            raise GraphError(f"ONNX model: node #{i} has a name, op type, tensor name or "
                             f"attribute name that is not valid UTF-8: "
                             f"{[v for v in fields if bad(v)][:3]}")


def _dtype_name(onnx, code):
    try:
        return str(onnx.helper.tensor_dtype_to_np_dtype(code))
    except Exception:
        return f"code {code} (unknown to onnx)"


# AttributeProto types an op of ours may take; GRAPH, TYPE_PROTO, SPARSE_TENSOR... never
_ATTR_TYPES = (1, 2, 3, 4, 6, 7, 8)      # FLOAT INT STRING TENSOR FLOATS INTS STRINGS


class _Importer:
    def __init__(self, model, input_shapes, bind, name):
        self.onnx = _onnx()
        self.model = model
        self.opset = model_opset(model)
        self.name = name or model.graph.name or "onnx_model"
        self.fixed_input_shapes = False
        self.input_shapes = {k: tuple(int(d) for d in v) for k, v in input_shapes.items()}
        self.bind = {k: np.asarray(v) for k, v in bind.items()}
        self.values = {}        # tensor -> np.ndarray known at load (ONNX dtype)
        self.shapes = {}        # runtime tensor -> shape
        self.alias = {}         # removed Identity/Dropout/Cast output -> its input
        self.nodes = []         # runtime IR nodes
        self.node_names = set()
        self.taken = set()
        self.inputs = []
        self.int_types = {}     # run-time tensor holding integers (QuantizeLinear) -> type
        self._elem_types = None  # tensor -> ONNX element type (elem_type, on first use)
        self.quantized = {}     # folded DequantizeLinear output -> (q, scale, zero, axis)

    # -- helpers ---------------------------------------------------------------------

    def fail(self, msg):
        raise GraphError(f"{self.where}: {msg}")

    def tensor(self, t, what):
        """numpy_helper.to_array of a TensorProto, its size checked first; a GraphError
        naming ``what`` when the proto's data does not match its dims."""
        dims = [int(d) for d in t.dims]
        if any(d < 0 for d in dims):
            raise GraphError(f"ONNX model: {what} has negative dims {dims}")
        try:
            itemsize = np.dtype(self.onnx.helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize
        except Exception:
            raise GraphError(f"ONNX model: {what} has unknown data type {t.data_type}") from None
        if t.data_location == self.onnx.TensorProto.EXTERNAL:
            raise GraphError(f"ONNX model: {what} keeps its data in an external file that "
                             f"was not loaded (pass the .onnx path to jc.load, with the data "
                             f"file beside it)")
        nbytes = int(np.prod(dims, dtype=object)) * itemsize if dims else itemsize
        check_bytes(nbytes, f"ONNX model: {what} of dims {dims}")
        try:
            return self.onnx.numpy_helper.to_array(t)
        except Exception as exc:
            raise GraphError(f"ONNX model: {what} of dims {dims} and data type "
                             f"{t.data_type} cannot be read: {type(exc).__name__}: "
                             f"{exc}") from None

    def fresh(self, base):
        name, i = base, 1
        while name in self.taken:
            name, i = f"{base}_{i}", i + 1
        self.taken.add(name)
        return name

    def resolve(self, t):
        while t in self.alias:
            t = self.alias[t]
        return t

    def known(self, t):
        return t == "" or t in self.values

    def shape_of(self, t):
        if t in self.values:
            return tuple(self.values[t].shape)
        if t in self.shapes:
            return self.shapes[t]
        self.fail(f"input tensor {t!r} is not defined before this node")

    def elem_type(self, t):
        """The ONNX element type number of tensor ``t`` (by its name in the model), as the
        model declares it (inputs, value_info, outputs) or ONNX's type inference finds it;
        None if neither says. A run-time tensor holds float32 values whatever this is."""
        if self._elem_types is None:
            graphs = [self.model.graph]
            try:
                graphs.insert(0, self.onnx.shape_inference.infer_shapes(self.model).graph)
            except Exception:        # e.g. a model over 2 GB: the declared types only
                pass
            types = {}
            for g in graphs:          # the inferred first: where both say, the declared wins
                for vi in (*g.input, *g.value_info, *g.output):
                    if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
                        types[vi.name] = int(vi.type.tensor_type.elem_type)
            self._elem_types = types
        return self._elem_types.get(t)

    def const(self, i, what, *, optional=False):
        """The value of input i, which must be known at load (None if absent+optional)."""
        ins = self.cur.input
        t = self.resolve(ins[i]) if i < len(ins) else ""
        if t == "":
            if optional:
                return None
            self.fail(f"input {i} ({what}) is required")
        if t not in self.values:
            self.fail(f"input {i} ({what}) {t!r} must be a constant (an initializer, a "
                      f"Constant or computable from them at load); here it is computed at "
                      f"run time")
        return self.values[t]

    def attr(self, key, default=None):
        for a in self.cur.attribute:
            if a.name == key:
                if a.type not in _ATTR_TYPES:
                    self.fail(f"attribute {key!r} has ONNX attribute type {a.type}; this op "
                              f"takes ints, floats, strings and tensors")
                return self.onnx.helper.get_attribute_value(a)
        return default

    def attr_str(self, key, default):
        v = self.attr(key, default)
        return v.decode() if isinstance(v, bytes) else v

    def in_name(self, i):
        ins = self.cur.input
        return self.resolve(ins[i]) if i < len(ins) and ins[i] else ""

    def emit(self, op, inputs, outputs, attrs=None, suffix=""):
        """Add one IR node; fold it if every input is known at load."""
        attrs = dict(attrs or {})
        inputs = [self.resolve(t) if t else "" for t in inputs]
        label = self.label + suffix
        if all(self.known(t) for t in inputs):
            args = [self.values[t] if t else None for t in inputs]
            while args and args[-1] is None:
                args.pop()
            try:
                folded = infer_node(Node(op, inputs, list(outputs), attrs, label),
                                    [np.shape(a) if a is not None else None for a in
                                     [self.values[t] if t else None for t in inputs]])
            except Exception:        # shapes that follow values: run_op sizes them
                folded = ()
            check_bytes(sum(8 * int(np.prod(sh, dtype=object)) for sh in folded),
                        f"{label}: folding at load (outputs of shapes {list(folded)})")
            try:
                result = run_op(op, args, attrs)
            except Exception as exc:
                self.fail(f"folding at load failed: {type(exc).__name__}: {exc}")
            for t, v in zip(outputs, result if isinstance(result, list) else [result]):
                if t:
                    self.values[t] = np.asarray(v)
            return
        for t in inputs:
            if t in self.values and self.values[t].dtype.kind not in "f":
                self.fail(f"input {t!r} is a {self.values[t].dtype} tensor; jitconv runs "
                          f"float32 tensors only (integer tensors must fold away at load)")
        name = label
        i = 1
        while name in self.node_names:
            name, i = f"{label}_{i}", i + 1
        self.node_names.add(name)
        node = Node(op, inputs, list(outputs), attrs, name)
        try:
            check_node(node)
        except GraphError as e:
            self.fail(str(e).split(": ", 1)[1])
        in_shapes = [self.shape_of(t) if t else None for t in inputs]
        out_shapes = infer_node(node, in_shapes)
        for t, s in zip(outputs, out_shapes):
            if t:
                self.shapes[t] = s
        self.nodes.append(node)

    def passthrough(self, out, src):
        """Output ``out`` equals tensor ``src``: alias it, or copy when it is a graph output."""
        src = self.resolve(src)
        if src in self.values:
            self.values[out] = self.values[src]
        elif out in self.graph_outputs:
            self.emit("Identity", [src], [out])
        else:
            self.alias[out] = src

    # -- driver ----------------------------------------------------------------------

    def run(self) -> OnnxImport:
        g = self.model.graph
        for init in g.initializer:
            self.values[init.name] = self.tensor(init, f"initializer {init.name!r}")
        for init in getattr(g, "sparse_initializer", []):
            raise GraphError(f"ONNX model: sparse initializer {init.values.name!r} is not "
                             f"supported")
        for vi in g.input:
            if vi.name not in self.values and not vi.type.HasField("tensor_type"):
                raise GraphError(f"ONNX graph input {vi.name!r} is not a tensor (sequence, "
                                 f"optional or map types are not supported); jitconv takes "
                                 f"float32 tensors")
        for k, v in self.bind.items():
            if v.dtype.kind not in "fiub":
                raise GraphError(f"bind[{k!r}]: a {v.dtype} array cannot be a constant")
            self.values[k] = v
        self.taken |= set(self.values)
        self.graph_outputs = {o.name for o in g.output}
        for vi in g.input:
            if vi.name in self.values:
                continue
            self.taken.add(vi.name)
            tt = vi.type.tensor_type
            if tt.elem_type != 1:
                raise GraphError(
                    f"ONNX graph input {vi.name!r} has element type "
                    f"{_dtype_name(self.onnx, tt.elem_type)}; jitconv "
                    f"runs float32 tensors: pass its value at load (bind={{{vi.name!r}: "
                    f"array}}) to fold it")
            if vi.name in self.input_shapes:
                shape = self.input_shapes[vi.name]
            elif not tt.HasField("shape"):
                raise GraphError(f"ONNX graph input {vi.name!r} declares no shape; give one "
                                 f"with input_shapes={{{vi.name!r}: shape}}")
            else:
                shape = tuple(int(d.dim_value) if d.HasField("dim_value") else 1
                              for d in tt.shape.dim)
            # axes the model leaves symbolic (dim_param or no value) may vary at run time
            dynamic = () if not tt.HasField("shape") else tuple(
                a for a, d in enumerate(tt.shape.dim)
                if not d.HasField("dim_value") and a < len(shape))
            self.shapes[vi.name] = shape
            self.inputs.append(TensorSpec(vi.name, shape, dynamic=dynamic))
        unknown = set(self.input_shapes) - {s.name for s in self.inputs}
        if unknown:
            raise GraphError(f"input_shapes names {sorted(unknown)}, which are not runtime "
                             f"inputs of the ONNX graph; inputs: "
                             f"{[s.name for s in self.inputs]}")
        for node in g.node:
            self.taken.update(t for t in node.output if t)
        for i, node in enumerate(g.node):
            self.cur = node
            self.label = _node_label(node, i)
            self.since = self.onnx.defs.get_schema(node.op_type, self.opset, "").since_version
            self.where = f"{node.op_type} node {self.label!r} (opset {self.opset})"
            for t in node.input:
                if t and self.resolve(t) not in self.values and self.resolve(t) not in self.shapes:
                    self.fail(f"input tensor {t!r} is not defined before this node (ONNX "
                              f"nodes must be in topological order)")
            if not node.output:
                self.fail("has no outputs")
            try:
                spec = OPDEFS[node.op_type].onnx
                (spec.convert or _Importer.generic)(self)
            except JitconvError:
                raise
            except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
                # NOTE: a damaged model reaches here with values of kinds the op's reader
                # does not expect (a string where an int goes); name the node, not Python
                self.fail(f"cannot be read: {type(exc).__name__}: {exc}")
        return self.finish()

    def finish(self) -> OnnxImport:
        g = self.model.graph
        outputs, folded = [], {}
        for vi in g.output:
            t = vi.name
            src = self.resolve(t)
            if t in self.values or src in self.values:
                value = self.values[t] if t in self.values else self.values[src]
                folded[t] = value
                self.values[t] = value
                outputs.append(TensorSpec(t, tuple(value.shape)))
            elif src in self.shapes:
                if src != t:
                    self.cur, self.label = None, f"output_{t}"
                    self.where = f"graph output {t!r}"
                    self.emit("Identity", [src], [t])
                outputs.append(TensorSpec(t, self.shapes[t]))
            else:
                raise GraphError(f"ONNX graph output {t!r} is never produced")
        # drop runtime nodes none of whose outputs is read (dead after folding)
        used = {o.name for o in outputs}
        kept = []
        for node in reversed(self.nodes):
            if any(t in used for t in node.outputs):
                kept.append(node)
                used.update(t for t in node.inputs if t)
        kept.reverse()
        constants = int8_weights(kept, {t: q for t, q in self.quantized.items() if t in used},
                                 self.shapes, {o.name for o in outputs})
        for t in sorted(used):
            if t in self.values and t not in constants:
                value = self.values[t]
                if value.dtype.kind not in "fiub":
                    raise GraphError(f"ONNX tensor {t!r} of dtype {value.dtype} is not "
                                     f"supported")
                constants[t] = Constant(t, np.ascontiguousarray(value, dtype=np.float32))
        inputs = [s for s in self.inputs]
        graph = Graph(inputs, outputs, kept, constants, self.name,
                      fixed_input_shapes=self.fixed_input_shapes)
        return OnnxImport(graph, self.opset, folded)

    # -- converters: each op's own is its OnnxSpec.convert (runtime/ops/); these are the
    # generic one and the helpers they share

    def generic(self):
        """Emit the op with its inputs, its first output and the ONNX attributes that are
        also attributes of its OpDef (a required one missing is an error)."""
        d = OPDEFS[self.cur.op_type]
        attrs = {}
        for a in d.attrs:
            if a.name not in d.onnx.attrs:
                continue
            v = self.attr(a.name)
            if v is None:
                if a.required:
                    self.fail(f"attribute {a.name} is required")
                continue
            attrs[a.name] = self._plain(v)
        self._simple(d.op_type, attrs)

    def _simple(self, op, attrs=None):
        self.emit(op, [self.in_name(i) for i in range(len(self.cur.input))],
                  list(self.cur.output[:1]), attrs)

    def _attrs(self, *keys):
        return {k: self._plain(self.attr(k)) for k in keys if self.attr(k) is not None}

    @staticmethod
    def _plain(v):
        if isinstance(v, bytes):
            return v.decode()
        if isinstance(v, (list, tuple)):
            return [x.decode() if isinstance(x, bytes) else x for x in v]
        return v

    def _axes_input(self, i, what="axes"):
        v = self.const(i, what, optional=True)
        return None if v is None else [int(a) for a in v.reshape(-1)]

    def _windowed(self, op, keys):
        """Conv/MaxPool/AveragePool: 2-D as is, 1-D lifted to 2-D (H = 1)."""
        x = self.in_name(0)
        rank = len(self.shape_of(x))
        attrs = self._attrs(*keys)
        if "auto_pad" in attrs and attrs["auto_pad"] == "NOTSET":
            del attrs["auto_pad"]
        out = self.cur.output[0]
        if rank == 4:
            self.emit(op, [x] + [self.in_name(i) for i in range(1, len(self.cur.input))],
                      [out], attrs)
            return
        if rank != 3:
            self.fail(f"only 1-D and 2-D {op} are supported; input has shape "
                      f"{self.shape_of(x)}")
        for key in ("kernel_shape", "strides", "dilations"):
            if key in attrs:
                attrs[key] = [1] + [int(v) for v in attrs[key]]
        if "pads" in attrs:
            p = [int(v) for v in attrs["pads"]]
            attrs["pads"] = [0, p[0], 0, p[1]]
        x4 = self.fresh(out + "_2d_in")
        self.emit("Unsqueeze", [x], [x4], {"axes": [2]}, "_lift")
        ins = [x4]
        if op == "Conv":
            w = self.in_name(1)
            w4 = self.fresh(w + "_2d")
            self.emit("Unsqueeze", [w], [w4], {"axes": [2]}, "_lift_w")
            ins += [w4] + [self.in_name(i) for i in range(2, len(self.cur.input))]
        y4 = self.fresh(out + "_2d")
        self.emit(op, ins, [y4], attrs)
        self.emit("Squeeze", [y4], [out], {"axes": [2]}, "_drop")
