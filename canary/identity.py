"""Identity generation: a unique alias address and a tagged display name per identity.

Alias styles:

``token`` (default)
    11 random Crockford base32 characters (55 bits) and a check character, e.g.
    ``k3m9qz2v7tw4@canary.example``: unguessable, and a mistyped or guessed address is
    recognisable as never issued.
``words``
    ``amber.otter.417``: easy to read out on the phone, easier to guess.
``slug``
    the source's slug and a short token, ``shopx.7kq2mz``: the user sees at a glance
    which source an address belongs to (so does anyone else who sees it).

Every alias is unique in the whole database, lower case, and never a role name.
Issuance is recorded in the hash-chained log (:mod:`canary.issuance`).
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import insert
from sqlmodel import Session, col, select

from canary import alias as aliases
from canary.errors import InvalidInput, NotFound
from canary.issuance import append_records
from canary.models import Identity, Source, User, utcnow
from canary.names import NameIndex, PersonaNames, name_key, next_real_name_variant
from canary.ownership import as_id
from canary.wordlists import ADJECTIVES, NOUNS

ALIAS_STYLES = ("token", "words", "slug")
MAX_BULK = 1_000_000
_LOOKUP_CHUNK = 500
_INSERT_CHUNK = 5000


@dataclass(frozen=True)
class IdentityRequest:
    """What the caller wants: how many identities, in which style, on which domain."""

    count: int = 1
    style: str = "token"
    domain: str = ""
    real_name: str | None = None
    locale: str = "en_US"
    seed: int | None = None


def new_local_part(style: str, source: Source, rng: random.Random) -> str:
    """One candidate local part in ``style`` (not yet checked for uniqueness)."""
    if style == "token":
        return aliases.new_token()
    if style == "words":
        return f"{rng.choice(ADJECTIVES)}.{rng.choice(NOUNS)}.{rng.randrange(100, 1000)}"
    if style == "slug":
        slug = source.slug[:40].strip("-") or "source"
        return f"{slug}.{aliases.new_token(aliases.SHORT_TOKEN_CHARS)}"
    raise InvalidInput(f"unknown alias style {style!r}: use one of {', '.join(ALIAS_STYLES)}")


def _taken_aliases(session: Session, candidates: Sequence[str]) -> set[str]:
    taken: set[str] = set()
    for start in range(0, len(candidates), _LOOKUP_CHUNK):
        chunk = candidates[start : start + _LOOKUP_CHUNK]
        taken.update(session.exec(select(Identity.alias).where(col(Identity.alias).in_(chunk))))
    return taken


def unique_aliases(
    session: Session, source: Source, style: str, domain: str, count: int
) -> list[str]:
    """``count`` aliases in ``style`` on ``domain`` that no identity has yet."""
    rng = secrets.SystemRandom()
    chosen: list[str] = []
    seen: set[str] = set()
    while len(chosen) < count:
        batch: list[str] = []
        while len(batch) < count - len(chosen):
            local = new_local_part(style, source, rng)
            address = f"{local}@{domain}"
            if address not in seen and not aliases.is_role_name(local):
                seen.add(address)
                batch.append(address)
        taken = _taken_aliases(session, batch)
        chosen.extend(a for a in batch if a not in taken)
    return chosen


def owner_name_index(session: Session, owner: User) -> NameIndex:
    """Every tagged name the owner already has, for the distance check."""
    # Catch-all identities have no tagged name (an empty key), so nothing to keep apart.
    keys = session.exec(
        select(Identity.name_key).where(Identity.owner_id == owner.id, Identity.name_key != "")
    )
    return NameIndex(keys)


def create_identities(
    session: Session,
    owner: User,
    source: Source,
    request: IdentityRequest,
    progress: Callable[[int], None] | None = None,
) -> list[Identity]:
    """Issue ``request.count`` identities to ``source``, with their issuance records.

    ``progress`` is called with the number of identities finished so far.
    """
    if source.owner_id != owner.id:
        raise NotFound("no such source")
    if request.style not in ALIAS_STYLES:
        raise InvalidInput(f"unknown alias style {request.style!r}")
    if not 1 <= request.count <= MAX_BULK:
        raise InvalidInput(f"count must be between 1 and {MAX_BULK:,}")
    if not request.domain:
        raise InvalidInput("no canary domain configured: set CANARY_DOMAINS or pass --domain")

    index = owner_name_index(session, owner)
    rng = random.Random(request.seed)
    personas = None if request.real_name else PersonaNames(request.locale, request.seed)
    created: list[Identity] = []
    remaining = request.count
    while remaining:
        n = min(remaining, _INSERT_CHUNK)
        names: list[str] = []
        for _ in range(n):
            if request.real_name:
                names.append(next_real_name_variant(request.real_name, index, rng))
            else:
                assert personas is not None
                names.append(personas.next_name(index))
        addresses = unique_aliases(session, source, request.style, request.domain, n)
        now = utcnow()
        rows = [
            {
                "owner_id": owner.id,
                "source_id": source.id,
                "alias": address,
                "style": request.style,
                "display_name": name,
                "name_key": name_key(name),
                "real_name": request.real_name,
                "created_at": now,
            }
            for address, name in zip(addresses, names, strict=True)
        ]
        batch = list(session.scalars(insert(Identity).returning(Identity), rows))
        append_records(session, [(identity, source, "issued") for identity in batch])
        created.extend(batch)
        remaining -= n
        if progress is not None:
            progress(len(created))
    return created


def find_identity(session: Session, owner: User, address_or_id: str) -> Identity:
    """One of the owner's identities by alias (any case, +tag ignored) or id."""
    identity: Identity | None = None
    if (row_id := as_id(address_or_id)) is not None:
        identity = session.get(Identity, row_id)
    else:
        key = aliases.normalise_address(address_or_id)
        identity = session.exec(select(Identity).where(Identity.alias == key)).first()
    if identity is None or identity.owner_id != owner.id:
        raise NotFound(f"no identity {address_or_id!r}")
    return identity


def retire_identity(session: Session, owner: User, address_or_id: str) -> Identity:
    """Retire an identity: later mail to it is evidence (``after_retirement``)."""
    identity = find_identity(session, owner, address_or_id)
    if identity.retired_at is None:
        identity.retired_at = utcnow()
        session.add(identity)
        source = session.get(Source, identity.source_id)
        assert source is not None
        append_records(session, [(identity, source, "retired")])
    return identity


def list_identities(
    session: Session, owner: User, source: Source | None = None, limit: int | None = None
) -> list[Identity]:
    """The owner's identities, newest first, optionally for one source."""
    query = select(Identity).where(Identity.owner_id == owner.id)
    if source is not None:
        query = query.where(Identity.source_id == source.id)
    query = query.order_by(col(Identity.id).desc())
    if limit is not None:
        query = query.limit(limit)
    return list(session.exec(query))
