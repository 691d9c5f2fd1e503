"""What one analysis batch reads once instead of once per delivery.

Analysing a delivery needs its identity and source, the source's authorised senders,
its open incidents, its current finding and its owner's forwarding rules. Read one at a
time that was some twenty statements per message, each a round trip on PostgreSQL, and
most of the analysis time. :meth:`BatchLookups.load` reads them for a whole claimed
batch in a few statements, inside the batch's transaction and after the claim, so
nothing committed before the claim is missed.

The batch's own writes keep the lookups current (a catch-all identity issued on first
use, a first sender authorised, an incident opened, a finding superseded, a forward
queued), so a later delivery of the same batch sees them as it would have seen them in
the database. A source or owner that appears only mid-batch (a catch-all source created
on first use) is read when first needed.

Several workers may analyse against one database, and each rolls findings into the
incident of their source (read, add, write back). So a batch first takes, for every
source it reads incidents of, a lock that lasts until its transaction ends
(:func:`lock_incidents`), and reads the incidents only then: a second worker waits for
the first to commit and then sees its counts and its new incidents, instead of adding
to a stale copy or opening a second incident of the same kind.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import text
from sqlmodel import Session, col, select

from canary.attribution import identities_by_alias
from canary.models import (
    AuthorisedSender,
    Delivery,
    Finding,
    Forward,
    ForwardRule,
    Identity,
    Incident,
    Source,
)
from canary.name_index import TaggedKeyIndex

_CHUNK = 500  # ids per IN (...) query
# First key of the two-key advisory locks on a source's incidents (the second is the
# source id). The one-key locks (issuance's) are a separate space in PostgreSQL.
INCIDENT_LOCK = 0x1C1D


def lock_incidents(session: Session, source_ids: Iterable[int]) -> None:
    """Hold the incidents of ``source_ids`` for this transaction, against other workers.

    Taken before the incidents are read: a row lock alone cannot stop two workers from
    both finding no incident and both opening one, and the incident table has no
    unique (owner, source, kind) constraint. Sources are locked in id order so two
    batches of overlapping sources never wait on each other in a cycle.
    """
    ids = sorted(set(source_ids))
    if not ids:
        return
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        lock = text("SELECT pg_advisory_xact_lock(CAST(:space AS integer), CAST(:id AS integer))")
        for source_id in ids:
            session.execute(lock, {"space": INCIDENT_LOCK, "id": source_id})
    elif dialect == "sqlite":
        # The driver opens the transaction only at the first write, so until then every
        # read sees whatever was committed last and another writer may commit before ours.
        # A write that changes nothing opens it now and takes the database's one write
        # lock: the incidents read next stay as read until we commit.
        session.execute(text("UPDATE incident SET id = id WHERE 0"))


def _chunks(ids: Sequence[int]) -> Iterable[list[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield list(ids[start : start + _CHUNK])


class BatchLookups:
    """The stored facts one batch of deliveries is judged against, read in bulk."""

    def __init__(self, index: TaggedKeyIndex | None = None) -> None:
        self.identities: dict[str, Identity] = {}
        """Identities by alias, for every recipient of the batch that is one."""
        self.sources: dict[int, Source] = {}
        """Their sources, by id."""
        self.index = index
        self._authorised: dict[int, set[str]] = {}
        self._incidents: dict[int, dict[str, Incident]] = {}
        self._current: dict[int, Finding] = {}
        self._rules: dict[int, list[ForwardRule]] = {}
        self._forwarded: set[int] = set()
        self._forwards_loaded: set[int] = set()
        self._delivery_ids: list[int] = []

    @classmethod
    def load(
        cls,
        session: Session,
        deliveries: Sequence[Delivery],
        index: TaggedKeyIndex | None = None,
    ) -> BatchLookups:
        """Read everything ``deliveries`` will be judged against, in a few statements."""
        lookups = cls(index)
        if index is not None:
            index.refresh(session)
        lookups.identities, lookups.sources = identities_by_alias(
            session, (d.recipient for d in deliveries)
        )
        source_ids = sorted({i.source_id for i in lookups.identities.values()})
        owner_ids = sorted({i.owner_id for i in lookups.identities.values()})
        lookups._load_sources(session, source_ids)
        lookups._load_rules(session, owner_ids)
        lookups._delivery_ids = sorted(d.id for d in deliveries if d.id is not None)
        for chunk in _chunks(lookups._delivery_ids):
            for finding in session.exec(
                select(Finding).where(
                    col(Finding.delivery_id).in_(chunk), col(Finding.superseded_at).is_(None)
                )
            ):
                lookups._current.setdefault(finding.delivery_id, finding)
        return lookups

    def _load_sources(self, session: Session, source_ids: Sequence[int]) -> None:
        lock_incidents(session, source_ids)
        for source_id in source_ids:
            self._authorised[source_id] = set()
            self._incidents[source_id] = {}
        for chunk in _chunks(source_ids):
            for source_id, domain in session.exec(
                select(AuthorisedSender.source_id, AuthorisedSender.domain).where(
                    col(AuthorisedSender.source_id).in_(chunk)
                )
            ):
                self._authorised[source_id].add(domain)
            for incident in session.exec(
                select(Incident)
                .where(col(Incident.source_id).in_(chunk))
                .order_by(Incident.id)
                # Locked too, against writers that do not take the source lock (a user
                # changing the status); read afresh, as committed by the worker before.
                .with_for_update()
                .execution_options(populate_existing=True)
            ):
                # The first of a (source, kind), as a per-delivery query would find it.
                self._incidents[incident.source_id].setdefault(incident.kind, incident)

    def _load_rules(self, session: Session, owner_ids: Sequence[int]) -> None:
        for owner_id in owner_ids:
            self._rules[owner_id] = []
        for chunk in _chunks(owner_ids):
            for rule in session.exec(
                select(ForwardRule)
                .where(col(ForwardRule.owner_id).in_(chunk))
                .order_by(col(ForwardRule.id).desc())
            ):
                self._rules[rule.owner_id].append(rule)

    # ------------------------------------------------------------------ identities

    def issued(self, identity: Identity, source: Source) -> None:
        """An identity this batch issued (catch-all first use): later deliveries see it."""
        self.identities[identity.alias] = identity
        if source.id is not None:
            self.sources[source.id] = source
        if self.index is not None:
            self.index.add(identity)

    # ------------------------------------------------------------------ sources

    def authorised(self, session: Session, source: Source) -> frozenset[str]:
        """The source's authorised sender domains."""
        assert source.id is not None
        if source.id not in self._authorised:
            self._load_sources(session, [source.id])
        return frozenset(self._authorised[source.id])

    def authorise(self, source_id: int, domain: str) -> None:
        """A sender the batch authorised (a catch-all source's first sender)."""
        self._authorised.setdefault(source_id, set()).add(domain)

    def incident(self, session: Session, source_id: int, kind: str) -> Incident | None:
        """The source's incident of ``kind``, if it has one."""
        if source_id not in self._incidents:
            self._load_sources(session, [source_id])
        return self._incidents[source_id].get(kind)

    def opened(self, incident: Incident) -> None:
        """An incident the batch created."""
        self._incidents.setdefault(incident.source_id, {})[incident.kind] = incident

    # ------------------------------------------------------------------ findings

    def current_finding(self, delivery_id: int) -> Finding | None:
        """The delivery's finding in force, if any."""
        return self._current.get(delivery_id)

    def recorded(self, finding: Finding) -> None:
        """A finding the batch recorded; it is now its delivery's current one."""
        self._current[finding.delivery_id] = finding

    # ------------------------------------------------------------------ forwarding

    def rules(self, session: Session, owner_id: int) -> list[ForwardRule]:
        """The owner's forwarding rules, newest first."""
        if owner_id not in self._rules:
            self._load_rules(session, [owner_id])
        return self._rules[owner_id]

    def forwarded(self, session: Session, delivery_id: int) -> bool:
        """Whether the delivery was queued for forwarding already (by an earlier attempt)."""
        if delivery_id not in self._forwards_loaded:
            ids = self._delivery_ids if delivery_id in self._delivery_ids else [delivery_id]
            for chunk in _chunks(ids):
                self._forwarded.update(
                    session.exec(
                        select(Forward.delivery_id).where(col(Forward.delivery_id).in_(chunk))
                    )
                )
            self._forwards_loaded.update(ids)
        return delivery_id in self._forwarded

    def forwarding(self, delivery_id: int) -> None:
        """A delivery the batch queued for forwarding."""
        self._forwarded.add(delivery_id)
