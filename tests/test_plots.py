"""Profile.plot() and CompareReport.plot(): the drawn data is the report's, and a missing
matplotlib is reported with the command that installs it."""
import sys

import numpy as np
import pytest

import jitconv as jc
from jitconv.models import mobilenet_v2
from jitconv.runtime.compare import CompareReport, LayerError
from jitconv.runtime.profile import OpTime, Profile

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def small_net():
    graph = mobilenet_v2(input_size=32, width=0.35, num_classes=10)
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    return graph, x


def test_profile_plot_bars_are_the_op_times_coloured_by_kernel(small_net):
    graph, x = small_net
    prof = jc.Session(graph, jc.Config(threads=1)).profile(x, runs=3)
    ax = prof.plot()
    bars = ax.patches
    assert len(bars) == len(prof.ops)
    assert [b.get_width() for b in bars] == pytest.approx([op.median_ms for op in prof.ops])
    assert [t.get_text() for t in ax.get_yticklabels()] == [op.name for op in prof.ops]
    colour = {}
    for bar, op in zip(bars, prof.ops):      # one colour per kernel, different kernels differ
        colour.setdefault(op.kernel, bar.get_facecolor())
        assert bar.get_facecolor() == colour[op.kernel], op.name
    assert len(set(colour.values())) == len(colour) >= 3
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert sorted(legend) == sorted(colour)


def test_profile_plot_draws_on_a_given_axes():
    prof = Profile("cfg", 2, 1.5, (OpTime("a", "Conv", "k1", (1,), 10, 0.5),
                                   OpTime("b", "Relu", "k2", (1,), 0, 1.0)))
    fig, ax = plt.subplots()
    assert prof.plot(ax=ax) is ax
    assert [b.get_width() for b in ax.patches] == [0.5, 1.0]
    assert "cfg" in ax.get_title()


def test_compare_plot_points_are_the_layer_errors(small_net):
    graph, x = small_net
    report = jc.compare(graph, jc.quantize(graph, "int4"), {"input": x})
    ax = report.plot()
    (line,) = ax.get_lines()
    assert list(line.get_ydata()) == pytest.approx([r.max_rel for r in report.rows])
    assert [t.get_text() for t in ax.get_xticklabels()] == [r.name for r in report.rows]
    assert ax.get_yscale() == "log"
    ax2 = report.plot(metric="mean_abs")
    assert list(ax2.get_lines()[0].get_ydata()) == pytest.approx(
        [r.mean_abs for r in report.rows])
    with pytest.raises(ValueError, match="metric"):
        report.plot(metric="median")


def test_compare_plot_of_exact_layers_stays_linear():
    report = CompareReport((LayerError("a", "Conv", "t", (1,), 0.0, 0.0, 0.0),))
    assert report.plot().get_yscale() == "linear"


@pytest.mark.parametrize("plot", [
    lambda: Profile("cfg", 1, 1.0, ()).plot(),
    lambda: CompareReport(()).plot(),
])
def test_missing_matplotlib_names_the_extra(monkeypatch, plot):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)   # `import` now raises ImportError
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r'pip install "jitconv\[plot\]"'):
        plot()
