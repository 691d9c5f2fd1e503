"""Retention: raw bytes purged by age and verdict; envelope, findings and evidence stay;
messages an open or confirmed incident rests on are kept unless their verdict is named."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from canary.config import Settings
from canary.errors import ConfigError
from canary.models import Delivery, Finding, Incident, Message, utcnow
from canary.retention import RetentionPolicy, purge, should_purge
from canary.store import Store
from tests.support.dashboard import Seeded, seed_user

NOW = utcnow()


def test_should_purge_follows_the_longest_kept_verdict() -> None:
    policy = RetentionPolicy(default_days=90, by_verdict={"unattributed": 30})
    old = NOW - timedelta(days=40)
    assert should_purge(old, ["unattributed"], (), policy, NOW)
    assert not should_purge(old, ["unattributed", "shared"], (), policy, NOW)  # shared: 90
    assert should_purge(NOW - timedelta(days=91), ["shared", None], (), policy, NOW)
    assert not should_purge(NOW - timedelta(days=10), ["unattributed"], (), policy, NOW)
    # Protected by an incident: kept, unless the verdict is named explicitly.
    assert not should_purge(NOW - timedelta(days=91), ["shared"], {"shared"}, policy, NOW)
    named = RetentionPolicy(default_days=None, by_verdict={"breach": 365})
    a_year = NOW - timedelta(days=366)
    assert should_purge(a_year, ["breach"], {"breach"}, named, NOW)
    assert not should_purge(a_year, ["breach", "shared"], (), named, NOW)  # shared: forever
    assert not RetentionPolicy().enabled


def test_settings_parse_per_verdict_days() -> None:
    settings = Settings.from_env(
        {
            "CANARY_RETENTION_DAYS": "90",
            "CANARY_RETENTION_DAYS_BY_VERDICT": "unattributed=30, breach=365",
        }
    )
    policy = RetentionPolicy.from_settings(settings)
    assert policy.default_days == 90
    assert dict(policy.by_verdict) == {"breach": 365, "unattributed": 30}
    for bad in ("spam=3", "breach", "breach=0"):
        with pytest.raises(ConfigError, match="CANARY_RETENTION_DAYS_BY_VERDICT"):
            Settings.from_env({"CANARY_RETENTION_DAYS_BY_VERDICT": bad})


def _message(store: Store, days_old: int, verdict: str | None, state: str = "analysed") -> int:
    with store.session() as session:
        received = NOW - timedelta(days=days_old)
        message = Message(
            received_at=received, mail_from="x@spam.test", rcpt_to=["nobody@canary.test"],
            raw=b"Subject: old\r\n\r\nbody\r\n", size=22, state=state,
        )  # fmt: skip
        session.add(message)
        session.flush()
        assert message.id is not None
        session.add(
            Delivery(message_id=message.id, recipient="nobody@canary.test",
                     recipient_key="nobody@canary.test", kind="unattributed",
                     verdict=verdict, received_at=received)
        )  # fmt: skip
        return message.id


def _age(store: Store, message_id: int, days: int) -> None:
    with store.session() as session:
        message = session.get(Message, message_id)
        assert message is not None
        message.received_at = NOW - timedelta(days=days)
        session.add(message)


def test_purge_keeps_envelope_findings_and_incident_evidence(store: Store) -> None:
    seeded: Seeded = seed_user(store, "alice", admin=True)
    assert seeded.message.id is not None
    _age(store, seeded.message.id, 200)  # a shared message behind an open incident
    unattributed_old = _message(store, 40, "unattributed")
    unattributed_new = _message(store, 5, "unattributed")
    queued_old = _message(store, 400, None, state="queued")
    policy = RetentionPolicy(default_days=100, by_verdict={"unattributed": 30})

    with store.session() as session:
        assert purge(session, NOW, policy) == 1
    with store.session() as session:
        purged = session.get(Message, unattributed_old)
        assert purged is not None and purged.raw == b"" and purged.raw_purged_at is not None
        assert purged.mail_from == "x@spam.test" and purged.size == 22  # envelope stays
        for kept in (unattributed_new, queued_old, seeded.message.id):
            message = session.get(Message, kept)
            assert message is not None and message.raw and message.raw_purged_at is None

    # Dismissed: nothing rests on it any more, so the default applies.
    with store.session() as session:
        incident = session.get(Incident, seeded.incident.id)
        assert incident is not None
        incident.status = "dismissed"
    with store.session() as session:
        assert purge(session, NOW, policy) == 1
        assert purge(session, NOW, policy) == 0  # purging again purges nothing more
    with store.session() as session:
        message = session.get(Message, seeded.message.id)
        assert message is not None and message.raw == b""
        finding = session.exec(
            select(Finding).where(Finding.delivery_id == seeded.delivery.id)
        ).one()
        assert finding.evidence and finding.sentence  # findings and evidence stay


def test_a_named_verdict_is_purged_even_under_an_open_incident(store: Store) -> None:
    seeded = seed_user(store, "alice", admin=True)
    assert seeded.message.id is not None
    _age(store, seeded.message.id, 20)
    with store.session() as session:
        assert purge(session, NOW, RetentionPolicy(default_days=10)) == 0
        assert purge(session, NOW, RetentionPolicy(by_verdict={"shared": 10})) == 1
