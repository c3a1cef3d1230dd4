"""Per-op coverage: ``python -m jitconv.runtime.coverage`` prints, for every op type ONNX
defines (default domain) and every op jitconv registers, whether jitconv supports it (the
ONNX versions its importer reads; "load" for ops folded or removed at import, or read as
another op such as Upsample as Resize and CastLike as Cast) and, for the
supported ones, how many of ONNX's conformance cases (onnx.backend.test node and
pytorch-converted models) tests/test_onnx_backend.py runs and how many it excludes, with
the reasons (runtime/onnx_conformance.py).

Options: ``--supported`` lists jitconv's ops only; ``--markdown`` prints a markdown table
(docs/ops.md keeps the supported rows).
"""
from __future__ import annotations

import argparse
import warnings
from collections import Counter

from .onnx_conformance import EXCLUDED, case_op
from .opdef import all_opdefs


def onnx_op_types() -> set:
    """Every op type of ONNX's default domain (empty when onnx is not installed)."""
    try:
        import onnx.defs  # noqa: PLC0415
    except ImportError:
        return set()
    return {s.name for s in onnx.defs.get_all_schemas() if s.domain in ("", "ai.onnx")}


def conformance_cases() -> dict:
    """op -> names of its conformance cases (excluded ones too); empty without onnx."""
    try:
        from onnx.backend.test.loader import load_model_tests  # noqa: PLC0415
    except ImportError:
        return {}
    cases = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")       # the case generators warn about casts
        for kind, category in (("node", "NodeModel"),
                               ("pytorch-converted", "PyTorchConvertedModel")):
            for t in load_model_tests(kind=kind):
                op = case_op(category, t.name)
                if op is not None:
                    cases.setdefault(op, []).append(t.name)
    return cases


def rows(supported_only: bool = False) -> list:
    """One dict per op: op, support ("runtime" / "load" / "no"), versions, run, excluded,
    reasons (Counter of exclusion reasons)."""
    defs = {k: d for k, d in all_opdefs().items() if not d.internal}   # ONNX ops only
    cases = conformance_cases()
    names = set(defs) if supported_only else set(defs) | onnx_op_types()
    out = []
    for op in sorted(names):
        d = defs.get(op)
        names_ = cases.get(op, [])
        excluded = [n for n in names_ if n in EXCLUDED]
        out.append({
            "op": op,
            "support": "no" if d is None else ("runtime" if d.runtime else "load"),
            "versions": () if d is None or d.onnx is None else tuple(d.onnx.versions),
            "run": len(names_) - len(excluded), "excluded": len(excluded),
            "reasons": Counter(EXCLUDED[n] for n in excluded)})
    return out


def _reasons(r) -> str:
    """The exclusion reasons, those that differ only before their first ": " (the data
    type, the target type) merged: "int8 data, uint8 data: jitconv runs float32 tensors"."""
    groups = {}
    for why, n in r.most_common():
        head, sep, tail = why.partition(": ")
        key = tail if sep and len(head) <= 40 else why
        heads, total = groups.get(key, ([], 0))
        groups[key] = (heads + ([head] if key == tail else []), total + n)
    out = []
    for key, (heads, n) in groups.items():
        text = f"{', '.join(heads)}: {key}" if heads else key
        out.append(f"{n} x {text}" if n > 1 else text)
    return "; ".join(out)


def format_table(table, markdown=False) -> str:
    head = ("op", "jitconv", "ONNX versions", "cases run", "excluded", "why excluded")
    lines = []
    for r in table:
        cells = (r["op"], r["support"], ", ".join(map(str, r["versions"])) or "-",
                 str(r["run"]) if r["support"] != "no" else "-",
                 str(r["excluded"]) if r["support"] != "no" else "-", _reasons(r["reasons"]))
        lines.append(cells)
    if markdown:
        md = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        md += ["| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"
               for cells in lines]
        return "\n".join(md)
    widths = [max(len(c[i]) for c in lines + [head]) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(cells[:5], widths)) +
                     ("  " + cells[5] if cells[5] else "") for cells in [head] + lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m jitconv.runtime.coverage",
                                 description="jitconv's support and ONNX conformance per op")
    ap.add_argument("--supported", action="store_true", help="jitconv's ops only")
    ap.add_argument("--markdown", action="store_true", help="a markdown table")
    args = ap.parse_args(argv)
    table = rows(args.supported)
    print(format_table(table, args.markdown))
    ours = [r for r in table if r["support"] != "no"]
    which = f"{len(ours)} op types supported" if args.supported else \
        f"{len(ours)} of {len(table)} op types supported"
    print(f"\n{which}; conformance cases: {sum(r['run'] for r in ours)} run, "
          f"{sum(r['excluded'] for r in ours)} excluded")


if __name__ == "__main__":
    main()
