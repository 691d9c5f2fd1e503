"""The access-control matrix, walked over every route the app's router holds.

Routes are read from the router, not listed here, so a route added later is covered
the day it is added (or the walk fails, naming the path parameter it cannot fill).

* Without logging in, only the public routes answer; API routes say 401, pages send
  the browser to the login form.
* Logged in as Alice (an admin), every URL naming Bob's objects is a 404 and leaves
  every row of every table as it was.
* Every state-changing request made with a session needs the CSRF token and a
  same-site origin; nothing changes when it is refused.
* The session cookie is HttpOnly and SameSite=Lax, and Secure when the dashboard is
  reached over TLS (a TLS connection, or ``CANARY_HTTP_SECURE_COOKIES`` when TLS ends
  at a reverse proxy; a client's own ``X-Forwarded-Proto`` is not believed).
* Failed logins are limited per address and name, and per address, whatever
  ``X-Forwarded-For`` claims.
* No route accepts a WebSocket upgrade.
"""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from canary.config import Settings
from canary.store import Store
from tests.support.access import concrete_paths, owned_objects, routes, snapshot
from tests.support.dashboard import PASSWORD, Seeded, build_app, csrf_of, login

SAFE = {"GET", "HEAD", "OPTIONS"}
# Reachable without logging in: the login and first-run forms, liveness, the API's own
# description, and the verification link opened from a mailbox (its token is the
# secret). /metrics checks its own bearer token or a direct local connection.
PUBLIC = {"/login", "/setup", "/healthz", "/api/v1/openapi.json", "/forwarding/verify/{token}"}
SELF_CHECKED = {"/metrics"}
# Form and JSON fields a state-changing route may read, so a refusal is never down to
# a missing field.
FIELDS = {
    "domain": "evil.test",
    "name": "evil",
    "label": "evil",
    "reason": "user",
    "target": "x",
    "address": "x@evil.test",
    "into": "1",
    "enabled": "false",
    "q": "x",
    "current": PASSWORD,
    "password": "new password 123",
    "password2": "new password 123",
}


def private_routes(client: TestClient) -> list[tuple[str, str]]:
    return [
        (method, template)
        for method, template in routes(client.app)
        if template not in PUBLIC | SELF_CHECKED
    ]


async def send(
    client: TestClient, method: str, path: str, *, csrf: str | None = None, **extra: Any
) -> aiohttp.ClientResponse:
    """A request as a browser form (pages) or a JSON call (API), without redirects."""
    kwargs: dict[str, Any] = {"allow_redirects": False, **extra}
    if method not in SAFE:
        if path.startswith("/api/"):
            kwargs.setdefault("json", FIELDS)
        else:
            kwargs.setdefault("data", {**FIELDS, **({"csrf": csrf} if csrf else {})})
    return await client.request(method, path, **kwargs)


@pytest.mark.parametrize("cookie", [None, "forged.signature", "e30.AAAA"])
async def test_nothing_but_public_routes_without_logging_in(
    client: TestClient, store: Store, alice: Seeded, cookie: str | None
) -> None:
    objects = owned_objects(store, alice)
    if cookie:
        client.session.cookie_jar.update_cookies({"ct_session": cookie})
    before = snapshot(store)
    checked = 0
    for method, template in private_routes(client):
        for path in concrete_paths(template, objects):
            response = await send(client, method, path)
            if path.startswith("/api/"):
                assert response.status == 401, (method, path)
                assert (await response.json())["error"]["code"] == "unauthorized"
                assert response.headers["WWW-Authenticate"] == "Bearer"
            else:
                assert response.status == 303, (method, path)
                assert response.headers["Location"].startswith("/login?next=")
            checked += 1
    assert checked >= 80
    assert snapshot(store) == before


async def test_public_routes_answer_without_logging_in(client: TestClient) -> None:
    assert {t for _, t in routes(client.app)} >= PUBLIC | SELF_CHECKED
    for path in ("/login", "/healthz", "/api/v1/openapi.json"):
        assert (await client.get(path)).status == 200, path
    assert (await client.get("/forwarding/verify/not-a-token")).status in (200, 404)
    # /metrics without a token answers a direct local connection only, never through a
    # proxy that would make every visitor look local.
    proxied = await client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
    assert proxied.status == 401


async def test_another_users_objects_are_404_and_stay_untouched(
    client: TestClient, store: Store, alice: Seeded, bob: Seeded
) -> None:
    """Alice is an admin: being one must not let her read or change Bob's data."""
    owned_objects(store, alice)
    bobs = owned_objects(store, bob)
    csrf = await login(client, "alice")
    api = {"Authorization": f"Bearer {alice.token}"}
    before = snapshot(store)
    checked = 0
    for method, template in routes(client.app):
        if "{" not in template or template in PUBLIC:
            continue
        for path in concrete_paths(template, bobs):
            # The API as Alice's token and as her browser session; pages as her session.
            ways = [{"headers": api}, {"headers": {"X-CSRF-Token": csrf}}]
            for extra in ways if path.startswith("/api/") else [{}]:
                response = await send(client, method, path, csrf=csrf, **extra)
                assert response.status == 404, (method, path, await response.text())
                if path.startswith("/api/"):
                    assert (await response.json())["error"]["code"] == "not_found"
                checked += 1
    assert checked >= 50
    assert snapshot(store) == before


async def test_every_state_change_needs_the_csrf_token_and_a_same_site_origin(
    client: TestClient, store: Store, alice: Seeded
) -> None:
    objects = owned_objects(store, alice)
    good = await login(client, "alice")
    before = snapshot(store)
    refusals = [
        ({}, None),  # no token at all
        ({}, "guess"),  # a wrong token
        ({"Origin": "http://evil.test"}, good),  # the right token from another site
        ({"Sec-Fetch-Site": "cross-site"}, good),
        ({"Sec-Fetch-Site": "same-site"}, good),  # a sibling subdomain is another site
    ]
    checked = 0
    for method, template in private_routes(client):
        if method in SAFE:
            continue
        for path in concrete_paths(template, objects):
            for headers, token in refusals:
                if path.startswith("/api/"):  # a session calling the API sends the header
                    headers = {**headers, **({"X-CSRF-Token": token} if token else {})}
                response = await send(client, method, path, csrf=token, headers=headers)
                assert response.status == 403, (method, path, headers, await response.text())
                checked += 1
    assert checked >= 5 * 30
    assert snapshot(store) == before
    # The public forms too: no logging in (or first run) from another site's form.
    client.session.cookie_jar.clear()
    for path in ("/login", "/setup", "/forwarding/verify/some-token"):
        response = await send(client, "POST", path)
        assert response.status == 403, path
    assert snapshot(store) == before


async def test_bearer_tokens_need_no_csrf_and_never_carry_a_cookie(
    client: TestClient, alice: Seeded
) -> None:
    response = await client.post(
        f"/api/v1/incidents/{alice.incident.id}/dismiss",
        headers={"Authorization": f"Bearer {alice.token}", "Origin": "http://evil.test"},
    )
    # A token is not ambient authority, so another origin cannot make a browser send
    # it; the Origin check is for cookies only.
    assert response.status == 200
    assert "Set-Cookie" not in response.headers


async def test_session_cookie_flags(client: TestClient, alice: Seeded) -> None:
    page = await client.get("/login")
    cookie = page.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie
    # The client cannot declare its connection secure; a TLS proxy needs the setting.
    client.session.cookie_jar.clear()
    claimed = await client.get("/login", headers={"X-Forwarded-Proto": "https"})
    assert "Secure" not in claimed.headers["Set-Cookie"]
    csrf = csrf_of(await claimed.text())
    response = await client.post(
        "/login",
        data={"name": "alice", "password": PASSWORD, "csrf": csrf},
        allow_redirects=False,
    )
    assert response.status == 303
    session_cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in session_cookie and "SameSite=Lax" in session_cookie


def self_signed(tmp_path: Path) -> ssl.SSLContext:
    """A server TLS context with a fresh certificate for 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_cookie_is_secure_over_tls(
    settings: Settings, store: Store, tmp_path: Path, backend: str
) -> None:
    runner = web.AppRunner(build_app(settings, store))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self_signed(tmp_path))
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"https://127.0.0.1:{port}/login", ssl=False) as response,
        ):
            assert response.status == 200
            assert "Secure" in response.headers["Set-Cookie"]
    finally:
        await runner.cleanup()


async def test_secure_cookie_setting_for_tls_at_a_proxy(
    aiohttp_client: Any, make_settings: Any, store: Store
) -> None:
    proxied = await aiohttp_client(build_app(make_settings(http_secure_cookies=True), store))
    assert "Secure" in (await proxied.get("/login")).headers["Set-Cookie"]


async def test_login_rate_limit_per_address_ignores_forwarded_headers(
    client: TestClient, alice: Seeded
) -> None:
    csrf = csrf_of(await (await client.get("/login")).text())
    statuses = []
    for attempt in range(31):
        response = await client.post(
            "/login",
            data={"name": f"guess{attempt % 6}", "password": "nope", "csrf": csrf},
            headers={"X-Forwarded-For": f"198.51.100.{attempt}"},
        )
        statuses.append(response.status)
    # Five tries per name, thirty per address: the sixth name's sixth try and the
    # address's thirty-first are refused, whatever address the client claims.
    assert statuses[:30].count(401) == 30 and statuses[30] == 429
    correct = await client.post(
        "/login",
        data={"name": "alice", "password": PASSWORD, "csrf": csrf},
        allow_redirects=False,
    )
    assert correct.status == 429 and int(correct.headers["Retry-After"]) > 0


async def test_no_route_upgrades_to_a_websocket(
    client: TestClient, store: Store, alice: Seeded
) -> None:
    objects = owned_objects(store, alice)
    await login(client, "alice")
    upgrade = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    }
    checked = 0
    for method, template in routes(client.app):
        if method != "GET":
            continue
        for path in concrete_paths(template.replace("{token}", "t"), objects):
            response = await client.get(path, headers=upgrade, allow_redirects=False)
            assert response.status != 101, path
            assert "Sec-WebSocket-Accept" not in response.headers, path
            checked += 1
    assert checked >= 30
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await client.ws_connect("/")
