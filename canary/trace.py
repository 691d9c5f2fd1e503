"""Trace: which source got this address, name or code?

Addresses match exactly, ignoring case and ``+tags``. Names match fuzzily and ranked,
so a name read off a paper letter with a typo or a dropped initial still finds its
identity ("Marc Q Kolier" finds "Marc Q. Kollier"). Reference codes and postal lines
match case-insensitively as substrings.
"""

from __future__ import annotations

import bisect
import threading
import weakref
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any

from rapidfuzz import fuzz, process
from sqlmodel import Session, col, select

from canary import alias as aliases
from canary.models import Identity, IdentityChange, Source, User
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


@dataclass(frozen=True)
class _Fields:
    """One owner's identity ids with the fields trace matches on, in id order."""

    changes: int
    ids: list[int]
    name_keys: list[str]
    # Each column's lower-cased values joined by newlines, with every value's start, so
    # a substring search is one C-level scan and not one SQL LIKE over every identity.
    codes: dict[str, tuple[str, list[int]]]


# Per engine (a process may talk to several databases), per owner. An engine that goes
# away takes its entries with it.
_fields_cache: weakref.WeakKeyDictionary[Any, dict[int, _Fields]] = weakref.WeakKeyDictionary()
_fields_lock = threading.Lock()
_reading: dict[tuple[int, int], threading.Lock] = {}


def _joined(values: list[str]) -> tuple[str, list[int]]:
    starts = []
    at = 0
    for value in values:
        starts.append(at)
        at += len(value) + 1
    return "\n".join(values), starts


def _fields(session: Session, owner: User) -> _Fields:
    """The owner's fields, read from the database only when ``identity_change`` moved
    since they were last read: reading 100,000 identities took most of a trace."""
    assert owner.id is not None
    # Read before the identities: an identity added in between is then read too and
    # the next request, seeing a newer number, reads again; never the reverse.
    changes = (
        session.exec(
            select(IdentityChange.changes).where(IdentityChange.owner_id == owner.id)
        ).first()
        or 0
    )
    engine = session.get_bind()
    with _fields_lock:
        cached = _fields_cache.setdefault(engine, {}).get(owner.id)
        reading = _reading.setdefault((id(engine), owner.id), threading.Lock())
    if cached is not None and cached.changes == changes:
        return cached
    # One reader per owner: twenty requests arriving together on a cold cache would
    # otherwise each read every identity at once.
    with reading:
        with _fields_lock:
            cached = _fields_cache.setdefault(engine, {}).get(owner.id)
        if cached is not None and cached.changes >= changes:
            return cached
        rows = session.exec(
            select(Identity.id, Identity.name_key, Identity.reference, Identity.postal_line)
            .where(Identity.owner_id == owner.id)
            .order_by(col(Identity.id))
        ).all()
        fields = _Fields(
            changes=changes,
            ids=[row[0] for row in rows],
            name_keys=[row[1] for row in rows],
            codes={
                "reference": _joined([(row[2] or "").lower() for row in rows]),
                "postal_line": _joined([(row[3] or "").lower() for row in rows]),
            },
        )
        with _fields_lock:
            _fields_cache.setdefault(engine, {})[owner.id] = fields
    return fields


def _identities(session: Session, ids: list[int]) -> dict[int, Identity]:
    if not ids:
        return {}
    return {i.id: i for i in session.exec(select(Identity).where(col(Identity.id).in_(ids)))}  # type: ignore[misc]


def _by_name(session: Session, owner: User, text: str) -> list[tuple[Identity, str, float]]:
    query = name_key(text)
    if not query:
        return []
    fields = _fields(session, owner)
    ranked = process.extract(
        query,
        fields.name_keys,
        scorer=fuzz.ratio,
        score_cutoff=NAME_SCORE_CUTOFF,
        limit=MAX_RESULTS,
    )
    identities = _identities(session, [fields.ids[index] for _, _, index in ranked])
    # An identity another process committed after this transaction began may be in
    # memory already; this request does not see it yet, as with a query.
    return [
        (identities[fields.ids[index]], "name", score)
        for _, score, index in ranked
        if fields.ids[index] in identities
    ]


def _by_code(session: Session, owner: User, text: str) -> list[tuple[Identity, str, float]]:
    needle = text.strip().lower()
    if len(needle) < 4 or "\n" in needle:
        # A code never holds a line break; the joined columns use it as the separator.
        return []
    fields = _fields(session, owner)
    hits: list[tuple[int, str]] = []
    for how in ("reference", "postal_line"):
        haystack, starts = fields.codes[how]
        found = 0
        at = haystack.find(needle)
        while at != -1 and found < MAX_RESULTS:
            index = bisect.bisect_right(starts, at) - 1
            hits.append((fields.ids[index], how))
            found += 1
            # On to the next value: one identity counts once per column.
            following = starts[index + 1] if index + 1 < len(starts) else len(haystack)
            at = haystack.find(needle, following)
    identities = _identities(session, [identity_id for identity_id, _ in hits])
    return [
        (identities[identity_id], how, 100.0)
        for identity_id, how in hits
        if identity_id in identities
    ]


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
