"""The measurement report over hand-made rows, and its graph and plot outputs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree as ET

from canary.report import (
    DeliveryRow,
    IdentityRow,
    SiteRow,
    cdf_svg,
    compute_report,
    graph_json,
    graphml,
    share_within,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def _report():  # type: ignore[no-untyped-def]
    sites = [SiteRow(i, f"site{i}", "retail" if i % 2 else "news") for i in range(1, 9)]
    identities = [IdentityRow(100 + i, i, T0, T0 + timedelta(days=i)) for i in range(1, 9)]
    # Site 8's identity has no signup time: measured from creation (T0).
    identities[-1] = IdentityRow(108, 8, T0, None)
    d = []
    n = 0

    def add(site: int, days: float, verdict: str | None, org: str | None) -> None:
        nonlocal n
        n += 1
        start = T0 + timedelta(days=site) if site != 8 else T0
        d.append(DeliveryRow(n, site, 100 + site, start + timedelta(days=days), verdict, org))

    for site in range(1, 7):
        add(site, 0.1, "expected", f"site{site}.test")
    add(1, 4, "shared", "brokerx.test")
    add(1, 9, "shared", "brokerx.test")  # later message: not the first
    add(1, 6, "shared", "adsy.test")
    add(2, 10, "shared", "brokerx.test")
    add(3, 20, "shared", "brokerx.test")
    add(8, 40, "shared", "leadgen.test")
    add(4, 2, "breach", None)
    add(5, 3, "breach", None)
    add(6, 1, None, None)  # waiting for a verdict: mail, but no finding
    add(99, 1, "shared", "elsewhere.test")  # not a study site: ignored
    return compute_report("Pilot", sites, identities, d, now=T0)


def test_shares_and_counts() -> None:
    report = _report()
    data = report.as_dict()
    assert data["sites"] == 8 and data["identities"] == 8
    assert data["sites_with_mail"] == 7  # 1-6 and 8; site 7 got nothing
    assert data["sites_with_shared"] == 4 and data["share_with_shared"] == 0.5
    assert data["sites_with_breach"] == 2 and data["share_with_breach"] == 0.25
    assert data["third_party_histogram"] == {"0": 4, "1": 3, "2": 1}
    assert data["third_parties_per_site"] == {"mean": 0.625, "median": 0.5, "max": 2.0}
    assert data["top_third_parties"][0] == {"org": "brokerx.test", "sites": 3}
    assert {t["org"] for t in data["top_third_parties"]} == {
        "brokerx.test",
        "adsy.test",
        "leadgen.test",
    }


def test_days_to_first_third_party() -> None:
    report = _report()
    days = report.days_to_first_third_party
    # Per site: 4 (site 1, first of 4/6/9), 10, 20, 40 (site 8, from creation).
    assert [s.days_to_first_third_party for s in report.site_results if s.shared] == [
        4.0,
        10.0,
        20.0,
        40.0,
    ]
    assert days == {"sites": 4, "q1": 8.5, "median": 15.0, "q3": 25.0, "min": 4.0, "max": 40.0}
    assert report.cdf == [(4.0, 0.125), (10.0, 0.25), (20.0, 0.375), (40.0, 0.5)]
    assert share_within(report, 7) == 0.125 and share_within(report, 365) == 0.5


def test_graph_outputs() -> None:
    report = _report()
    graph = graph_json(report)
    assert len(graph["links"]) == 5
    links = {(link["source"], link["target"]): link for link in graph["links"]}
    assert links[("site:site1", "org:brokerx.test")]["messages"] == 2
    assert links[("site:site1", "org:adsy.test")]["messages"] == 1
    json.dumps(graph)
    root = ET.fromstring(graphml(report))
    ns = {"g": "http://graphml.graphdrawing.org/xmlns"}
    assert len(root.findall(".//g:node", ns)) == 8 + 3
    assert len(root.findall(".//g:edge", ns)) == 5
    svg = cdf_svg(report)
    assert svg.startswith("<svg") and "polyline" in svg


def test_empty_study() -> None:
    report = compute_report("Empty", [], [], [])
    data = report.as_dict()
    assert data["sites"] == 0 and data["share_with_mail"] == 0.0 and data["cdf"] == []
    assert data["days_to_first_third_party"]["median"] is None
