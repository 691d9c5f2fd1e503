"""Sources and their authorised senders."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from sqlmodel import Session, col, func, select

from canary.config import parse_domain
from canary.errors import Conflict, InvalidInput, NotFound
from canary.models import AuthorisedSender, Identity, Source, User
from canary.ownership import as_id

SENDER_REASONS = ("own", "provider", "acquirer", "user")


def slugify(name: str) -> str:
    """A lower-case ASCII slug of ``name`` (letters, digits and hyphens)."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return slug[:64].strip("-")


def sender_domain(raw: str) -> str:
    """Validate a domain given for an authorised sender; raises InvalidInput."""
    try:
        return parse_domain(raw)
    except ValueError as exc:
        raise InvalidInput(f"bad domain: {exc}") from None


def add_source(
    session: Session,
    owner: User,
    name: str,
    domains: Iterable[str] = (),
    url: str | None = None,
    notes: str = "",
) -> Source:
    """Create a source with its own domains authorised; raises Conflict on a duplicate name."""
    name = name.strip()
    slug = slugify(name)
    if not slug:
        raise InvalidInput(f"invalid source name {name!r}: it needs a letter or digit")
    checked = [sender_domain(d) for d in domains]
    existing = session.exec(
        select(Source).where(Source.owner_id == owner.id, Source.slug == slug)
    ).first()
    if existing is not None:
        raise Conflict(f"a source named {existing.name!r} already exists")
    assert owner.id is not None
    source = Source(owner_id=owner.id, name=name, slug=slug, url=url, notes=notes)
    session.add(source)
    session.flush()
    for domain in dict.fromkeys(checked):
        session.add(AuthorisedSender(source_id=source.id, domain=domain, reason="own"))
    session.flush()
    return source


def get_source(session: Session, owner: User, name_or_id: str | int) -> Source:
    """A source of ``owner`` by id, name or slug; raises NotFound (also for others' sources)."""
    source: Source | None = None
    if (row_id := as_id(name_or_id)) is not None:
        source = session.get(Source, row_id)
        if source is not None and source.owner_id != owner.id:
            source = None
    if source is None:
        text = str(name_or_id)
        source = session.exec(
            select(Source).where(Source.owner_id == owner.id, Source.slug == slugify(text))
        ).first()
    if source is None:
        raise NotFound(f"no source named {name_or_id!r}")
    return source


def list_sources(session: Session, owner: User, limit: int | None = None) -> list[Source]:
    """The owner's sources by name (the first ``limit`` of them when given)."""
    statement = select(Source).where(Source.owner_id == owner.id).order_by(Source.slug)
    return list(session.exec(statement.limit(limit) if limit is not None else statement))


def authorised_domains(session: Session, source: Source) -> list[str]:
    """The registrable domains allowed to mail this source's identities."""
    return list(
        session.exec(
            select(AuthorisedSender.domain)
            .where(AuthorisedSender.source_id == source.id)
            .order_by(AuthorisedSender.domain)
        )
    )


def authorise_sender(
    session: Session, source: Source, domain: str, reason: str = "user"
) -> AuthorisedSender:
    """Allow ``domain`` to mail ``source``'s identities (idempotent)."""
    if reason not in SENDER_REASONS:
        raise InvalidInput(f"reason must be one of {', '.join(SENDER_REASONS)}")
    domain = sender_domain(domain)
    existing = session.exec(
        select(AuthorisedSender).where(
            AuthorisedSender.source_id == source.id, AuthorisedSender.domain == domain
        )
    ).first()
    if existing is not None:
        return existing
    record = AuthorisedSender(source_id=source.id, domain=domain, reason=reason)
    session.add(record)
    session.flush()
    return record


def identity_counts(
    session: Session,
    owner: User,
    source: Source | None = None,
    source_ids: list[int] | None = None,
) -> dict[int, int]:
    """Number of identities per source id for one owner (for one ``source`` only, or
    the sources ``source_ids``, when given: a page needs the counts it shows, not every
    source's)."""
    statement = select(Identity.source_id, func.count(col(Identity.id))).where(
        Identity.owner_id == owner.id
    )
    if source is not None:
        statement = statement.where(Identity.source_id == source.id)
    if source_ids is not None:
        statement = statement.where(col(Identity.source_id).in_(source_ids))
    rows = session.exec(statement.group_by(Identity.source_id))
    return {source_id: count for source_id, count in rows}
