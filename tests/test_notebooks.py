"""docs/notebooks/*.ipynb execute from top to bottom in a fresh kernel (nbclient) and draw
their plots; the stored copies carry their outputs, plots included."""
import os
import time

import pytest

WHY = 'the notebooks need pip install ".[docs,plot]" (nbclient, ipykernel, matplotlib)'
nbformat = pytest.importorskip("nbformat", reason=WHY)
nbclient = pytest.importorskip("nbclient", reason=WHY)
pytest.importorskip("ipykernel", reason=WHY)
pytest.importorskip("matplotlib", reason=WHY)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# notebook -> how many plots (image/png outputs) it draws
NOTEBOOKS = {"quickstart.ipynb": 1, "memory_modes.ipynb": 2}


def _images(nb):
    return sum("image/png" in out.get("data", {})
               for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs)


def _errors(nb):
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
            if out.output_type == "error"]


def _read(name):
    return nbformat.read(os.path.join(ROOT, "docs", "notebooks", name), as_version=4)


def test_every_notebook_is_listed():
    assert sorted(os.listdir(os.path.join(ROOT, "docs", "notebooks"))) == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_stored_notebook_has_its_outputs(name):
    nb = _read(name)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.execution_count for c in code), f"{name}: stored unexecuted"
    assert not _errors(nb)
    assert _images(nb) == NOTEBOOKS[name], f"{name}: stored without its plots"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_executes_and_draws(name, tmp_path):
    nb = _read(name)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    t0 = time.perf_counter()
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    seconds = time.perf_counter() - t0
    assert not _errors(nb)
    assert _images(nb) == NOTEBOOKS[name]
    print(f"{name}: executed in {seconds:.1f} s")
