"""Per-layer accuracy report: how far graph B's tensors drift from graph A's."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import Config
from .ir import Graph, TensorSpec
from .shapes import infer_shapes
from .tables import html_table, text_table


@dataclass(frozen=True)
class LayerError:
    """Error of one op's output in graph B against the same tensor in graph A."""
    name: str
    op_type: str
    tensor: str
    shape: tuple
    max_abs: float
    mean_abs: float
    max_rel: float          # max_abs / max |A's tensor|


@dataclass(frozen=True)
class CompareReport:
    """Rows in graph order; str() is a text table, Jupyter shows an HTML table."""
    rows: tuple

    _COLUMNS = ("name", "op_type", "shape", "max_abs", "mean_abs", "max_rel")

    def _cells(self, r):
        return [r.name, r.op_type, str(r.shape), f"{r.max_abs:.3e}", f"{r.mean_abs:.3e}",
                f"{r.max_rel:.2e}"]

    def worst(self) -> LayerError:
        return max(self.rows, key=lambda r: r.max_rel)

    def plot(self, ax=None, metric="max_rel"):
        """Line chart of each layer's error, in graph order, on a log scale.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Where to draw; a new figure when omitted.
        metric : {"max_rel", "max_abs", "mean_abs"}
            Which error column to plot.

        Returns
        -------
        matplotlib.axes.Axes
            The axes drawn on (``ax.figure`` is the figure).

        Raises
        ------
        ImportError
            When matplotlib is not installed (``pip install "jitconv[plot]"``).
        """
        from .plots import plot_compare
        return plot_compare(self, ax, metric)

    def __str__(self):
        return text_table(self._COLUMNS, [self._cells(r) for r in self.rows])

    def _repr_html_(self):
        return html_table(self._COLUMNS, [self._cells(r) for r in self.rows])


def _expose_all(graph: Graph, feeds) -> Graph:
    """The same graph with every node output made a graph output."""
    shapes = infer_shapes(graph, {k: np.shape(v) for k, v in feeds.items()})
    outs = [TensorSpec(t, shapes[t]) for n in graph.nodes for t in n.outputs]
    return Graph(list(graph.inputs), outs, list(graph.nodes), dict(graph.constants), graph.name,
                 graph.fixed_input_shapes)


def compare(graph_a: Graph, graph_b: Graph, feeds: dict, config: Config | None = None):
    """Run both graphs on ``feeds`` with jitconv and report, per op of graph B whose output
    tensor also exists in graph A, the max and mean absolute error of B against A.

    Parameters
    ----------
    graph_a, graph_b : Graph
        The reference graph and the one to check (e.g. ``jc.quantize(graph_a, "int4")``).
    feeds : dict
        {input name: array}, the inputs both graphs run on.
    config : Config, optional
        The session config of both runs; defaults to ``Config()``.

    Returns
    -------
    CompareReport
        One ``LayerError`` row per compared op, in graph B's order.

    Examples
    --------
    >>> import numpy as np, jitconv as jc
    >>> from jitconv.models import conv_chain
    >>> g = conv_chain(layers=2, channels=4, size=8)
    >>> x = np.ones((1, 4, 8, 8), np.float32)
    >>> jc.compare(g, jc.quantize(g, "int8"), {"x": x}).worst().max_rel < 0.05
    True
    """
    from .session import Session
    config = config or Config()
    res_a = Session(_expose_all(graph_a, feeds), config).run(feeds)
    res_b = Session(_expose_all(graph_b, feeds), config).run(feeds)
    rows = []
    for node in graph_b.nodes:
        for t in node.outputs:
            if t not in res_a:
                continue
            a, b = res_a[t], res_b[t]
            if a.shape != b.shape:
                continue
            diff = np.abs(a.astype(np.float64) - b) if a.size else np.zeros(1)
            scale = float(np.max(np.abs(a))) if a.size else 0.0
            rows.append(LayerError(node.name, node.op_type, t, a.shape, float(diff.max()),
                                   float(diff.mean()),
                                   float(diff.max()) / scale if scale else float(diff.max())))
    return CompareReport(tuple(rows))
