"""Trace: which source got this address, name or code?

Addresses match exactly, ignoring case and ``+tags``. Names match fuzzily and ranked,
so a name read off a paper letter with a typo or a dropped initial still finds its
identity ("Marc Q Kolier" finds "Marc Q. Kollier"). Reference codes and postal lines
match case-insensitively as substrings.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import parseaddr

from rapidfuzz import fuzz, process
from sqlmodel import Session, col, func, select

from canary import alias as aliases
from canary.models import Identity, Source, User
from canary.names import name_key

NAME_SCORE_CUTOFF = 75.0
MAX_RESULTS = 10


@dataclass(frozen=True)
class TraceMatch:
    """One identity that matches the traced text, and how well."""

    identity: Identity
    source: Source
    matched_on: str  # alias, name, reference or postal_line
    score: float  # 100 for exact matches

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready summary."""
        return {
            "matched_on": self.matched_on,
            "score": round(self.score, 1),
            "source": {"id": self.source.id, "name": self.source.name},
            "identity": {
                "id": self.identity.id,
                "alias": self.identity.alias,
                "display_name": self.identity.display_name,
                "created_at": self.identity.created_at,
                "given_at": self.identity.given_at,
                "retired_at": self.identity.retired_at,
            },
        }


@dataclass(frozen=True)
class TraceResult:
    """Everything a trace found, best first, plus a note when an address was never issued."""

    query: str
    matches: list[TraceMatch]
    note: str | None = None


def _with_sources(session: Session, found: list[tuple[Identity, str, float]]) -> list[TraceMatch]:
    source_ids = {identity.source_id for identity, _, _ in found}
    sources = {s.id: s for s in session.exec(select(Source).where(col(Source.id).in_(source_ids)))}
    return [
        TraceMatch(identity, sources[identity.source_id], how, score)
        for identity, how, score in found
    ]


def _by_address(session: Session, owner: User, address: str) -> list[tuple[Identity, str, float]]:
    key = aliases.normalise_address(address)
    identity = session.exec(
        select(Identity).where(Identity.alias == key, Identity.owner_id == owner.id)
    ).first()
    return [(identity, "alias", 100.0)] if identity else []


def _by_name(session: Session, owner: User, text: str) -> list[tuple[Identity, str, float]]:
    query = name_key(text)
    if not query:
        return []
    rows = session.exec(
        select(Identity.id, Identity.name_key).where(Identity.owner_id == owner.id)
    ).all()
    choices = {identity_id: key for identity_id, key in rows}
    ranked = process.extract(
        query, choices, scorer=fuzz.ratio, score_cutoff=NAME_SCORE_CUTOFF, limit=MAX_RESULTS
    )
    identities = {
        i.id: i
        for i in session.exec(
            select(Identity).where(col(Identity.id).in_([key for _, _, key in ranked]))
        )
    }
    return [(identities[identity_id], "name", score) for _, score, identity_id in ranked]


def _by_code(session: Session, owner: User, text: str) -> list[tuple[Identity, str, float]]:
    needle = text.strip().lower()
    if len(needle) < 4:
        return []
    found: list[tuple[Identity, str, float]] = []
    for column, how in ((Identity.reference, "reference"), (Identity.postal_line, "postal_line")):
        rows = session.exec(
            select(Identity)
            .where(Identity.owner_id == owner.id, func.lower(column).contains(needle))
            .limit(MAX_RESULTS)
        )
        found.extend((identity, how, 100.0) for identity in rows)
    return found


def trace(session: Session, owner: User, text: str) -> TraceResult:
    """Find the owner's identities matching ``text`` (address, name, or code)."""
    text = text.strip()
    display, address = parseaddr(text)
    found: list[tuple[Identity, str, float]] = []
    note = None
    if "@" in address:
        found.extend(_by_address(session, owner, address))
        if not found:
            local = aliases.split_address(address)
            if local and aliases.token_is_valid(local.local):
                note = "the address has a valid check character but was never issued"
            else:
                note = "no identity has this address"
        if display:
            found.extend(_by_name(session, owner, display))
    else:
        found.extend(_by_code(session, owner, text))
        found.extend(_by_name(session, owner, text))
    seen: set[int | None] = set()
    unique = []
    for identity, how, score in sorted(found, key=lambda item: -item[2]):
        if identity.id not in seen:
            seen.add(identity.id)
            unique.append((identity, how, score))
    return TraceResult(query=text, matches=_with_sources(session, unique[:MAX_RESULTS]), note=note)
