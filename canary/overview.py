"""The state of a user's sources at a glance: clean, shared or breach, and leaks over time.

A source's status comes from its current (not superseded) findings. A kind of finding
stops counting when the user dismissed the newest incident of that kind for the source
and no finding of that kind arrived after the dismissal: a dismissal is a correction
of what was seen, not a promise about future mail.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlmodel import Session, col, func, select

from canary.models import Delivery, Finding, Incident, Source, User, as_utc

# Verdicts that mean the data went somewhere it should not have.
SHARED_KINDS = ("shared", "cross_source", "after_retirement")
BREACH_KINDS = ("breach",)
LEAK_KINDS = SHARED_KINDS + BREACH_KINDS
STATUSES = ("clean", "shared", "breach")


@dataclass(frozen=True)
class SourceStatus:
    """One source and what its findings say."""

    source: Source
    status: str  # clean, shared or breach
    leak_count: int
    kinds: tuple[str, ...]


def source_statuses(
    session: Session, owner: User, only_id: int | None = None
) -> list[SourceStatus]:
    """Every source of ``owner`` with its status, worst first, then by name; only the
    source ``only_id`` when given (a source page needs one, not ten thousand)."""
    only = only_id is not None
    statement = select(Source).where(Source.owner_id == owner.id)
    if only:
        statement = statement.where(Source.id == only_id)
    sources = list(session.exec(statement.order_by(Source.slug)))
    counts: dict[tuple[int, str], tuple[int, datetime | None]] = {}
    # ``+ 0``: grouping by the bare column lets SQLite's planner walk the source index
    # for its order and fetch every finding row (20 s at a million findings, measured
    # by bench/dashboard.py); the expression keeps it on the covering index
    # ix_finding_owner_verdict_source. PostgreSQL groups the same either way.
    source = col(Finding.source_id) + 0
    for source_id, verdict, n, newest in session.exec(
        select(
            source,
            Finding.verdict,
            func.count(col(Finding.id)),
            func.max(Finding.created_at),
        )
        .where(
            Finding.owner_id == owner.id,
            col(Finding.superseded_at).is_(None),
            col(Finding.verdict).in_(LEAK_KINDS),
            *([Finding.source_id == only_id] if only else []),
        )
        .group_by(source, Finding.verdict)
    ):
        if source_id is not None:
            counts[(source_id, verdict)] = (n, as_utc(newest))
    dismissed_at: dict[tuple[int, str], datetime | None] = {}
    # Columns, not ORM objects: a study has tens of thousands of incidents, and building
    # an object for each was most of the overview's time (bench/dashboard.py).
    for source_id, kind, status, updated_at in session.exec(
        select(Incident.source_id, Incident.kind, Incident.status, Incident.updated_at)
        .where(
            Incident.owner_id == owner.id,
            *([Incident.source_id == only_id] if only else []),
        )
        .order_by(col(Incident.id))
    ):
        # The newest incident per (source, kind) decides.
        dismissed_at[(source_id, kind)] = as_utc(updated_at) if status == "dismissed" else None
    out = []
    for source in sources:
        assert source.id is not None
        kinds = []
        total = 0
        for kind in LEAK_KINDS:
            n, newest = counts.get((source.id, kind), (0, None))
            when = dismissed_at.get((source.id, kind))
            if n and not (when is not None and newest is not None and newest <= when):
                kinds.append(kind)
                total += n
        status = (
            "breach" if any(k in BREACH_KINDS for k in kinds) else "shared" if kinds else "clean"
        )
        out.append(SourceStatus(source, status, total, tuple(kinds)))
    order = {"breach": 0, "shared": 1, "clean": 2}
    out.sort(key=lambda s: (order[s.status], s.source.slug))
    return out


def leaks_per_week(
    session: Session, owner: User, weeks: int = 12, today: date | None = None
) -> list[tuple[date, int]]:
    """(Monday, number of leak findings received that week) for the last ``weeks`` weeks."""
    today = today or datetime.now(UTC).date()
    first_monday = today - timedelta(days=today.weekday()) - timedelta(weeks=weeks - 1)
    since = datetime.combine(first_monday, datetime.min.time(), tzinfo=UTC)
    # func.date works on SQLite (text) and PostgreSQL (timestamp) alike; the weekly
    # buckets are made here so no backend-specific date arithmetic is needed.
    day = func.date(Delivery.received_at)
    received = col(Delivery.received_at)
    if session.get_bind().dialect.name == "sqlite":
        # Without this, SQLite's statistics make it start from every delivery of the
        # weeks shown (most of them expected mail) instead of from the leak findings.
        received = func.coalesce(received, received)
    rows = session.exec(
        select(day, func.count(col(Finding.id)))
        .join(Delivery, col(Delivery.id) == col(Finding.delivery_id))
        .where(
            Finding.owner_id == owner.id,
            col(Finding.superseded_at).is_(None),
            col(Finding.verdict).in_(LEAK_KINDS),
            received >= since,
            # Implied by the line above (a finding is made after its message arrived),
            # and answered from ix_finding_owner_verdict_source: only the weeks shown
            # are joined to their deliveries, not every leak ever found.
            col(Finding.created_at) >= since,
        )
        .group_by(day)
    ).all()
    buckets = {first_monday + timedelta(weeks=i): 0 for i in range(weeks)}
    for value, n in rows:
        d = value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
        monday = d - timedelta(days=d.weekday())
        if monday in buckets:
            buckets[monday] += n
    return sorted(buckets.items())


def recent_findings(session: Session, owner: User, limit: int = 10) -> list[dict[str, Any]]:
    """The newest leak findings of ``owner`` with their source and message."""
    rows = session.exec(
        select(Finding, Delivery.message_id, Source.name)
        .join(Delivery, col(Delivery.id) == col(Finding.delivery_id))
        .join(Source, col(Source.id) == col(Finding.source_id))
        .where(
            Finding.owner_id == owner.id,
            col(Finding.superseded_at).is_(None),
            col(Finding.verdict).in_(LEAK_KINDS),
        )
        .order_by(col(Finding.id).desc())
        .limit(limit)
    ).all()
    return [
        {
            "id": f.id,
            "verdict": f.verdict,
            "sender_org": f.sender_org,
            "sentence": f.sentence,
            "created_at": f.created_at,
            "source_id": f.source_id,
            "source": name,
            "message_id": mid,
        }
        for f, mid, name in rows
    ]


def source_status(session: Session, owner: User, source: Source) -> SourceStatus:
    """One source's status (see :func:`source_statuses`)."""
    assert source.id is not None
    [status] = source_statuses(session, owner, source.id)
    return status
