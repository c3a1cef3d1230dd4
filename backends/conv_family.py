"""Conv kernel families: one interface for every way of computing a convolution.

A family is a class with three steps, in the spirit of MNN's creator / onResize /
onExecute split:

- ``pack(kept)``: once per chosen family, turn the weights the loader kept (a
  ``runtime.ir.Constant``) into the family's layout. No shapes are known here.
- ``plan(geom) -> int``: for one ``ConvGeometry`` (input, weight and output shapes,
  strides, pads, dilations, groups), remember what the call needs and return the scratch
  bytes ``run`` will use. Called again on every resize.
- ``run(x, bias, res, out, scratch, epi, w=None)``: compute ``out`` for the planned
  geometry, applying the ``Epilogue`` (bias, activation, residual add). ``w`` is the
  weight tensor when it is computed at run time (the direct family only).

``arrays()`` lists what the family keeps resident (counted in info()'s weight bytes), and
``unpack()`` gives the fp32 weights back as a Constant when the layout allows it: a conv
whose best family changes at a new input size repacks from it (backends/cpu_conv.py).

Families are registered by key with ``register_conv_family``; ``Choice.family`` (from
backends/choice.py) names one. A family may bring its own choice rule, a function of a
``ConvRequest`` returning a ``Choice`` or None; registered rules are asked before the
built-in table, so a family added from outside the package is chosen, planned and run
exactly like the built-in ones (tests/test_conv_family.py registers a toy one).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

from jitconv.errors import GraphError, RegistryError
from jitconv.kernels.epilogue import (ACT_CLIP, ACT_GELU, ACT_GELU_TANH, ACT_NONE, ACT_RELU,
                                      ACT_SILU)
from jitconv.runtime.shapes import window_geometry


@dataclass(frozen=True)
class ConvGeometry:
    """Shapes and window of one conv at one input size (NCHW; pads top, left, bottom,
    right)."""
    x: tuple
    w: tuple
    out: tuple
    strides: tuple
    pads: tuple
    dilations: tuple
    groups: int

    @classmethod
    def of(cls, node, x, w, out) -> "ConvGeometry":
        pads, strides, dil, _ = window_geometry(node, x[2:], w[2:])
        return cls(tuple(x), tuple(w), tuple(out), tuple(strides), tuple(pads), tuple(dil),
                   int(node.attr("group", 1)))

    @cached_property
    def args(self) -> tuple:
        """(sh, sw, pt, pl, dh, dw): the window arguments every CPU conv kernel takes."""
        return (self.strides[0], self.strides[1], self.pads[0], self.pads[1],
                self.dilations[0], self.dilations[1])


# the smooth activations a Conv node may carry (runtime/passes.py) and their codes
SMOOTH = {"silu": ACT_SILU, "gelu": ACT_GELU, "gelu_tanh": ACT_GELU_TANH}


@dataclass(frozen=True)
class Epilogue:
    """What follows the convolution sum: bias (always passed; zeros when the node has
    none), a residual add when ``residual``, then the activation (``act`` is ACT_NONE,
    ACT_RELU or ACT_CLIP to [lo, hi]), then ``post``: ACT_NONE or a smooth activation
    (ACT_SILU, ACT_GELU, ACT_GELU_TANH) that the conv op applies to the output after the
    kernel (kernels/act_vec.py); kernels see only ``act_args``. ``fq``: () or (scale, zero,
    qmin, qmax) of a fused per-tensor fake-quant the conv op applies last (a QDQ model's
    activation quantization, runtime/passes.py's fuse_conv_fake_quant)."""
    act: int = ACT_NONE
    lo: float = 0.0
    hi: float = 0.0
    residual: bool = False
    post: int = ACT_NONE
    fq: tuple = ()

    @classmethod
    def of(cls, node) -> "Epilogue":
        epi = cls._act_of(node)
        if node.attr("_fq_scale") is None:
            return epi
        from jitconv.runtime.ops.quant import QRANGES  # noqa: PLC0415
        dtype = node.attr("_fq_dtype", "uint8")
        if dtype not in QRANGES:
            raise GraphError(f"{node.describe()}: fused fake-quant dtype {dtype!r} is not one "
                             f"of {', '.join(QRANGES)}")
        qmin, qmax = QRANGES[dtype]
        return replace(epi, fq=(float(node.attr("_fq_scale")),
                                float(node.attr("_fq_zero", 0.0)), qmin, qmax))

    @classmethod
    def _act_of(cls, node) -> "Epilogue":
        act = node.attr("activation", "") or ""
        residual = len(node.inputs) > 3 and bool(node.inputs[3])
        if act == "relu":
            return cls(ACT_RELU, 0.0, 0.0, residual)
        if act == "clip":
            return cls(ACT_CLIP, float(node.attr("activation_min", float("-inf"))),
                       float(node.attr("activation_max", float("inf"))), residual)
        if act in SMOOTH:
            return cls(ACT_NONE, 0.0, 0.0, residual, SMOOTH[act])
        if act:
            raise GraphError(f"{node.describe()}: unknown fused activation {act!r} (expected "
                             f"relu, clip or one of {', '.join(SMOOTH)})")
        return cls(ACT_NONE, 0.0, 0.0, residual)

    @cached_property
    def act_args(self) -> tuple:
        return (self.act, self.lo, self.hi)


@dataclass(frozen=True)
class ConvRequest:
    """Everything a conv choice rule may read: the node, what the loader kept, the
    session's precision and memory mode, the geometry (None before shapes are known) and
    the hardware (``backends.base.Target``)."""
    node_desc: str
    attrs: dict
    kept: object
    decoded_from: str
    precision: str
    memory: str
    geom: ConvGeometry | None
    target: object


class ConvFamily:
    """Base class of a conv kernel family (see the module docstring)."""
    key = ""                 # registry key, what Choice.family names
    fuses_residual = False   # run() adds the residual before the activation itself

    def __init__(self, choice, target):
        self.choice, self.target = choice, target

    @property
    def option(self):
        return self.choice.option

    def pack(self, kept) -> None:
        raise NotImplementedError

    def plan(self, geom: ConvGeometry) -> int:
        return 0

    def run(self, x, bias, res, out, scratch, epi: Epilogue, w=None) -> None:
        raise NotImplementedError

    def arrays(self) -> tuple:
        return ()

    def unpack(self):
        """The weights as an fp32 Constant, or None when this layout cannot give them."""
        return None


FAMILIES: dict = {}
RULES: list = []             # (key, rule) of families that bring a choice rule


def register_conv_family(cls, rule=None):
    """Make ``cls`` (a ConvFamily subclass with a ``key``) choosable; ``rule(request) ->
    Choice | None`` is asked before the built-in choice table. Returns ``cls``."""
    if not (isinstance(cls, type) and issubclass(cls, ConvFamily)) or not cls.key:
        raise RegistryError(f"register_conv_family expects a ConvFamily subclass with a "
                            f"key, got {cls!r}")
    if cls.key in FAMILIES:
        raise RegistryError(f"conv family {cls.key!r} is already registered")
    if rule is not None and not callable(rule):
        raise RegistryError(f"conv family {cls.key!r}: rule must be callable")
    FAMILIES[cls.key] = cls
    if rule is not None:
        RULES.append((cls.key, rule))
    return cls


def unregister_conv_family(key: str) -> None:
    family(key)
    del FAMILIES[key]
    RULES[:] = [(k, r) for k, r in RULES if k != key]


def family(key: str):
    """The registered family class of this key (RegistryError naming the known ones)."""
    try:
        return FAMILIES[key]
    except KeyError:
        raise RegistryError(f"unknown conv family {key!r}; registered: "
                            f"{', '.join(sorted(FAMILIES)) or '(none)'}") from None
