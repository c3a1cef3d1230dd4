"""jitconv demo (jitconv/demo.py) at a small input size: every row runs and agrees with
its reference, and JITCONV_PROGRESS=0 keeps it quiet (no progress bar is made)."""
from __future__ import annotations

import jitconv.demo as demo


def test_demo_runs_every_config_quietly(monkeypatch):
    monkeypatch.setenv("JITCONV_PROGRESS", "0")
    bars = []
    monkeypatch.setattr(demo, "CompileProgress", lambda *a, **k: bars.append(a))
    lines = []
    demo.run_demo(input_size=32, repeat=1, threads=(2,), out=lines.append)
    assert not bars, "a bar was made although JITCONV_PROGRESS=0"
    rows = [ln for ln in "\n".join(lines).splitlines()
            if ln.startswith(("fp32 ", "fp16 ", "int8 ", "int4 "))]
    assert len(rows) == len(demo.demo_rows((2,)))
    for row in rows:
        kernel_err = float(row.split()[-2])       # against the reference of its own storage
        assert kernel_err < 1e-4, row
