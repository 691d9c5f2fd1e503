"""The JSON API against a real app and database (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiohttp.test_utils import TestClient
from sqlmodel import select

from canary.models import ApiToken, Incident, as_utc
from canary.store import Store
from canary.users import revoke_token
from tests.support.dashboard import Seeded, api_call, bearer

auth = bearer


async def get(client: TestClient, seeded: Seeded, path: str, status: int = 200) -> Any:
    return await api_call(client, seeded, "GET", path, status=status)


async def post(
    client: TestClient, seeded: Seeded, path: str, body: Any = None, status: int = 200
) -> Any:
    return await api_call(client, seeded, "POST", path, body, status)


async def test_healthz_and_openapi(client: TestClient) -> None:
    assert await (await client.get("/healthz")).json() == {"ok": True}
    doc = await (await client.get("/api/v1/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    assert "/messages" in doc["paths"]


async def test_openapi_describes_every_route(client: TestClient) -> None:
    from canary.dashboard.openapi import PATHS

    routed = set()
    for route in client.app.router.routes():
        path = route.resource.canonical if route.resource else ""
        if route.method == "HEAD":
            continue
        if path.startswith("/api/v1/") and path != "/api/v1/openapi.json":
            routed.add((path.removeprefix("/api/v1"), route.method.lower()))
    described = {(path, method) for path, ops in PATHS.items() for method in ops}
    assert routed == described


async def test_sources_create_list_read_authorise(client: TestClient, alice: Seeded) -> None:
    made = await post(
        client, alice, "/sources", {"name": "Newsletter Co", "domains": ["news.test"]}, 201
    )
    assert made["slug"] == "newsletter-co"
    assert [s["domain"] for s in made["authorised_senders"]] == ["news.test"]
    listed = await get(client, alice, "/sources")
    by_name = {s["name"]: s for s in listed["items"]}
    assert by_name["Shop X"]["status"] == "shared"
    assert by_name["Newsletter Co"]["status"] == "clean"
    assert by_name["Shop X"]["identity_count"] == 1
    one = await get(client, alice, f"/sources/{alice.source.id}")
    assert one["organisations"][0]["organisation"] == "brokerx.test"
    after = await post(
        client, alice, f"/sources/{alice.source.id}/senders", {"domain": "BrokerX.test"}, 201
    )
    assert {s["domain"] for s in after["authorised_senders"]} == {"shopx.test", "brokerx.test"}
    dup = await post(client, alice, "/sources", {"name": "newsletter co"}, 409)
    assert dup["error"]["code"] == "conflict"
    bad = await post(client, alice, f"/sources/{alice.source.id}/senders", {"domain": "x"}, 400)
    assert bad["error"]["code"] == "invalid_input"


async def test_authorise_calls_reevaluation_once(
    aiohttp_client: Any, settings: Any, store: Store, alice: Seeded
) -> None:
    from tests.support.dashboard import build_app

    calls: list[int] = []
    app = build_app(settings, store, reevaluate=lambda session, source: calls.append(source.id))
    client = await aiohttp_client(app)
    for _ in range(2):
        await post(
            client, alice, f"/sources/{alice.source.id}/senders", {"domain": "esp.test"}, 201
        )
    assert calls == [alice.source.id]


async def test_identities_create_bulk_retire(client: TestClient, alice: Seeded) -> None:
    one = await post(client, alice, "/identities", {"source": "Brand New Shop"}, 201)
    assert one["alias"].endswith("@canary.test")
    assert one["source"]["name"] == "Brand New Shop"
    again = await post(client, alice, "/identities", {"source_id": alice.source.id}, 201)
    assert again["source_id"] == alice.source.id
    bulk = await post(
        client, alice, "/identities/bulk", {"source_id": alice.source.id, "count": 5}, 201
    )
    assert len(bulk["items"]) == 5
    assert len({i["alias"] for i in bulk["items"]}) == 5
    retired = await post(client, alice, f"/identities/{one['id']}/retire")
    assert retired["retired_at"] is not None
    read = await get(client, alice, f"/identities/{one['id']}")
    assert read["retired_at"] == retired["retired_at"]
    page = await get(client, alice, f"/identities?source_id={alice.source.id}&limit=3")
    assert len(page["items"]) == 3 and page["next_before"] is not None
    rest = await get(
        client, alice, f"/identities?source_id={alice.source.id}&before={page['next_before']}"
    )
    assert len(rest["items"]) == 4  # 1 seeded + 1 + 5 bulk = 7 in all
    too_many = await post(client, alice, "/identities/bulk", {"source_id": 1, "count": 0}, 400)
    assert too_many["error"]["code"] == "invalid_input"
    bad_style = await post(client, alice, "/identities", {"source": "x", "style": "nope"}, 400)
    assert "style" in bad_style["error"]["message"]


async def test_messages_filters_and_detail(client: TestClient, alice: Seeded) -> None:
    listed = await get(client, alice, "/messages")
    assert [m["id"] for m in listed["items"]] == [alice.message.id]
    item = listed["items"][0]
    assert item["deliveries"][0]["verdict"] == "shared"
    for query, hits in [
        (f"source_id={alice.source.id}", 1),
        ("verdict=shared", 1),
        ("verdict=breach", 0),
        ("sender_org=brokerx.test", 1),
        ("sender_org=other.test", 0),
        ("message_id=msg-alice@brokerx.test", 1),
        ("message_id=<msg-alice@brokerx.test>", 1),
        ("message_id=nope@x", 0),
        (f"recipient={alice.identity.alias.upper()}", 1),
        ("recipient=someone@canary.test", 0),
        ("since=2000-01-01", 1),
        ("until=2000-01-01", 0),
    ]:
        found = await get(client, alice, f"/messages?{query}")
        assert len(found["items"]) == hits, query
    bad = await get(client, alice, "/messages?verdict=awful", status=400)
    assert bad["error"]["code"] == "invalid_input"
    detail = await get(client, alice, f"/messages/{alice.message.id}")
    delivery = detail["deliveries"][0]
    assert delivery["source"] == "Shop X"
    assert delivery["finding"]["evidence"][0] == {"code": "dkim_pass", "detail": "d=brokerx.test"}
    assert detail["authentication"]["verified"] == ["dkim_pass d=brokerx.test"]
    assert detail["has_html"] is True
    assert "your account is ready" in detail["text"]
    raw = await client.get(f"/api/v1/messages/{alice.message.id}/raw", headers=auth(alice))
    assert raw.status == 200
    assert raw.headers["Content-Disposition"].startswith("attachment")
    assert raw.headers["X-Content-Type-Options"] == "nosniff"
    assert await raw.read() == alice.message.raw


async def test_message_pagination_by_id(client: TestClient, store: Store, alice: Seeded) -> None:
    from canary.models import Delivery, Message

    with store.session() as session:
        for _ in range(4):
            m = Message(raw=b"Subject: x\r\n\r\nx\r\n", rcpt_to=[alice.identity.alias])
            session.add(m)
            session.flush()
            session.add(
                Delivery(
                    message_id=m.id,
                    recipient=alice.identity.alias,
                    recipient_key=alice.identity.alias,
                    owner_id=alice.user.id,
                    source_id=alice.source.id,
                )
            )
    seen: list[int] = []
    before = ""
    while True:
        page = await get(client, alice, f"/messages?limit=2{before}")
        seen += [m["id"] for m in page["items"]]
        if page["next_before"] is None:
            break
        before = f"&before={page['next_before']}"
    assert len(seen) == 5 and seen == sorted(seen, reverse=True)


async def test_findings_and_incidents(client: TestClient, store: Store, alice: Seeded) -> None:
    findings = await get(client, alice, "/findings?verdict=shared")
    assert [f["id"] for f in findings["items"]] == [alice.finding.id]
    assert findings["items"][0]["message_id"] == alice.message.id
    incidents = await get(client, alice, "/incidents?status=open")
    assert [i["id"] for i in incidents["items"]] == [alice.incident.id]
    dismissed = await post(client, alice, f"/incidents/{alice.incident.id}/dismiss")
    assert dismissed["status"] == "dismissed"
    with store.session() as session:
        incident = session.get(Incident, alice.incident.id)
        assert incident is not None and incident.status == "dismissed"
    # A dismissed incident no longer makes the source "shared".
    sources = await get(client, alice, "/sources")
    assert sources["items"][0]["status"] == "clean"
    confirmed = await post(client, alice, f"/incidents/{alice.incident.id}/confirm")
    assert confirmed["status"] == "confirmed"
    assert (await get(client, alice, "/incidents?status=open"))["items"] == []


async def test_trace(client: TestClient, alice: Seeded) -> None:
    by_address = await get(client, alice, f"/trace?q={alice.identity.alias}")
    assert by_address["matches"][0]["source"]["name"] == "Shop X"
    by_name = await post(client, alice, "/trace", {"q": alice.identity.display_name})
    assert by_name["matches"][0]["identity"]["id"] == alice.identity.id
    missing = await get(client, alice, "/trace", status=400)
    assert missing["error"]["code"] == "invalid_input"


async def test_errors_are_json(client: TestClient, alice: Seeded) -> None:
    missing = await get(client, alice, "/sources/999999", status=404)
    assert missing == {"error": {"code": "not_found", "message": "no source named 999999"}}
    assert (await get(client, alice, "/sources/abc", status=404))["error"]["code"] == "not_found"
    assert (await get(client, alice, "/nothing-here", status=404))["error"]["code"] == "not_found"
    response = await client.post(
        "/api/v1/sources",
        data=b"{not json",
        headers={**auth(alice), "Content-Type": "application/json"},
    )
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "invalid_input"
    wrong_method = await client.delete("/api/v1/sources", headers=auth(alice))
    assert wrong_method.status == 405
    assert (await wrong_method.json())["error"]["code"] == "method_not_allowed"
    # RFC 9110 15.5.6: a 405 says which methods the resource does have.
    allowed = {m.strip() for m in wrong_method.headers["Allow"].split(",")}
    assert allowed == {"GET", "HEAD", "POST"}


async def test_tokens_revoked_and_invalid(client: TestClient, store: Store, alice: Seeded) -> None:
    bogus = await client.get("/api/v1/sources", headers={"Authorization": "Bearer ct_nope"})
    assert bogus.status == 401
    assert bogus.headers["WWW-Authenticate"] == "Bearer"
    assert (await bogus.json())["error"]["code"] == "unauthorized"

    def token() -> ApiToken:
        with store.session() as session:
            return session.exec(select(ApiToken).where(ApiToken.user_id == alice.user.id)).one()

    await get(client, alice, "/sources")
    first_use = token().last_used_at
    assert first_use is not None
    # Kept to the minute: a call within the minute writes nothing, a later one does.
    await get(client, alice, "/sources")
    assert token().last_used_at == first_use
    with store.session() as session:
        record = session.get_one(ApiToken, token().id)
        record.last_used_at = first_use - timedelta(hours=2)
    await get(client, alice, "/sources")
    last_use = token().last_used_at
    assert last_use is not None and as_utc(last_use) >= as_utc(first_use)

    with store.session() as session:
        revoke_token(session, alice.user, token().id)
    assert (await client.get("/api/v1/sources", headers=auth(alice))).status == 401


async def test_start_dashboard_serves_on_the_configured_address(
    settings: Any, store: Store
) -> None:
    import aiohttp
    from canary.dashboard.app import start_dashboard

    runner = await start_dashboard(settings.replace(http_host="127.0.0.1", http_port=0), store)
    try:
        host, port = runner.addresses[0][:2]
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://{host}:{port}/healthz") as response,
        ):
            assert await response.json() == {"ok": True}
    finally:
        await runner.cleanup()
