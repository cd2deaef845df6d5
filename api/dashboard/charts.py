"""Charts as server-rendered inline SVG: no chart library, no JavaScript. Values arrive as
Decimal strings; floats appear only as pixel coordinates, never as displayed amounts (labels
print the strings as given)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from markupsafe import Markup, escape

WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 640, 200, 56, 28, 12


@dataclass(frozen=True)
class Point:
    label: str  # x axis label (a day or an hour)
    value: str  # a decimal string


def bars(points: list[Point], title: str, unit: str = "") -> Markup:
    """A bar chart of `points`, with the largest value on the axis and each value in a tooltip."""
    if not points:
        return Markup(f'<p class="empty">No {escape(title.lower())} in this period yet.</p>')
    values = [Decimal(p.value) for p in points]
    top = max(max(values), Decimal(0))
    plot_w, plot_h = WIDTH - PAD_LEFT - 8, HEIGHT - PAD_BOTTOM - PAD_TOP
    step = plot_w / len(points)
    width = max(step * 0.7, 1.0)
    parts = _frame(title, top, plot_h)
    every = max(1, len(points) // 8)
    for i, (point, value) in enumerate(zip(points, values)):
        h = float(value / top) * plot_h if top > 0 and value > 0 else 0.0
        x = PAD_LEFT + i * step + (step - width) / 2
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{PAD_TOP + plot_h - h:.1f}" width="{width:.1f}" height="{h:.1f}" '
            f'data-label="{escape(point.label)}" data-value="{escape(point.value)}">'
            f'<title>{escape(point.label)}: {escape(point.value)} {escape(unit)}</title></rect>'
        )
        if i % every == 0:
            parts.append(f'<text class="tick" x="{x + width / 2:.1f}" y="{HEIGHT - 8}" text-anchor="middle">'
                         f'{escape(_tick(point.label))}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _frame(title: str, top: Decimal, plot_h: float) -> list[str]:
    """The opening of a chart's SVG: the x axis and the y axis's two labels (0 and `top`)."""
    return [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'xmlns="http://www.w3.org/2000/svg">',
        f'<line class="axis" x1="{PAD_LEFT}" y1="{PAD_TOP + plot_h}" x2="{WIDTH - 8}" y2="{PAD_TOP + plot_h}"/>',
        f'<text class="tick" x="{PAD_LEFT - 6}" y="{PAD_TOP + 4}" text-anchor="end">{escape(_short(top))}</text>',
        f'<text class="tick" x="{PAD_LEFT - 6}" y="{PAD_TOP + plot_h}" text-anchor="end">0</text>',
    ]


def _tick(label: str) -> str:
    """An x axis label without its year (2026-11-26 → 11-26)."""
    return label[5:] if len(label) >= 10 else label


def _short(value: Decimal) -> str:
    """The axis's top value, exact (never rounded: it labels real amounts)."""
    return f"{value.normalize():f}"


@dataclass(frozen=True)
class Group:
    label: str
    values: tuple[str, ...]  # decimal strings, one per series


def grouped_bars(groups: list[Group], series: tuple[str, ...], title: str, unit: str = "") -> Markup:
    """Side-by-side bars per label (e.g. cost and revenue per day), one colour per series, a legend."""
    if not groups or all(Decimal(v) == 0 for g in groups for v in g.values):
        return Markup(f'<p class="empty">No {escape(title.lower())} in this period yet.</p>')
    top = max(Decimal(v) for g in groups for v in g.values)
    plot_w, plot_h = WIDTH - PAD_LEFT - 8, HEIGHT - PAD_BOTTOM - PAD_TOP
    step = plot_w / len(groups)
    width = max(step * 0.8 / len(series), 1.0)
    parts = _frame(title, top, plot_h)
    for k, name in enumerate(series):
        parts.append(f'<rect class="series-{k}" x="{PAD_LEFT + 8 + k * 90}" y="2" width="10" height="10"/>'
                     f'<text class="tick" x="{PAD_LEFT + 22 + k * 90}" y="11">{escape(name)}</text>')
    every = max(1, len(groups) // 8)
    for i, group in enumerate(groups):
        x0 = PAD_LEFT + i * step + step * 0.1
        for k, (name, value) in enumerate(zip(series, group.values)):
            amount = Decimal(value)
            h = float(amount / top) * plot_h if amount > 0 else 0.0
            parts.append(
                f'<rect class="bar series-{k}" x="{x0 + k * width:.1f}" y="{PAD_TOP + plot_h - h:.1f}" '
                f'width="{width:.1f}" height="{h:.1f}" data-series="{escape(name)}" data-value="{escape(value)}">'
                f'<title>{escape(group.label)} {escape(name)}: {escape(value)} {escape(unit)}</title></rect>'
            )
        if i % every == 0:
            parts.append(f'<text class="tick" x="{x0 + width * len(series) / 2:.1f}" y="{HEIGHT - 8}" '
                         f'text-anchor="middle">{escape(_tick(group.label))}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
