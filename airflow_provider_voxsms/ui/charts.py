"""Inline SVG charts, drawn on the server: no JavaScript, no assets to fetch.

Each function takes the numbers of :func:`.campaign.campaign_view` and returns markup safe to
put in the page as is (every text escaped here).
"""

from __future__ import annotations

from markupsafe import Markup, escape

WIDTH = 640
BAR = 22
GAP = 8
LABEL = 150
COLOURS = {
    "recipients": "#64748b",
    "valid": "#0ea5e9",
    "sent": "#6366f1",
    "accepted": "#22c55e",
    "delivered": "#15803d",
    "DELIVERED": "#15803d",
    "FAILED": "#dc2626",
    "EXPIRED": "#f97316",
    "REJECTED": "#b91c1c",
    "ABORTED": "#a855f7",
    "UNKNOWN": "#78716c",
    "pending": "#cbd5e1",
}


def bars(items: list[tuple[str, int]], total: int | None = None, title: str = "") -> Markup:
    """Horizontal bars, one per (label, count), as a share of ``total`` (default: the largest)."""
    top = max([total or 0, *(count for _, count in items), 1])
    height = len(items) * (BAR + GAP) + GAP
    parts = [_open(height, title)]
    room = WIDTH - LABEL - 110
    for i, (label, count) in enumerate(items):
        y = GAP + i * (BAR + GAP)
        width = max(1.0, room * count / top) if count else 0
        share = f"{count / total:.1%}" if total else ""
        colour = COLOURS.get(label, "#6366f1")
        parts.append(
            f'<text x="{LABEL - 8}" y="{y + 16}" text-anchor="end">{escape(label)}</text>'
            f'<rect x="{LABEL}" y="{y}" width="{width:.1f}" height="{BAR}" rx="3" '
            f'fill="{colour}"><title>{escape(label)}: {count:,}</title></rect>'
            f'<text x="{LABEL + width + 6:.1f}" y="{y + 16}">{count:,}'
            f'<tspan class="muted"> {share}</tspan></text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def share_over_time(points: list[dict], title: str = "") -> Markup:
    """Cumulative share of messages final by minutes since sending: a step line from 0
    (minutes on the x axis, share of the followed messages on the y axis)."""
    height, left, bottom, top_pad, right = 220, 48, 32, 12, 16
    plot_w, plot_h = WIDTH - left - right, height - bottom - top_pad
    last = max([p["minute"] for p in points] + [1])
    x = lambda minute: left + plot_w * minute / last  # noqa: E731
    y = lambda share: top_pad + plot_h * (1 - share)  # noqa: E731
    parts = [_open(height, title)]
    for share in (0, 0.25, 0.5, 0.75, 1):
        parts.append(
            f'<line x1="{left}" x2="{WIDTH - right}" y1="{y(share):.1f}" y2="{y(share):.1f}" '
            f'class="grid"/><text x="{left - 6}" y="{y(share) + 4:.1f}" text-anchor="end" '
            f'class="muted">{share:.0%}</text>'
        )
    path = [f"M{x(0):.1f},{y(0):.1f}"]
    for point in points:
        path.append(f"H{x(point['minute']):.1f}V{y(point['share']):.1f}")
    path.append(f"H{x(last):.1f}")
    parts.append(f'<path d="{"".join(path)}" class="curve"/>')
    for point in points:
        parts.append(
            f'<circle cx="{x(point["minute"]):.1f}" cy="{y(point["share"]):.1f}" r="3" '
            f'class="dot"><title>{point["minute"]} min: {point["share"]:.1%} final '
            f"({point['final']:,})</title></circle>"
        )
    for minute in _ticks(last):
        parts.append(
            f'<text x="{x(minute):.1f}" y="{height - 12}" text-anchor="middle" '
            f'class="muted">{minute}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _open(height: int, title: str) -> str:
    return (
        f'<svg viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" role="img" '
        f'aria-label="{escape(title)}" class="chart">'
    )


def _ticks(last: int) -> list[int]:
    step = max(1, round(last / 6))
    return list(range(0, last + 1, step))
