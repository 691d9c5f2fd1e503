"""Owner-scoped reading of messages, findings and incidents, with keyset pagination.

Messages belong to a user through their deliveries (``Delivery.owner_id``): a user sees
a message when at least one of its deliveries is theirs, and only those deliveries. An
admin also sees deliveries that belong to no one (unattributed and role mail), never
another user's. This is stricter than :mod:`canary.messages`, whose admin view is every
delivery; the dashboard promises that one user never reads another's data.

Pages are keyed by id (``before``: return rows with a smaller id), never by offset, so
the hundredth page costs what the first does on a million messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from canary.mailbox.parse import parse_message
from sqlalchemy import ColumnElement, and_, or_
from sqlmodel import Session, col, func, select

from canary import alias as aliases
from canary.errors import NotFound
from canary.messages import show_message
from canary.models import Delivery, Finding, Identity, Incident, Message, Source, User

MAX_PAGE = 200


@dataclass(frozen=True)
class MessageFilter:
    """Filters of the message search; None means "any"."""

    source_id: int | None = None
    verdict: str | None = None
    sender_org: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    header_message_id: str | None = None
    recipient: str | None = None


@dataclass(frozen=True)
class Page:
    """One page of results and the ``before`` value of the next page (None at the end)."""

    items: list[dict[str, Any]]
    next_before: int | None = None


@dataclass(frozen=True)
class SourceNames:
    """Source id to name, loaded once per page."""

    names: dict[int, str] = field(default_factory=dict)

    @classmethod
    def load(cls, session: Session, ids: set[int | None]) -> SourceNames:
        wanted = [i for i in ids if i is not None]
        if not wanted:
            return cls()
        rows = session.exec(select(Source.id, Source.name).where(col(Source.id).in_(wanted)))
        return cls({sid: name for sid, name in rows if sid is not None})

    def get(self, source_id: int | None) -> str | None:
        return self.names.get(source_id) if source_id is not None else None


def visible(user: User, probe: bool = False) -> ColumnElement[bool]:
    """The deliveries ``user`` may read (``probe``: written so no index serves it)."""
    owner = col(Delivery.owner_id) + 0 if probe else col(Delivery.owner_id)
    mine = owner == user.id
    if user.is_admin:
        return or_(mine, owner.is_(None))
    return mine


def _page_size(limit: int) -> int:
    return max(1, min(limit, MAX_PAGE))


def _message_id_variants(raw: str) -> list[str]:
    bare = raw.strip().strip("<>").strip()
    return [bare, f"<{bare}>"]


def search_messages(
    session: Session,
    user: User,
    where: MessageFilter | None = None,
    before: int | None = None,
    limit: int = 50,
) -> Page:
    """Messages visible to ``user``, newest first, filtered, one page."""
    where = where or MessageFilter()
    limit = _page_size(limit)
    # A correlated EXISTS probed through ix_delivery_message_id: the database walks
    # the message primary key downwards from ``before`` and stops after one page,
    # instead of first collecting every delivery the user has. On SQLite (no
    # statistics) ``+ 0`` keeps the owner, source and verdict indexes out of the
    # probe, or it would scan all the owner's deliveries for every message;
    # PostgreSQL plans from real statistics and gets the plain columns.
    sqlite = session.get_bind().dialect.name == "sqlite"
    probe: list[ColumnElement[bool]] = [visible(user, probe=sqlite)]
    if where.source_id is not None:
        source_col = col(Delivery.source_id) + 0 if sqlite else col(Delivery.source_id)
        probe.append(source_col == where.source_id)
    if where.verdict:
        verdict_col = col(Delivery.verdict) + "" if sqlite else col(Delivery.verdict)
        probe.append(verdict_col == where.verdict)
    matching = (
        select(Delivery.id)
        .where(col(Delivery.message_id) == col(Message.id), and_(*probe))
        .exists()
    )
    query = select(
        Message.id,
        Message.received_at,
        Message.mail_from,
        Message.from_address,
        Message.subject,
        Message.state,
        Message.sender_org,
        Message.header_message_id,
    ).where(matching)
    if where.sender_org:
        query = query.where(col(Message.sender_org) == where.sender_org.strip().lower())
    if where.since is not None:
        query = query.where(col(Message.received_at) >= where.since)
    if where.until is not None:
        query = query.where(col(Message.received_at) < where.until)
    if where.source_id is not None:
        # One source holds a sliver of all mail: walking messages until a page of its
        # own is found reads most of the table (seconds at a million messages). Drive
        # from ix_delivery_source_message instead; the EXISTS above still checks
        # visibility and the verdict on each candidate.
        query = query.where(
            col(Message.id).in_(
                select(Delivery.message_id).where(col(Delivery.source_id) == where.source_id)
            )
        )
    if where.recipient:
        # Selective: drive from ix_delivery_recipient_key instead of walking messages.
        key = aliases.normalise_address(where.recipient)
        query = query.where(
            col(Message.id).in_(
                select(Delivery.message_id).where(col(Delivery.recipient_key) == key)
            )
        )
    if where.header_message_id:
        variants = _message_id_variants(where.header_message_id)
        query = query.where(col(Message.header_message_id).in_(variants))
    if before is not None:
        query = query.where(col(Message.id) < before)
    rows = session.exec(query.order_by(col(Message.id).desc()).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    ids = [r[0] for r in rows]
    deliveries: dict[int, list[Delivery]] = {}
    if ids:
        for d in session.exec(
            select(Delivery)
            .where(col(Delivery.message_id).in_(ids), visible(user, probe=sqlite))
            .order_by(col(Delivery.id))
        ):
            deliveries.setdefault(d.message_id, []).append(d)
    names = SourceNames.load(session, {d.source_id for group in deliveries.values() for d in group})
    items = [
        {
            "id": mid,
            "received_at": received_at,
            "mail_from": mail_from,
            "from": from_address,
            "subject": subject,
            "state": state,
            "sender_org": sender_org,
            "message_id": msgid,
            "deliveries": [
                {
                    "id": d.id,
                    "recipient": d.recipient,
                    "kind": d.kind,
                    "source_id": d.source_id,
                    "source": names.get(d.source_id),
                    "verdict": d.verdict,
                }
                for d in deliveries.get(mid, [])
            ],
        }
        for mid, received_at, mail_from, from_address, subject, state, sender_org, msgid in rows
    ]
    return Page(items, ids[-1] if more and ids else None)


def _finding_dict(finding: Finding, source_name: str | None = None) -> dict[str, Any]:
    return {
        "id": finding.id,
        "delivery_id": finding.delivery_id,
        "source_id": finding.source_id,
        "source": source_name,
        "verdict": finding.verdict,
        "sender_org": finding.sender_org,
        "evidence": finding.evidence,
        "sentence": finding.sentence,
        "created_at": finding.created_at,
        "superseded_at": finding.superseded_at,
    }


def get_message(session: Session, user: User, message_id: int) -> Message:
    """The stored message when ``user`` may read it; NotFound otherwise."""
    message = session.get(Message, message_id)
    if message is not None:
        seen = session.exec(
            select(Delivery.id).where(Delivery.message_id == message_id, visible(user)).limit(1)
        ).first()
        if seen is not None:
            return message
    raise NotFound(f"no message {message_id}")


def message_detail(session: Session, user: User, message_id: int) -> dict[str, Any]:
    """Envelope, headers, bodies, and the user's deliveries with all their findings."""
    message = get_message(session, user, message_id)
    # show_message (canary.messages) builds the envelope and header summary. Its admin
    # view lists every delivery, so it is asked as an admin and its delivery list is
    # replaced below by the deliveries this user may read.
    summary = show_message(session, User(id=user.id, name=user.name, is_admin=True), message_id)
    parsed = parse_message(message.raw)
    deliveries = list(
        session.exec(
            select(Delivery)
            .where(Delivery.message_id == message_id, visible(user))
            .order_by(col(Delivery.id))
        )
    )
    names = SourceNames.load(session, {d.source_id for d in deliveries})
    out = []
    for d in deliveries:
        identity = session.get(Identity, d.identity_id) if d.identity_id else None
        findings = list(
            session.exec(
                select(Finding).where(Finding.delivery_id == d.id).order_by(col(Finding.id))
            )
        )
        current = [f for f in findings if f.superseded_at is None]
        out.append(
            {
                "id": d.id,
                "recipient": d.recipient,
                "kind": d.kind,
                "identity_id": d.identity_id,
                "identity": identity.alias if identity else None,
                "identity_name": identity.display_name if identity else None,
                "source_id": d.source_id,
                "source": names.get(d.source_id),
                "verdict": d.verdict,
                "finding": _finding_dict(current[-1], names.get(d.source_id)) if current else None,
                "findings": [_finding_dict(f, names.get(d.source_id)) for f in findings],
            }
        )
    summary["deliveries"] = out
    summary["text"] = parsed.text
    summary["has_html"] = bool(parsed.html.strip())
    summary["subject"] = message.subject or parsed.subject
    summary["message_id"] = message.header_message_id
    summary["authentication"] = authentication_results(parsed.headers, out)
    return summary


AUTH_PREFIXES = ("dkim_", "spf_", "dmarc_", "arc_", "from_not_authenticated")


def authentication_results(headers: dict[str, str], deliveries: list[dict[str, Any]]) -> dict:
    """What the engine concluded about the sender (evidence items), and what the message
    itself claims (its Authentication-Results header, untrusted: any sender can write it)."""
    ours: list[str] = []
    for d in deliveries:
        finding = d.get("finding")
        for item in finding["evidence"] if finding else []:
            code = str(item.get("code", ""))
            if code.startswith(AUTH_PREFIXES):
                text = f"{code} {item.get('detail', '')}".strip()
                if text not in ours:
                    ours.append(text)
    claimed = next((v for k, v in headers.items() if k.lower() == "authentication-results"), None)
    return {"verified": ours, "claimed_by_message": claimed}


def raw_message(session: Session, user: User, message_id: int) -> bytes:
    """The byte-exact message as received, when ``user`` may read it."""
    return get_message(session, user, message_id).raw


def html_body(session: Session, user: User, message_id: int) -> str:
    """The message's HTML body, unsanitised (the caller must sanitise before showing it)."""
    return parse_message(get_message(session, user, message_id).raw).html


def list_findings(
    session: Session,
    user: User,
    source_id: int | None = None,
    verdict: str | None = None,
    before: int | None = None,
    limit: int = 50,
) -> Page:
    """The user's current (not superseded) findings, newest first, one page."""
    limit = _page_size(limit)
    query = select(Finding, Delivery.message_id).join(
        Delivery, col(Delivery.id) == col(Finding.delivery_id)
    )
    query = query.where(Finding.owner_id == user.id, col(Finding.superseded_at).is_(None))
    if source_id is not None:
        query = query.where(Finding.source_id == source_id)
    if verdict:
        query = query.where(Finding.verdict == verdict)
    if before is not None:
        query = query.where(col(Finding.id) < before)
    rows = session.exec(query.order_by(col(Finding.id).desc()).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    names = SourceNames.load(session, {f.source_id for f, _ in rows})
    items = [{**_finding_dict(f, names.get(f.source_id)), "message_id": mid} for f, mid in rows]
    return Page(items, rows[-1][0].id if more and rows else None)


def incident_dict(incident: Incident, source_name: str | None = None) -> dict[str, Any]:
    """The JSON form of an incident."""
    return {
        "id": incident.id,
        "source_id": incident.source_id,
        "source": source_name,
        "kind": incident.kind,
        "status": incident.status,
        "first_seen": incident.first_seen,
        "last_seen": incident.last_seen,
        "finding_count": incident.finding_count,
        "organisations": incident.organisations,
        "updated_at": incident.updated_at,
    }


def list_incidents(
    session: Session,
    user: User,
    source_id: int | None = None,
    status: str | None = None,
    before: int | None = None,
    limit: int = 50,
) -> Page:
    """The user's incidents, newest first, one page."""
    limit = _page_size(limit)
    query = select(Incident).where(Incident.owner_id == user.id)
    if source_id is not None:
        query = query.where(Incident.source_id == source_id)
    if status:
        query = query.where(Incident.status == status)
    if before is not None:
        query = query.where(col(Incident.id) < before)
    rows = list(session.exec(query.order_by(col(Incident.id).desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    names = SourceNames.load(session, {i.source_id for i in rows})
    items = [incident_dict(i, names.get(i.source_id)) for i in rows]
    return Page(items, rows[-1].id if more and rows else None)


def source_organisations(session: Session, source: Source) -> list[dict[str, Any]]:
    """Every sender organisation that wrote to the source's identities, most mail first."""
    rows = session.exec(
        select(
            Message.sender_org,
            func.count(col(Delivery.id)),
            func.min(Delivery.received_at),
            func.max(Delivery.received_at),
        )
        .join(Message, col(Message.id) == col(Delivery.message_id))
        .where(Delivery.source_id == source.id, col(Message.sender_org).is_not(None))
        .group_by(Message.sender_org)
        .order_by(func.count(col(Delivery.id)).desc())
    ).all()
    return [
        {"organisation": org, "messages": n, "first_seen": first, "last_seen": last}
        for org, n, first, last in rows
    ]
