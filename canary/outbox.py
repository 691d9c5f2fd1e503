"""Outbox rows (alerts, forwards): claiming due rows, retry with backoff, the delivery log.

An outbox row is written in the same transaction as the fact that causes it (an
incident that grew, a finding recorded), so nothing is announced that did not happen and
nothing that happened is forgotten. Senders then work in three short steps:

1. :func:`claim` takes due ``pending`` rows in one statement and pushes their
   ``next_attempt_at`` a lease into the future, so another process (or the next run of
   the job) does not send them again while this one is busy; on PostgreSQL with
   ``FOR UPDATE SKIP LOCKED`` so claimers never wait on each other;
2. the sender talks to the network with no transaction open;
3. :func:`record_success` or :func:`record_failure` writes the outcome. A failure is
   retried with exponential backoff until ``MAX_ATTEMPTS``, then the row is ``failed``;
   its ``last_error`` stays visible either way.

A process that dies between 1 and 3 leaves the row pending; it is retried when the lease
runs out (at worst a receiver sees one message twice, never zero times).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.engine import Engine

from canary.models import Alert, Forward
from canary.store import Store

MAX_ATTEMPTS = 8
BASE_DELAY = timedelta(seconds=30)
MAX_DELAY = timedelta(hours=6)
LEASE = timedelta(minutes=5)

OutboxRow = Alert | Forward


def backoff(attempts: int) -> timedelta:
    """Delay before the next try after ``attempts`` failed ones: 30 s, 1 min, 2 min... 6 h."""
    return min(BASE_DELAY * 2 ** max(attempts - 1, 0), MAX_DELAY)


def clean_error(error: object, limit: int = 1000) -> str:
    """An error as one printable line for the delivery log (no control characters)."""
    text = str(error) or type(error).__name__
    text = "".join(c if c.isprintable() else " " for c in text)
    return " ".join(text.split())[:limit]


def claim(
    engine: Engine, model: type[Alert] | type[Forward], now: datetime, limit: int = 50
) -> list[int]:
    """Claim up to ``limit`` due pending rows of ``model``; return their ids, oldest first.

    Claiming counts an attempt and leases the row until ``now + LEASE``.
    """
    table = model.__table__  # type: ignore[attr-defined]
    c = table.c
    due = and_(c.state == "pending", or_(c.next_attempt_at.is_(None), c.next_attempt_at <= now))
    pick = select(c.id).where(due).order_by(c.id).limit(limit)
    if engine.dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    statement = (
        update(table)
        .where(c.id.in_(pick.scalar_subquery()), due)
        .values(next_attempt_at=now + LEASE, attempts=c.attempts + 1)
        .returning(c.id)
    )
    with engine.begin() as conn:
        return sorted(row[0] for row in conn.execute(statement))


def record_success(row: OutboxRow, now: datetime) -> None:
    """Mark ``row`` sent (the caller adds it to its session)."""
    row.state = "sent"
    row.sent_at = now
    row.next_attempt_at = None
    row.last_error = None


def record_failure(
    row: OutboxRow,
    now: datetime,
    error: object,
    *,
    permanent: bool = False,
    max_attempts: int = MAX_ATTEMPTS,
) -> None:
    """Record a failed try: retry after a backoff, or give up (``failed``) when permanent
    (a 5xx SMTP reply, a refused target) or after ``max_attempts``."""
    row.last_error = clean_error(error)
    if permanent or row.attempts >= max_attempts:
        row.state = "failed"
        row.next_attempt_at = None
    else:
        row.next_attempt_at = now + backoff(row.attempts)


def record_outcome(
    store: Store,
    model: type[OutboxRow],
    row_id: int,
    now: datetime,
    error: str | None,
    *,
    permanent: bool = False,
) -> None:
    """Step 3 in its own transaction: success when ``error`` is None, else a failure."""
    with store.session() as session:
        row = session.get(model, row_id)
        assert row is not None
        if error is None:
            record_success(row, now)
        else:
            record_failure(row, now, error, permanent=permanent)
        session.add(row)


def retry_now(row: OutboxRow, now: datetime) -> None:
    """A user's "retry": a failed or pending row is sent on the next run."""
    if row.state in ("pending", "failed"):
        row.state = "pending"
        row.next_attempt_at = now
