"""Findings written straight to the database, for tests of what is counted from them."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session, text

from canary.config import Settings
from canary.models import Delivery, Finding, Message, Source, User
from canary.store import Store


def add_finding(
    session: Session,
    owner: User,
    source: Source,
    verdict: str,
    at: datetime,
    *,
    delay: timedelta = timedelta(0),
) -> Finding:
    """A message received at ``at``, its delivery, and a finding made ``delay`` later."""
    message = Message(raw=b"x", received_at=at)
    session.add(message)
    session.flush()
    assert message.id is not None
    delivery = Delivery(
        message_id=message.id,
        recipient="a@canary.test",
        recipient_key="a@canary.test",
        source_id=source.id,
        owner_id=owner.id,
        received_at=at,
    )
    session.add(delivery)
    session.flush()
    assert delivery.id is not None
    finding = Finding(
        delivery_id=delivery.id,
        owner_id=owner.id,
        source_id=source.id,
        verdict=verdict,
        created_at=at + delay,
    )
    session.add(finding)
    session.flush()
    return finding


def supersede(session: Session, finding: Finding, verdict: str, at: datetime) -> Finding:
    """What re-evaluation does: the old finding is superseded, a new one takes over."""
    finding.superseded_at = at
    session.add(finding)
    new = Finding(
        delivery_id=finding.delivery_id,
        owner_id=finding.owner_id,
        source_id=finding.source_id,
        verdict=verdict,
        created_at=at,
    )
    session.add(new)
    session.flush()
    return new


def store_before(settings: Settings, revision: str) -> Store:
    """A store migrated only up to ``revision``, holding user 1 (alice) and her source 1
    (Shop X), for tests of what a later migration makes of the rows already there.

    Written in SQL: the models describe the newest schema, not this one.
    """
    store = Store.from_settings(settings)
    store.upgrade(revision)
    with store.engine.begin() as connection:
        for statement in (
            "INSERT INTO user_account (id, name, is_admin, created_at) "
            "VALUES (1, 'alice', true, CURRENT_TIMESTAMP)",
            "INSERT INTO source (id, owner_id, name, slug, notes, created_at) "
            "VALUES (1, 1, 'Shop X', 'shop-x', '', CURRENT_TIMESTAMP)",
        ):
            connection.execute(text(statement))
    return store
