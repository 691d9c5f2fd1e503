"""The study and seed pages through the real app: report, picture, forms and downloads.

The report page is checked against a study whose mail was really sent over SMTP and
analysed (tests/support/study.py has the plan and the figures worked out by hand).
"""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any
from xml.etree import ElementTree as ET

from aiohttp import FormData
from aiohttp.test_utils import TestClient
from sqlmodel import select

from canary.confirm import run_confirmations
from canary.models import Identity, SeedBatch, Study
from canary.store import Store
from tests.support.dashboard import Seeded, csrf_of, login
from tests.support.dns_server import TestDnsServer
from tests.support.study import PLAN, SentStudy, send_study_mail

LOOPBACK = lambda host, port: ["127.0.0.1"]  # noqa: E731


def text_of(html: str, element_id: str) -> str:
    """The text inside the element with ``element_id`` (tags removed, spaces collapsed)."""
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</(dd|div|p|section|table)>', html, re.S)
    assert match, f"no element #{element_id}"
    return " ".join(re.sub(r"<[^>]+>", " ", match.group(1)).split())


async def sent_study(store: Store, settings: Any, alice: Seeded, dns: TestDnsServer) -> SentStudy:
    return await send_study_mail(store, settings, alice.user, dns, auto_confirm=True)


async def test_report_page_shows_every_figure_of_the_sent_mail(
    client: TestClient, store: Store, settings: Any, alice: Seeded, dns_server: TestDnsServer
) -> None:
    sent = await sent_study(store, settings, alice, dns_server)
    await login(client, "alice")
    studies = await (await client.get("/studies")).text()
    assert f'href="/studies/{sent.study_id}"' in studies and "Newsletter study" in studies

    page = await client.get(f"/studies/{sent.study_id}")
    assert page.status == 200
    html = await page.text()
    # The figures of the plan in tests/support/study.py, as a reader sees them.
    assert text_of(html, "fig-mail") == "83.3% of sites sent any mail (5 of 6)"
    assert text_of(html, "fig-shared") == "50.0% of sites shared the address (3)"
    assert text_of(html, "fig-breach") == "33.3% of sites got breach mail (2)"
    assert text_of(html, "fig-days").startswith("12 median days")
    assert (text_of(html, "tp-mean"), text_of(html, "tp-median"), text_of(html, "tp-max")) == (
        "0.833", "0.5", "2",
    )  # fmt: skip
    assert text_of(html, "histogram") == "Third parties Sites 0 3 1 1 2 2"
    assert text_of(html, "days-sites") == "3"
    assert (text_of(html, "days-q1"), text_of(html, "days-median"), text_of(html, "days-q3")) == (
        "8.5", "12", "26",
    )  # fmt: skip
    assert text_of(html, "days-range") == "5, 40"
    marks = text_of(html, "cdf-marks")
    assert "1 days 0.0%" in marks and "7 days 16.7%" in marks and "14 days 33.3%" in marks
    assert "30 days 33.3%" in marks and "60 days 50.0%" in marks
    top = text_of(html, "top-third-parties")
    assert "brokerx.test 3" in top and "adsy.test 2" in top
    assert top.index("brokerx.test") < top.index("adsy.test")

    # The graph picture: the three leaking sites, the two third parties, five lines.
    graph = ET.fromstring(re.search(r"<svg class=\"graph\".*?</svg>", html, re.S).group(0))  # type: ignore[union-attr]
    ns = {"s": "http://www.w3.org/2000/svg"}
    sites = [g.find("s:title", ns).text for g in graph.findall(".//s:g[@class='site']", ns)]  # type: ignore[union-attr]
    orgs = [g.find("s:title", ns).text for g in graph.findall(".//s:g[@class='org']", ns)]  # type: ignore[union-attr]
    assert sorted(sites) == ["Site 01", "Site 02", "Site 04"]
    assert orgs == ["brokerx.test", "adsy.test"]
    edges = [p.find("s:title", ns).text for p in graph.findall(".//s:path[@class='edge']", ns)]  # type: ignore[union-attr]
    assert sorted(edges) == sorted(
        [f"Site 0{n} → {org}: 1 message" for n in (1, 2) for org in ("adsy.test", "brokerx.test")]
        + ["Site 04 → brokerx.test: 1 message"]
    )
    assert "3 sites without third-party mail are not drawn" in html
    # The cumulative plot: a step at each of the three leaking sites.
    plot = re.search(r'<figure class="plot">(.*?)</figure>', html, re.S).group(1)  # type: ignore[union-attr]
    points = ET.fromstring(plot).find(".//s:polyline", ns).get("points").split()  # type: ignore[union-attr]
    assert len(points) == 2 + 2 * 3
    # Both pictures are plain drawings: no script, no event handler, no link to load.
    pictures = re.findall(r"<svg.*?</svg>", html, re.S)
    assert len(pictures) == 2
    assert not any(re.search(r"<script|<image|\son\w+=|href=", svg) for svg in pictures)

    site_table = text_of(html, "sites")
    assert "Site 01 news 3 2 0 adsy.test, brokerx.test 5" in site_table
    assert "Site 06 shop 1 0 1" in site_table


async def test_downloads_match_the_api(
    client: TestClient, store: Store, settings: Any, alice: Seeded, dns_server: TestDnsServer
) -> None:
    sent = await sent_study(store, settings, alice, dns_server)
    await login(client, "alice")
    html = await (await client.get(f"/studies/{sent.study_id}")).text()
    for name in ("report.json", "graph.json", "graph.graphml", "plot.svg", "personas.csv"):
        assert f'href="/studies/{sent.study_id}/files/{name}"' in html
    base = f"/studies/{sent.study_id}/files"
    response = await client.get(f"{base}/report.json")
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="newsletter-study-report.json"'
    )
    report = json.loads(await response.read())
    api = await (
        await client.get(
            f"/api/v1/studies/{sent.study_id}/report",
            headers={"Authorization": f"Bearer {alice.token}"},
        )
    ).json()
    assert {k: v for k, v in report.items() if k != "generated_at"} == {
        k: v for k, v in api.items() if k != "generated_at"
    }
    graph = json.loads(await (await client.get(f"{base}/graph.json")).read())
    assert graph == api["graph"]
    graphml = ET.fromstring(await (await client.get(f"{base}/graph.graphml")).read())
    assert len(graphml.findall(".//{http://graphml.graphdrawing.org/xmlns}edge")) == 5
    plot = await client.get(f"{base}/plot.svg")
    assert plot.content_type == "image/svg+xml"
    personas = list(csv.DictReader(io.StringIO(await (await client.get(f"{base}/personas.csv"))
                                               .text())))  # fmt: skip
    assert [p["email"] for p in personas] == [sent.personas[n].alias for n in range(1, 7)]
    assert (await client.get(f"{base}/secrets.txt")).status == 404


async def test_import_a_plan_by_upload(client: TestClient, store: Store, alice: Seeded) -> None:
    csrf = await login(client, "alice")
    form = FormData()
    form.add_field("csrf", csrf)
    form.add_field("name", "Uploaded")
    form.add_field("personas", "2")
    form.add_field("plan_file", PLAN.encode(), filename="plan.csv", content_type="text/csv")
    response = await client.post("/studies", data=form, allow_redirects=False)
    assert response.status == 303, await response.text()
    location = response.headers["Location"]
    assert re.fullmatch(r"/studies/\d+\?imported=12", location)
    page = await (await client.get(location)).text()
    assert "Study imported: 12 personas" in page
    with store.session() as session:
        study = session.exec(select(Study).where(Study.name == "Uploaded")).one()
        assert not study.auto_confirm

    bad = FormData()
    bad.add_field("csrf", csrf)
    bad.add_field("name", "Broken")
    bad.add_field("plan_text", "name,url\nA,ftp://a.test/\n")
    refused = await client.post("/studies", data=bad)
    assert refused.status == 400
    assert "line 2" in await refused.text()
    with store.session() as session:
        assert session.exec(select(Study).where(Study.name == "Broken")).first() is None


async def test_record_signup_times_one_and_by_csv(
    client: TestClient, store: Store, settings: Any, alice: Seeded, dns_server: TestDnsServer
) -> None:
    sent = await sent_study(store, settings, alice, dns_server)
    csrf = await login(client, "alice")
    url = f"/studies/{sent.study_id}/given"
    one = await client.post(url, data={"csrf": csrf, "identity": sent.personas[3].alias,
                                       "given_at": "2025-01-02T03:04:05Z"},
                            allow_redirects=False)  # fmt: skip
    assert one.status == 303 and "recorded=1" in one.headers["Location"]

    upload = FormData()
    upload.add_field("csrf", csrf)
    rows = f"identity,given_at\n{sent.personas[5].id},2025-02-01\n{sent.personas[6].alias},now\n"
    upload.add_field("csv_file", rows.encode(), filename="given.csv", content_type="text/csv")
    bulk = await client.post(url, data=upload, allow_redirects=False)
    assert bulk.status == 303 and "recorded=2" in bulk.headers["Location"]
    page = await (await client.get(bulk.headers["Location"])).text()
    assert "Signup time recorded for 2 personas" in page
    with store.session() as session:
        given = {i.id: i.given_at for i in session.exec(select(Identity))}
    assert given[sent.personas[3].id].isoformat()[:19] == "2025-01-02T03:04:05"  # type: ignore[union-attr]
    assert given[sent.personas[5].id].isoformat()[:10] == "2025-02-01"  # type: ignore[union-attr]

    # Alice's own identity outside the study is refused, and nothing changes.
    outside = await client.post(url, data={"csrf": csrf, "identity": alice.identity.alias,
                                           "given_at": "2025-01-01"})  # fmt: skip
    assert outside.status == 400 and "not a persona of Newsletter study" in await outside.text()
    bad_time = await client.post(url, data={"csrf": csrf, "identity": sent.personas[1].alias,
                                            "given_at": "yesterday-ish"})  # fmt: skip
    assert bad_time.status == 400 and "ISO 8601" in await bad_time.text()
    with store.session() as session:
        assert session.get(Identity, alice.identity.id).given_at is None  # type: ignore[union-attr]


async def test_auto_confirm_toggle_and_attempts(
    client: TestClient, store: Store, settings: Any, alice: Seeded, dns_server: TestDnsServer
) -> None:
    sent = await send_study_mail(store, settings, alice.user, dns_server, auto_confirm=False)
    csrf = await login(client, "alice")
    page = await (await client.get(f"/studies/{sent.study_id}")).text()
    assert "No confirmation link fetched yet" in page and "Turn on" in page
    toggle = f"/studies/{sent.study_id}/auto-confirm"
    assert (await client.post(toggle, data={"enabled": "on"}, allow_redirects=False)).status == 403
    on = await client.post(toggle, data={"csrf": csrf, "enabled": "on"}, allow_redirects=False)
    assert on.status == 303
    with store.session() as session:
        assert session.get(Study, sent.study_id).auto_confirm  # type: ignore[union-attr]
        # The sites' names resolve to loopback here, which is never fetched without the
        # tests' explicit opt-in: every attempt is recorded as refused.
        attempts = run_confirmations(session, resolve=LOOPBACK)
        assert {a.outcome for a in attempts} == {"refused"} and len(attempts) == 3
    page = await (await client.get(f"/studies/{sent.study_id}")).text()
    assert text_of(page, "attempt-counts") == "refused: 3"
    table = text_of(page, "attempts")
    assert table.count("refused") == 3 and "127.0.0.1 is a loopback address" in table
    assert sent.personas[1].alias in table and "Site 01" in table
    off = await client.post(toggle, data={"csrf": csrf}, allow_redirects=False)
    assert off.status == 303
    with store.session() as session:
        assert not session.get(Study, sent.study_id).auto_confirm  # type: ignore[union-attr]


async def test_seed_batch_page_and_download(
    client: TestClient, store: Store, alice: Seeded
) -> None:
    csrf = await login(client, "alice")
    assert "No seed batch yet" in await (await client.get("/seeds")).text()
    layout = "Full name=name,E-mail=email,Address 2=postal_line"
    made = await client.post("/seeds", data={
        "csrf": csrf, "vendor": "Mailer Co", "count": "4", "vendor_domains": "mailerco.test",
        "company_domains": "acme.test, acme-mail.test", "postal_format": "Suite {code}",
        "label": "spring list", "columns": layout,
    }, allow_redirects=False)  # fmt: skip
    assert made.status == 303, await made.text()
    with store.session() as session:
        batch = session.exec(select(SeedBatch)).one()
    assert made.headers["Location"].startswith(f"/seeds/{batch.id}?columns=")
    page = await (await client.get(made.headers["Location"])).text()
    assert "Seed batch" in page and "acme-mail.test, acme.test, mailerco.test" in page
    download = re.search(r'id="download" href="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    response = await client.get(download.replace("&amp;", "&"))
    assert response.headers["Content-Disposition"].startswith("attachment;")
    rows = list(csv.reader(io.StringIO(await response.text())))
    assert rows[0] == ["Full name", "E-mail", "Address 2"] and len(rows) == 5
    assert all(r[1].endswith("@canary.test") and r[2].startswith("Suite ") for r in rows[1:])
    assert all(r[0] in page for r in rows[1:])  # the page lists the same seeds

    listing = await (await client.get("/seeds")).text()
    assert text_of(listing, "batches").startswith(f"# Vendor Seeds Label Created {batch.id}")
    assert "Mailer Co 4 spring list" in text_of(listing, "batches")
    bad = await client.post("/seeds", data={"csrf": csrf, "vendor": "V", "count": "2",
                                            "columns": "name,password"})  # fmt: skip
    assert bad.status == 400 and "unknown column" in await bad.text()
    with store.session() as session:
        assert len(session.exec(select(SeedBatch)).all()) == 1


async def test_another_users_study_and_batch_are_not_found(
    client: TestClient, store: Store, settings: Any, alice: Seeded, bob: Seeded,
    dns_server: TestDnsServer,
) -> None:  # fmt: skip
    sent = await sent_study(store, settings, alice, dns_server)
    await login(client, "alice")
    await client.post("/seeds", data={"csrf": csrf_of(await (await client.get("/seeds")).text()),
                                      "vendor": "Mailer Co", "count": "1"})  # fmt: skip
    with store.session() as session:
        batch_id = session.exec(select(SeedBatch.id)).one()
    await client.post("/logout", data={"csrf": csrf_of(await (await client.get("/")).text())})
    csrf = await login(client, "bob")
    for path in (f"/studies/{sent.study_id}", f"/studies/{sent.study_id}/files/report.json",
                 f"/studies/{sent.study_id}/files/personas.csv", f"/seeds/{batch_id}",
                 f"/seeds/{batch_id}/seeds.csv"):  # fmt: skip
        response = await client.get(path)
        assert response.status == 404, path
        assert "Newsletter study" not in await response.text()
    for path, data in (
        (f"/studies/{sent.study_id}/auto-confirm", {}),
        (f"/studies/{sent.study_id}/given", {"identity": str(sent.personas[1].id)}),
    ):
        response = await client.post(path, data={"csrf": csrf, **data})
        assert response.status == 404, path
    with store.session() as session:
        assert session.get(Study, sent.study_id).auto_confirm  # type: ignore[union-attr]
        assert session.get(Identity, sent.personas[1].id).given_at.year > 2025  # type: ignore[union-attr]
    listing = await (await client.get("/studies")).text()
    assert "Newsletter study" not in listing and "No study yet" in listing
    nav = re.search(r"<nav>(.*?)</nav>", listing, re.S).group(1)  # type: ignore[union-attr]
    assert 'href="/studies" class="on"' in nav and 'href="/seeds"' in nav
