"""The study, signup-time and seed routes of the JSON API, on a real app and database.

The report is checked against a study whose mail was really sent over SMTP and analysed
(tests/support/study.py has the plan and the figures worked out by hand).
"""

from __future__ import annotations

import csv
import io
from typing import Any
from xml.etree import ElementTree as ET

from aiohttp.test_utils import TestClient
from sqlmodel import select

from canary.models import Identity, IssuanceRecord
from canary.store import Store
from tests.support.dashboard import Seeded, api_call, bearer
from tests.support.dns_server import TestDnsServer
from tests.support.study import PLAN, send_study_mail

PATH = "/api/v1"


async def call(
    client: TestClient, seeded: Seeded, method: str, path: str, status: int = 200, **kw: Any
) -> Any:
    """:func:`api_call` with the status before the keyword arguments."""
    return await api_call(client, seeded, method, path, kw.pop("json", None), status, **kw)


async def test_import_list_read_and_personas(
    client: TestClient, alice: Seeded, bob: Seeded
) -> None:
    made = await call(client, alice, "POST", "/studies", 201,
                      json={"name": "Pilot", "plan": PLAN, "personas_per_site": 2,
                            "auto_confirm": True})  # fmt: skip
    assert made["sites"] == 6 and made["identities"] == 12
    study = made["study"]
    assert study["name"] == "Pilot" and study["auto_confirm"] is True

    listed = await call(client, alice, "GET", "/studies")
    assert [(s["name"], s["sites"]) for s in listed["items"]] == [("Pilot", 6)]
    one = await call(client, alice, "GET", f"/studies/{study['id']}")
    assert one["sites"] == 6 and one["identities"] == 12 and one["confirmations"] == {}
    personas = (await call(client, alice, "GET", f"/studies/{study['id']}/personas"))["items"]
    assert len(personas) == 12
    assert [p["site"] for p in personas[:4]] == ["Site 01", "Site 01", "Site 02", "Site 02"]
    assert all(p["email"].endswith("@canary.test") and p["given_at"] is None for p in personas)
    assert len({p["name"] for p in personas}) == 12

    off = await call(client, alice, "POST", f"/studies/{study['id']}/auto-confirm",
                     json={"enabled": False})  # fmt: skip
    assert off["auto_confirm"] is False
    # Another user's study is not found, for reading and for changing.
    await call(client, bob, "GET", f"/studies/{study['id']}", 404)
    await call(client, bob, "GET", f"/studies/{study['id']}/report", 404)
    await call(client, bob, "POST", f"/studies/{study['id']}/auto-confirm", 404,
               json={"enabled": True})  # fmt: skip
    assert (await call(client, bob, "GET", "/studies"))["items"] == []


async def test_bad_plans_are_refused_with_the_line(client: TestClient, alice: Seeded) -> None:
    bad = "name,url,domains\nGood,https://good.test/,good.test\nBad,ftp://bad.test/,\n"
    error = await call(client, alice, "POST", "/studies", 400, json={"name": "X", "plan": bad})
    assert error["error"]["code"] == "invalid_input"
    assert "line 3" in error["error"]["message"]
    for body in (
        {"name": "X"},
        {"name": 5, "plan": PLAN},
        {"name": "X", "plan": PLAN, "personas_per_site": "many"},
        {"name": "X", "plan": PLAN, "personas_per_site": 1000},
        {"name": "X", "plan": PLAN, "domain": "elsewhere.test"},
        {"name": "X", "plan": PLAN, "locale": "xx_XX"},
        {"name": "X", "plan": PLAN, "auto_confirm": "yes"},
        {"name": "X" * 201, "plan": PLAN},
        {"name": "X\x00", "plan": PLAN},
        {"name": "X", "plan": PLAN, "style": ""},
        {"name": "X", "plan": PLAN, "domain": None},
        {"name": "X", "plan": PLAN, "personas_per_site": None},
        {"name": "X", "plan": f"name,domains\n{'S' * 201},s.test\n"},
    ):
        await call(client, alice, "POST", "/studies", 400, json=body)
    await call(client, alice, "POST", "/studies", 201, json={"name": "X", "plan": PLAN})
    clash = await call(client, alice, "POST", "/studies", 409, json={"name": "x", "plan": PLAN})
    assert clash["error"]["code"] == "conflict"


async def test_report_graph_and_graphml_of_a_study_that_received_mail(
    client: TestClient, store: Store, settings: Any, alice: Seeded, dns_server: TestDnsServer
) -> None:
    sent = await send_study_mail(store, settings, alice.user, dns_server)
    report = await call(client, alice, "GET", f"/studies/{sent.study_id}/report")
    # The figures of the plan in tests/support/study.py.
    assert (report["sites"], report["identities"]) == (6, 6)
    assert (report["sites_with_mail"], report["share_with_mail"]) == (5, 0.8333)
    assert (report["sites_with_shared"], report["share_with_shared"]) == (3, 0.5)
    assert (report["sites_with_breach"], report["share_with_breach"]) == (2, 0.3333)
    assert report["third_parties_per_site"] == {"mean": 0.833, "median": 0.5, "max": 2.0}
    assert report["third_party_histogram"] == {"0": 3, "1": 1, "2": 2}
    days = report["days_to_first_third_party"]
    assert (days["sites"], round(days["min"]), round(days["max"])) == (3, 5, 40)
    assert (round(days["q1"], 1), round(days["median"]), round(days["q3"])) == (8.5, 12, 26)
    assert [c["share"] for c in report["cdf"]] == [0.1667, 0.3333, 0.5]
    assert report["top_third_parties"] == [
        {"org": "brokerx.test", "sites": 3},
        {"org": "adsy.test", "sites": 2},
    ]

    graph = await call(client, alice, "GET", f"/studies/{sent.study_id}/graph")
    assert graph == report["graph"]
    links = {(link["source"], link["target"]) for link in graph["links"]}
    assert links == {
        ("site:Site 01", "org:adsy.test"), ("site:Site 01", "org:brokerx.test"),
        ("site:Site 02", "org:adsy.test"), ("site:Site 02", "org:brokerx.test"),
        ("site:Site 04", "org:brokerx.test"),
    }  # fmt: skip

    response = await client.get(
        f"{PATH}/studies/{sent.study_id}/graph.graphml", headers=bearer(alice)
    )
    assert response.status == 200 and response.content_type == "application/graphml+xml"
    root = ET.fromstring(await response.read())
    ns = {"g": "http://graphml.graphdrawing.org/xmlns"}
    assert len(root.findall(".//g:node", ns)) == 8  # 6 sites, 2 third parties
    edges = {(e.get("source"), e.get("target")) for e in root.findall(".//g:edge", ns)}
    assert edges == links


async def test_signup_times_one_and_in_bulk(
    client: TestClient, store: Store, alice: Seeded, bob: Seeded
) -> None:
    made = await call(client, alice, "POST", "/studies", 201, json={"name": "T", "plan": PLAN})
    personas = (await call(client, alice, "GET", f"/studies/{made['study']['id']}/personas"))[
        "items"
    ]
    first, second, third = personas[0], personas[1], personas[2]

    one = await call(client, alice, "POST", f"/identities/{first['identity_id']}/given",
                     json={"given_at": "2026-03-14T09:30:00Z"})  # fmt: skip
    assert one["given_at"] == "2026-03-14T09:30:00+00:00"
    bulk = await call(client, alice, "POST", "/identities/given",
                      json={"items": [{"identity": second["identity_id"],
                                       "given_at": "2026-03-15"},
                                      {"identity": third["email"].upper(),
                                       "given_at": "2026-03-16T08:00:00+01:00"}]})  # fmt: skip
    assert bulk == {"recorded": 2}
    csv_body = f"identity,given_at\n{personas[3]['email']},2026-03-17T10:00:00Z\n"
    from_csv = await call(client, alice, "POST", "/identities/given", data=csv_body,
                          headers={"Content-Type": "text/csv"})  # fmt: skip
    assert from_csv == {"recorded": 1}

    times = {p["email"]: p["given_at"] for p in
             (await call(client, alice, "GET", f"/studies/{made['study']['id']}/personas"))
             ["items"]}  # fmt: skip
    assert times[first["email"]] == "2026-03-14T09:30:00+00:00"
    assert times[second["email"]] == "2026-03-15T00:00:00+00:00"
    assert times[third["email"]] == "2026-03-16T07:00:00+00:00"
    assert times[personas[3]["email"]] == "2026-03-17T10:00:00+00:00"
    with store.session() as session:  # each hand-over is in the issuance log
        given = session.exec(select(IssuanceRecord).where(IssuanceRecord.event == "given"))
        assert len(given.all()) == 4

    bad = await call(client, alice, "POST", f"/identities/{first['identity_id']}/given", 400,
                     json={"given_at": "last tuesday"})  # fmt: skip
    assert "ISO 8601" in bad["error"]["message"]
    await call(client, alice, "POST", f"/identities/{first['identity_id']}/given", 400,
               json={"given_at": "9999-12-31T23:00:00-05:00"})  # fmt: skip
    await call(client, alice, "POST", "/identities/given", 400, json={"items": []})
    await call(client, alice, "POST", "/identities/given", 400,
               json={"items": [{"identity": True}]})  # fmt: skip
    await call(client, alice, "POST", "/identities/given", 400,
               json={"items": [{"identity": "a\x00b"}]})  # fmt: skip
    # What no id column can hold is read as an alias, which no identity has.
    for ref in ("9" * 30, "\u00b2"):
        await call(client, alice, "POST", "/identities/given", 404,
                   json={"items": [{"identity": ref}]})  # fmt: skip
    await call(client, alice, "POST", "/identities/%C2%B2/given", 404, json={})
    await call(client, alice, "POST", "/identities/given", 400, data="alias,when\nx,y\n",
               headers={"Content-Type": "text/csv"})  # fmt: skip
    not_utf8 = b"identity,given_at\n\xff,now\n"
    await call(client, alice, "POST", "/identities/given", 400, data=not_utf8,
               headers={"Content-Type": "text/csv"})  # fmt: skip
    # Bob's identity is unknown to Alice, alone or in a batch, and nothing changes.
    await call(client, alice, "POST", f"/identities/{bob.identity.id}/given", 404, json={})
    missing = await call(client, alice, "POST", "/identities/given", 404,
                         json={"items": [{"identity": first["email"]},
                                         {"identity": bob.identity.alias}]})  # fmt: skip
    assert bob.identity.alias in missing["error"]["message"]
    with store.session() as session:
        assert session.get(Identity, bob.identity.id).given_at is None  # type: ignore[union-attr]
        assert session.get(Identity, first["identity_id"]).given_at.day == 14  # type: ignore[union-attr]


async def test_seed_batches_create_list_read_and_csv(
    client: TestClient, alice: Seeded, bob: Seeded
) -> None:
    made = await call(client, alice, "POST", "/seeds", 201,
                      json={"vendor": "Mailer Co", "count": 5, "vendor_domains": ["mailerco.test"],
                            "company_domains": ["acme.test"], "postal_format": "Dept {code}",
                            "label": "spring list"})  # fmt: skip
    assert made["vendor"] == "Mailer Co" and made["count"] == 5
    assert sorted(made["authorised_senders"]) == ["acme.test", "mailerco.test"]
    seeds = made["seeds"]
    assert len(seeds) == 5 and len({s["code"] for s in seeds}) == 5
    assert all(s["postal_line"] == f"Dept {s['code']}" for s in seeds)

    listed = await call(client, alice, "GET", "/seeds")
    assert [(b["id"], b["vendor"], b["count"]) for b in listed["items"]] == [
        (made["id"], "Mailer Co", 5)
    ]
    read = await call(client, alice, "GET", f"/seeds/{made['id']}")
    assert read["seeds"] == seeds

    layout = "Full name=name,E-mail=email,Address 2=postal_line,Country=const:DE"
    text = await call(client, alice, "GET", f"/seeds/{made['id']}/csv",
                      params={"columns": layout, "delimiter": ";"})  # fmt: skip
    rows = list(csv.reader(io.StringIO(text), delimiter=";"))
    assert rows[0] == ["Full name", "E-mail", "Address 2", "Country"]
    assert rows[1:] == [[s["name"], s["email"], s["postal_line"], "DE"] for s in seeds]

    await call(client, alice, "GET", f"/seeds/{made['id']}/csv", 400,
               params={"columns": "name,password"})  # fmt: skip
    await call(client, alice, "GET", f"/seeds/{made['id']}/csv", 400, params={"delimiter": "x"})
    for body in (
        {"count": 5},
        {"vendor": "V", "count": 0},
        {"vendor": "V", "count": "ten"},
        {"vendor": "V", "vendor_domains": "v.test"},
        {"vendor": "V", "postal_format": "Suite 1"},
        {"vendor": "V" * 201},
        {"vendor": "V", "vendor_domains": None},
        {"vendor": "V", "postal_format": ""},
    ):
        await call(client, alice, "POST", "/seeds", 400, json=body)
    await call(client, bob, "GET", f"/seeds/{made['id']}", 404)
    await call(client, bob, "GET", f"/seeds/{made['id']}/csv", 404)
    assert (await call(client, bob, "GET", "/seeds"))["items"] == []


async def test_openapi_names_this_services_canary_domains(client: TestClient) -> None:
    doc = await (await client.get(f"{PATH}/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    for name in ("NewIdentity", "NewStudy", "NewSeedBatch"):
        assert schemas[name]["properties"]["domain"]["enum"] == ["canary.test"]
    given = doc["paths"]["/identities/given"]["post"]["requestBody"]["content"]
    assert set(given) == {"application/json", "text/csv"}
