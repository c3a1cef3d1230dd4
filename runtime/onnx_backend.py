"""An ``onnx.backend.base.Backend`` over jitconv, so ``onnx.backend.test.BackendTest`` runs.

``JitconvBackend.prepare(model)`` checks the model (unsupported ops, versions and
attributes are a GraphError at once) and returns a ``JitconvRep``; ``rep.run(inputs)``
imports and prepares a Session on first use and returns the outputs in graph order.

Inputs jitconv cannot take at run time (integer tensors, and inputs that feed a
parameter such as a Reshape shape or Clip bounds) are bound as constants: the rep imports
the model again for each new set of their values (cached). Outputs computed at load keep
their ONNX dtype (e.g. the int64 of Shape); run-time outputs, float32 in a Session, are
cast to the dtype the graph declares for them where numpy has it (bool for the
comparisons, int64 for ArgMax, float16 for a Cast to it), as an ONNX backend must return.

Keyword arguments of ``prepare`` (``backend``, ``threads``, ``precision``, ``memory``)
go to ``jitconv.Config``.
"""
from __future__ import annotations

import numpy as np

from jitconv.errors import InputError

from .config import Config
from .onnx_import import _onnx, check_supported, import_model, inputs_needing_values, upgrade
from .session import Session

onnx = _onnx()
from onnx.backend.base import Backend, BackendRep, namedtupledict  # noqa: E402

_CONFIG_KEYS = ("backend", "threads", "precision", "memory")


def _declared_dtype(vi):
    """The numpy dtype a graph output declares, or None (no tensor type, float32, or a
    type numpy lacks such as bfloat16)."""
    if not vi.type.HasField("tensor_type"):
        return None
    elem = vi.type.tensor_type.elem_type
    if elem in (0, 1):
        return None
    try:
        dt = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem))
    except Exception:
        return None
    return dt if dt.kind in "biu" or dt in (np.float16, np.float64) else None


def _as_declared(value, dtype):
    """A run-time output (float32) as the declared dtype: 0/1 to bool, indices to ints."""
    return value if dtype is None else value.astype(dtype)


class JitconvRep(BackendRep):
    """A prepared ONNX model: runs it with a jitconv Session."""

    def __init__(self, model, config: Config):
        self.model = model = upgrade(model)
        self.config = config
        inits = {t.name for t in model.graph.initializer}
        self.input_names = [vi.name for vi in model.graph.input if vi.name not in inits]
        self.output_names = [vi.name for vi in model.graph.output]
        self.bound = inputs_needing_values(model)
        self.out_dtypes = {vi.name: _declared_dtype(vi) for vi in model.graph.output}
        self._cache = {}

    def _feeds(self, inputs):
        if isinstance(inputs, dict):
            feeds = dict(inputs)
        else:
            if isinstance(inputs, np.ndarray):
                inputs = [inputs]
            inputs = list(inputs)
            if len(inputs) > len(self.input_names):
                raise InputError(f"got {len(inputs)} inputs; the model takes "
                                 f"{len(self.input_names)}: {self.input_names}")
            feeds = dict(zip(self.input_names, inputs))
        return {k: np.asarray(v) for k, v in feeds.items()}

    def prepared(self, feeds):
        """(import result, session) for these feeds' bound values and input shapes."""
        bind = {k: v for k, v in feeds.items() if k in self.bound}
        shapes = {k: tuple(v.shape) for k, v in feeds.items() if k not in self.bound}
        key = (tuple(sorted((k, v.dtype.str, v.shape, v.tobytes()) for k, v in bind.items())),
               tuple(sorted(shapes.items())))
        if key not in self._cache:
            result = import_model(self.model, input_shapes=shapes, bind=bind)
            self._cache[key] = (result, Session(result.graph, self.config))
        return self._cache[key]

    def run(self, inputs, **kwargs):
        feeds = self._feeds(inputs)
        result, sess = self.prepared(feeds)
        runtime = {s.name: feeds[s.name] for s in result.graph.inputs}
        got = sess.run(runtime)
        outs = [result.folded_outputs[n].copy() if n in result.folded_outputs
                else _as_declared(got[n], self.out_dtypes[n]) for n in self.output_names]
        return namedtupledict("Outputs", self.output_names)(*outs)


class JitconvBackend(Backend):
    """onnx.backend interface to jitconv (CPU only)."""

    @classmethod
    def is_compatible(cls, model, device="CPU", **kwargs):
        try:
            check_supported(model)
        except Exception:
            return False
        return True

    supports_model = is_compatible

    @classmethod
    def prepare(cls, model, device="CPU", **kwargs):
        if not cls.supports_device(device):
            raise InputError(f"jitconv's ONNX backend runs on CPU, not {device!r}")
        check_supported(model)
        cfg = {k: kwargs[k] for k in _CONFIG_KEYS if k in kwargs}
        cfg.setdefault("threads", 2)
        return JitconvRep(model, Config(**cfg))

    @classmethod
    def run_model(cls, model, inputs, device="CPU", **kwargs):
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node, inputs, device="CPU", outputs_info=None, **kwargs):
        """Run one NodeProto on numpy inputs (float32 tensors; others are bound)."""
        helper = onnx.helper
        inputs = [np.asarray(a) for a in inputs]
        names = [n for n in node.input]
        vis = [helper.make_tensor_value_info(
            n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
            for n, a in zip(names, inputs) if n]
        outs = [helper.make_tensor_value_info(n, 0, None) for n in node.output if n]
        opset = kwargs.pop("opset_version", onnx.defs.onnx_opset_version())
        graph = helper.make_graph([node], "run_node", vis, outs)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        feeds = {n: a for n, a in zip(names, inputs) if n}
        return cls.prepare(model, device, **kwargs).run(feeds)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device.split(":")[0].upper() == "CPU"


prepare = JitconvBackend.prepare
run_model = JitconvBackend.run_model
run_node = JitconvBackend.run_node
supports_device = JitconvBackend.supports_device
