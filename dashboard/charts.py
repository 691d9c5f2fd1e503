"""Small inline SVG charts rendered on the server (no JavaScript, nothing from a CDN)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from markupsafe import Markup, escape


def bar_chart(
    points: Sequence[tuple[date, int]], width: int = 640, height: int = 160, label: str = ""
) -> Markup:
    """Bars for (week, count) pairs, with the week under every other bar and counts on top."""
    if not points:
        return Markup("")
    top, bottom, left = 18, 22, 4
    plot_h = height - top - bottom
    peak = max(n for _, n in points) or 1
    slot = (width - left) / len(points)
    bar_w = max(4.0, slot * 0.62)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(label)}</title>",
        f'<line x1="0" y1="{top + plot_h}" x2="{width}" y2="{top + plot_h}" class="axis"/>',
    ]
    for i, (week, n) in enumerate(points):
        h = round(plot_h * n / peak, 1) if n else 0
        x = round(left + i * slot + (slot - bar_w) / 2, 1)
        y = round(top + plot_h - h, 1)
        cx = round(x + bar_w / 2, 1)
        tip = f"week of {week.isoformat()}: {n} leak finding{'s' if n != 1 else ''}"
        parts.append(
            f'<rect x="{x}" y="{y}" width="{round(bar_w, 1)}" height="{h}" rx="2" '
            f'class="{"bar" if n else "bar empty"}"><title>{escape(tip)}</title></rect>'
        )
        if n:
            parts.append(f'<text x="{cx}" y="{y - 4}" class="count">{n}</text>')
        if i % 2 == 0 or len(points) <= 8:
            parts.append(
                f'<text x="{cx}" y="{height - 6}" class="tick">{week.strftime("%d %b")}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))
