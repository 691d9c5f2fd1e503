"""The append-only, hash-chained issuance log.

Every identity's issuance (and later hand-over or retirement) is one record whose hash
covers its content and the previous record's hash. Altering or removing any record
breaks every hash after it, so an evidence pack can show that an identity was issued to
a source before the first message to it arrived.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, text
from sqlmodel import Session, col, select

from canary.models import Identity, IssuanceRecord, Source, utcnow

GENESIS = "0" * 64
# moved: the identity now belongs to another source (sources merged).
EVENTS = ("issued", "given", "retired", "moved")


def record_hash(prev_hash: str, event: str, payload: dict[str, Any], created_at: datetime) -> str:
    """SHA-256 over the previous hash and this record's canonical JSON form."""
    body = json.dumps(
        {"event": event, "payload": payload, "created_at": created_at.isoformat()},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


def _payload(identity: Identity, source: Source, event: str) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "identity_id": identity.id,
        "alias": identity.alias,
        "display_name": identity.display_name,
        "source_id": source.id,
        "source_name": source.name,
        "owner_id": identity.owner_id,
    }
    if identity.postal_line:
        payload["postal_line"] = identity.postal_line
    if event == "given" and identity.given_at:
        payload["given_at"] = identity.given_at.isoformat()
    return payload


def _last_hash(session: Session) -> str:
    if session.get_bind().dialect.name == "postgresql":
        # Serialise writers so two transactions never chain onto the same record.
        session.execute(text("SELECT pg_advisory_xact_lock(7244016)"))
    last = session.exec(
        select(IssuanceRecord.hash).order_by(col(IssuanceRecord.id).desc()).limit(1)
    ).first()
    return last or GENESIS


def append_records(session: Session, entries: Sequence[tuple[Identity, Source, str]]) -> None:
    """Append one record per (identity, source, event) to the chain, in order."""
    if not entries:
        return
    prev = _last_hash(session)
    now = utcnow()
    rows = []
    for identity, source, event in entries:
        if event not in EVENTS:
            raise ValueError(f"unknown issuance event {event!r}")
        payload = _payload(identity, source, event)
        digest = record_hash(prev, event, payload, now)
        rows.append(
            {
                "identity_id": identity.id,
                "event": event,
                "payload": payload,
                "created_at": now,
                "prev_hash": prev,
                "hash": digest,
            }
        )
        prev = digest
    session.execute(insert(IssuanceRecord), rows)


def verify_chain(session: Session) -> int | None:
    """The id of the first record whose hash does not check out, or None if all do."""
    prev = GENESIS
    for record in session.exec(select(IssuanceRecord).order_by(col(IssuanceRecord.id))):
        expected = record_hash(prev, record.event, record.payload, record.created_at)
        if record.prev_hash != prev or record.hash != expected:
            return record.id
        prev = record.hash
    return None


def records_for(session: Session, identity: Identity) -> list[IssuanceRecord]:
    """The identity's records, oldest first."""
    return list(
        session.exec(
            select(IssuanceRecord)
            .where(IssuanceRecord.identity_id == identity.id)
            .order_by(col(IssuanceRecord.id))
        )
    )
