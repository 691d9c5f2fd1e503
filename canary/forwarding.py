"""Forwarding received mail to its owner's real, verified address, with the verdict on it.

Rules say which mail is forwarded: per identity or per source, to one of the owner's
addresses, optionally dropping mail judged ``breach``. The pipeline calls
:func:`queue_forward` after a finding is recorded; that writes a
:class:`~canary.models.Forward` outbox row in the same transaction, and
:func:`deliver_forwards` (a scheduled job, long after the SMTP ``250``) sends it through
the relay with retries. The forwarded message is the original, byte for byte, with
``X-Canary-*`` headers on top and a banner in the subject when the verdict is not
``expected`` (:func:`forwarded_bytes`).

Never a relay for third parties: mail goes only to addresses whose owner clicked the
link of a verification mail (:mod:`canary.forward_addresses`), checked again at the
moment of sending, and never to an address on a canary domain (a forwarding loop).
"""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import datetime
from email.header import Header

from sqlmodel import Session, col, select

from canary import mailer, metrics, outbox
from canary.analysis_batch import BatchLookups
from canary.config import Settings
from canary.forward_addresses import is_verified
from canary.models import (
    Delivery,
    Forward,
    ForwardAddress,
    ForwardRule,
    Identity,
    Message,
    Source,
    utcnow,
)
from canary.store import Store

log = logging.getLogger(__name__)

BANNER_WORDS = {
    "shared": "shared",
    "breach": "breach",
    "after_retirement": "after retirement",
    "cross_source": "lists merged",
    "unattributed": "never issued",
}
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_SAFE_ORG = re.compile(r"[^A-Za-z0-9.\-_]")


# ---------------------------------------------------------------------- the message (pure)


def banner(verdict: str | None, sender_org: str | None) -> str:
    """The subject prefix, e.g. ``[canary: shared by brokerx.test] ``; empty when expected."""
    if not verdict or verdict == "expected":
        return ""
    words = BANNER_WORDS.get(verdict, verdict)
    org = _SAFE_ORG.sub("", sender_org or "")
    return f"[canary: {words} by {org}] " if org else f"[canary: {words}] "


def _header(name: str, value: str) -> bytes:
    # No CR/LF from data can start a new header; non-ASCII goes RFC 2047-encoded.
    value = " ".join(value.split())
    if not value.isascii():
        value = Header(value, "utf-8").encode()
    return f"{name}: {value}".encode("ascii", "replace")


def forwarded_bytes(
    raw: bytes,
    *,
    verdict: str | None,
    sender_org: str | None,
    source: str | None,
    identity: str | None,
) -> bytes:
    """The original message with ``X-Canary-*`` headers first and the subject banner.

    Headers named ``X-Canary-*`` in the original are removed: a sender must not be able
    to forge a verdict. Everything else is kept byte for byte, line endings included.
    """
    found = _HEADER_END.search(raw)
    head, rest = (raw[: found.start()], raw[found.start() :]) if found else (raw, b"")
    eol = b"\r\n" if b"\r\n" in (head[:2000] or b"\r\n") else b"\n"
    fields: list[list[bytes]] = []
    for line in head.splitlines():
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1].append(line)  # a folded continuation
        else:
            fields.append([line])
    prefix = banner(verdict, sender_org).encode()
    kept: list[bytes] = []
    has_subject = False
    for lines in fields:
        name = lines[0].split(b":", 1)[0].strip().lower()
        if name.startswith(b"x-canary-"):
            continue
        if name == b"subject" and not has_subject and prefix:
            has_subject = True
            first = lines[0]
            colon = first.index(b":") + 1
            value = first[colon:].lstrip(b" \t")
            lines = [first[:colon] + b" " + prefix + value, *lines[1:]]
        elif name == b"subject":
            has_subject = True
        kept.append(eol.join(lines))
    verdict_text = f"{verdict or 'pending'}"
    org = _SAFE_ORG.sub("", sender_org or "")
    added = [_header("X-Canary-Verdict", verdict_text + (f"; sender={org}" if org else ""))]
    if source:
        added.append(_header("X-Canary-Source", source))
    if identity:
        added.append(_header("X-Canary-Identity", identity))
    if prefix and not has_subject:
        added.append(_header("Subject", prefix.decode().strip()))
    if not found:
        rest = eol + eol
    return eol.join(added + kept) + rest


# ---------------------------------------------------------------------- rules and queueing


def rule_for(
    session: Session, delivery: Delivery, lookups: BatchLookups | None = None
) -> ForwardRule | None:
    """The rule that applies to a delivery: its identity's, else its source's.

    ``lookups`` holds the owner's rules when an analysis batch read them already.
    """
    if delivery.owner_id is None:
        return None
    if lookups is not None:
        rules = lookups.rules(session, delivery.owner_id)
        for attribute, value in (
            ("identity_id", delivery.identity_id),
            ("source_id", delivery.source_id),
        ):
            if value is None:
                continue
            for rule in rules:  # newest first
                if getattr(rule, attribute) == value:
                    return rule
        return None
    for column, value in (
        (ForwardRule.identity_id, delivery.identity_id),
        (ForwardRule.source_id, delivery.source_id),
    ):
        if value is None:
            continue
        rule = session.exec(
            select(ForwardRule)
            .where(ForwardRule.owner_id == delivery.owner_id, column == value)
            .order_by(col(ForwardRule.id).desc())
        ).first()
        if rule is not None:
            return rule
    return None


def queue_forward(
    session: Session,
    delivery: Delivery,
    verdict: str,
    sender_org: str | None,
    lookups: BatchLookups | None = None,
) -> Forward | None:
    """Queue ``delivery`` for forwarding when a rule asks for it, in the caller's
    transaction; returns the row, or None when nothing is to be forwarded.

    Only to a verified address; at most once per delivery (re-evaluation does not
    forward again). With the rule's ``drop_breach``, a ``breach`` is recorded as
    ``dropped`` rather than sent, so the user still sees that it was held back.
    """
    if delivery.id is None or delivery.owner_id is None or verdict == "unattributed":
        return None
    rule = rule_for(session, delivery, lookups)
    if rule is None:
        return None
    address = session.get(ForwardAddress, rule.address_id)
    if address is None or not is_verified(address):
        log.info("forward rule %s: address not verified, delivery %s kept", rule.id, delivery.id)
        return None
    if lookups is not None:
        already = lookups.forwarded(session, delivery.id)
    else:
        already = (
            session.exec(select(Forward.id).where(Forward.delivery_id == delivery.id)).first()
            is not None
        )
    if already:
        return None
    drop = verdict == "breach" and rule.drop_breach
    assert address.id is not None
    forward = Forward(
        delivery_id=delivery.id,
        address_id=address.id,
        owner_id=delivery.owner_id,
        verdict=verdict,
        sender_org=sender_org,
        state="dropped" if drop else "pending",
        last_error="breach: dropped by the forwarding rule" if drop else None,
    )
    session.add(forward)
    if lookups is not None:
        lookups.forwarding(delivery.id)
    else:
        session.flush()
    return forward


def forward_log(session: Session, owner_id: int, limit: int = 50) -> list[tuple[Forward, str]]:
    """The owner's recent forwards with the address each went to (newest first)."""
    rows = session.exec(
        select(Forward, ForwardAddress.address)
        .join(ForwardAddress, col(ForwardAddress.id) == Forward.address_id)
        .where(Forward.owner_id == owner_id)
        .order_by(col(Forward.id).desc())
        .limit(limit)
    ).all()
    return [(f, a) for f, a in rows]


# ---------------------------------------------------------------------- sending


def _prepare(session: Session, forward_id: int) -> tuple[bytes, str] | str:
    """(message bytes, recipient), or the reason it can never be sent."""
    forward = session.get(Forward, forward_id)
    assert forward is not None
    address = session.get(ForwardAddress, forward.address_id)
    if address is None or not is_verified(address) or address.owner_id != forward.owner_id:
        return "the address is no longer verified"
    delivery = session.get(Delivery, forward.delivery_id)
    message = session.get(Message, delivery.message_id) if delivery else None
    if delivery is None or message is None:
        return "the message is gone"
    if message.raw_purged_at is not None or not message.raw:
        return "the raw message was purged by retention"
    source = session.get(Source, delivery.source_id) if delivery.source_id else None
    identity = session.get(Identity, delivery.identity_id) if delivery.identity_id else None
    data = forwarded_bytes(
        message.raw,
        verdict=forward.verdict,
        sender_org=forward.sender_org,
        source=source.name if source else None,
        identity=identity.alias if identity else delivery.recipient_key,
    )
    return data, address.address


async def _send_one(settings: Settings, store: Store, forward_id: int, now: datetime) -> bool:
    def prepare() -> tuple[bytes, str] | str:
        with store.session() as session:
            return _prepare(session, forward_id)

    prepared = await asyncio.to_thread(prepare)
    error: str | None = None
    permanent = False
    if isinstance(prepared, str):
        error, permanent = prepared, True
    else:
        data, recipient = prepared
        try:
            await mailer.send(settings, data, recipients=[recipient])
        except mailer.RelayError as exc:
            error, permanent = str(exc), exc.permanent
        except Exception as exc:  # ConfigError (no relay) and the unexpected: retry later
            error = f"{type(exc).__name__}: {exc}"

    await asyncio.to_thread(
        outbox.record_outcome, store, Forward, forward_id, now, error, permanent=permanent
    )
    metrics.inc("forwards_sent_total" if error is None else "forwards_failed_total")
    return error is None


async def deliver_forwards(
    settings: Settings, store: Store, *, now: datetime | None = None, limit: int = 20
) -> int:
    """Send due forwards through the relay (scheduler job); returns how many were sent."""
    now = now or utcnow()
    ids = await asyncio.to_thread(outbox.claim, store.engine, Forward, now, limit)
    sent = 0
    for forward_id in ids:
        sent += await _send_one(settings, store, forward_id, now)
    return sent
