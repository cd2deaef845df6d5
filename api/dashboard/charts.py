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
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'xmlns="http://www.w3.org/2000/svg">',
        f'<line class="axis" x1="{PAD_LEFT}" y1="{PAD_TOP + plot_h}" x2="{WIDTH - 8}" y2="{PAD_TOP + plot_h}"/>',
        f'<text class="tick" x="{PAD_LEFT - 6}" y="{PAD_TOP + 4}" text-anchor="end">{escape(_short(top))}</text>',
        f'<text class="tick" x="{PAD_LEFT - 6}" y="{PAD_TOP + plot_h}" text-anchor="end">0</text>',
    ]
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
                         f'{escape(point.label[5:] if len(point.label) >= 10 else point.label)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _short(value: Decimal) -> str:
    text = f"{value.normalize():f}" if value == value.to_integral() else f"{value:.2f}"
    return text
