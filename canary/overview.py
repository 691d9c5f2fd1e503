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

from sqlalchemy import Select, case
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, func, select

from canary.models import (
    Delivery,
    Finding,
    Incident,
    OwnerLeakDay,
    Source,
    SourceVerdictCount,
    User,
)

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


def _active(
    owner: User, source_ids: list[int] | None = None, any_dismissed: bool = True
) -> Select[tuple[int, str, int]]:
    """(source id, verdict, number of current findings) for each leak kind that counts
    for a source of ``owner``: it has current findings and the newest incident of that
    kind was not dismissed after the newest of them arrived. ``any_dismissed=False``
    promises the owner has no dismissed incident, which saves a probe per row."""
    counts = SourceVerdictCount
    later = aliased(Incident)
    # The newest incident per (source, kind) decides: a kind stops counting when that
    # incident was dismissed and no finding of the kind arrived after the dismissal.
    dismissed = (
        select(col(Incident.id))
        .where(
            Incident.owner_id == counts.owner_id,
            Incident.source_id == counts.source_id,
            Incident.kind == counts.verdict,
            Incident.status == "dismissed",
            col(Incident.updated_at) >= col(counts.newest_at),
            ~select(col(later.id))
            .where(
                later.owner_id == Incident.owner_id,
                later.source_id == Incident.source_id,
                later.kind == Incident.kind,
                col(later.id) > col(Incident.id),
            )
            .exists(),
        )
        .exists()
    )
    # Kept current by triggers on ``finding`` (migration 0009): reading it replaces an
    # aggregate over every current leak finding (seconds at a million messages).
    return select(col(counts.source_id), col(counts.verdict), col(counts.findings)).where(
        counts.owner_id == owner.id,
        col(counts.verdict).in_(LEAK_KINDS),
        counts.findings > 0,
        *([col(counts.source_id).in_(source_ids)] if source_ids is not None else []),
        *([~dismissed] if any_dismissed else []),
    )


def _kinds(
    session: Session, owner: User, source_ids: list[int] | None = None
) -> dict[int, dict[str, int]]:
    out: dict[int, dict[str, int]] = {}
    for source_id, verdict, n in session.exec(_active(owner, source_ids)):
        out.setdefault(source_id, {})[verdict] = n
    return out


def _status(source: Source, kinds: dict[str, int]) -> SourceStatus:
    ordered = tuple(kind for kind in LEAK_KINDS if kind in kinds)
    status = (
        "breach" if any(k in BREACH_KINDS for k in ordered) else "shared" if ordered else "clean"
    )
    return SourceStatus(source, status, sum(kinds[k] for k in ordered), ordered)


_ORDER = {"breach": 0, "shared": 1, "clean": 2}


def source_statuses(
    session: Session, owner: User, only_id: int | None = None
) -> list[SourceStatus]:
    """Every source of ``owner`` with its status, worst first, then by name; only the
    source ``only_id`` when given (a source page needs one, not ten thousand)."""
    statement = select(Source).where(Source.owner_id == owner.id)
    if only_id is not None:
        statement = statement.where(Source.id == only_id)
    kinds = _kinds(session, owner, [only_id] if only_id is not None else None)
    out = [_status(source, kinds.get(source.id or 0, {})) for source in session.exec(statement)]
    out.sort(key=lambda s: (_ORDER[s.status], s.source.slug))
    return out


@dataclass(frozen=True)
class StatusSummary:
    """The worst sources and how many sources have each status."""

    worst: list[SourceStatus]
    tally: dict[str, int]
    total: int


def status_summary(session: Session, owner: User, limit: int) -> StatusSummary:
    """The ``limit`` worst sources of ``owner`` in the order of :func:`source_statuses`,
    and the number of sources per status.

    Counted and ordered by the database, so ten thousand sources cost no rows in Python.
    """
    any_dismissed = (
        session.exec(
            select(col(Incident.id))
            .where(Incident.owner_id == owner.id, Incident.status == "dismissed")
            .limit(1)
        ).first()
        is not None
    )
    active = _active(owner, any_dismissed=any_dismissed).subquery()
    per_source = (
        select(
            active.c.source_id,
            func.max(case((active.c.verdict.in_(BREACH_KINDS), 1), else_=0)).label("breach"),
        )
        .group_by(active.c.source_id)
        .subquery()
    )
    rank = case((per_source.c.breach == 1, 0), (per_source.c.breach == 0, 1), else_=2)
    # Python orders slugs by code point; PostgreSQL's default collation may not.
    slug = col(Source.slug)
    if session.get_bind().dialect.name == "postgresql":
        slug = slug.collate("C")  # type: ignore[assignment]
    # One statement: the tally rides along each shown row as window totals, so the
    # counts are worked out once rather than once for the tally and once for the rows.
    # Ids only: sorting ten thousand whole source rows cost as much as the counting.
    rows = session.exec(
        select(
            col(Source.id),
            func.sum(case((rank == 0, 1), else_=0)).over(),
            func.sum(case((rank == 1, 1), else_=0)).over(),
            func.count().over(),
        )
        .outerjoin(per_source, per_source.c.source_id == Source.id)
        .where(Source.owner_id == owner.id)
        .order_by(rank, slug)
        .limit(limit)
    ).all()
    by_id = {
        s.id: s
        for s in session.exec(select(Source).where(col(Source.id).in_([row[0] for row in rows])))
    }
    worst = [by_id[row[0]] for row in rows]
    breach, shared, total = (int(n) for n in rows[0][1:]) if rows else (0, 0, 0)
    tally = {"clean": total - breach - shared, "shared": shared, "breach": breach}
    kinds = _kinds(session, owner, [s.id for s in worst if s.id is not None])
    statuses = [_status(source, kinds.get(source.id or 0, {})) for source in worst]
    return StatusSummary(statuses, tally, total)


def leaks_per_week(
    session: Session, owner: User, weeks: int = 12, today: date | None = None
) -> list[tuple[date, int]]:
    """(Monday, number of leak findings received that week) for the last ``weeks`` weeks.

    A finding counts in the week of the UTC day its delivery was received.
    """
    today = today or datetime.now(UTC).date()
    first_monday = today - timedelta(days=today.weekday()) - timedelta(weeks=weeks - 1)
    # Kept current by triggers on ``finding`` (migration 0010): a few hundred rows per
    # owner instead of joining each leak finding of the weeks shown to its delivery
    # (seconds at a million messages). The weekly buckets are made here so no
    # backend-specific date arithmetic is needed.
    days = OwnerLeakDay
    rows = session.exec(
        select(col(days.day), func.sum(col(days.findings)))
        .where(
            days.owner_id == owner.id,
            col(days.day) >= first_monday,
            col(days.verdict).in_(LEAK_KINDS),
        )
        .group_by(col(days.day))
    ).all()
    buckets = {first_monday + timedelta(weeks=i): 0 for i in range(weeks)}
    for value, n in rows:
        d = value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
        monday = d - timedelta(days=d.weekday())
        if monday in buckets:
            buckets[monday] += int(n)
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
