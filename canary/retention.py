"""Retention: how long raw messages are kept, per verdict, and the purge that applies it.

Purging replaces a message's raw bytes by nothing and records when
(``Message.raw_purged_at``); the envelope, parsed facts, deliveries, findings and their
evidence stay, so reports and incidents keep their numbers.

Which rule applies to a message (:func:`should_purge`, pure):

* a message is purged only when *every* verdict among its deliveries allows it: it is
  kept as long as its longest-kept verdict says (a delivery without a verdict, such as
  role mail, follows ``CANARY_RETENTION_DAYS``);
* a message that an open or confirmed incident still rests on (a delivery whose verdict
  is the incident's kind, for the incident's source) is kept, unless
  ``CANARY_RETENTION_DAYS_BY_VERDICT`` names that verdict explicitly;
* messages not yet analysed are never purged.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, update
from sqlmodel import Session, col, select

from canary.config import Settings
from canary.models import Delivery, Incident, Message, as_utc

PURGEABLE_STATES = ("analysed", "unparsable")
PROTECTING_STATUSES = ("open", "confirmed")
BATCH = 500


@dataclass(frozen=True)
class RetentionPolicy:
    """Days to keep raw messages: a default (None: forever) and per-verdict overrides."""

    default_days: int | None = None
    by_verdict: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> RetentionPolicy:
        """The policy of ``CANARY_RETENTION_DAYS`` and ``CANARY_RETENTION_DAYS_BY_VERDICT``."""
        return cls(settings.retention_days, dict(settings.retention_days_by_verdict))

    @property
    def enabled(self) -> bool:
        """False when everything is kept forever (the default)."""
        return self.default_days is not None or bool(self.by_verdict)

    def days_for(self, verdict: str | None) -> int | None:
        """Days to keep a message with this verdict (None: forever)."""
        if verdict is not None and verdict in self.by_verdict:
            return self.by_verdict[verdict]
        return self.default_days


def should_purge(
    received_at: datetime,
    verdicts: Iterable[str | None],
    protected: Iterable[str],
    policy: RetentionPolicy,
    now: datetime,
) -> bool:
    """Whether a message's raw bytes are due for purging (see the module docstring).

    ``verdicts`` are its deliveries' verdicts; ``protected`` the verdicts through which an
    open or confirmed incident rests on it.
    """
    age = as_utc(now) - as_utc(received_at)
    for verdict in set(verdicts) or {None}:
        days = policy.days_for(verdict)
        if days is None or age < timedelta(days=days):
            return False
    return all(verdict in policy.by_verdict for verdict in protected)


def purge(session: Session, now: datetime, policy: RetentionPolicy) -> int:
    """Purge the raw bytes of every message the policy lets go; returns how many."""
    if not policy.enabled:
        return 0
    configured = [d for d in (policy.default_days, *policy.by_verdict.values()) if d is not None]
    cutoff = now - timedelta(days=min(configured))
    purged = 0
    last_id = 0
    while True:
        rows = session.exec(
            select(Message.id, Message.received_at)
            .where(
                col(Message.id) > last_id,
                col(Message.raw_purged_at).is_(None),
                col(Message.state).in_(PURGEABLE_STATES),
                col(Message.received_at) < cutoff,
            )
            .order_by(col(Message.id))
            .limit(BATCH)
        ).all()
        if not rows:
            return purged
        last_id = rows[-1][0]
        ids = [message_id for message_id, _ in rows]
        verdicts: dict[int, list[str | None]] = defaultdict(list)
        for message_id, verdict in session.exec(
            select(Delivery.message_id, Delivery.verdict).where(col(Delivery.message_id).in_(ids))
        ):
            verdicts[message_id].append(verdict)
        protected: dict[int, set[str]] = defaultdict(set)
        for message_id, verdict in session.exec(
            select(Delivery.message_id, Delivery.verdict)
            .join(
                Incident,
                and_(
                    col(Incident.source_id) == Delivery.source_id,
                    col(Incident.kind) == Delivery.verdict,
                ),
            )
            .where(
                col(Delivery.message_id).in_(ids),
                col(Incident.status).in_(PROTECTING_STATUSES),
            )
        ):
            if verdict is not None:
                protected[message_id].add(verdict)
        due = [
            message_id
            for message_id, received_at in rows
            if should_purge(received_at, verdicts[message_id], protected[message_id], policy, now)
        ]
        if due:
            session.execute(
                update(Message)
                .where(col(Message.id).in_(due), col(Message.raw_purged_at).is_(None))
                .values(raw=b"", raw_purged_at=now)
            )
            purged += len(due)
