"""Pages through the real app: login, CSRF, rate limit, first run, headers, the main flows."""

from __future__ import annotations

import re
from typing import Any

from aiohttp.test_utils import TestClient
from canary.dashboard.mailpages import SOURCE_MENU_LIMIT
from canary.dashboard.pages import OVERVIEW_SOURCES
from sqlmodel import select

from canary.models import AuthorisedSender, Identity, Incident
from canary.store import Store
from tests.support.dashboard import PASSWORD, Seeded, add_sources, build_app, csrf_of, login


async def test_login_sets_a_hardened_cookie_and_rotates_the_session(
    client: TestClient, alice: Seeded
) -> None:
    page = await client.get("/login")
    anonymous_csrf = csrf_of(await page.text())
    cookie = page.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http in tests; TLS or secure_cookies adds it
    response = await client.post(
        "/login",
        data={"name": "alice", "password": PASSWORD, "csrf": anonymous_csrf, "next": "/messages"},
        allow_redirects=False,
    )
    assert response.status == 303 and response.headers["Location"] == "/messages"
    home = await client.get("/")
    assert csrf_of(await home.text()) != anonymous_csrf  # no session fixation


async def test_secure_cookies_setting(
    aiohttp_client: Any, settings: Any, store: Store, alice: Seeded
) -> None:
    client = await aiohttp_client(build_app(settings, store, secure_cookies=True))
    page = await client.get("/login")
    assert "Secure" in page.headers["Set-Cookie"]


async def test_wrong_password_and_rate_limit(client: TestClient, alice: Seeded) -> None:
    csrf = csrf_of(await (await client.get("/login")).text())
    for _ in range(5):
        wrong = await client.post(
            "/login", data={"name": "alice", "password": "nope", "csrf": csrf}
        )
        assert wrong.status == 401
        assert "Wrong name or password" in await wrong.text()
    limited = await client.post(
        "/login", data={"name": "alice", "password": PASSWORD, "csrf": csrf}
    )
    assert limited.status == 429
    assert int(limited.headers["Retry-After"]) > 0


async def test_next_never_leaves_the_site(client: TestClient, alice: Seeded) -> None:
    csrf = csrf_of(await (await client.get("/login")).text())
    for target in ("https://evil.test/", "//evil.test/", "/\\evil.test"):
        response = await client.post(
            "/login",
            data={"name": "alice", "password": PASSWORD, "csrf": csrf, "next": target},
            allow_redirects=False,
        )
        assert response.headers["Location"] == "/"
        csrf = csrf_of(await (await client.get("/")).text())


async def test_csrf_is_required_on_every_form(client: TestClient, alice: Seeded) -> None:
    await login(client, "alice")
    url = f"/incidents/{alice.incident.id}/dismiss"
    missing = await client.post(url, data={}, allow_redirects=False)
    assert missing.status == 403
    wrong = await client.post(url, data={"csrf": "guess"}, allow_redirects=False)
    assert wrong.status == 403
    csrf = csrf_of(await (await client.get("/")).text())
    foreign = await client.post(
        url, data={"csrf": csrf}, headers={"Origin": "http://evil.test"}, allow_redirects=False
    )
    assert foreign.status == 403
    labelled = await client.post(
        url, data={"csrf": csrf}, headers={"Sec-Fetch-Site": "cross-site"}, allow_redirects=False
    )
    assert labelled.status == 403
    # The login form too (login CSRF).
    login_post = await client.post("/login", data={"name": "alice", "password": PASSWORD})
    assert login_post.status == 403


async def test_security_headers(client: TestClient, alice: Seeded) -> None:
    await login(client, "alice")
    page = await client.get(f"/messages/{alice.message.id}")
    html = await page.text()
    assert page.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    frame = re.search(r"<iframe[^>]*>", html)
    assert frame is not None
    tag = frame.group(0)
    assert re.search(r"\ssandbox[\s>]", tag) and "allow-" not in tag
    body = await client.get(f"/messages/{alice.message.id}/body")
    csp = body.headers["Content-Security-Policy"]
    assert csp.startswith("default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox")
    assert "frame-ancestors 'self'" in csp
    assert "X-Frame-Options" not in body.headers
    text = await body.text()
    for bad in ("<script", "onerror", "javascript:", "evil.test", "http-equiv", "<iframe"):
        assert bad not in text, bad
    assert "Hello Marc" in text
    raw = await client.get(f"/messages/{alice.message.id}/raw")
    assert raw.headers["Content-Disposition"].startswith("attachment")
    assert raw.headers["X-Content-Type-Options"] == "nosniff"
    api = await client.get("/healthz")
    assert api.headers["X-Frame-Options"] == "DENY"


async def test_text_body_is_escaped(client: TestClient, alice: Seeded) -> None:
    await login(client, "alice")
    html = await (await client.get(f"/messages/{alice.message.id}")).text()
    assert "Hello Marc &lt;script&gt;alert(1)&lt;/script&gt;" in html


async def test_first_run_page(client: TestClient, store: Store) -> None:
    login_page = await client.get("/login")
    assert "/setup" in await login_page.text()
    proxied = await client.get("/setup", headers={"X-Forwarded-For": "203.0.113.9"})
    assert proxied.status == 404
    form = await client.get("/setup")
    csrf = csrf_of(await form.text())
    made = await client.post(
        "/setup",
        data={"name": "owner", "password": PASSWORD, "password2": PASSWORD, "csrf": csrf},
        allow_redirects=False,
    )
    assert made.status == 303
    assert (await client.get("/")).status == 200  # logged in as the new admin
    assert (await client.get("/setup")).status == 404  # gone once an account exists


async def test_first_run_adopts_the_cli_default_account(client: TestClient, store: Store) -> None:
    from canary.users import default_user

    with store.session() as session:
        default_user(session)  # what the CLI makes on first use: "owner", no password
    csrf = csrf_of(await (await client.get("/setup")).text())
    await client.post(
        "/setup", data={"name": "owner", "password": PASSWORD, "password2": PASSWORD, "csrf": csrf}
    )
    await login(client, "owner")


async def test_new_identity_flow(client: TestClient, store: Store, alice: Seeded) -> None:
    csrf = await login(client, "alice")
    form = await client.get("/new")
    assert "Shop X" in await form.text()  # offered in the datalist
    created = await client.post(
        "/new", data={"source": "Garden Centre", "csrf": csrf}, allow_redirects=False
    )
    assert created.status == 303
    page = await client.get(created.headers["Location"])
    html = await page.text()
    assert "Garden Centre" in html and 'data-copy="alias"' in html
    with store.session() as session:
        identity = session.exec(select(Identity).order_by(Identity.id.desc())).first()  # type: ignore[union-attr]
        assert identity is not None and identity.alias in html
    bad = await client.post("/new", data={"source": "  ", "csrf": csrf})
    assert bad.status == 400


async def test_source_page_authorise_and_dismiss(
    client: TestClient, store: Store, alice: Seeded
) -> None:
    csrf = await login(client, "alice")
    page = await client.get(f"/sources/{alice.source.id}")
    html = await page.text()
    assert "brokerx.test" in html and "Authorise this sender" in html
    assert alice.identity.alias in html
    await client.post(
        f"/sources/{alice.source.id}/senders", data={"domain": "brokerx.test", "csrf": csrf}
    )
    dismissed = await client.post(
        f"/incidents/{alice.incident.id}/dismiss", data={"csrf": csrf}, allow_redirects=False
    )
    assert dismissed.status == 303
    with store.session() as session:
        incident = session.get(Incident, alice.incident.id)
        assert incident is not None and incident.status == "dismissed"
        domains = session.exec(
            select(AuthorisedSender.domain).where(AuthorisedSender.source_id == alice.source.id)
        ).all()
        assert "brokerx.test" in domains


async def test_overview_messages_trace_pages(client: TestClient, alice: Seeded) -> None:
    await login(client, "alice")
    overview = await (await client.get("/")).text()
    assert "<svg" in overview and "Shop X" in overview and "shared" in overview
    listed = await (await client.get("/messages?verdict=shared&sender_org=brokerx.test")).text()
    assert "Offer for alice" in listed
    empty = await (await client.get("/messages?verdict=breach")).text()
    assert "Offer for alice" not in empty
    traced = await (await client.get(f"/trace?q={alice.identity.display_name}")).text()
    assert "Shop X" in traced


async def test_tokens_from_settings(client: TestClient, alice: Seeded) -> None:
    csrf = await login(client, "alice")
    made = await client.post("/settings/tokens", data={"label": "script", "csrf": csrf})
    html = await made.text()
    token = re.search(r'<code id="token">([^<]+)</code>', html)
    assert token is not None
    headers = {"Authorization": f"Bearer {token.group(1)}"}
    assert (await client.get("/api/v1/sources", headers=headers)).status == 200
    token_ids = re.findall(r"/settings/tokens/(\d+)/revoke", html)
    for token_id in token_ids:
        await client.post(f"/settings/tokens/{token_id}/revoke", data={"csrf": csrf})
    assert (await client.get("/api/v1/sources", headers=headers)).status == 401


async def test_password_change_ends_other_sessions(
    aiohttp_client: Any, dashboard_app: Any, alice: Seeded
) -> None:
    first = await aiohttp_client(dashboard_app)
    second = await aiohttp_client(dashboard_app)
    await login(second, "alice")
    csrf = await login(first, "alice")
    new = "a brand new passphrase"
    changed = await first.post(
        "/settings/password",
        data={"current": PASSWORD, "password": new, "password2": new, "csrf": csrf},
    )
    assert "Password changed" in await changed.text()
    assert (await first.get("/", allow_redirects=False)).status == 200
    assert (await second.get("/", allow_redirects=False)).status == 303


async def test_logout(client: TestClient, alice: Seeded) -> None:
    csrf = await login(client, "alice")
    await client.post("/logout", data={"csrf": csrf})
    assert (await client.get("/", allow_redirects=False)).status == 303


async def test_message_filter_by_source_name_when_there_are_too_many_for_a_menu(
    client: TestClient, store: Store, alice: Seeded
) -> None:
    add_sources(store, alice.user, (f"Site {n}" for n in range(SOURCE_MENU_LIMIT)))
    await login(client, "alice")
    page = await (await client.get("/messages")).text()
    assert 'name="source"' in page and '<option value="' + str(alice.source.id) not in page

    found = await (await client.get("/messages", params={"source": "Shop X"})).text()
    assert f"/messages/{alice.message.id}" in found
    assert 'value="Shop X"' in found  # the filter stays filled in
    none = await (await client.get("/messages", params={"source": "Site 7"})).text()
    assert f"/messages/{alice.message.id}" not in none
    unknown = await client.get("/messages", params={"source": "no such site"})
    assert unknown.status == 200
    assert f"/messages/{alice.message.id}" not in await unknown.text()


async def test_overview_lists_the_worst_sources_first_and_counts_the_rest(
    client: TestClient, store: Store, alice: Seeded
) -> None:
    add_sources(store, alice.user, (f"Clean {n:03}" for n in range(OVERVIEW_SOURCES)))
    await login(client, "alice")
    overview = await (await client.get("/")).text()
    # Shop X, with its shared incident, heads the table; one clean source is left over.
    assert overview.index("Shop X") < overview.index("Clean 000")
    assert "Clean 098" in overview and "Clean 099" not in overview
    assert "and 1 more" in overview
    page = await (await client.get(f"/sources/{alice.source.id}")).text()
    assert 'class="pill shared">shared' in page
