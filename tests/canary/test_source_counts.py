"""The per-source, per-verdict counts of current findings and the identity change
number, both kept by database triggers (migration 0009), on SQLite and PostgreSQL.

Every test compares the kept counts with an aggregate over the findings themselves
after a kind of change, so a trigger that misses one shows as a difference.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import Session, col, delete, func, select

from canary.config import Settings
from canary.models import (
    Delivery,
    Finding,
    Identity,
    IdentityChange,
    Source,
    SourceVerdictCount,
    User,
    as_utc,
)
from canary.overview import source_statuses, status_summary
from canary.source_merge import merge_sources, rename_source
from canary.sources import add_source
from canary.store import Store
from tests.support.findings import add_finding, store_before, supersede

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _kept(session: Session) -> dict[tuple[int, str], tuple[int, datetime | None]]:
    return {
        (row.source_id, row.verdict): (row.findings, as_utc(row.newest_at))
        for row in session.exec(select(SourceVerdictCount))
    }


def _aggregated(session: Session) -> dict[tuple[int, str], tuple[int, datetime | None]]:
    rows = session.exec(
        select(
            Finding.source_id,
            Finding.verdict,
            func.count(col(Finding.id)),
            func.max(Finding.created_at),
        )
        .where(col(Finding.superseded_at).is_(None), col(Finding.source_id).is_not(None))
        .group_by(Finding.source_id, Finding.verdict)
    )
    return {(s, v): (n, as_utc(newest)) for s, v, n, newest in rows if s is not None}


def _assert_exact(store: Store) -> None:
    with store.session() as session:
        assert _kept(session) == _aggregated(session)


def test_new_and_superseded_findings_keep_counts_and_newest_exact(
    store: Store, owner: User
) -> None:
    with store.session() as session:
        shop = add_source(session, owner, "Shop")
        first = add_finding(session, owner, shop, "shared", T0)
        newest = add_finding(session, owner, shop, "shared", T0 + timedelta(days=2))
        add_finding(session, owner, shop, "expected", T0 + timedelta(days=1))
        session.commit()
        assert _kept(session)[(shop.id, "shared")] == (2, T0 + timedelta(days=2))  # type: ignore[index]
    _assert_exact(store)
    with store.session() as session:
        # Superseding the newest brings the next newest back.
        newest = session.get(Finding, newest.id)
        assert newest is not None
        supersede(session, newest, "expected", T0 + timedelta(days=3))
        session.commit()
        assert _kept(session)[(shop.id, "shared")] == (1, T0)  # type: ignore[index]
    _assert_exact(store)
    with store.session() as session:
        first = session.get(Finding, first.id)
        assert first is not None
        supersede(session, first, "breach", T0 + timedelta(days=4))
        session.commit()
        assert (shop.id, "shared") not in _kept(session)  # the row goes with its last finding
    _assert_exact(store)


def test_deleted_findings_and_sources_leave_no_counts(store: Store, owner: User) -> None:
    with store.session() as session:
        gone = add_source(session, owner, "Gone")
        finding = add_finding(session, owner, gone, "breach", T0)
        session.commit()
        assert _kept(session)
        delivery_id = finding.delivery_id
        session.exec(delete(Finding).where(col(Finding.id) == finding.id))  # type: ignore[call-overload]
        session.exec(delete(Delivery).where(col(Delivery.id) == delivery_id))  # type: ignore[call-overload]
        session.delete(session.get(Source, gone.id))
        session.commit()
        assert _kept(session) == {}
    _assert_exact(store)


def test_a_merge_moves_counts_and_a_rename_keeps_them(store: Store, owner: User) -> None:
    with store.session() as session:
        kept = add_source(session, owner, "Kept")
        gone = add_source(session, owner, "Gone")
        add_finding(session, owner, kept, "shared", T0)
        add_finding(session, owner, gone, "shared", T0 + timedelta(days=5))
        add_finding(session, owner, gone, "breach", T0 + timedelta(days=1))
        old = add_finding(session, owner, gone, "shared", T0 + timedelta(days=9))
        supersede(session, old, "expected", T0 + timedelta(days=10))
        session.commit()
        merge_sources(session, owner, "Gone", "Kept")
        rename_source(session, owner, "Kept", "Kept Renamed")
        session.commit()
        assert _kept(session) == {
            (kept.id, "shared"): (2, T0 + timedelta(days=5)),
            (kept.id, "breach"): (1, T0 + timedelta(days=1)),
            (kept.id, "expected"): (1, T0 + timedelta(days=10)),
        }
    _assert_exact(store)


def test_the_summary_agrees_with_every_source_status(store: Store, owner: User) -> None:
    with store.session() as session:
        for i, verdict in enumerate(["breach", "shared", "expected", "cross_source", None]):
            source = add_source(session, owner, f"Site {i}")
            if verdict is not None:
                add_finding(session, owner, source, verdict, T0 + timedelta(hours=i))
        session.commit()
        every = source_statuses(session, owner)
        for limit in (1, 3, 10):
            summary = status_summary(session, owner, limit)
            assert [s.source.id for s in summary.worst] == [s.source.id for s in every][:limit]
            assert [(s.status, s.leak_count, s.kinds) for s in summary.worst] == [
                (s.status, s.leak_count, s.kinds) for s in every
            ][:limit]
            assert summary.total == 5
            assert summary.tally == {"breach": 1, "shared": 2, "clean": 2}


def test_identity_changes_move_the_owners_number(store: Store, owner: User) -> None:
    def changes(session: Session) -> int:
        return (
            session.exec(
                select(IdentityChange.changes).where(IdentityChange.owner_id == owner.id)
            ).first()
            or 0
        )

    with store.session() as session:
        shop = add_source(session, owner, "Shop")
        before = changes(session)
        identity = Identity(
            owner_id=owner.id,  # type: ignore[arg-type]
            source_id=shop.id,  # type: ignore[arg-type]
            alias="x1@canary.test",
            style="token",
            display_name="Marc Kollier",
            name_key="marc kollier",
        )
        session.add(identity)
        session.commit()
        added = changes(session)
        assert added > before
        identity.retired_at = T0  # not a field trace matches on
        session.add(identity)
        session.commit()
        assert changes(session) == added
        identity.reference = "R-1"
        session.add(identity)
        session.commit()
        assert changes(session) > added


def test_upgrading_counts_the_findings_already_there(settings: Settings) -> None:
    store = store_before(settings, "0008")
    with store.session() as session:
        owner = session.get(User, 1)
        shop = session.get(Source, 1)
        assert owner is not None and shop is not None
        add_finding(session, owner, shop, "shared", T0)
        old = add_finding(session, owner, shop, "shared", T0 + timedelta(days=1))
        supersede(session, old, "breach", T0 + timedelta(days=2))
        session.commit()
    store.upgrade()
    with store.session() as session:
        assert _kept(session) == {
            (1, "shared"): (1, T0),
            (1, "breach"): (1, T0 + timedelta(days=2)),
        }
    _assert_exact(store)
    store.close()
