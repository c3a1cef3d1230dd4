"""GraphBuilder: build a Graph from Python, with shapes checked at each call."""
from __future__ import annotations

import numpy as np

from jitconv.errors import GraphError

from .ir import Constant, Graph, Node, TensorSpec
from .opdef import OPDEFS
from .shapes import infer_node


class Tensor:
    """A handle to a tensor being built; ``name`` may change when it becomes an output."""
    __slots__ = ("name", "shape")

    def __init__(self, name, shape):
        self.name, self.shape = name, tuple(shape)

    def __repr__(self):
        return f"Tensor({self.name!r}, shape={self.shape})"


def _pads(padding, op):
    """int | (ph, pw) | (t, l, b, r) | "same" | "valid" -> (pads, auto_pad)."""
    if isinstance(padding, str):
        key = padding.lower()
        if key not in ("same", "valid"):
            raise GraphError(f"{op}: padding={padding!r}; use an int, a pair, 4 ints, "
                             f"'same' or 'valid'")
        return [0, 0, 0, 0], "SAME_UPPER" if key == "same" else "VALID"
    p = [int(padding)] * 4 if np.isscalar(padding) else [int(v) for v in padding]
    if len(p) == 2:
        p = p * 2
    if len(p) != 4:
        raise GraphError(f"{op}: padding={padding!r} must be 1, 2 or 4 values")
    return p, "NOTSET"


def _pair(v):
    return [int(v)] * 2 if np.isscalar(v) else [int(a) for a in v]


class GraphBuilder:
    """Builds a Graph op by op; every method returns the new output Tensor.

    Examples
    --------
    >>> import numpy as np, jitconv as jc
    >>> g = jc.GraphBuilder()
    >>> x = g.input("x", (1, 3, 8, 8))
    >>> y = g.conv2d(x, np.ones((4, 3, 3, 3), np.float32), padding=1, activation="relu")
    >>> g.output(g.global_average_pool(y), "y")
    >>> g.build().outputs[0].shape
    (1, 4, 1, 1)
    """

    def __init__(self, name: str = "graph"):
        self.name = name
        self._inputs, self._outputs, self._nodes = [], [], []
        self._constants = {}
        self._names = set()
        self._dynamic = {}

    def _unique(self, base):
        name, i = base, 0
        while name in self._names:
            i += 1
            name = f"{base}_{i}"
        self._names.add(name)
        return name

    def _ref(self, t, op):
        if isinstance(t, Tensor):
            return t
        if isinstance(t, np.ndarray) or np.isscalar(t):
            return self.constant(t)
        raise GraphError(f"{op}: expected a Tensor from this builder or a numpy array, "
                         f"got {type(t).__name__}")

    # -- graph boundaries ----------------------------------------------------------------

    def input(self, name: str, shape, dtype: str = "float32", *, dynamic_axes=()) -> Tensor:
        """A graph input of this shape; ``dynamic_axes`` (e.g. ``(0,)`` for the batch) may
        take another size at each Session.run, which then re-plans for it."""
        if dtype != "float32":
            raise GraphError(f"input {name!r}: dtype {dtype!r} not supported; use float32")
        if name in self._names:
            raise GraphError(f"input {name!r}: the name is already used")
        shape = tuple(int(d) for d in shape)
        try:
            axes = [int(a) for a in dynamic_axes]
        except (TypeError, ValueError):
            axes = None
        if axes is None or any(not -len(shape) <= a < len(shape) for a in axes):
            raise GraphError(f"input {name!r}: dynamic_axes must be axes of its shape "
                             f"{shape}, got {dynamic_axes!r}")
        dyn = tuple(sorted({a % len(shape) for a in axes}))
        self._names.add(name)
        t = Tensor(name, shape)
        self._inputs.append(t)
        self._dynamic[name] = dyn
        return t

    def constant(self, array, name: str | None = None) -> Tensor:
        data = np.array(array, dtype=np.float32)      # a private copy
        if not np.all(np.isfinite(data)):
            raise GraphError(f"constant {name or '(unnamed)'}: holds NaN or Inf values")
        t = Tensor(self._unique(name or "const"), data.shape)
        self._constants[t.name] = (t, Constant(t.name, data))
        return t

    def output(self, x: Tensor, name: str | None = None) -> None:
        x = self._ref(x, "output")
        if name and name != x.name:
            if name in self._names:
                raise GraphError(f"output name {name!r} is already used by another tensor")
            self._names.discard(x.name)
            self._names.add(name)
            x.name = name
        self._outputs.append(x)

    # -- generic node ------------------------------------------------------------------

    def node(self, op_type: str, inputs, attrs=None, name: str | None = None) -> Tensor:
        """Add any supported op by its ONNX name (see docs/ops.md); returns its output."""
        refs = [self._ref(t, op_type) if t is not None else None for t in inputs]
        attrs = dict(attrs or {})
        nname = self._unique(name or op_type.lower())
        probe = Node(op_type, [r.name if r else "" for r in refs], ["?"], attrs, nname)
        (shape,) = infer_node(probe, [r.shape if r else None for r in refs])
        out = Tensor(self._unique(nname + "_out"), shape)
        self._nodes.append((op_type, refs, out, attrs, nname))
        return out

    # -- ops ---------------------------------------------------------------------------

    def conv2d(self, x, w, b=None, *, stride=1, padding=0, dilation=1, groups=1,
               activation=None, clip=(0.0, 6.0), name=None) -> Tensor:
        """2-D convolution, NCHW; activation None | "relu" | "relu6" | "clip" (uses clip)."""
        pads, auto = _pads(padding, "conv2d")
        attrs = {"strides": _pair(stride), "pads": pads, "dilations": _pair(dilation),
                 "group": int(groups), "auto_pad": auto}
        if activation == "relu":
            attrs["activation"] = "relu"
        elif activation in ("relu6", "clip"):
            lo, hi = (0.0, 6.0) if activation == "relu6" else clip
            attrs.update(activation="clip", activation_min=float(lo), activation_max=float(hi))
        elif activation is not None:
            raise GraphError(f"conv2d: activation={activation!r}; use None, 'relu', 'relu6' "
                             f"or 'clip'")
        return self.node("Conv", [x, w] + ([b] if b is not None else []), attrs, name)

    def conv_transpose2d(self, x, w, b=None, *, stride=1, padding=0, output_padding=0,
                         dilation=1, groups=1, name=None) -> Tensor:
        """Transposed 2-D convolution as torch.nn.functional.conv_transpose2d takes it:
        ``w`` of shape (C, M/groups, KH, KW) (stored in conv layout, runtime/ops/
        conv_transpose.py), ``padding`` an int or (ph, pw) cropped off each side."""
        from .ops.conv_transpose import onnx_to_ir_weight
        p = _pair(padding)
        if isinstance(w, np.ndarray):
            if w.ndim != 4:
                raise GraphError(f"conv_transpose2d: w must be 4-D (C, M/groups, KH, KW), "
                                 f"got shape {w.shape}")
            try:
                w = onnx_to_ir_weight(np.asarray(w, np.float32), int(groups))
            except ValueError as exc:
                raise GraphError(f"conv_transpose2d: {exc}") from None
        else:
            raise GraphError("conv_transpose2d: w must be a numpy array (the weights are "
                             "constants)")
        attrs = {"strides": _pair(stride), "pads": [p[0], p[1], p[0], p[1]],
                 "output_padding": _pair(output_padding), "dilations": _pair(dilation),
                 "group": int(groups)}
        return self.node("ConvTranspose", [x, w] + ([b] if b is not None else []), attrs,
                         name)

    def relu(self, x, name=None):
        """max(x, 0)."""
        return self.node("Relu", [x], {}, name)

    def clip(self, x, lo, hi, name=None):
        """x clamped to [lo, hi]."""
        return self.node("Clip", [x], {"min": float(lo), "max": float(hi)}, name)

    def relu6(self, x, name=None):
        """x clamped to [0, 6] (a Clip)."""
        return self.clip(x, 0.0, 6.0, name)

    def add(self, a, b, name=None):
        """a + b, with ONNX (NumPy) broadcasting."""
        return self.node("Add", [a, b], {}, name)

    def mul(self, a, b, name=None):
        """a * b, with ONNX (NumPy) broadcasting."""
        return self.node("Mul", [a, b], {}, name)

    def max_pool(self, x, kernel, *, stride=None, padding=0, dilation=1, ceil_mode=False,
                 name=None):
        """Max pooling over ``kernel`` windows (stride defaults to the kernel)."""
        pads, auto = _pads(padding, "max_pool")
        return self.node("MaxPool", [x], {
            "kernel_shape": _pair(kernel), "strides": _pair(stride or kernel), "pads": pads,
            "dilations": _pair(dilation), "ceil_mode": int(ceil_mode), "auto_pad": auto}, name)

    def average_pool(self, x, kernel, *, stride=None, padding=0, ceil_mode=False,
                     count_include_pad=False, name=None):
        """Average pooling over ``kernel`` windows (stride defaults to the kernel)."""
        pads, auto = _pads(padding, "average_pool")
        return self.node("AveragePool", [x], {
            "kernel_shape": _pair(kernel), "strides": _pair(stride or kernel), "pads": pads,
            "ceil_mode": int(ceil_mode), "count_include_pad": int(count_include_pad),
            "auto_pad": auto}, name)

    def global_average_pool(self, x, name=None):
        """Mean over the spatial axes: (N, C, H, W) -> (N, C, 1, 1)."""
        return self.node("GlobalAveragePool", [x], {}, name)

    def concat(self, xs, axis=1, name=None):
        """The tensors ``xs`` joined along ``axis``."""
        return self.node("Concat", list(xs), {"axis": int(axis)}, name)

    def flatten(self, x, axis=1, name=None):
        """x reshaped to 2-D: the axes before ``axis`` and the rest."""
        return self.node("Flatten", [x], {"axis": int(axis)}, name)

    def reshape(self, x, shape, name=None):
        """x in a new shape (ONNX rules: 0 keeps an axis, -1 is inferred)."""
        return self.node("Reshape", [x], {"shape": [int(v) for v in shape]}, name)

    def transpose(self, x, perm, name=None):
        """x with its axes permuted by ``perm``."""
        return self.node("Transpose", [x], {"perm": [int(v) for v in perm]}, name)

    def gemm(self, a, b, c=None, *, alpha=1.0, beta=1.0, trans_a=False, trans_b=False,
             name=None):
        """alpha * a' @ b' + beta * c, a' and b' transposed when asked (ONNX Gemm)."""
        return self.node("Gemm", [a, b] + ([c] if c is not None else []), {
            "alpha": float(alpha), "beta": float(beta), "transA": int(trans_a),
            "transB": int(trans_b)}, name)

    def dense(self, x, w, b=None, name=None):
        """Fully connected: x (N, in) @ w.T + b, with w of shape (out, in)."""
        return self.gemm(x, w, b, trans_b=True, name=name)

    def matmul(self, a, b, name=None):
        """Matrix product with NumPy's matmul broadcasting."""
        return self.node("MatMul", [a, b], {}, name)

    def softmax(self, x, axis=-1, name=None):
        """Softmax along ``axis``."""
        return self.node("Softmax", [x], {"axis": int(axis)}, name)

    def batch_norm(self, x, scale, bias, mean, var, eps=1e-5, name=None):
        """Inference-mode batch normalization (folded into a preceding conv by the session)."""
        return self.node("BatchNormalization", [x, scale, bias, mean, var],
                         {"epsilon": float(eps)}, name)

    # -- generated: one method per OpDef with a builder name and no method above --------

    def __getattr__(self, attr):
        d = _generated().get(attr)
        if d is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {attr!r}")
        return _op_method(self, d)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(_generated()))

    # -- result ------------------------------------------------------------------------

    def build(self) -> Graph:
        """The Graph: unused constants dropped, tensor names as they are now."""
        if not self._outputs:
            raise GraphError(f"graph {self.name!r} has no outputs; call output() first")
        nodes = [Node(op, [r.name if r else "" for r in refs], [out.name], attrs, nname)
                 for op, refs, out, attrs, nname in self._nodes]
        used = {t for n in nodes for t in n.inputs} | {o.name for o in self._outputs}
        consts = {t.name: Constant(t.name, c.data) for t, c in self._constants.values()
                  if t.name in used}
        return Graph([TensorSpec(t.name, t.shape, dynamic=self._dynamic[t.name])
                      for t in self._inputs],
                     [TensorSpec(t.name, t.shape) for t in self._outputs],
                     nodes, consts, self.name)


def _generated() -> dict:
    """builder name -> OpDef, for the OpDefs whose builder method is not written above."""
    return {d.builder: d for d in OPDEFS.values()
            if d.builder and d.runtime and not hasattr(GraphBuilder, d.builder)}


_COERCE = {"int": int, "float": float, "str": str,
           "ints": lambda v: [int(a) for a in v], "floats": lambda v: [float(a) for a in v],
           "strs": lambda v: [str(a) for a in v], "int tensor": lambda v: np.asarray(v).tolist(),
           "tensor": np.asarray}


def _op_method(builder, d):
    """``g.<name>(*inputs, name=None, **attrs)`` adding one ``d.op_type`` node."""
    def method(*inputs, name=None, **attrs):
        where = f"{d.builder} ({d.op_type})"
        known = {a.name: a for a in d.attrs}
        unknown = sorted(set(attrs) - set(known))
        if unknown:
            raise GraphError(f"{where}: no attribute {', '.join(unknown)}; its attributes: "
                             f"{', '.join(known) or '(none)'}")
        missing = [a.name for a in d.attrs if a.required and a.name not in attrs]
        if missing:
            raise GraphError(f"{where}: attribute {', '.join(missing)} is required")
        values = {}
        for key, v in attrs.items():
            if v is None:
                continue
            try:
                values[key] = _COERCE[known[key].kind](v)
            except (TypeError, ValueError):
                raise GraphError(f"{where}: attribute {key}={v!r} must be of kind "
                                 f"{known[key].kind!r}") from None
        return builder.node(d.op_type, list(inputs), values, name)
    method.__name__ = d.builder
    method.__doc__ = f"{d.op_type}: {d.doc}. Attributes: " + (", ".join(
        f"{a.name} ({a.kind}, default {a.default!r})" for a in d.attrs) or "none") + "."
    return method
