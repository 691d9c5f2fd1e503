"""The graph picture: which nodes are drawn, in what order, and that labels stay text."""

from __future__ import annotations

from datetime import UTC, datetime
from xml.etree import ElementTree as ET

from canary.graph_picture import MAX_ORGS, MAX_SITES, caption, graph_svg, layout
from canary.report import DeliveryRow, IdentityRow, SiteRow, compute_report

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def report_of(leaks: dict[str, list[str]], silent: int = 0):  # type: ignore[no-untyped-def]
    """A report where each named site was written to by the listed organisations."""
    names = list(leaks) + [f"quiet {i}" for i in range(silent)]
    sites = [SiteRow(i, name) for i, name in enumerate(names)]
    identities = [IdentityRow(i, i, T0) for i in range(len(names))]
    deliveries = [
        DeliveryRow(n, i, i, T0, "shared", org)
        for n, (i, org) in enumerate(
            (i, org) for i, name in enumerate(names) for org in leaks.get(name, [])
        )
    ]
    return compute_report("Study", sites, identities, deliveries, now=T0)


def test_busiest_third_parties_first_and_sites_next_to_them() -> None:
    report = report_of({"A": ["big.test"], "B": ["small.test"], "C": ["big.test", "mid.test"],
                        "D": ["mid.test", "big.test"]}, silent=2)  # fmt: skip
    drawn = layout(report)
    assert drawn.orgs == ["big.test", "mid.test", "small.test"]
    # Barycentres: A 0, C and D 0.5, B 2.
    assert drawn.sites == ["A", "C", "D", "B"]
    assert len(drawn.edges) == 6 and drawn.hidden_sites == drawn.hidden_orgs == 0
    assert caption(report) == (
        "4 sites and 3 third parties drawn, 6 links. 2 sites without third-party mail are "
        "not drawn."
    )


def test_large_graphs_are_cut_to_the_most_connected_and_say_so() -> None:
    leaks = {f"site {i:03d}": [f"org{j}.test" for j in range(i % 50)] for i in range(100)}
    report = report_of(leaks)
    drawn = layout(report)
    assert len(drawn.orgs) == MAX_ORGS and len(drawn.sites) == MAX_SITES
    assert drawn.hidden_orgs == 49 - MAX_ORGS and drawn.hidden_sites == 98 - MAX_SITES
    assert all(site in drawn.sites and org in drawn.orgs for site, org, _ in drawn.edges)
    assert "the downloads hold them all" in caption(report)
    svg = ET.fromstring(graph_svg(report))
    assert svg.get("viewBox") is not None


def test_labels_are_escaped_and_nothing_is_loaded() -> None:
    report = report_of({'<script>alert("x")</script>': ['evil.test" onload="x']})
    root = ET.fromstring(graph_svg(report))  # still well-formed: the labels stayed text
    elements = list(root.iter())
    assert {e.tag.split("}")[1] for e in elements} <= {
        "svg", "title", "text", "g", "path", "circle", "rect",
    }  # fmt: skip
    assert not [a for e in elements for a in e.attrib if a.startswith("on") or "href" in a]
    labels = [e.text for e in elements if e.tag.endswith("text")]
    assert '<script>alert("x")</script>' in labels and 'evil.test" onload="x' in labels


def test_an_empty_graph_says_so() -> None:
    svg = graph_svg(report_of({}, silent=3))
    assert "No third party has written" in svg
    ET.fromstring(svg)
