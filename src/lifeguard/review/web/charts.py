"""Server-rendered inline SVG bar charts for the transparency page (no JavaScript, no CDN).

The transparency report is a nested mapping; every mapping whose values are all numbers becomes a
horizontal bar chart, and every other number a row of the summary table.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

BAR_H = 18
GAP = 6
LABEL_W = 190
CHART_W = 560


@dataclass(frozen=True)
class Chart:
    title: str
    svg: Markup
    rows: list[tuple[str, float]]


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _title(path: str) -> str:
    return path.replace("_", " ").replace(".", " › ")


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.2f}"


def bar_chart(title: str, rows: list[tuple[str, float]]) -> Markup:
    """A horizontal bar chart as an ``<svg>`` element with a ``<title>`` for screen readers."""
    top = max((v for _, v in rows), default=0) or 1
    bar_w = CHART_W - LABEL_W - 70
    h = len(rows) * (BAR_H + GAP) + GAP
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" '
        f'viewBox="0 0 {CHART_W} {h}" width="{CHART_W}" height="{h}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
    ]
    for i, (label, value) in enumerate(rows):
        y = GAP + i * (BAR_H + GAP)
        w = max(1.0, bar_w * (value / top)) if value > 0 else 0.0
        parts.append(
            f'<text x="{LABEL_W - 8}" y="{y + BAR_H - 5}" text-anchor="end" '
            f'font-size="12" fill="#333">{escape(label)}</text>'
            f'<rect x="{LABEL_W}" y="{y}" width="{w:.1f}" height="{BAR_H}" fill="#4a6fa5"/>'
            f'<text x="{LABEL_W + w + 6:.1f}" y="{y + BAR_H - 5}" font-size="12" '
            f'fill="#333">{escape(_fmt(value))}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _walk(obj: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from _walk(v, f"{path}.{k}" if path else str(k))
    else:
        yield path, obj


def charts_for(report: Mapping[str, Any]) -> list[Chart]:
    out: list[Chart] = []

    def visit(obj: Any, path: str) -> None:
        if isinstance(obj, Mapping):
            if obj and all(_num(v) for v in obj.values()) and len(obj) >= 2:
                rows = [(str(k), float(v)) for k, v in obj.items()]
                out.append(Chart(_title(path), bar_chart(_title(path), rows), rows))
                return
            for k, v in obj.items():
                visit(v, f"{path}.{k}" if path else str(k))

    visit(report, "")
    return out


def tables_for(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Scalar figures not drawn as a chart: (label, value)."""
    charted = {c.title for c in charts_for(report)}
    rows: list[tuple[str, str]] = []
    for path, v in _walk(report, ""):
        parent = _title(path.rsplit(".", 1)[0]) if "." in path else ""
        if parent in charted:
            continue
        if isinstance(v, list):
            continue
        rows.append((_title(path), "—" if v is None else (_fmt(v) if _num(v) else str(v))))
    return rows


def flatten(report: Mapping[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(metric, key, value) rows for the CSV download: the metric is the dotted path to the
    mapping, the key the last component."""
    for path, v in _walk(report, ""):
        if isinstance(v, list):
            for i, x in enumerate(v):
                yield path, str(i), str(x)
            continue
        metric, _, key = path.rpartition(".")
        yield metric or path, key if metric else "", "" if v is None else str(v)
