"""Queries for listing and showing received messages, as plain dictionaries.

Visibility: an admin sees every message (including unattributed and role mail, which
belong to no one); other users see messages with at least one delivery to their
identities, and only their own deliveries of them.
"""

from __future__ import annotations

from typing import Any

from canary.mailbox.parse import parse_message
from sqlmodel import Session, col, select

from canary.errors import NotFound
from canary.models import Delivery, Finding, Identity, Message, Source, User
from canary.sources import get_source


def _visible_deliveries(session: Session, user: User, message_ids: list[int]) -> list[Delivery]:
    if not message_ids:
        return []
    query = select(Delivery).where(col(Delivery.message_id).in_(message_ids))
    if not user.is_admin:
        query = query.where(Delivery.owner_id == user.id)
    return list(session.exec(query.order_by(col(Delivery.id))))


def list_messages(
    session: Session, user: User, source: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """The newest messages visible to ``user`` (optionally only those to one source)."""
    query = select(
        Message.id,
        Message.received_at,
        Message.peer_ip,
        Message.mail_from,
        Message.from_address,
        Message.subject,
        Message.state,
        Message.size,
    )
    if source is not None:
        src = get_source(session, user, source)
        query = query.where(
            col(Message.id).in_(select(Delivery.message_id).where(Delivery.source_id == src.id))
        )
    elif not user.is_admin:
        query = query.where(
            col(Message.id).in_(select(Delivery.message_id).where(Delivery.owner_id == user.id))
        )
    rows = session.exec(query.order_by(col(Message.id).desc()).limit(limit)).all()
    deliveries = _visible_deliveries(session, user, [r[0] for r in rows])
    by_message: dict[int, list[Delivery]] = {}
    for d in deliveries:
        by_message.setdefault(d.message_id, []).append(d)
    out = []
    for mid, received_at, peer_ip, mail_from, from_address, subject, state, size in rows:
        out.append(
            {
                "id": mid,
                "received_at": received_at,
                "peer_ip": peer_ip,
                "mail_from": mail_from,
                "from": from_address,
                "subject": subject,
                "state": state,
                "size": size,
                "deliveries": [
                    {"recipient": d.recipient, "kind": d.kind, "verdict": d.verdict}
                    for d in by_message.get(mid, [])
                ],
            }
        )
    return out


def show_message(session: Session, user: User, message_id: int) -> dict[str, Any]:
    """Envelope, key headers, attribution and verdict of one message; raises NotFound."""
    message = session.get(Message, message_id)
    deliveries = _visible_deliveries(session, user, [message_id]) if message else []
    if message is None or (not user.is_admin and not deliveries):
        raise NotFound(f"no message {message_id}")
    parsed = parse_message(message.raw)
    delivery_out = []
    for d in deliveries:
        identity = session.get(Identity, d.identity_id) if d.identity_id else None
        source = session.get(Source, d.source_id) if d.source_id else None
        finding = session.exec(
            select(Finding)
            .where(Finding.delivery_id == d.id, col(Finding.superseded_at).is_(None))
            .order_by(col(Finding.id).desc())
        ).first()
        delivery_out.append(
            {
                "id": d.id,
                "recipient": d.recipient,
                "kind": d.kind,
                "identity": identity.alias if identity else None,
                "identity_name": identity.display_name if identity else None,
                "source": source.name if source else None,
                "verdict": d.verdict,
                "evidence": finding.evidence if finding else [],
                "sentence": finding.sentence if finding else None,
            }
        )
    return {
        "id": message.id,
        "state": message.state,
        "error": message.error,
        "envelope": {
            "received_at": message.received_at,
            "peer_ip": message.peer_ip,
            "helo": message.helo,
            "mail_from": message.mail_from,
            "rcpt_to": message.rcpt_to,
            "tls": message.tls,
            "size": message.size,
        },
        "headers": {
            "from": [f"{n} <{a}>" if n else a for n, a in parsed.from_],
            "sender": parsed.sender,
            "reply_to": [a for _, a in parsed.reply_to],
            "to": [f"{n} <{a}>" if n else a for n, a in parsed.to],
            "return_path": parsed.return_path,
            "message_id": parsed.message_id,
            "date": parsed.date,
            "subject": parsed.subject,
            "list_unsubscribe": parsed.list_unsubscribe,
            "list_id": parsed.list_id,
            "received": list(parsed.received),
            "dkim_signatures": len(parsed.dkim_signatures),
        },
        "attachments": [
            {"filename": a.filename, "type": a.content_type, "size": a.size, "sha256": a.sha256}
            for a in parsed.attachments
        ],
        "parse": {
            "parsed": parsed.parsed,
            "error": parsed.error,
            "defects": list(parsed.defects),
            "truncated": parsed.truncated,
        },
        "sender_org": message.sender_org,
        "deliveries": delivery_out,
    }
