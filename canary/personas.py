"""Bulk issuance of synthetic personas across many sources at once (studies and seeds).

:func:`canary.identity.create_identities` serves one source per call and rebuilds the
owner's name index and a Faker instance each time; for a study of 10,000 sites that is
quadratic work. Here one :class:`~canary.names.NameIndex` (built once from every name
the owner already has) and one :class:`~canary.names.PersonaNames` serve the whole
batch, so the distance rule holds across the study and across the owner's earlier
identities, and rows are inserted in chunks with their issuance records.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import insert
from sqlmodel import Session, col, select

from canary import alias as aliases
from canary.errors import InvalidInput
from canary.identity import ALIAS_STYLES, new_local_part, owner_name_index
from canary.issuance import append_records
from canary.models import Identity, Source, User, utcnow
from canary.names import NameIndex, PersonaNames, name_key

CHUNK = 2000  # identities per INSERT ... RETURNING and issuance append
_LOOKUP_CHUNK = 500


@dataclass(frozen=True)
class PersonaSlot:
    """One persona to issue: the source it goes to and optional tagged extra fields."""

    source: Source
    postal_line: str | None = None
    reference: str | None = None


@dataclass
class PersonaBatch:
    """What to issue and how; ``slots`` are issued in order."""

    slots: Sequence[PersonaSlot]
    domain: str
    style: str = "token"
    locale: str = "en_US"
    seed: int | None = None
    index: NameIndex | None = field(default=None, repr=False)


def _taken(session: Session, candidates: Sequence[str]) -> set[str]:
    taken: set[str] = set()
    for start in range(0, len(candidates), _LOOKUP_CHUNK):
        chunk = candidates[start : start + _LOOKUP_CHUNK]
        taken.update(session.exec(select(Identity.alias).where(col(Identity.alias).in_(chunk))))
    return taken


def _aliases(session: Session, sources: Sequence[Source], style: str, domain: str) -> list[str]:
    """One unused alias per entry of ``sources`` (in the style, on the domain)."""
    rng = secrets.SystemRandom()
    chosen: list[str | None] = [None] * len(sources)
    seen: set[str] = set()
    missing = list(range(len(sources)))
    while missing:
        batch: dict[str, int] = {}
        for i in missing:
            while True:
                local = new_local_part(style, sources[i], rng)
                address = f"{local}@{domain}"
                if address not in seen and not aliases.is_role_name(local):
                    seen.add(address)
                    batch[address] = i
                    break
        taken = _taken(session, list(batch))
        for address, i in batch.items():
            if address not in taken:
                chosen[i] = address
        missing = [i for i in missing if chosen[i] is None]
    return [a for a in chosen if a is not None]


def issue_personas(
    session: Session,
    owner: User,
    batch: PersonaBatch,
    progress: Callable[[int], None] | None = None,
) -> list[Identity]:
    """Issue one synthetic persona per slot; returns the identities in slot order.

    Names keep the minimum edit distance from each other and from every name the owner
    already has. ``progress`` is called with the number issued so far.
    """
    if batch.style not in ALIAS_STYLES:
        raise InvalidInput(f"unknown alias style {batch.style!r}")
    if not batch.domain:
        raise InvalidInput("no canary domain configured: set CANARY_DOMAINS or pass --domain")
    for slot in batch.slots:
        if slot.source.owner_id != owner.id:
            raise InvalidInput(f"source {slot.source.name!r} belongs to another user")
    index = batch.index if batch.index is not None else owner_name_index(session, owner)
    personas = PersonaNames(batch.locale, batch.seed)
    created: list[Identity] = []
    for start in range(0, len(batch.slots), CHUNK):
        slots = batch.slots[start : start + CHUNK]
        names = [personas.next_name(index) for _ in slots]
        addresses = _aliases(session, [s.source for s in slots], batch.style, batch.domain)
        now = utcnow()
        rows = [
            {
                "owner_id": owner.id,
                "source_id": slot.source.id,
                "alias": address,
                "style": batch.style,
                "display_name": name,
                "name_key": name_key(name),
                "real_name": None,
                "postal_line": slot.postal_line,
                "reference": slot.reference,
                "created_at": now,
            }
            for slot, address, name in zip(slots, addresses, names, strict=True)
        ]
        inserted = list(session.scalars(insert(Identity).returning(Identity), rows))
        # RETURNING order is not guaranteed on every backend: put rows back in slot order.
        by_alias = {identity.alias: identity for identity in inserted}
        ordered = [by_alias[a] for a in addresses]
        append_records(
            session, [(i, slot.source, "issued") for i, slot in zip(ordered, slots, strict=True)]
        )
        created.extend(ordered)
        if progress is not None:
            progress(len(created))
    return created
