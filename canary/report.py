"""The measurement report of a study: who leaks, to whom, and how fast.

:func:`compute_report` is pure (rows in, :class:`Report` out) so its numbers can be
checked by hand; :func:`study_report` loads the rows of one study from the database.
Only *current* findings count (``superseded_at`` is NULL): a user's correction, such as
authorising a sender, changes the report.

Definitions (also in the report's ``definitions``):

* a site *received mail* when any delivery reached one of its identities;
* a *third party* of a site is the sender organisation of a ``shared`` finding;
* *days to first third-party message* of a site is the smallest time, over its
  identities, from the identity's signup (``given_at``, else its creation) to the
  first ``shared`` delivery to it, in days. Quartiles are over the sites that leaked;
  the cumulative curve is the share of *all* sites leaked by each day, so sites that
  never leaked keep it below 1.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from xml.etree import ElementTree as ET

from sqlmodel import Session, col, select

from canary.models import Delivery, Finding, Identity, Study, as_utc
from canary.study import study_sites

TOP_ORGS = 20
CDF_MARKS = (1, 7, 14, 30, 60, 90, 180, 365)
DEFINITIONS = {
    "received_mail": "any delivery reached one of the site's identities",
    "third_party": "sender organisation of a current 'shared' finding for the site",
    "days_to_first_third_party": (
        "per site, min over its identities of (first shared delivery - given_at, "
        "else created_at), in days; quartiles over leaking sites only"
    ),
    "cdf": "share of all sites whose first third-party message came within d days",
}


@dataclass(frozen=True)
class SiteRow:
    """A site of the study."""

    source_id: int
    name: str
    category: str = ""


@dataclass(frozen=True)
class IdentityRow:
    """An identity of a study site, with the moments time-to-leak starts from."""

    identity_id: int
    source_id: int
    created_at: datetime
    given_at: datetime | None = None


@dataclass(frozen=True)
class DeliveryRow:
    """One delivery to a study identity and the verdict of its current finding (if any)."""

    delivery_id: int
    source_id: int
    identity_id: int | None
    received_at: datetime
    verdict: str | None = None
    sender_org: str | None = None


@dataclass
class SiteResult:
    """Per-site figures (the rows of the report's site table)."""

    source_id: int
    name: str
    category: str
    messages: int = 0
    shared: int = 0
    breach: int = 0
    third_parties: list[str] = field(default_factory=list)
    days_to_first_third_party: float | None = None


@dataclass
class Report:
    """Everything ``canary report`` shows; :meth:`as_dict` is the JSON form."""

    study: str
    generated_at: datetime
    sites: int
    identities: int
    sites_with_mail: int
    sites_with_shared: int
    sites_with_breach: int
    third_parties_per_site: dict[str, float]
    third_party_histogram: dict[int, int]
    days_to_first_third_party: dict[str, float | int | None]
    cdf: list[tuple[float, float]]
    top_third_parties: list[tuple[str, int]]
    edges: list[dict[str, Any]]
    site_results: list[SiteResult]

    def share(self, count: int) -> float:
        """``count`` as a share of all sites (0 for an empty study)."""
        return count / self.sites if self.sites else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (times as ISO strings, shares rounded to 4 places)."""
        return {
            **self.summary(),
            "graph": graph_json(self),
            "site_results": [asdict(s) for s in self.site_results],
            "definitions": DEFINITIONS,
        }

    def summary(self) -> dict[str, Any]:
        """:meth:`as_dict` without the per-site rows and the graph (cheap for big studies)."""
        return {
            "study": self.study,
            "generated_at": self.generated_at.isoformat(),
            "sites": self.sites,
            "identities": self.identities,
            "sites_with_mail": self.sites_with_mail,
            "share_with_mail": round(self.share(self.sites_with_mail), 4),
            "sites_with_shared": self.sites_with_shared,
            "share_with_shared": round(self.share(self.sites_with_shared), 4),
            "sites_with_breach": self.sites_with_breach,
            "share_with_breach": round(self.share(self.sites_with_breach), 4),
            "third_parties_per_site": self.third_parties_per_site,
            "third_party_histogram": {str(k): v for k, v in self.third_party_histogram.items()},
            "days_to_first_third_party": self.days_to_first_third_party,
            "cdf": [{"days": d, "share": round(s, 4)} for d, s in self.cdf],
            "top_third_parties": [{"org": o, "sites": n} for o, n in self.top_third_parties],
        }


def _quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def compute_report(
    study: str,
    sites: Iterable[SiteRow],
    identities: Iterable[IdentityRow],
    deliveries: Iterable[DeliveryRow],
    now: datetime | None = None,
) -> Report:
    """The report over plain rows (see the module docstring for the definitions)."""
    results = {s.source_id: SiteResult(s.source_id, s.name, s.category) for s in sites}
    starts: dict[int, datetime] = {}
    identity_count = 0
    for ident in identities:
        if ident.source_id in results:
            identity_count += 1
            starts[ident.identity_id] = as_utc(ident.given_at or ident.created_at)
    orgs: dict[int, dict[str, list[datetime]]] = defaultdict(lambda: defaultdict(list))
    for d in deliveries:
        site = results.get(d.source_id)
        if site is None:
            continue
        site.messages += 1
        if d.verdict == "breach":
            site.breach += 1
        if d.verdict != "shared" or not d.sender_org:
            continue
        site.shared += 1
        received = as_utc(d.received_at)
        orgs[d.source_id][d.sender_org].append(received)
        start = starts.get(d.identity_id) if d.identity_id is not None else None
        if start is not None:
            days = max(0.0, (received - start).total_seconds() / 86400)
            if site.days_to_first_third_party is None or days < site.days_to_first_third_party:
                site.days_to_first_third_party = days

    ordered = sorted(results.values(), key=lambda s: s.name.lower())
    org_sites: Counter[str] = Counter()
    edges: list[dict[str, Any]] = []
    for site in ordered:
        site_orgs = orgs.get(site.source_id, {})
        site.third_parties = sorted(site_orgs)
        org_sites.update(site_orgs.keys())
        for org in site.third_parties:
            times = site_orgs[org]
            edges.append(
                {
                    "site": site.name,
                    "org": org,
                    "messages": len(times),
                    "first_seen": min(times).isoformat(),
                }
            )
        if site.days_to_first_third_party is not None:
            site.days_to_first_third_party = round(site.days_to_first_third_party, 3)

    counts = [len(s.third_parties) for s in ordered]
    per_site = {
        "mean": round(statistics.fmean(counts), 3) if counts else 0.0,
        "median": float(statistics.median(counts)) if counts else 0.0,
        "max": float(max(counts, default=0)),
    }
    leak_days = sorted(
        s.days_to_first_third_party for s in ordered if s.days_to_first_third_party is not None
    )
    days_summary: dict[str, float | int | None] = {
        "sites": len(leak_days),
        "q1": None,
        "median": None,
        "q3": None,
        "min": None,
        "max": None,
    }
    if leak_days:
        q1, q2, q3 = _quartiles(leak_days)
        days_summary.update(
            q1=round(q1, 2),
            median=round(q2, 2),
            q3=round(q3, 2),
            min=round(leak_days[0], 2),
            max=round(leak_days[-1], 2),
        )
    total = len(ordered)
    cdf = [(d, (i + 1) / total) for i, d in enumerate(leak_days)] if total else []
    return Report(
        study=study,
        generated_at=now or datetime.now(UTC),
        sites=total,
        identities=identity_count,
        sites_with_mail=sum(1 for s in ordered if s.messages),
        sites_with_shared=sum(1 for s in ordered if s.shared),
        sites_with_breach=sum(1 for s in ordered if s.breach),
        third_parties_per_site=per_site,
        third_party_histogram=dict(sorted(Counter(counts).items())),
        days_to_first_third_party=days_summary,
        cdf=cdf,
        top_third_parties=sorted(org_sites.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_ORGS],
        edges=edges,
        site_results=ordered,
    )


def share_within(report: Report, days: float) -> float:
    """Share of all sites whose first third-party message came within ``days``."""
    return max((share for d, share in report.cdf if d <= days), default=0.0)


# ---------------------------------------------------------------------- loading


def study_report(session: Session, study: Study) -> Report:
    """Load the study's sites, identities, deliveries and current findings; compute."""
    pairs = study_sites(session, study)
    sites = [SiteRow(site.source_id, src.name, site.category) for site, src in pairs]
    source_ids = [s.source_id for s in sites]
    identities: list[IdentityRow] = []
    deliveries: list[DeliveryRow] = []
    for start in range(0, len(source_ids), 500):
        chunk = source_ids[start : start + 500]
        for iid, sid, created, given in session.exec(
            select(Identity.id, Identity.source_id, Identity.created_at, Identity.given_at).where(
                col(Identity.source_id).in_(chunk)
            )
        ):
            identities.append(IdentityRow(iid, sid, created, given))
        # Outer join: deliveries still waiting for a verdict count as mail received.
        query = (
            select(
                Delivery.id,
                Delivery.source_id,
                Delivery.identity_id,
                Delivery.received_at,
                Finding.verdict,
                Finding.sender_org,
            )
            .join(
                Finding,
                (col(Finding.delivery_id) == col(Delivery.id))
                & col(Finding.superseded_at).is_(None),
                isouter=True,
            )
            .where(col(Delivery.source_id).in_(chunk))
            .order_by(col(Delivery.id))
        )
        for did, sid, iid, received, verdict, org in session.exec(query):
            deliveries.append(DeliveryRow(did, sid, iid, received, verdict, org))
    return compute_report(study.name, sites, identities, deliveries)


# ---------------------------------------------------------------------- graph and plot


def graph_json(report: Report) -> dict[str, Any]:
    """The site-to-third-party graph in node-link form (networkx ``node_link_graph``)."""
    categories = {s.name: s.category for s in report.site_results}
    nodes = [
        {"id": f"site:{s.name}", "label": s.name, "type": "site", "category": categories[s.name]}
        for s in report.site_results
    ]
    orgs = sorted({e["org"] for e in report.edges})
    nodes += [{"id": f"org:{o}", "label": o, "type": "third_party", "category": ""} for o in orgs]
    links = [
        {
            "source": f"site:{e['site']}",
            "target": f"org:{e['org']}",
            "messages": e["messages"],
            "first_seen": e["first_seen"],
        }
        for e in report.edges
    ]
    return {
        "directed": True,
        "multigraph": False,
        "graph": {"study": report.study},
        "nodes": nodes,
        "links": links,
    }


def graphml(report: Report) -> bytes:
    """The site-to-third-party graph as GraphML (Gephi, networkx, igraph, Cytoscape)."""
    ns = "http://graphml.graphdrawing.org/xmlns"
    ET.register_namespace("", ns)
    root = ET.Element(f"{{{ns}}}graphml")
    keys = [
        ("label", "node", "string"),
        ("type", "node", "string"),
        ("category", "node", "string"),
        ("messages", "edge", "int"),
        ("first_seen", "edge", "string"),
    ]
    for name, target, kind in keys:
        ET.SubElement(
            root,
            f"{{{ns}}}key",
            id=name,
            attrib={"for": target, "attr.name": name, "attr.type": kind},
        )
    graph = ET.SubElement(root, f"{{{ns}}}graph", id=report.study, edgedefault="directed")
    data = graph_json(report)
    for node in data["nodes"]:
        element = ET.SubElement(graph, f"{{{ns}}}node", id=node["id"])
        for key in ("label", "type", "category"):
            ET.SubElement(element, f"{{{ns}}}data", key=key).text = node[key]
    for i, link in enumerate(data["links"]):
        element = ET.SubElement(
            graph, f"{{{ns}}}edge", id=f"e{i}", source=link["source"], target=link["target"]
        )
        ET.SubElement(element, f"{{{ns}}}data", key="messages").text = str(link["messages"])
        ET.SubElement(element, f"{{{ns}}}data", key="first_seen").text = link["first_seen"]
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def cdf_svg(report: Report, width: int = 640, height: int = 360) -> str:
    """The cumulative share of sites leaked by day as a small standalone SVG step chart."""
    pad = 48
    max_day = max([d for d, _ in report.cdf] + [30.0])
    x = lambda d: pad + (width - 2 * pad) * d / max_day  # noqa: E731
    y = lambda s: height - pad - (height - 2 * pad) * s  # noqa: E731
    points = [f"{x(0):.1f},{y(0):.1f}"]
    previous = 0.0
    for day, share in report.cdf:
        points += [f"{x(day):.1f},{y(previous):.1f}", f"{x(day):.1f},{y(share):.1f}"]
        previous = share
    points.append(f"{x(max_day):.1f},{y(previous):.1f}")
    ticks = "".join(
        f'<text x="{pad - 6}" y="{y(s) + 4:.1f}" text-anchor="end">{int(s * 100)}%</text>'
        for s in (0, 0.25, 0.5, 0.75, 1)
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="11">'
        f'<text x="{width / 2}" y="18" text-anchor="middle">{_xml(report.study)}: share of '
        "sites with a third-party message by day since signup</text>"
        f'<line x1="{pad}" y1="{y(0)}" x2="{width - pad}" y2="{y(0)}" stroke="#888"/>'
        f'<line x1="{pad}" y1="{y(0)}" x2="{pad}" y2="{y(1)}" stroke="#888"/>{ticks}'
        f'<text x="{width - pad}" y="{height - pad + 16}" text-anchor="end">'
        f"{max_day:.0f} days</text>"
        f'<polyline fill="none" stroke="#c0392b" stroke-width="2" points="{" ".join(points)}"/>'
        "</svg>\n"
    )


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
