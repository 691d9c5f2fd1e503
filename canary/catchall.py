"""Catch-all subdomains: aliases a user invents at a signup form, issued on first use.

A user claims one subdomain of a canary domain (``alice.canary.example``). Any local
part there is then accepted by the SMTP server, and the first message to it creates the
identity, with a source named after the local part: ``shopx@alice.canary.example``
becomes an identity of the source "shopx". Later local parts that slug to the same
name join that source.

The first authenticated sender to a catch-all source with no authorised sender yet is
authorised for it (reason ``first_use``): the alias was typed into the site's own form
a moment before, so the site's confirmation mail is what arrives first. Everything
after is judged against that. A user who finds the first sender was wrong removes it
and re-evaluates, as for any other source.

A catch-all domain is also a target for dictionary spam (``info@``, ``admin@``): role
names never become identities, and each user gets at most ``daily_limit`` new ones a
day; past that, mail is still kept, as unattributed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from canary.alias import is_role_name, split_address
from canary.errors import Conflict, InvalidInput, NotFound
from canary.issuance import append_records
from canary.models import (
    AuthorisedSender,
    CatchAllDomain,
    Delivery,
    Identity,
    Source,
    User,
    utcnow,
)
from canary.sources import slugify

log = logging.getLogger(__name__)

CATCHALL_STYLE = "catchall"
FIRST_USE = "first_use"

_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
# A local part that can name a source: what people type at signup forms.
_LOCAL = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,62})$")
# Names the service itself may need under a canary domain (mail hosts, autoconfiguration).
RESERVED_LABELS = frozenset(
    {"www", "mail", "mx", "smtp", "imap", "pop", "pop3", "autoconfig", "autodiscover", "ns"}
)


@dataclass(frozen=True)
class FirstUse:
    """An identity issued because mail arrived for it, and whether its source is new."""

    identity: Identity
    source: Source
    new_source: bool


def normalise_subdomain(text: str, canary_domains: Iterable[str]) -> str:
    """``text`` as a claimable subdomain: one new label directly under a canary domain.

    Raises InvalidInput naming what is wrong.
    """
    domain = text.strip().rstrip(".").lower()
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise InvalidInput(f"{text!r} is not a valid domain name") from exc
    label, _, parent = domain.partition(".")
    parents = {d.lower().rstrip(".") for d in canary_domains}
    if parent not in parents:
        known = ", ".join(sorted(parents)) or "none configured"
        raise InvalidInput(
            f"{text!r} must be a single label under a canary domain (canary domains: {known})"
        )
    if not _LABEL.match(label) or label.startswith("xn--"):
        raise InvalidInput(f"{label!r} is not a valid subdomain label (letters, digits, hyphens)")
    if label in RESERVED_LABELS:
        raise InvalidInput(f"{label!r} is reserved; choose another subdomain")
    return domain


def claim_subdomain(
    session: Session, owner: User, text: str, canary_domains: Iterable[str]
) -> CatchAllDomain:
    """Give ``owner`` the catch-all subdomain ``text``; Conflict if someone holds it."""
    domain = normalise_subdomain(text, canary_domains)
    existing = session.exec(select(CatchAllDomain).where(CatchAllDomain.domain == domain)).first()
    if existing is not None:
        if existing.owner_id == owner.id:
            return existing
        raise Conflict(f"{domain} is already claimed")
    # Issued aliases on that domain would suddenly belong to a catch-all of someone
    # else; a domain that already has identities is not free.
    if session.exec(select(Identity.id).where(col(Identity.alias).endswith("@" + domain))).first():
        raise Conflict(f"{domain} already has identities and cannot be claimed")
    assert owner.id is not None
    claim = CatchAllDomain(owner_id=owner.id, domain=domain)
    session.add(claim)
    session.flush()
    return claim


def release_subdomain(session: Session, owner: User, text: str) -> CatchAllDomain:
    """Stop accepting new local parts on one of ``owner``'s subdomains.

    Identities already issued there stay, and mail to them is still attributed.
    """
    domain = text.strip().rstrip(".").lower()
    claim = session.exec(
        select(CatchAllDomain).where(
            CatchAllDomain.domain == domain, CatchAllDomain.owner_id == owner.id
        )
    ).first()
    if claim is None:
        raise NotFound(f"you have no catch-all subdomain {domain}")
    session.delete(claim)
    session.flush()
    return claim


def list_subdomains(session: Session, owner: User) -> list[CatchAllDomain]:
    """``owner``'s catch-all subdomains, by name."""
    return list(
        session.exec(
            select(CatchAllDomain)
            .where(CatchAllDomain.owner_id == owner.id)
            .order_by(CatchAllDomain.domain)
        )
    )


def claimed_domains(session: Session) -> set[str]:
    """Every claimed subdomain (what the SMTP server accepts besides the canary domains)."""
    return set(session.exec(select(CatchAllDomain.domain)))


def issued_today(session: Session, owner_id: int, now: datetime) -> int:
    """How many catch-all identities ``owner_id`` got in the 24 hours before ``now``."""
    return session.exec(
        select(func.count())
        .select_from(Identity)
        .where(
            Identity.owner_id == owner_id,
            Identity.style == CATCHALL_STYLE,
            Identity.created_at >= now - timedelta(days=1),
        )
    ).one()


def issue_on_first_use(
    session: Session, recipient: str, daily_limit: int, now: datetime | None = None
) -> FirstUse | None:
    """The identity for ``recipient`` on a claimed subdomain, created now; None if the
    address is not on one, cannot name a source, or the owner's daily limit is reached.
    """
    parts = split_address(recipient)
    if parts is None:
        return None
    claim = session.exec(
        select(CatchAllDomain).where(CatchAllDomain.domain == parts.domain)
    ).first()
    if claim is None:
        return None
    if not _LOCAL.match(parts.local) or is_role_name(parts.local):
        return None
    now = now or utcnow()
    if issued_today(session, claim.owner_id, now) >= daily_limit:
        log.warning("catch-all limit of %d a day reached on %s", daily_limit, parts.domain)
        return None
    try:
        # A savepoint: another worker may issue the same address at the same moment, and
        # losing that race must not roll back the caller's transaction.
        with session.begin_nested():
            result = _issue(session, claim, parts.local, parts.key, now)
    except IntegrityError:
        identity = session.exec(select(Identity).where(Identity.alias == parts.key)).first()
        if identity is None:
            raise
        source = session.get(Source, identity.source_id)
        assert source is not None
        return FirstUse(identity, source, new_source=False)
    return result


def _issue(
    session: Session,
    claim: CatchAllDomain,
    local: str,
    address: str,
    now: datetime,
) -> FirstUse:
    slug = slugify(local)
    source = session.exec(
        select(Source).where(Source.owner_id == claim.owner_id, Source.slug == slug)
    ).first()
    new_source = source is None
    if source is None:
        source = Source(
            owner_id=claim.owner_id,
            name=local,
            slug=slug,
            notes=f"Created by the first mail to {address}.",
            created_at=now,
        )
        session.add(source)
        session.flush()
    identity = Identity(
        owner_id=claim.owner_id,
        source_id=source.id,  # type: ignore[arg-type]
        alias=address,
        style=CATCHALL_STYLE,
        # The user typed their own details into the form; there is no tagged name.
        display_name="",
        name_key="",
        created_at=now,
    )
    session.add(identity)
    session.flush()
    append_records(session, [(identity, source, "issued")])
    return FirstUse(identity, source, new_source)


def trust_first_sender(
    session: Session,
    identity: Identity,
    source: Source,
    delivery_id: int | None,
    sender_org: str | None,
) -> bool:
    """Authorise ``sender_org`` for a catch-all source when this delivery is its first.

    Only for a source that has no authorised sender yet (one the user set up beforehand
    keeps its own) and only for an authenticated sender: an unauthenticated first
    message authorises nobody. Deciding this at analysis rather than at issuance means a
    message analysed again after a DNS failure still counts as the first.
    """
    if identity.style != CATCHALL_STYLE or not sender_org or source.id is None:
        return False
    if session.exec(
        select(AuthorisedSender.id).where(AuthorisedSender.source_id == source.id)
    ).first():
        return False
    earlier = session.exec(
        select(Delivery.id).where(Delivery.source_id == source.id, Delivery.id != delivery_id)
    ).first()
    if earlier is not None:
        return False
    session.add(AuthorisedSender(source_id=source.id, domain=sender_org, reason=FIRST_USE))
    session.flush()
    log.info("catch-all source %r: %s authorised as its first sender", source.name, sender_org)
    return True
