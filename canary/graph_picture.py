"""The site-to-third-party graph of a study report as a picture (inline SVG, no script).

A bipartite layout: sites that reached a third party on the left, the third-party
organisations on the right, one line per (site, organisation) pair, thicker for more
messages. Organisations are ordered by how many sites reached them; sites by the mean
position of their organisations (the barycentre heuristic), which keeps lines short and
crossings few without any layout library. Sites without third parties add nothing to
the picture and are left out; past :data:`MAX_SITES` sites or :data:`MAX_ORGS`
organisations only the most connected are drawn, and the caption says so (the GraphML
and JSON downloads always hold the whole graph).

Every label is escaped: site names come from a plan and organisation names from mail,
so neither may add markup to the page.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

from canary.report import Report

MAX_SITES = 60
MAX_ORGS = 40
ROW = 22
WIDTH = 760
LABEL = 34  # characters of a label drawn before it is cut (the tooltip has it whole)


@dataclass(frozen=True)
class Layout:
    """Which nodes are drawn, in order, and how many were left out."""

    sites: list[str]
    orgs: list[str]
    edges: list[tuple[str, str, int]]
    hidden_sites: int
    hidden_orgs: int


def layout(report: Report) -> Layout:
    """Order and cut the graph's nodes for drawing (pure; see the module docstring)."""
    org_sites: dict[str, int] = {}
    site_degree: dict[str, int] = {}
    for e in report.edges:
        org_sites[e["org"]] = org_sites.get(e["org"], 0) + 1
        site_degree[e["site"]] = site_degree.get(e["site"], 0) + 1
    orgs = sorted(org_sites, key=lambda o: (-org_sites[o], o))
    shown_orgs = orgs[:MAX_ORGS]
    org_rank = {o: i for i, o in enumerate(shown_orgs)}
    edges = [
        (e["site"], e["org"], int(e["messages"])) for e in report.edges if e["org"] in org_rank
    ]
    linked = {site for site, _, _ in edges}
    sites = sorted(linked, key=lambda s: (-site_degree[s], s))[:MAX_SITES]
    kept = set(sites)
    edges = [e for e in edges if e[0] in kept]
    ranks: dict[str, list[int]] = {}
    for site, org, _ in edges:
        ranks.setdefault(site, []).append(org_rank[org])
    sites.sort(key=lambda s: (sum(ranks[s]) / len(ranks[s]), s))
    return Layout(
        sites=sites,
        orgs=shown_orgs,
        edges=edges,
        hidden_sites=len(site_degree) - len(sites),
        hidden_orgs=len(orgs) - len(shown_orgs),
    )


def _cut(text: str) -> str:
    return text if len(text) <= LABEL else text[: LABEL - 1] + "…"


def _column_y(count: int, height: float, top: float) -> list[float]:
    """Evenly spaced centres for ``count`` nodes in a column of ``height``."""
    if count == 0:
        return []
    gap = (height - top) / count
    return [round(top + gap * (i + 0.5), 1) for i in range(count)]


def graph_svg(report: Report) -> str:
    """The graph as an SVG element to put in a page (empty graph: a short note)."""
    drawn = layout(report)
    title = f"{report.study}: which sites' personas reached which third parties"
    if not drawn.edges:
        return (
            f'<svg class="graph" viewBox="0 0 {WIDTH} 60" role="img" '
            f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">'
            f"<title>{escape(title)}</title>"
            '<text x="10" y="34" font-family="sans-serif" font-size="13" fill="#667">'
            "No third party has written to a persona of this study yet.</text></svg>"
        )
    top = 28.0
    height = top + ROW * max(len(drawn.sites), len(drawn.orgs)) + 8
    site_x, org_x = 250.0, WIDTH - 250.0
    site_y = dict(zip(drawn.sites, _column_y(len(drawn.sites), height, top), strict=True))
    org_y = dict(zip(drawn.orgs, _column_y(len(drawn.orgs), height, top), strict=True))
    peak = max(m for _, _, m in drawn.edges)
    parts = [
        f'<svg class="graph" viewBox="0 0 {WIDTH} {height:.0f}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg" '
        'font-family="sans-serif" font-size="12">',
        f"<title>{escape(title)}</title>",
        f'<text x="{site_x}" y="16" text-anchor="end" font-weight="bold" fill="#333">'
        f"sites ({len(drawn.sites)})</text>",
        f'<text x="{org_x}" y="16" font-weight="bold" fill="#333">'
        f"third parties ({len(drawn.orgs)})</text>",
        '<g class="edges" fill="none" stroke="#c0392b" stroke-opacity="0.45">',
    ]
    for site, org, messages in drawn.edges:
        y1, y2 = site_y[site], org_y[org]
        mid = (site_x + org_x) / 2
        width = 1 + 3 * math.log1p(messages) / math.log1p(peak)
        tip = f"{site} → {org}: {messages} message{'s' if messages != 1 else ''}"
        parts.append(
            f'<path class="edge" d="M{site_x + 6},{y1} C{mid},{y1} {mid},{y2} {org_x - 6},{y2}" '
            f'stroke-width="{width:.1f}"><title>{escape(tip)}</title></path>'
        )
    parts.append("</g>")
    for site in drawn.sites:
        y = site_y[site]
        parts.append(
            f'<g class="site"><title>{escape(site)}</title>'
            f'<circle cx="{site_x}" cy="{y}" r="5" fill="#2c6bed"/>'
            f'<text x="{site_x - 10}" y="{y + 4}" text-anchor="end" fill="#222">'
            f"{escape(_cut(site))}</text></g>"
        )
    for org in drawn.orgs:
        y = org_y[org]
        parts.append(
            f'<g class="org"><title>{escape(org)}</title>'
            f'<rect x="{org_x - 5}" y="{y - 5}" width="10" height="10" fill="#c0392b"/>'
            f'<text x="{org_x + 10}" y="{y + 4}" fill="#222">{escape(_cut(org))}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def caption(report: Report) -> str:
    """A sentence under the picture: what is drawn and what is left out."""
    drawn = layout(report)
    silent = report.sites - len(drawn.sites) - drawn.hidden_sites
    text = (
        f"{len(drawn.sites)} sites and {len(drawn.orgs)} third parties drawn, "
        f"{len(drawn.edges)} links."
    )
    if silent:
        text += f" {silent} sites without third-party mail are not drawn."
    if drawn.hidden_sites or drawn.hidden_orgs:
        text += (
            f" Left out to keep the picture readable: {drawn.hidden_sites} less connected "
            f"sites and {drawn.hidden_orgs} third parties (the downloads hold them all)."
        )
    return text
