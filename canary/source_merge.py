"""Renaming and merging sources.

Catch-all aliases make sources from whatever a user typed at a signup form
(``shopx``, ``shop-x``, ``shopx2``), so users need to tidy them: give one a proper
name, or fold several into one. Merging moves everything that belongs to a source
(identities, deliveries, findings, seed batches, forwarding rules, authorised senders)
and records each moved identity in the issuance chain, so the evidence still shows
which source an identity was first issued to and when it moved.
"""

from __future__ import annotations

from sqlalchemy import delete, update
from sqlmodel import Session, select

from canary.errors import Conflict, InvalidInput
from canary.issuance import append_records
from canary.models import (
    AuthorisedSender,
    Delivery,
    Finding,
    ForwardRule,
    Identity,
    Incident,
    SeedBatch,
    Source,
    StudySite,
    User,
)
from canary.review import SourceChanged
from canary.sources import get_source, slugify


def rename_source(session: Session, owner: User, ref: int | str, new_name: str) -> Source:
    """Give one of ``owner``'s sources a new name; Conflict if another has it."""
    source = get_source(session, owner, ref)
    name = new_name.strip()
    slug = slugify(name)
    if not slug:
        raise InvalidInput(f"invalid source name {name!r}: it needs a letter or digit")
    clash = session.exec(
        select(Source).where(
            Source.owner_id == owner.id, Source.slug == slug, Source.id != source.id
        )
    ).first()
    if clash is not None:
        raise Conflict(f"a source named {clash.name!r} already exists; merge them instead")
    source.name, source.slug = name, slug
    session.add(source)
    session.flush()
    return source


def merge_sources(
    session: Session,
    owner: User,
    from_ref: int | str,
    into_ref: int | str,
    on_change: SourceChanged | None = None,
) -> Source:
    """Fold the source ``from_ref`` into ``into_ref`` and delete it; returns the survivor.

    ``on_change`` runs afterwards for the surviving source: its findings must be decided
    again, since it may now have more authorised senders and more deliveries.
    """
    gone = get_source(session, owner, from_ref)
    kept = get_source(session, owner, into_ref)
    if gone.id == kept.id:
        raise InvalidInput("a source cannot be merged into itself")
    if session.exec(select(StudySite.id).where(StudySite.source_id == gone.id)).first():
        # A study's report counts one source per site; merging would change its numbers.
        raise Conflict(f"{gone.name!r} is a site of a study and cannot be merged away")
    moved = list(session.exec(select(Identity).where(Identity.source_id == gone.id)))
    for table in (Identity, Delivery, Finding, SeedBatch, ForwardRule):
        session.exec(
            update(table).where(table.source_id == gone.id).values(source_id=kept.id)  # type: ignore[arg-type]
        )
    kept_domains = set(
        session.exec(select(AuthorisedSender.domain).where(AuthorisedSender.source_id == kept.id))
    )
    for sender in session.exec(
        select(AuthorisedSender).where(AuthorisedSender.source_id == gone.id)
    ).all():
        if sender.domain in kept_domains:
            session.delete(sender)
        else:
            sender.source_id = kept.id  # type: ignore[assignment]
            session.add(sender)
    # The survivor's incidents are rebuilt from the moved findings by ``on_change``.
    session.exec(delete(Incident).where(Incident.source_id == gone.id))  # type: ignore[arg-type]
    session.flush()
    for identity in moved:
        session.refresh(identity)
    append_records(session, [(identity, kept, "moved") for identity in moved])
    session.delete(gone)
    session.flush()
    if on_change is not None:
        on_change(session, kept)
    return kept
