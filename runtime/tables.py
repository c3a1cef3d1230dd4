"""Plain-text and HTML tables for the reports (info, profile, quantize, compare)."""
from __future__ import annotations

import html


def text_table(columns, rows, summary: str | None = None) -> str:
    """Left-aligned columns two spaces apart, a dashed rule under the header."""
    table = [list(columns)] + [list(r) for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(([summary] if summary else []) + lines)


def html_table(columns, rows, summary: str | None = None) -> str:
    """The same table for Jupyter (every cell escaped)."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                   for r in rows)
    top = f"<p>{html.escape(summary)}</p>" if summary else ""
    return f"{top}<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
