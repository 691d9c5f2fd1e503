"""Access control: every route, with another user's ids, and without logging in.

Alice is an admin; being an admin must not let her read or change Bob's data. Another
user's object answers exactly as a missing one (404), so ids reveal nothing.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlmodel import select

from canary.models import ApiToken, AuthorisedSender, Identity, Incident
from canary.store import Store
from tests.support.dashboard import Seeded, login

PUBLIC = {"/login", "/setup", "/healthz", "/api/v1/openapi.json"}
# Not behind login: /metrics checks its own token or peer; the verification link is
# opened from a mailbox and its token is the secret.
SELF_CHECKED = {"/metrics", "/forwarding/verify/{token}"}


def routes(client: TestClient) -> list[tuple[str, str]]:
    """(method, path template) of every route, HEAD and static files left out."""
    out = []
    for route in client.app.router.routes():
        path = route.resource.canonical if route.resource else ""
        if route.method == "HEAD" or path.startswith("/static"):
            continue
        out.append((route.method, path))
    return sorted(set(out))


def token_id(store: Store, user_id: int | None) -> int:
    with store.session() as session:
        record = session.exec(select(ApiToken).where(ApiToken.user_id == user_id)).first()
        assert record is not None and record.id is not None
        return record.id


def outbound_ids(store: Store, seeded: Seeded) -> dict[str, int]:
    """A verified forwarding address, a rule, a forward, an alert channel and an alert."""
    from canary.models import Alert, AlertChannel, Forward, ForwardAddress, ForwardRule, utcnow

    user_id, now = seeded.user.id or 0, utcnow()
    with store.session() as session:
        address = ForwardAddress(owner_id=user_id, address=f"{seeded.user.name}@home.example",
                                 verified_at=now)  # fmt: skip
        channel = AlertChannel(owner_id=user_id, kind="webhook", target="https://h.example/")
        session.add_all([address, channel])
        session.flush()
        assert address.id is not None and channel.id is not None
        rule = ForwardRule(owner_id=user_id, source_id=seeded.source.id, address_id=address.id)
        forward = Forward(delivery_id=seeded.delivery.id or 0, address_id=address.id,
                          owner_id=user_id, verdict="shared", state="failed")  # fmt: skip
        alert = Alert(channel_id=channel.id, owner_id=user_id, event="test", state="failed")
        session.add_all([rule, forward, alert])
        session.flush()
        return {"address": address.id, "rule": rule.id or 0, "forward": forward.id or 0,
                "channel": channel.id, "alert": alert.id or 0}  # fmt: skip


def research_ids(store: Store, seeded: Seeded) -> dict[str, int]:
    """A study of one site (opted in to automatic confirmation) and a seed batch."""
    from canary.seeds import new_seed_batch
    from canary.study import import_study, parse_plan

    plan = parse_plan(f"name,domains\n{seeded.user.name} site,{seeded.user.name}site.test\n")
    with store.session() as session:
        study = import_study(
            session, seeded.user, "Study", plan, domain="canary.test", auto_confirm=True
        ).study
        batch = new_seed_batch(session, seeded.user, "Vendor", 1, domain="canary.test").batch
        return {"study": study.id or 0, "seed": batch.id or 0}


def fill(path: str, ids: dict[str, int]) -> str:
    """The path with ``{id}`` set to the id of the object its prefix names."""
    kind = {
        "sources": "source",
        "identities": "identity",
        "messages": "message",
        "incidents": "incident",
        "tokens": "token",
        "addresses": "address",
        "rules": "rule",
        "forwards": "forward",
        "channels": "channel",
        "alerts": "alert",
        "studies": "study",
        "seeds": "seed",
    }
    parts = path.strip("/").split("/")
    for i, part in enumerate(parts):
        if part == "{id}":
            parts[i] = str(ids[kind[parts[i - 1]]])
        elif part == "{action}":
            parts[i] = "disable" if parts[i - 2] == "channels" else "dismiss"
        elif part == "{file}":
            parts[i] = "report.json"
    return "/" + "/".join(parts)


async def test_every_route_hides_another_users_objects(
    client: TestClient, store: Store, alice: Seeded, bob: Seeded
) -> None:
    bob_ids = {**bob.ids(), "token": token_id(store, bob.user.id), **outbound_ids(store, bob),
               **research_ids(store, bob)}  # fmt: skip
    csrf = await login(client, "alice")
    checked = 0
    for method, template in routes(client):
        if "{id}" not in template:
            continue
        path = fill(template, bob_ids)
        kwargs: dict[str, Any] = {"allow_redirects": False}
        if template.startswith("/api/"):
            kwargs["headers"] = {"Authorization": f"Bearer {alice.token}"}
            if method == "POST":
                kwargs["json"] = {"domain": "evil.test"}
        elif method == "POST":
            kwargs["data"] = {"csrf": csrf, "domain": "evil.test"}
        response = await client.request(method, path, **kwargs)
        assert response.status == 404, (method, path, await response.text())
        if template.startswith("/api/"):
            assert (await response.json())["error"]["code"] == "not_found"
        checked += 1
    assert checked >= 23
    # Nothing of Bob's changed.
    with store.session() as session:
        incident = session.get(Incident, bob.incident.id)
        identity = session.get(Identity, bob.identity.id)
        token = session.get(ApiToken, bob_ids["token"])
        senders = session.exec(
            select(AuthorisedSender.domain).where(AuthorisedSender.source_id == bob.source.id)
        ).all()
        assert incident is not None and incident.status == "open"
        assert identity is not None and identity.retired_at is None
        assert token is not None and token.revoked_at is None
        assert senders == ["bobstore.test"]
        from canary.models import Alert, AlertChannel, Forward, ForwardRule

        assert session.get(ForwardRule, bob_ids["rule"]) is not None
        assert session.get(Forward, bob_ids["forward"]).state == "failed"  # type: ignore[union-attr]
        assert session.get(Alert, bob_ids["alert"]).state == "failed"  # type: ignore[union-attr]
        assert session.get(AlertChannel, bob_ids["channel"]).enabled  # type: ignore[union-attr]
        from canary.models import Study

        assert session.get(Study, bob_ids["study"]).auto_confirm  # type: ignore[union-attr]


async def test_lists_show_only_own_data(client: TestClient, alice: Seeded, bob: Seeded) -> None:
    headers = {"Authorization": f"Bearer {alice.token}"}
    for path in ("/sources", "/identities", "/messages", "/findings", "/incidents"):
        response = await client.get(f"/api/v1{path}", headers=headers)
        text = await response.text()
        assert response.status == 200
        assert "Bob Store" not in text and "bob" not in text.lower(), path
    by_bob_filter = await client.get(
        f"/api/v1/messages?source_id={bob.source.id}&recipient={bob.identity.alias}",
        headers=headers,
    )
    assert (await by_bob_filter.json())["items"] == []
    traced = await client.get(f"/api/v1/trace?q={bob.identity.alias}", headers=headers)
    assert (await traced.json())["matches"] == []
    await login(client, "alice")
    for path in (
        "/",
        "/messages",
        f"/messages?source_id={bob.source.id}",
        f"/trace?q={bob.identity.alias}",
        f"/trace?q={bob.identity.display_name}",
        "/new",
        "/settings",
    ):
        response = await client.get(path)
        text = await response.text()
        assert response.status == 200, path
        assert "Bob Store" not in text and "Offer for bob" not in text, path
        if path.startswith("/trace"):
            assert "No identity matches" in text
        else:
            assert bob.identity.alias not in text, path


async def test_admin_sees_unowned_mail_but_users_do_not(
    client: TestClient, store: Store, alice: Seeded, bob: Seeded
) -> None:
    """Unattributed mail belongs to no one: admins may read it, other users may not."""
    from canary.models import Delivery, Message

    with store.session() as session:
        message = Message(raw=b"Subject: guess\r\n\r\nx\r\n", rcpt_to=["nobody@canary.test"])
        session.add(message)
        session.flush()
        session.add(
            Delivery(
                message_id=message.id,
                recipient="nobody@canary.test",
                recipient_key="nobody@canary.test",
                kind="unattributed",
                verdict="unattributed",
            )
        )
    path = f"/api/v1/messages/{message.id}"
    as_alice = await client.get(path, headers={"Authorization": f"Bearer {alice.token}"})
    as_bob = await client.get(path, headers={"Authorization": f"Bearer {bob.token}"})
    assert as_alice.status == 200
    assert as_bob.status == 404


@pytest.mark.parametrize("with_bad_cookie", [False, True])
async def test_anonymous_is_refused_everywhere(
    client: TestClient, alice: Seeded, with_bad_cookie: bool
) -> None:
    ids = {**alice.ids(), "token": 1, "address": 1, "rule": 1, "forward": 1, "channel": 1,
           "alert": 1, "study": 1, "seed": 1}  # fmt: skip
    if with_bad_cookie:
        client.session.cookie_jar.update_cookies({"ct_session": "forged.signature"})
    for method, template in routes(client):
        if template in PUBLIC or template in SELF_CHECKED:
            continue
        path = fill(template, ids)
        response = await client.request(method, path, allow_redirects=False)
        if template.startswith("/api/"):
            assert response.status == 401, (method, path)
            assert (await response.json())["error"]["code"] == "unauthorized"
        else:
            assert response.status == 303, (method, path)
            assert response.headers["Location"].startswith("/login?next=")


async def test_api_token_never_opens_pages(client: TestClient, alice: Seeded) -> None:
    response = await client.get(
        "/", headers={"Authorization": f"Bearer {alice.token}"}, allow_redirects=False
    )
    assert response.status == 401
