"""Static SVG charts for the HTML report: no script, no network, readable in any browser."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from html import escape

#: Colour-blind-safe categorical palette (Okabe-Ito), then greys.
PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#D55E00",
    "#CC79A7",
    "#56B4E9",
    "#F0E442",
    "#000000",
    "#777777",
    "#BBBBBB",
)
WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 24, 28


def _nice_max(value: float) -> float:
    """The smallest 1/2/5 x 10^k at or above ``value``."""
    if value <= 0:
        return 1.0
    scale = 10 ** math.floor(math.log10(value))
    return next(step * scale for step in (1, 2, 5, 10) if step * scale >= value)


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:.3g}"


def _frame(y_max: float, unit: str) -> list[str]:
    parts = []
    plot_h = HEIGHT - TOP - BOTTOM
    for i in range(5):
        value = y_max * i / 4
        y = TOP + plot_h - plot_h * i / 4
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e5e5"/>'
        )
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(value)}</text>')
    if unit:
        parts.append(f'<text x="{LEFT}" y="12" class="unit">{escape(unit)}</text>')
    return parts


def _legend(names: list[str]) -> str:
    items = "".join(
        f'<span><i style="background:{PALETTE[i % len(PALETTE)]}"></i>{escape(n)}</span>'
        for i, n in enumerate(names)
    )
    return f'<div class="legend">{items}</div>'


def _svg(parts: list[str], title: str) -> str:
    body = "".join(parts)
    return (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}">{body}</svg>'
    )


def empty(title: str) -> str:
    return f'<p class="empty">No data for {escape(title)} in this range.</p>'


def line_chart(series: dict[str, list[tuple[datetime, float]]], title: str, unit: str = "") -> str:
    """One line per series over time; with a single time bucket (a range shorter than the
    bucket), one bar per series instead."""
    points = [p for values in series.values() for p in values if p[1] is not None]
    if not points:
        return empty(title)
    if len({p[0] for p in points}) < 2:
        totals = {name: sum(v for _, v in values) for name, values in series.items()}
        return bar_chart(list(totals), {unit or "value": list(totals.values())}, title, unit)
    t0 = min(p[0] for p in points).timestamp()
    t1 = max(p[0] for p in points).timestamp()
    span = max(t1 - t0, 1.0)
    y_max = _nice_max(max(p[1] for p in points))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def xy(t: datetime, v: float) -> str:
        x = LEFT + plot_w * (t.timestamp() - t0) / span
        return f"{x:.1f},{TOP + plot_h - plot_h * v / y_max:.1f}"

    parts = _frame(y_max, unit)
    for i, (name, values) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        coords = " ".join(xy(t, v) for t, v in sorted(values) if v is not None)
        parts.append(
            f'<polyline class="series" fill="none" stroke="{colour}" stroke-width="2" '
            f'points="{coords}"><title>{escape(name)}</title></polyline>'
        )
        for point in coords.split():
            x, y = point.split(",")
            parts.append(f'<circle cx="{x}" cy="{y}" r="2.5" fill="{colour}"/>')
    for t, anchor in ((t0, "start"), (t1, "end")):
        x = LEFT if anchor == "start" else WIDTH - RIGHT
        label = datetime.fromtimestamp(t, UTC).strftime("%H:%M UTC")
        parts.append(f'<text x="{x}" y="{HEIGHT - 8}" text-anchor="{anchor}">{label}</text>')
    return _svg(parts, title) + _legend(list(series))


def bar_chart(
    categories: list[str], groups: dict[str, list[float | None]], title: str, unit: str = ""
) -> str:
    """Grouped vertical bars: one cluster per category, one bar per group. With a single group
    each category gets its own colour and the legend names them."""
    values = [v for vs in groups.values() for v in vs if v is not None]
    if not categories or not values:
        return empty(title)
    y_max = _nice_max(max(values))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / len(categories)
    bar = slot * 0.8 / len(groups)
    by_category = len(groups) == 1
    parts = _frame(y_max, unit)
    for c, category in enumerate(categories):
        for g, (name, vs) in enumerate(groups.items()):
            value = vs[c] or 0.0
            h = plot_h * value / y_max
            x = LEFT + c * slot + slot * 0.1 + g * bar
            colour = PALETTE[(c if by_category else g) % len(PALETTE)]
            parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{TOP + plot_h - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{colour}">'
                f"<title>{escape(category)} {escape(name)}: {_fmt(value)}</title></rect>"
            )
        if not by_category:
            label = category if len(category) <= 18 else category[:17] + "…"
            parts.append(
                f'<text x="{LEFT + (c + 0.5) * slot:.1f}" y="{HEIGHT - 8}" '
                f'text-anchor="middle">{escape(label)}</text>'
            )
    return _svg(parts, title) + _legend(categories if by_category else list(groups))
