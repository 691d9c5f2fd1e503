"""From stored facts to stored findings: the edge between the pure verdict engine and the DB.

The analysis worker authenticates a message once and computes its content signals, then
keeps those facts with the message (``Message.auth``) and the delivery
(``Delivery.facts``). Every verdict, the first and every later one, is decided from
these stored facts plus what the user has said since (authorised senders, retirement),
so a user's correction re-evaluates findings without asking DNS again, and a campaign
found later by the scheduled job re-evaluates just the deliveries it touches.

Findings are never edited: a new draft that differs from the current finding
supersedes it, and the new finding records what changed (``Finding.changes``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from canary.analysis_batch import BatchLookups, lock_incidents
from canary.campaigns import (
    DEFAULT_MIN_SOURCES,
    DEFAULT_WINDOW,
    CampaignSignal,
    RecentDelivery,
    detect_campaigns,
)
from canary.evidence_items import Evidence
from canary.incidents import (
    FindingRecord,
    IncidentState,
    compare,
    incident_kind,
    news,
    rebuild,
    roll_up,
)
from canary.models import Delivery, Finding, Identity, Incident, Message, Source, as_utc, utcnow
from canary.signals import Signals
from canary.sources import authorised_domains
from canary.verdicts import AuthFacts, DeliveryFacts, FindingDraft, SourceFacts, evaluate


@dataclass(frozen=True)
class IncidentEvent:
    """An incident opened or grew: what alerts are made of."""

    incident_id: int
    event: str  # opened | grew | reopened


IncidentHook = Callable[[Session, IncidentEvent], None]
"""Told, inside the transaction, of each incident that opened, re-opened or grew."""


# ---------------------------------------------------------------------- JSON forms


def _evidence_json(items: Iterable[Evidence]) -> list[dict[str, str]]:
    return [e.as_dict() for e in items]


def _evidence_from(items: Iterable[dict[str, str]] | None) -> tuple[Evidence, ...]:
    return tuple(Evidence(i.get("code", ""), i.get("detail", "")) for i in items or ())


def auth_to_json(auth: AuthFacts) -> dict[str, Any]:
    """The stored form of a message's authentication facts."""
    data = asdict(auth)
    data["evidence"] = _evidence_json(auth.evidence)
    return data


def auth_from_json(data: dict[str, Any] | None) -> AuthFacts:
    """Authentication facts read back; an unauthenticated default when none are stored."""
    if not data:
        return AuthFacts()
    values = {k: v for k, v in data.items() if k in AuthFacts.__dataclass_fields__}
    values["evidence"] = _evidence_from(data.get("evidence"))
    return AuthFacts(**values)


def delivery_facts_json(
    signals: Signals, cross_sources: Sequence[str], campaign: CampaignSignal | None = None
) -> dict[str, Any]:
    """The stored form of one delivery's own facts."""
    return {
        "signals": {
            "list_unsubscribe": signals.list_unsubscribe,
            "list_id": signals.list_id,
            "phishing": _evidence_json(signals.phishing),
            "address_leaks": _evidence_json(signals.address_leaks),
        },
        "cross_sources": list(cross_sources),
        "campaign": asdict(campaign) if campaign else None,
    }


def _signals_from(data: dict[str, Any] | None) -> Signals:
    data = data or {}
    return Signals(
        bool(data.get("list_unsubscribe")),
        data.get("list_id"),
        _evidence_from(data.get("phishing")),
        _evidence_from(data.get("address_leaks")),
    )


def _campaign_from(data: dict[str, Any] | None) -> CampaignSignal | None:
    if not data:
        return None
    return CampaignSignal(
        delivery_id=int(data["delivery_id"]),
        source_count=int(data["source_count"]),
        other_sources=tuple(data.get("other_sources", ())),
        basis=tuple(data.get("basis", ())),
    )


# ---------------------------------------------------------------------- facts


def build_facts(
    session: Session,
    delivery: Delivery,
    message: Message,
    identity: Identity | None,
    source: Source | None,
    lookups: BatchLookups | None = None,
) -> DeliveryFacts:
    """The engine's input for one delivery, from stored facts and the current user data.

    ``lookups`` holds the user data of the analysis batch, read once for all of it.
    """
    stored = delivery.facts or {}
    source_facts = None
    if source is not None:
        domains = (
            lookups.authorised(session, source)
            if lookups is not None
            else frozenset(authorised_domains(session, source))
        )
        source_facts = SourceFacts(source.name, domains)
    return DeliveryFacts(
        recipient=delivery.recipient_key,
        recipient_kind=delivery.kind if identity is not None else "unattributed",
        received_at=as_utc(delivery.received_at) or utcnow(),
        auth=auth_from_json(message.auth),
        signals=_signals_from(stored.get("signals")),
        source=source_facts,
        issued_at=as_utc(identity.created_at) if identity else None,
        given_at=as_utc(identity.given_at) if identity else None,
        retired_at=as_utc(identity.retired_at) if identity else None,
        cross_sources=tuple(stored.get("cross_sources", ())),
        campaign=_campaign_from(stored.get("campaign")),
    )


# ---------------------------------------------------------------------- findings


def current_finding(session: Session, delivery_id: int) -> Finding | None:
    """The delivery's finding in force (not superseded), if any."""
    return session.exec(
        select(Finding).where(
            Finding.delivery_id == delivery_id, col(Finding.superseded_at).is_(None)
        )
    ).first()


def _record_of(finding: Finding, seen_at: datetime | None = None) -> FindingRecord:
    return FindingRecord(
        verdict=finding.verdict,
        sender_org=finding.sender_org,
        evidence=_evidence_from(finding.evidence),
        sentence=finding.sentence,
        seen_at=seen_at,
    )


def record_draft(
    session: Session,
    delivery: Delivery,
    draft: FindingDraft,
    now: datetime | None = None,
    lookups: BatchLookups | None = None,
) -> Finding | None:
    """Store ``draft`` as the delivery's finding if it differs from the current one.

    Returns the new finding, or None when the current finding already says the same.
    With ``lookups`` (an analysis batch) the current finding comes from them and the
    new one is written with the rest of the batch, in one statement at its end.
    """
    now = now or utcnow()
    assert delivery.id is not None
    if lookups is not None:
        current = lookups.current_finding(delivery.id)
    else:
        current = current_finding(session, delivery.id)
    comparison = compare(_record_of(current) if current else None, draft)
    if not comparison.supersedes:
        return None
    if current is not None:
        current.superseded_at = now
        session.add(current)
    finding = Finding(
        delivery_id=delivery.id,
        owner_id=delivery.owner_id,
        source_id=delivery.source_id,
        verdict=draft.verdict,
        sender_org=draft.sender_org,
        evidence=draft.evidence_json(),
        sentence=draft.sentence,
        changes=list(comparison.changes) if current is not None else [],
        created_at=now,
    )
    session.add(finding)
    delivery.verdict = draft.verdict
    session.add(delivery)
    if lookups is not None:
        lookups.recorded(finding)
    else:
        session.flush()
    return finding


# ---------------------------------------------------------------------- incidents


def _state(incident: Incident) -> IncidentState:
    return IncidentState(
        source_id=incident.source_id,
        kind=incident.kind,
        first_seen=as_utc(incident.first_seen) or utcnow(),
        last_seen=as_utc(incident.last_seen) or utcnow(),
        finding_count=incident.finding_count,
        organisations=tuple(incident.organisations),
        status=incident.status,
        id=incident.id,
    )


def _apply(incident: Incident, state: IncidentState, now: datetime) -> None:
    incident.first_seen = state.first_seen
    incident.last_seen = state.last_seen
    incident.finding_count = state.finding_count
    incident.organisations = list(state.organisations)
    incident.status = state.status
    incident.updated_at = now


def roll_into_incident(
    session: Session,
    delivery: Delivery,
    draft: FindingDraft,
    now: datetime | None = None,
    lookups: BatchLookups | None = None,
) -> IncidentEvent | None:
    """Add a new finding to its source's incident of its kind; say if it opened or grew.

    With ``lookups`` (an analysis batch) the incident comes from them, and only a new
    incident is written at once (its id names the event).
    """
    kind = incident_kind(draft.verdict)
    if kind is None or delivery.source_id is None or delivery.owner_id is None:
        return None
    now = now or utcnow()
    if lookups is not None:
        # Read under the source's lock when the batch was loaded (see analysis_batch).
        incident = lookups.incident(session, delivery.source_id, kind)
    else:
        lock_incidents(session, [delivery.source_id])
        incident = session.exec(
            select(Incident)
            .where(Incident.source_id == delivery.source_id, Incident.kind == kind)
            .order_by(Incident.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).first()
    seen_at = as_utc(delivery.received_at) or now
    before = _state(incident) if incident else None
    after = roll_up(before, delivery.source_id, draft, seen_at)
    assert after is not None
    if incident is None:
        incident = Incident(owner_id=delivery.owner_id, source_id=delivery.source_id, kind=kind)
        if lookups is not None:
            lookups.opened(incident)
    _apply(incident, after, now)
    session.add(incident)
    if incident.id is None or lookups is None:
        session.flush()
    assert incident.id is not None
    event = news(before, after)
    return IncidentEvent(incident.id, event) if event else None


def rebuild_incidents(
    session: Session, source_id: int, now: datetime | None = None
) -> list[IncidentEvent]:
    """Recompute a source's incidents from its current findings, keeping user statuses;
    returns the incidents that opened, re-opened or grew.

    Incidents that no longer have any finding (the user authorised the sender, say) are
    removed; the superseded findings keep the history.
    """
    now = now or utcnow()
    # Before reading the findings: otherwise a worker could add a finding and count it
    # in the incident meanwhile, and this rebuild, not seeing it, would write that away.
    lock_incidents(session, [source_id])
    rows = session.exec(
        select(Finding, Delivery.received_at)
        .join(Delivery, col(Delivery.id) == Finding.delivery_id)
        .where(Finding.source_id == source_id, col(Finding.superseded_at).is_(None))
    ).all()
    records = [_record_of(f, as_utc(received)) for f, received in rows]
    existing = {
        i.kind: i
        for i in session.exec(
            select(Incident)
            .where(Incident.source_id == source_id)
            .order_by(col(Incident.id).desc())  # the first of a kind wins, as in a batch
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    }
    built = rebuild(source_id, records, {k: _state(i) for k, i in existing.items()})
    owner_id = session.get(Source, source_id).owner_id  # type: ignore[union-attr]
    changed: list[tuple[Incident, str]] = []
    for kind, state in built.items():
        old = existing.pop(kind, None)
        incident = old or Incident(owner_id=owner_id, source_id=source_id, kind=kind)
        event = news(_state(old) if old else None, state)
        _apply(incident, state, now)
        session.add(incident)
        if event:
            changed.append((incident, event))
    for emptied in existing.values():
        session.delete(emptied)
    session.flush()
    return [IncidentEvent(i.id, event) for i, event in changed if i.id is not None]


# ---------------------------------------------------------------------- re-evaluation


def reevaluate_deliveries(
    session: Session,
    delivery_ids: Iterable[int],
    now: datetime | None = None,
    on_incident: IncidentHook | None = None,
) -> int:
    """Decide the given deliveries again from their stored facts; return how many changed.

    The incidents of every source whose findings changed are rebuilt, and
    ``on_incident`` hears of each that opened, re-opened or grew (the alert queue).
    """
    now = now or utcnow()
    changed = 0
    sources: set[int] = set()
    ids = sorted(set(delivery_ids))
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        rows = session.exec(
            select(Delivery, Message)
            .join(Message, col(Message.id) == Delivery.message_id)
            .where(col(Delivery.id).in_(chunk), col(Message.analysed_at).is_not(None))
        ).all()
        for delivery, message in rows:
            if delivery.kind == "role":
                continue
            identity = session.get(Identity, delivery.identity_id) if delivery.identity_id else None
            source = session.get(Source, delivery.source_id) if delivery.source_id else None
            draft = evaluate(build_facts(session, delivery, message, identity, source))
            if record_draft(session, delivery, draft, now) is not None:
                changed += 1
                if delivery.source_id is not None:
                    sources.add(delivery.source_id)
    for source_id in sorted(sources):
        for event in rebuild_incidents(session, source_id, now):
            if on_incident is not None:
                on_incident(session, event)
    return changed


def reevaluate_source(session: Session, source_id: int, now: datetime | None = None) -> int:
    """Re-decide every delivery to a source's identities (after a user correction)."""
    ids = session.exec(select(Delivery.id).where(Delivery.source_id == source_id)).all()
    changed = reevaluate_deliveries(session, [i for i in ids if i is not None], now)
    rebuild_incidents(session, source_id, now)
    return changed


def reevaluate_after_correction(session: Session, source: Source) -> None:
    """The ``on_change`` hook of :mod:`canary.review`: re-decide the source's findings."""
    assert source.id is not None
    reevaluate_source(session, source.id)


# ---------------------------------------------------------------------- campaigns


def apply_campaigns(
    session: Session,
    now: datetime | None = None,
    window: timedelta = DEFAULT_WINDOW,
    min_sources: int = DEFAULT_MIN_SOURCES,
    on_incident: IncidentHook | None = None,
) -> int:
    """Find cross-source campaigns among recent deliveries and re-decide those they touch.

    Runs as a scheduled job over the last two windows, so a campaign that builds up
    across several batches of mail is still seen whole. Returns how many deliveries got
    a new or changed campaign signal.
    """
    now = now or utcnow()
    rows = session.exec(
        select(Delivery, Message.sender_org, Message.peer_ip, Message.fingerprint, Source.name)
        .join(Message, col(Message.id) == Delivery.message_id)
        .join(Source, col(Source.id) == Delivery.source_id)
        .where(Delivery.received_at >= now - 2 * window, Delivery.kind == "canary")
    ).all()
    domains: dict[int, frozenset[str]] = {}
    recent = []
    for delivery, sender_org, peer_ip, fingerprint, source_name in rows:
        assert delivery.id is not None and delivery.source_id is not None
        if delivery.source_id not in domains:
            source = session.get(Source, delivery.source_id)
            domains[delivery.source_id] = frozenset(authorised_domains(session, source))  # type: ignore[arg-type]
        recent.append(
            RecentDelivery(
                delivery_id=delivery.id,
                received_at=as_utc(delivery.received_at) or now,
                source_id=delivery.source_id,
                source_name=source_name,
                source_domains=domains[delivery.source_id],
                sender_org=sender_org,
                peer_ip=peer_ip,
                fingerprint=fingerprint,
            )
        )
    signals = detect_campaigns(recent, window=window, min_sources=min_sources)
    by_id = {delivery.id: delivery for delivery, *_ in rows}
    touched = []
    for delivery_id, signal in signals.items():
        delivery = by_id[delivery_id]
        facts = dict(delivery.facts or {})
        # The JSON form, as the database gives it back, so an unchanged signal compares equal.
        stored = json.loads(json.dumps(asdict(signal)))
        if facts.get("campaign") != stored:
            facts["campaign"] = stored
            delivery.facts = facts
            session.add(delivery)
            touched.append(delivery_id)
    session.flush()
    if touched:
        reevaluate_deliveries(session, touched, now, on_incident)
    return len(touched)
