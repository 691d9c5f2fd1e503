"""The per-owner, per-day, per-verdict counts of current findings kept by database
triggers (migration 0010), and the overview's leaks-per-week chart read from them, on
SQLite and PostgreSQL.

The chart is compared after each kind of change with the query it replaced, kept here
as the specification: current leak findings grouped by the day their delivery arrived.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from functools import partial

from alembic import command
from sqlmodel import Session, col, delete, func, select, text

from canary.config import Settings
from canary.models import Delivery, Finding, OwnerLeakDay, Source, User
from canary.overview import LEAK_KINDS, leaks_per_week
from canary.source_merge import merge_sources
from canary.sources import add_source
from canary.store import Store
from tests.support.findings import add_finding, store_before, supersede

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TODAY = date(2026, 3, 20)


def _reference(
    session: Session, owner: User, weeks: int = 12, today: date = TODAY
) -> list[tuple[date, int]]:
    """The chart as leaks_per_week computed it before migration 0010."""
    first_monday = today - timedelta(days=today.weekday()) - timedelta(weeks=weeks - 1)
    since = datetime.combine(first_monday, datetime.min.time(), tzinfo=UTC)
    day = func.date(Delivery.received_at)
    rows = session.exec(
        select(day, func.count(col(Finding.id)))
        .join(Delivery, col(Delivery.id) == col(Finding.delivery_id))
        .where(
            Finding.owner_id == owner.id,
            col(Finding.superseded_at).is_(None),
            col(Finding.verdict).in_(LEAK_KINDS),
            col(Delivery.received_at) >= since,
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


def _kept(session: Session) -> dict[tuple[int, date, str], int]:
    return {
        (row.owner_id, row.day, row.verdict): row.findings
        for row in session.exec(select(OwnerLeakDay))
    }


def _aggregated(session: Session) -> dict[tuple[int, date, str], int]:
    """Every verdict, not only leaks: the table counts them all."""
    out: dict[tuple[int, date, str], int] = {}
    rows = session.exec(
        select(Finding.owner_id, Delivery.received_at, Finding.verdict)
        .join(Delivery, col(Delivery.id) == col(Finding.delivery_id))
        .where(col(Finding.superseded_at).is_(None), col(Finding.owner_id).is_not(None))
    )
    for owner_id, received_at, verdict in rows:
        assert owner_id is not None
        key = (owner_id, received_at.astimezone(UTC).date(), verdict)
        out[key] = out.get(key, 0) + 1
    return out


def _assert_exact(store: Store, owner: User) -> None:
    with store.session() as session:
        assert _kept(session) == _aggregated(session)
        assert leaks_per_week(session, owner, today=TODAY) == _reference(session, owner)


# Made a minute after the message arrived: the day counted is the delivery's.
_finding = partial(add_finding, delay=timedelta(minutes=1))


def test_new_and_superseded_findings_keep_the_chart_exact(store: Store, owner: User) -> None:
    with store.session() as session:
        shop = add_source(session, owner, "Shop")
        first = _finding(session, owner, shop, "shared", T0)
        second = _finding(session, owner, shop, "breach", T0 + timedelta(days=8))
        _finding(session, owner, shop, "expected", T0 + timedelta(days=8))
        _finding(session, owner, shop, "cross_source", T0 - timedelta(weeks=20))  # too old
        session.commit()
        chart = dict(leaks_per_week(session, owner, today=TODAY))
        assert chart[date(2026, 2, 23)] == 1 and chart[date(2026, 3, 9)] == 1
    _assert_exact(store, owner)
    with store.session() as session:
        # Re-evaluation turns a leak into expected mail, and another leak into a breach.
        second = session.get(Finding, second.id)
        first = session.get(Finding, first.id)
        assert second is not None and first is not None
        supersede(session, second, "expected", T0 + timedelta(days=9))
        supersede(session, first, "breach", T0 + timedelta(days=9))
        session.commit()
        chart = dict(leaks_per_week(session, owner, today=TODAY))
        assert chart[date(2026, 2, 23)] == 1 and chart[date(2026, 3, 9)] == 0
    _assert_exact(store, owner)
    with store.session() as session:
        # A verdict changed in place (not what the analysis does, but a bulk fix might).
        session.exec(text("UPDATE finding SET verdict = 'shared' WHERE verdict = 'expected'"))  # type: ignore[call-overload]
        session.commit()
    _assert_exact(store, owner)


def test_a_merge_and_deletions_keep_the_chart_exact(store: Store, owner: User) -> None:
    with store.session() as session:
        kept = add_source(session, owner, "Kept")
        gone = add_source(session, owner, "Gone")
        _finding(session, owner, kept, "shared", T0)
        _finding(session, owner, gone, "shared", T0)
        old = _finding(session, owner, gone, "breach", T0 + timedelta(days=2))
        supersede(session, old, "after_retirement", T0 + timedelta(days=3))
        session.commit()
        merge_sources(session, owner, "Gone", "Kept")
        session.commit()
        assert dict(leaks_per_week(session, owner, today=TODAY))[date(2026, 2, 23)] == 2
        assert dict(leaks_per_week(session, owner, today=TODAY))[date(2026, 3, 2)] == 1
    _assert_exact(store, owner)
    with store.session() as session:
        # Findings go before their deliveries (the foreign key allows no other order),
        # superseded ones included; the delivery is still there for the trigger.
        delivery_ids = list(session.exec(select(Finding.delivery_id).distinct()))
        session.exec(delete(Finding).where(col(Finding.delivery_id) == delivery_ids[0]))  # type: ignore[call-overload]
        session.exec(delete(Delivery).where(col(Delivery.id) == delivery_ids[0]))  # type: ignore[call-overload]
        session.commit()
    _assert_exact(store, owner)
    with store.session() as session:
        session.exec(delete(Finding))  # type: ignore[call-overload]
        session.commit()
        assert _kept(session) == {}  # rows go with their last finding
    _assert_exact(store, owner)


def test_a_delivery_counts_on_its_utc_day(store: Store, owner: User) -> None:
    # Sunday 8 March and Monday 9 March 2026 (UTC): either side of midnight is another
    # day and another week of the chart.
    midnight = datetime(2026, 3, 9, tzinfo=UTC)
    with store.session() as session:
        shop = add_source(session, owner, "Shop")
        _finding(session, owner, shop, "shared", midnight - timedelta(microseconds=1))
        _finding(session, owner, shop, "shared", midnight)
        _finding(session, owner, shop, "breach", midnight + timedelta(hours=23, minutes=59))
        # 01:30 in UTC+02:00 is 23:30 UTC the day before.
        east = timezone(timedelta(hours=2))
        _finding(session, owner, shop, "breach", datetime(2026, 3, 9, 1, 30, tzinfo=east))
        session.commit()
        assert _kept(session) == {
            (owner.id, date(2026, 3, 8), "shared"): 1,
            (owner.id, date(2026, 3, 8), "breach"): 1,
            (owner.id, date(2026, 3, 9), "shared"): 1,
            (owner.id, date(2026, 3, 9), "breach"): 1,
        }
        chart = dict(leaks_per_week(session, owner, today=TODAY))
        assert chart[date(2026, 3, 2)] == 2 and chart[date(2026, 3, 9)] == 2
    _assert_exact(store, owner)


def test_other_owners_and_old_days_stay_out_of_the_chart(store: Store, owner: User) -> None:
    from canary.users import add_user

    with store.session() as session:
        other = add_user(session, "bob", password="correct horse")
        mine = add_source(session, owner, "Mine")
        theirs = add_source(session, other, "Theirs")
        _finding(session, owner, mine, "breach", T0)
        _finding(session, other, theirs, "breach", T0)
        _finding(session, other, theirs, "shared", T0 + timedelta(days=1))
        session.commit()
        assert sum(n for _, n in leaks_per_week(session, owner, today=TODAY)) == 1
        assert sum(n for _, n in leaks_per_week(session, other, today=TODAY)) == 2
        assert sum(n for _, n in leaks_per_week(session, owner, weeks=1, today=TODAY)) == 0
        assert leaks_per_week(session, other, weeks=3, today=TODAY) == _reference(
            session, other, weeks=3
        )
    _assert_exact(store, owner)


def test_upgrading_counts_the_findings_already_there(settings: Settings) -> None:
    store = store_before(settings, "0009")
    with store.session() as session:
        owner = session.get(User, 1)
        shop = session.get(Source, 1)
        assert owner is not None and shop is not None
        midnight = datetime(2026, 3, 9, tzinfo=UTC)
        _finding(session, owner, shop, "shared", midnight - timedelta(seconds=1))
        _finding(session, owner, shop, "expected", midnight)
        old = _finding(session, owner, shop, "shared", midnight + timedelta(days=1))
        supersede(session, old, "breach", midnight + timedelta(days=2))
        session.commit()
    store.upgrade()
    with store.session() as session:
        assert _kept(session) == {
            (1, date(2026, 3, 8), "shared"): 1,
            (1, date(2026, 3, 9), "expected"): 1,
            (1, date(2026, 3, 10), "breach"): 1,
        }
    _assert_exact(store, owner)
    # And back: the table and its triggers go, findings can still be written.
    command.downgrade(store._alembic_config(), "0009")
    assert "owner_leak_day" not in store.table_names()
    with store.session() as session:
        _finding(session, owner, shop, "breach", T0)
        session.commit()
    store.close()
