"""ONNX's own conformance tests (onnx.backend.test.BackendTest) run on jitconv.

Included: the node test cases of every op jitconv supports (NODE_OPS: op -> the test
name prefixes of its cases) and the pytorch-converted Conv / MaxPool / AvgPool cases that
ship in the onnx package. Every included case runs through
``jitconv.runtime.onnx_backend.JitconvBackend`` (import, Session, CPU kernels) unless
EXCLUDED lists it, with the reason; excluded cases are not collected, and
``test_excluded_cases_fail_with_a_clear_error`` checks that each one jitconv cannot run
is refused with a JitconvError rather than a crash or a wrong answer.
``python tests/test_onnx_backend.py`` prints the run / excluded count per op.
"""
from __future__ import annotations

import pytest

onnx = pytest.importorskip("onnx")
import onnx.backend.test  # noqa: E402

from jitconv.runtime.onnx_backend import JitconvBackend  # noqa: E402

from jitconv.runtime.onnx_conformance import (  # noqa: E402, F401
    EXCLUDED, NODE_OPS, PYTORCH_CONVERTED, case_op)


def _collect():
    """The included CPU cases as unittest classes (EXCLUDED ones left out); also
    {(category, op): [included names, excluded ones too]} for the count table."""
    backend_test = onnx.backend.test.BackendTest(JitconvBackend, __name__)
    classes, cases = {}, {}
    for cls_name, cls in backend_test.test_cases.items():
        category = cls_name[len("OnnxBackend"):-len("Test")]
        keep = False
        for attr in [a for a in vars(cls) if a.startswith("test_")]:
            base = attr[:-len("_cpu")] if attr.endswith("_cpu") else None
            op = case_op(category, base) if base else None
            if op is None:
                delattr(cls, attr)
                continue
            keep = True
            cases.setdefault((category, op), []).append(base)
            if base in EXCLUDED:
                delattr(cls, attr)
        if keep:
            classes[cls_name] = cls
    return classes, cases


_CLASSES, CASES = _collect()
globals().update(_CLASSES)


def test_every_excluded_case_exists_and_says_why():
    included = {n for names in CASES.values() for n in names}
    stale = sorted(set(EXCLUDED) - included)
    assert not stale, f"EXCLUDED names cases that are not included (renamed?): {stale}"
    assert all(len(reason) > 10 for reason in EXCLUDED.values())


def _case_models():
    """name -> (model, first data set's inputs) of every included case."""
    from onnx.backend.test.loader import load_model_tests
    import glob, os  # noqa: E401
    out = {}
    for t in load_model_tests(kind="node"):
        if t.name in EXCLUDED:       # a node case's data sets hold TensorProtos
            out[t.name] = (t.model, [onnx.numpy_helper.to_array(a)
                                     if isinstance(a, onnx.TensorProto) else a
                                     for a in t.data_sets[0][0]])
    for t in load_model_tests(kind="pytorch-converted"):
        if t.name in EXCLUDED:
            model = onnx.load(os.path.join(t.model_dir, "model.onnx"))
            files = sorted(glob.glob(os.path.join(t.model_dir, "test_data_set_0", "input_*.pb")))
            out[t.name] = (model, [onnx.numpy_helper.to_array(onnx.load_tensor(f))
                                   for f in files])
    return out


def test_excluded_cases_fail_with_a_clear_error():
    from jitconv.errors import JitconvError
    models = _case_models()
    for name, reason in EXCLUDED.items():
        if " data: " in reason:      # integer data: the backend folds it, nothing to refuse
            continue
        model, inputs = models[name]
        with pytest.raises(JitconvError):
            JitconvBackend.prepare(model).run(inputs)


def test_every_supported_op_has_passing_cases():
    for op in NODE_OPS:
        names = CASES.get(("NodeModel", op), [])
        assert any(n not in EXCLUDED for n in names), f"no node case of {op} runs"


def conformance_table() -> str:
    """Per op: cases run (and expected to pass) / excluded."""
    rows = [("source", "op", "run", "excluded")]
    for (category, op), names in sorted(CASES.items()):
        excluded = sum(n in EXCLUDED for n in names)
        rows.append((category, op, str(len(names) - excluded), str(excluded)))
    total_run = sum(int(r[2]) for r in rows[1:])
    total_ex = sum(int(r[3]) for r in rows[1:])
    rows.append(("total", "", str(total_run), str(total_ex)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows)


if __name__ == "__main__":
    print(conformance_table())
