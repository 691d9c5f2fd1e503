"""Alerts: queued with the incident, signed webhooks retried after a 500, email through a
local relay, digests; never message content."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta

import pytest

from canary import alerts, forward_addresses, webhook
from canary.alert_payload import IncidentFacts, build_payload, incident_sentence
from canary.config import Settings
from canary.errors import InvalidInput
from canary.models import Alert, Incident, User, utcnow
from canary.store import Store
from tests.support.dashboard import Seeded, seed_user
from tests.support.outbound import RecordingRelay, WebhookServer, relay, webhook_server  # noqa: F401

PUBLIC = "https://canary.example"


@pytest.fixture
def seeded(store: Store) -> Seeded:
    """alice with Shop X, a shared message from brokerx.test and its open incident."""
    return seed_user(store, "alice", admin=True, source_name="Shop X", domain="shopx.test")


def _outgoing(make_settings: Callable[..., Settings], **extra: object) -> Settings:
    return make_settings(public_url=PUBLIC, webhook_allow_private=True, **extra)


def _add_channel(store: Store, user: User, kind: str, target: str, **options: object) -> int:
    with store.session() as session:
        channel = alerts.add_channel(session, user, kind, target, **options)  # type: ignore[arg-type]
        assert channel.id is not None
        return channel.id


def _queue(store: Store, incident_id: int, event: str = "opened") -> list[Alert]:
    with store.session() as session:
        incident = session.get(Incident, incident_id)
        assert incident is not None
        return alerts.queue_incident_alert(session, incident, event)


def _alerts(store: Store) -> list[Alert]:
    from sqlmodel import select

    with store.session() as session:
        return list(session.exec(select(Alert).order_by(Alert.id)))  # type: ignore[arg-type]


def _verified(store: Store, settings: Settings, user: User, address: str) -> None:
    with store.session() as session:
        _, token = forward_addresses.request_verification(session, settings, user, address)
        forward_addresses.verify(session, token)


def test_payload_carries_facts_not_content() -> None:
    now = utcnow()
    facts = IncidentFacts(7, "shared", "open", 3, "Shop X", ("brokerx.test",), 3, now, now)
    payload = build_payload("opened", facts)
    assert payload["sentence"] == incident_sentence(facts)
    assert "Shop X shared your address with brokerx.test (3 messages since" in payload["sentence"]
    assert payload["link"] == "/sources/3#incidents"
    assert payload["incident"]["organisations"] == ["brokerx.test"]
    assert "subjects" not in payload


async def test_webhook_is_signed_and_retried_after_a_500(
    store: Store,
    make_settings: Callable[..., Settings],
    seeded: Seeded,
    webhook_server: WebhookServer,  # noqa: F811
) -> None:
    settings = _outgoing(make_settings)
    _add_channel(store, seeded.user, "webhook", webhook_server.url)
    assert seeded.incident.id is not None
    (queued,) = _queue(store, seeded.incident.id)
    webhook_server.statuses = [500]
    start = utcnow()

    assert await alerts.deliver_alerts(settings, store, now=start) == 0
    (alert,) = _alerts(store)
    assert (alert.state, alert.attempts, alert.last_error) == (
        "pending",
        1,
        "HTTP 500 Internal Server Error",
    )
    assert alert.next_attempt_at is not None and alert.next_attempt_at > start
    # Not due yet: nothing is sent again in the same instant.
    assert await alerts.deliver_alerts(settings, store, now=start) == 0
    assert len(webhook_server.requests) == 1

    assert await alerts.deliver_alerts(settings, store, now=start + timedelta(hours=1)) == 1
    (alert,) = _alerts(store)
    assert (alert.state, alert.attempts, alert.last_error) == ("sent", 2, None)
    first, second = webhook_server.requests
    assert first.body == second.body
    with store.session() as session:
        secret = alerts.get_channel(session, seeded.user, alert.channel_id).secret
    assert secret
    for request in (first, second):
        stamp = request.headers["X-Canary-Timestamp"]
        signature = request.headers["X-Canary-Signature"]
        assert signature.startswith("sha256=")
        assert webhook.verify(secret, stamp, request.body, signature, now=float(stamp))
        assert not webhook.verify(
            "another secret", stamp, request.body, signature, now=float(stamp)
        )
        assert request.headers["X-Canary-Delivery"] == str(queued.id)
    body = json.loads(second.body)
    assert body["event"] == "opened" and body["verdict"] == "shared"
    assert body["link"] == f"{PUBLIC}/sources/{seeded.source.id}#incidents"
    assert body["source"]["name"] == "Shop X"
    # The message body and subject stay home.
    assert b"Hello Marc" not in second.body and b"Offer for" not in second.body


async def test_webhook_to_loopback_is_refused_unless_allowed(
    store: Store,
    make_settings: Callable[..., Settings],
    seeded: Seeded,
    webhook_server: WebhookServer,  # noqa: F811
) -> None:
    settings = make_settings(public_url=PUBLIC)  # webhook_allow_private stays false
    _add_channel(store, seeded.user, "webhook", webhook_server.url)
    assert seeded.incident.id is not None
    _queue(store, seeded.incident.id)
    assert await alerts.deliver_alerts(settings, store) == 0
    (alert,) = _alerts(store)
    assert alert.state == "failed" and "loopback" in (alert.last_error or "")
    assert webhook_server.requests == []


def test_a_burst_makes_one_alert_and_dismissed_incidents_none(store: Store, seeded: Seeded) -> None:
    _add_channel(store, seeded.user, "webhook", "https://hooks.example/x")
    assert seeded.incident.id is not None
    _queue(store, seeded.incident.id, "opened")
    with store.session() as session:
        incident = session.get(Incident, seeded.incident.id)
        assert incident is not None
        incident.finding_count = 5
        alerts.queue_incident_alert(session, incident, "grew")
    (alert,) = _alerts(store)
    assert alert.event == "opened" and alert.payload["incident"]["finding_count"] == 5

    with store.session() as session:
        incident = session.get(Incident, seeded.incident.id)
        assert incident is not None
        incident.status = "dismissed"
        assert alerts.queue_incident_alert(session, incident, "grew") == []


def test_subjects_only_when_the_channel_opts_in(store: Store, seeded: Seeded) -> None:
    _add_channel(store, seeded.user, "webhook", "https://hooks.example/plain")
    _add_channel(store, seeded.user, "webhook", "https://hooks.example/subj", include_subjects=True)
    assert seeded.incident.id is not None
    plain, with_subjects = _queue(store, seeded.incident.id)
    assert "subjects" not in plain.payload
    assert with_subjects.payload["subjects"] == ["Offer for alice"]


def test_email_channel_needs_a_verified_address(
    store: Store, settings: Settings, seeded: Seeded
) -> None:
    with pytest.raises(InvalidInput, match="not a verified address"):
        _add_channel(store, seeded.user, "email", "alice@home.example")
    with store.session() as session:
        forward_addresses.request_verification(session, settings, seeded.user, "alice@home.example")
    with pytest.raises(InvalidInput, match="not a verified address"):
        _add_channel(store, seeded.user, "email", "alice@home.example")


async def test_email_alert_goes_through_the_relay(
    store: Store,
    make_settings: Callable[..., Settings],
    seeded: Seeded,
    relay: RecordingRelay,  # noqa: F811
) -> None:
    settings = _outgoing(
        make_settings, relay_host="127.0.0.1", relay_port=relay.port, relay_starttls=False
    )
    _verified(store, settings, seeded.user, "alice@home.example")
    _add_channel(store, seeded.user, "email", "alice@home.example")
    assert seeded.incident.id is not None
    _queue(store, seeded.incident.id)
    assert await alerts.deliver_alerts(settings, store) == 1
    (mail,) = relay.messages
    assert mail.rcpt_tos == ["alice@home.example"]
    assert mail.mail_from == "bounces@canary.test"
    text = mail.data.decode()
    assert "Subject: [canary] Shop X: shared (new incident)" in text
    assert "From: canarytrace <postmaster@canary.test>" in text
    assert f"{PUBLIC}/sources/{seeded.source.id}#incidents" in text
    assert "Hello Marc" not in text


async def test_email_alert_waits_when_the_relay_is_down(
    store: Store, make_settings: Callable[..., Settings], seeded: Seeded
) -> None:
    from tests.support.outbound import free_port

    settings = _outgoing(
        make_settings, relay_host="127.0.0.1", relay_port=free_port(), relay_starttls=False
    )
    _verified(store, settings, seeded.user, "alice@home.example")
    _add_channel(store, seeded.user, "email", "alice@home.example")
    assert seeded.incident.id is not None
    _queue(store, seeded.incident.id)
    assert await alerts.deliver_alerts(settings, store) == 0
    (alert,) = _alerts(store)
    assert alert.state == "pending" and "relay unreachable" in (alert.last_error or "")


async def test_daily_digest_is_queued_once_and_sent(
    store: Store,
    make_settings: Callable[..., Settings],
    seeded: Seeded,
    webhook_server: WebhookServer,  # noqa: F811
) -> None:
    settings = _outgoing(make_settings)
    _add_channel(store, seeded.user, "webhook", webhook_server.url, immediate=False, digest="daily")
    assert seeded.incident.id is not None
    assert _queue(store, seeded.incident.id) == []  # digest-only channel: no immediate alert
    now = utcnow()
    with store.session() as session:
        assert alerts.queue_digests(session, "daily", now) == 1
    with store.session() as session:
        assert alerts.queue_digests(session, "daily", now + timedelta(hours=2)) == 0
    assert await alerts.deliver_alerts(settings, store, now=now) == 1
    (request,) = webhook_server.requests
    body = json.loads(request.body)
    assert body["event"] == "digest" and body["period"] == "daily"
    (item,) = body["incidents"]
    assert item["source"] == "Shop X" and item["link"].startswith(PUBLIC)


def test_alert_log_outlives_a_deleted_incident(store: Store, seeded: Seeded) -> None:
    """Re-evaluation may delete an emptied incident; its alerts stay in the log."""
    _add_channel(store, seeded.user, "webhook", "https://hooks.example/x")
    assert seeded.incident.id is not None
    _queue(store, seeded.incident.id)
    with store.session() as session:
        incident = session.get(Incident, seeded.incident.id)
        session.delete(incident)
    (alert,) = _alerts(store)
    assert alert.incident_id is None and alert.payload["source"]["name"] == "Shop X"
