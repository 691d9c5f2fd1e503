"""Dashboard test helpers: the app on the test store, logged-in clients, seeded data.

Import the fixtures into a test module or a conftest (``from tests.support.dashboard
import dashboard_app``); data is inserted through the real service functions and the
real tables, never mocked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from canary.dashboard.app import create_app
from canary.dashboard.auth import LoginLimiter

from canary.config import Settings
from canary.identity import IdentityRequest, create_identities
from canary.models import Delivery, Finding, Identity, Incident, Message, Source, User, utcnow
from canary.sources import add_source
from canary.store import Store
from canary.users import add_user, new_token

SECRET = b"test-secret-" + b"x" * 20
PASSWORD = "correct horse battery"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')

HOSTILE_HTML = """<html><head>
<meta http-equiv="refresh" content="0;url=http://refresh.evil.test/">
<link rel="stylesheet" href="http://css.evil.test/s.css">
<style>body { background: url(http://bg.evil.test/bg.png) } @import url(http://imp.evil.test/i.css);</style>
<base href="http://base.evil.test/">
</head><body>
<p id="greeting">Hello Marc, your account is ready.</p>
<script>alert("script ran");</script>
<script>document.documentElement.dataset.ran = "script";</script>
<script>window.parent.document.title = "PWNED"; fetch("http://script.evil.test/x");</script>
<img src="http://pixel.evil.test/open.gif?id=42" width="1" height="1">
<img src="x" onerror="document.documentElement.dataset.ran = 'onerror'; fetch('http://onerror.evil.test/')">
<body onload="alert('onload ran')">
<a href="javascript:fetch('http://js.evil.test/')">click me</a>
<svg onload="alert('svg onload')"><script>fetch("http://svg.evil.test/")</script><image href="http://svgimg.evil.test/a.png"/></svg>
<div style="background-image: url('http://inline.evil.test/bg.png')">styled</div>
<iframe src="http://frame.evil.test/"></iframe>
<object data="http://object.evil.test/x.swf"></object>
<form action="http://form.evil.test/"><input name="q"></form>
<video poster="http://poster.evil.test/p.png"></video>
</body></html>"""


def hostile_message(to: str, subject: str = "Your account") -> bytes:
    """A multipart message whose HTML part tries every way to run script or load a URL."""
    return (
        "From: Broker X <offers@brokerx.test>\r\n"
        f"To: {to}\r\nSubject: {subject}\r\n"
        "Message-ID: <hostile-1@brokerx.test>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/alternative; boundary="b1"\r\n\r\n'
        "--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        "Hello Marc <script>alert(1)</script>, your account is ready.\r\n"
        "--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        f"{HOSTILE_HTML}\r\n--b1--\r\n"
    ).encode()


@dataclass
class Seeded:
    """One user's data: a source, an identity, a message, a finding and an incident."""

    user: User
    source: Source
    identity: Identity
    message: Message
    delivery: Delivery
    finding: Finding
    incident: Incident
    token: str

    def ids(self) -> dict[str, int]:
        """The ids of everything, for building URLs."""
        return {
            "source": self.source.id or 0,
            "identity": self.identity.id or 0,
            "message": self.message.id or 0,
            "incident": self.incident.id or 0,
            "finding": self.finding.id or 0,
        }


def seed_user(
    store: Store, name: str, admin: bool = False, source_name: str = "Shop X", domain: str = ""
) -> Seeded:
    """A user with a password and API token, and one of everything they can own."""
    with store.session() as session:
        user = add_user(session, name, password=PASSWORD, admin=admin)
        source = add_source(session, user, source_name, domains=[domain or "shopx.test"])
        identity = create_identities(
            session, user, source, IdentityRequest(domain="canary.test", seed=len(name))
        )[0]
        received = utcnow() - timedelta(days=2)
        raw = hostile_message(identity.alias, subject=f"Offer for {name}")
        message = Message(
            received_at=received,
            peer_ip="192.0.2.7",
            helo="mx.brokerx.test",
            mail_from="bounce@brokerx.test",
            rcpt_to=[identity.alias],
            raw=raw,
            size=len(raw),
            state="analysed",
            header_message_id=f"<msg-{name}@brokerx.test>",
            subject=f"Offer for {name}",
            from_address="offers@brokerx.test",
            sender_org="brokerx.test",
            analysed_at=received,
        )
        session.add(message)
        session.flush()
        assert message.id is not None and source.id is not None and user.id is not None
        delivery = Delivery(
            message_id=message.id,
            recipient=identity.alias,
            recipient_key=identity.alias,
            identity_id=identity.id,
            source_id=source.id,
            owner_id=user.id,
            verdict="shared",
            received_at=received,
        )
        session.add(delivery)
        session.flush()
        assert delivery.id is not None
        finding = Finding(
            delivery_id=delivery.id,
            owner_id=user.id,
            source_id=source.id,
            verdict="shared",
            sender_org="brokerx.test",
            evidence=[
                {"code": "dkim_pass", "detail": "d=brokerx.test"},
                {"code": "not_authorised_for_source", "detail": "brokerx.test"},
            ],
            sentence=f"brokerx.test wrote to the identity given to {source_name}.",
        )
        session.add(finding)
        incident = Incident(
            owner_id=user.id,
            source_id=source.id,
            kind="shared",
            finding_count=1,
            organisations=["brokerx.test"],
            first_seen=received,
            last_seen=received,
        )
        session.add(incident)
        session.flush()
        _, token = new_token(session, user, "tests")
        return Seeded(user, source, identity, message, delivery, finding, incident, token)


def build_app(settings: Settings, store: Store, **kwargs: Any) -> web.Application:
    """The dashboard app with a fixed signing key."""
    kwargs.setdefault("secret", SECRET)
    kwargs.setdefault("limiter", LoginLimiter())
    return create_app(settings, store, **kwargs)


def csrf_of(html: str) -> str:
    """The CSRF token in a rendered page."""
    match = _CSRF.search(html)
    assert match, "no CSRF token on the page"
    return match.group(1)


async def login(client: TestClient, name: str, password: str = PASSWORD) -> str:
    """Log ``client`` in through the login form; returns the session's CSRF token."""
    page = await client.get("/login")
    token = csrf_of(await page.text())
    response = await client.post(
        "/login",
        data={"name": name, "password": password, "csrf": token, "next": "/"},
        allow_redirects=False,
    )
    assert response.status == 303, await response.text()
    home = await client.get("/")
    assert home.status == 200
    return csrf_of(await home.text())


@pytest.fixture
def alice(store: Store) -> Seeded:
    """An admin with data."""
    return seed_user(store, "alice", admin=True, source_name="Shop X", domain="shopx.test")


@pytest.fixture
def bob(store: Store) -> Seeded:
    """A second (non-admin) user with data of his own."""
    return seed_user(store, "bob", source_name="Bob Store", domain="bobstore.test")


@pytest.fixture
def dashboard_app(settings: Settings, store: Store) -> web.Application:
    """The dashboard on the test store."""
    return build_app(settings, store)


@pytest.fixture
async def client(aiohttp_client: Any, dashboard_app: web.Application) -> TestClient:
    """An anonymous client of the dashboard."""
    return await aiohttp_client(dashboard_app)


def bearer(seeded: Seeded) -> dict[str, str]:
    """The Authorization header of ``seeded``'s API token."""
    return {"Authorization": f"Bearer {seeded.token}"}


async def api_call(
    client: TestClient,
    seeded: Seeded,
    method: str,
    path: str,
    body: Any = None,
    status: int = 200,
    **kwargs: Any,
) -> Any:
    """Call ``/api/v1{path}`` as ``seeded``, check the status, return the body (JSON
    decoded when it is JSON). ``body`` is sent as JSON; ``kwargs`` go to aiohttp
    (``data``, ``params``, more ``headers``)."""
    kwargs["headers"] = {**bearer(seeded), **kwargs.get("headers", {})}
    if body is not None or (method.upper() != "GET" and "data" not in kwargs):
        kwargs.setdefault("json", body if body is not None else {})
    response = await client.request(method, f"/api/v1{path}", **kwargs)
    assert response.status == status, await response.text()
    if response.content_type == "application/json":
        return await response.json()
    return await response.text()


def add_sources(store: Store, user: User, names: Iterable[str]) -> None:
    """Plain sources of ``user``, no identities (a long source list, say)."""
    with store.session() as session:
        session.add_all(
            Source(owner_id=user.id, name=name, slug=name.lower().replace(" ", "-"))  # type: ignore[arg-type]
            for name in names
        )
