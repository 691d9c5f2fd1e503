"""Attribution: which identity and source a delivery belongs to, and what else it carries.

A recipient address maps to an identity case-insensitively and ignoring ``+tags``
(:func:`canary.alias.normalise_address`). Independently of the envelope, the message
may carry *tagged names* or aliases of other identities: in the To display name, in the
greeting, in the body. A message to source A's alias that greets source B's tagged name
is evidence that A's and B's lists were merged.

Tagged names are found without loading every identity: the text is cut into runs of
2 to 5 words (every run for the short To names and greeting, runs of capitalised words
for the body, where names are written as names) and only those candidate keys are
looked up in the ``(owner_id, name_key)`` index.
"""

from __future__ import annotations

import html as html_lib
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from canary.mailbox.intake import ROLE_MAILBOXES
from canary.mailbox.parse import ParsedMessage
from sqlmodel import Session, col, select

from canary.alias import canonical_token, split_address
from canary.models import AuthorisedSender, Identity, Source
from canary.name_index import TaggedKeyIndex
from canary.orgs import organisation_of

NAME_WORDS = range(2, 6)  # tagged names have 2 to 5 words
GREETING_LINES = 3  # non-empty lines at the top of the body read as the greeting
MAX_CANDIDATES = 5000  # candidate name keys looked up per message
_CHUNK = 500  # keys per IN (...) query
_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)
_TAG = re.compile(r"<[^>]*>")
_WORD = re.compile(r"[^\W\d_][\w'.-]*", re.UNICODE)


def fold_name(text: str) -> str:
    """A name folded like ``Identity.name_key``: no accents, case or punctuation.

    Must match :func:`canary.names.name_key` ("Marc Q. Kollier" -> "marc q kollier").
    """
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _NON_WORD.sub(" ", stripped.casefold()).strip()


@dataclass(frozen=True)
class RecipientMatch:
    """What one envelope recipient is: a canary identity, a role mailbox, or unknown."""

    kind: str  # canary | role | unattributed
    identity: Identity | None = None
    source: Source | None = None


@dataclass(frozen=True)
class TaggedHit:
    """An identity's tagged name or alias found inside a message."""

    identity_id: int
    source_id: int
    owner_id: int
    where: str  # to_name | greeting | body | to_address | body_address
    text: str  # the name or address as found (folded)


def recipient_keys(recipient: str) -> str | list[str]:
    """The alias keys an envelope recipient may be issued as, most likely first; or its
    kind (``role`` or ``unattributed``) when it cannot be an identity at all."""
    parts = split_address(recipient)
    if parts is None:
        # A bare <Postmaster> is the only recipient accepted without a domain.
        bare = recipient.strip().strip("<>").lower()
        return "role" if bare in ROLE_MAILBOXES else "unattributed"
    if parts.local in ROLE_MAILBOXES:
        return "role"
    keys = [parts.key]
    # A token alias copied by a person may read i/l as 1 and o as 0 (Crockford).
    canonical = canonical_token(parts.local)
    if canonical and canonical != parts.local:
        keys.append(f"{canonical}@{parts.domain}")
    return keys


def match_recipient(
    session: Session,
    recipient: str,
    known: Mapping[str, Identity] | None = None,
    sources: Mapping[int, Source] | None = None,
) -> RecipientMatch:
    """Map an envelope recipient to its identity and source (case- and +tag-insensitive).

    ``known`` is every identity the caller already loaded for these recipients, by
    alias, and ``sources`` their sources (:func:`identities_by_alias`); an alias missing
    from ``known`` is not looked up again.
    """
    keys = recipient_keys(recipient)
    if isinstance(keys, str):
        return RecipientMatch(kind=keys)
    identity = None
    for key in keys:
        if known is not None:
            identity = known.get(key)
        else:
            identity = session.exec(select(Identity).where(Identity.alias == key)).first()
        if identity is not None:
            break
    if identity is None:
        return RecipientMatch(kind="unattributed")
    source = sources.get(identity.source_id) if sources is not None else None
    if source is None:
        source = session.get(Source, identity.source_id)
    return RecipientMatch(kind="canary", identity=identity, source=source)


def identities_by_alias(
    session: Session, recipients: Iterable[str]
) -> tuple[dict[str, Identity], dict[int, Source]]:
    """The identities some of ``recipients`` are issued as, by alias, and their sources
    by id: two statements per 500 keys rather than two per recipient."""
    keys = sorted(
        {k for r in recipients if not isinstance(ks := recipient_keys(r), str) for k in ks}
    )
    found: dict[str, Identity] = {}
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start : start + _CHUNK]
        for identity in session.exec(select(Identity).where(col(Identity.alias).in_(chunk))):
            found[identity.alias] = identity
    source_ids = sorted({i.source_id for i in found.values()})
    sources: dict[int, Source] = {}
    for start in range(0, len(source_ids), _CHUNK):
        chunk = source_ids[start : start + _CHUNK]
        for source in session.exec(select(Source).where(col(Source.id).in_(chunk))):
            assert source.id is not None
            sources[source.id] = source
    return found, sources


def authorised_domains(session: Session, source_id: int) -> set[str]:
    """The registrable domains allowed to mail a source's identities."""
    rows = session.exec(
        select(AuthorisedSender.domain).where(AuthorisedSender.source_id == source_id)
    )
    return {d.lower() for d in rows}


def from_organisation(parsed: ParsedMessage) -> str | None:
    """The registrable domain of the (unauthenticated) From address."""
    return organisation_of(parsed.from_address)


# ---------------------------------------------------------------------- tagged names


def html_to_text(markup: str) -> str:
    """Visible-ish text of an HTML body for searching (tags dropped, entities decoded)."""
    without_blocks = re.sub(
        r"<(script|style)\b.*?</\1\s*>", " ", markup, flags=re.IGNORECASE | re.DOTALL
    )
    return html_lib.unescape(_TAG.sub(" ", without_blocks))


def _runs(words: Sequence[str]) -> Iterable[str]:
    for n in NAME_WORDS:
        for i in range(len(words) - n + 1):
            yield " ".join(words[i : i + n])


def _all_runs(text: str) -> set[str]:
    return set(_runs(fold_name(text).split()))


@lru_cache(maxsize=65536)
def _fold_word(token: str) -> tuple[str, ...]:
    """A body token as folded name words, or () when it is not a capitalised word."""
    word = token.strip(",;:!?()[]\"'<>")
    if not (word[:1].isupper() and _WORD.match(word)):
        return ()
    return tuple(fold_name(word).split())


def _capitalised_runs(text: str) -> set[str]:
    """Runs of consecutive capitalised words (or initials), folded."""
    out: set[str] = set()
    for line in text.splitlines():
        current: list[str] = []
        for token in [*line.split(), ""]:  # "" ends the last run of the line
            words = _fold_word(token) if token else ()
            if words:
                current.extend(words)
                continue
            if len(current) >= 2:
                out.update(_runs(current))
                if len(out) >= MAX_CANDIDATES:
                    return out
            current = []
    return out


def _greeting_and_body(parsed: ParsedMessage) -> tuple[str, str]:
    text = parsed.text or html_to_text(parsed.html)
    lines = [line for line in text.splitlines() if line.strip()]
    return "\n".join(lines[:GREETING_LINES]), "\n".join(lines[GREETING_LINES:])


def _candidates(parsed: ParsedMessage) -> dict[str, str]:
    """Candidate name keys -> where they were seen (first place wins)."""
    greeting, body = _greeting_and_body(parsed)
    found: dict[str, str] = {}
    for display, _ in parsed.to + parsed.cc:
        for key in _all_runs(display):
            found.setdefault(key, "to_name")
    for key in _all_runs(greeting):
        found.setdefault(key, "greeting")
    for key in _capitalised_runs(body):
        found.setdefault(key, "body")
    return dict(list(found.items())[:MAX_CANDIDATES])


def _address_candidates(parsed: ParsedMessage, domains: Iterable[str]) -> dict[str, str]:
    """Canary-domain addresses in To/Cc and in the body -> where they were seen."""
    domain_list = [re.escape(d) for d in domains]
    found: dict[str, str] = {}
    for _, address in parsed.to + parsed.cc:
        parts = split_address(address)
        if parts is not None and parts.domain in domains:
            found.setdefault(parts.key, "to_address")
    if domain_list:
        pattern = re.compile(
            r"[\w.+-]+@(?:" + "|".join(domain_list) + r")\b", re.IGNORECASE | re.UNICODE
        )
        text = parsed.text + "\n" + parsed.html
        for match in pattern.finditer(text):
            parts = split_address(match.group(0))
            if parts is not None:
                found.setdefault(parts.key, "body_address")
            if len(found) >= MAX_CANDIDATES:
                break
    return found


def find_tagged(
    session: Session,
    parsed: ParsedMessage,
    domains: Iterable[str],
    owner_id: int | None = None,
    index: TaggedKeyIndex | None = None,
    known: Mapping[str, Identity] | None = None,
) -> list[TaggedHit]:
    """Identities whose tagged name or alias appears in the message.

    With ``owner_id`` only that owner's identities count (names are unique per owner,
    not across owners); without it every owner's. With ``index``, only the candidates
    it holds are looked up (usually none, and then nothing is asked of the database).
    Aliases in ``known`` (the identities the caller loaded already, by alias; usually
    the envelope recipients, named again in To) are taken from it.
    """
    hits: dict[int, TaggedHit] = {}
    names = _candidates(parsed)
    addresses = _address_candidates(parsed, set(domains))
    for column, found in ((Identity.name_key, names), (Identity.alias, addresses)):
        keys = list(found)
        if column is Identity.alias and known:
            for key in [k for k in keys if k in known]:
                identity = known[key]
                if owner_id is None or identity.owner_id == owner_id:
                    assert identity.id is not None
                    hit = TaggedHit(
                        identity.id, identity.source_id, identity.owner_id, found[key], key
                    )
                    hits.setdefault(identity.id, hit)
            keys = [k for k in keys if k not in known]
        if index is not None:
            among = index.names_among if column is Identity.name_key else index.aliases_among
            keys = among(keys)
        for start in range(0, len(keys), _CHUNK):
            query = select(Identity.id, Identity.source_id, Identity.owner_id, column).where(
                col(column).in_(keys[start : start + _CHUNK])
            )
            if owner_id is not None:
                query = query.where(Identity.owner_id == owner_id)
            for identity_id, source_id, row_owner, key in session.exec(query):
                assert identity_id is not None
                hits.setdefault(
                    identity_id,
                    TaggedHit(identity_id, source_id, row_owner, found[key], key),
                )
    return sorted(hits.values(), key=lambda h: h.identity_id)


def days_between(start: datetime | None, end: datetime) -> int | None:
    """Whole days from ``start`` to ``end`` (both aware), or None without a start."""
    if start is None:
        return None
    if start.tzinfo is None:
        from datetime import UTC

        start = start.replace(tzinfo=UTC)
    if end.tzinfo is None:
        from datetime import UTC

        end = end.replace(tzinfo=UTC)
    return max(0, (end - start).days)
