"""The owner's real addresses for forwarding and email alerts, verified by a link.

An address is usable only after a mail with a one-time link reached it and the link was
opened (:func:`verify`): that proves the person who owns the mailbox wants canarytrace's
mail, so forwarding can never be aimed at a third party. Only the SHA-256 of the link's
token is stored. Resends are rate-limited and an account can have only a few unverified
addresses at a time, so verification mails cannot be used to flood someone either.
Rules (:func:`set_rule`) say which identity's or source's mail goes to which address.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from email.message import EmailMessage

from sqlmodel import Session, col, select

from canary import mailer
from canary.alias import normalise_address, split_address
from canary.config import Settings, parse_domain
from canary.errors import Conflict, InvalidInput, NotFound
from canary.identity import find_identity
from canary.models import ForwardAddress, ForwardRule, User, as_utc, utcnow
from canary.ownership import as_id, owned
from canary.sources import get_source

TOKEN_LIFETIME = timedelta(days=7)
RESEND_AFTER = timedelta(minutes=10)
MAX_UNVERIFIED = 5
VERIFY_PATH = "/forwarding/verify/"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def is_verified(address: ForwardAddress) -> bool:
    """True once the verification link was opened."""
    return address.verified_at is not None


def normalise(settings: Settings, address: str) -> str:
    """A forwarding address in canonical form; refuses malformed ones and canary domains."""
    text = address.strip()
    parts = split_address(text)
    if parts is None or any(c in text for c in ' <>,;\r\n"\\'):
        raise InvalidInput(f"{address!r} is not an email address")
    try:
        parse_domain(parts.domain)
    except ValueError:
        raise InvalidInput(f"{address!r} is not an email address") from None
    canonical = text.lower()
    if parts.domain.lower() in settings.domains:
        # Mail to a canary domain comes back to us: it would be forwarded again, forever.
        raise InvalidInput("cannot forward to an address on a canary domain")
    return canonical


def list_addresses(session: Session, owner: User) -> list[ForwardAddress]:
    """The owner's addresses, oldest first."""
    statement = select(ForwardAddress).where(ForwardAddress.owner_id == owner.id)
    return list(session.exec(statement.order_by(col(ForwardAddress.id))))


def get_address(session: Session, owner: User, address: str | int) -> ForwardAddress:
    """One of the owner's addresses by id or text; NotFound for anyone else's."""
    if (row_id := as_id(address)) is not None:
        record = session.get(ForwardAddress, row_id)
    else:
        record = session.exec(
            select(ForwardAddress).where(
                ForwardAddress.owner_id == owner.id,
                ForwardAddress.address == str(address).strip().lower(),
            )
        ).first()
    if record is None or record.owner_id != owner.id:
        raise NotFound(f"no forwarding address {address}")
    return record


def request_verification(
    session: Session,
    settings: Settings,
    owner: User,
    address: str,
    now: datetime | None = None,
) -> tuple[ForwardAddress, str]:
    """Add ``address`` (or reuse it) with a new verification token; returns the record and
    the token, which only goes into the mail (:func:`send_verification`), never on screen.

    Raises Conflict when it is already verified or a mail was sent less than
    ``RESEND_AFTER`` ago, InvalidInput when too many addresses wait for verification.
    """
    assert owner.id is not None
    now = now or utcnow()
    canonical = normalise(settings, address)
    record = session.exec(
        select(ForwardAddress).where(
            ForwardAddress.owner_id == owner.id, ForwardAddress.address == canonical
        )
    ).first()
    if record is not None and is_verified(record):
        raise Conflict(f"{canonical} is already verified")
    if record is not None and record.verification_sent_at is not None:
        wait = as_utc(record.verification_sent_at) + RESEND_AFTER - now
        if wait > timedelta(0):
            minutes = int(wait.total_seconds() // 60) + 1
            raise Conflict(
                f"a verification mail went to {canonical} just now; retry in {minutes} min"
            )
    if record is None:
        waiting = session.exec(
            select(ForwardAddress.id).where(
                ForwardAddress.owner_id == owner.id, col(ForwardAddress.verified_at).is_(None)
            )
        ).all()
        if len(waiting) >= MAX_UNVERIFIED:
            raise InvalidInput(
                f"{len(waiting)} addresses already wait for verification; verify or remove one"
            )
        record = ForwardAddress(owner_id=owner.id, address=canonical)
    token = secrets.token_urlsafe(32)
    record.token_hash = _hash(token)
    record.verification_sent_at = now
    session.add(record)
    session.flush()
    return record, token


def verification_link(settings: Settings, token: str) -> str:
    """The link in the verification mail."""
    return f"{settings.resolved_public_url}{VERIFY_PATH}{token}"


def verification_email(settings: Settings, owner: User, address: str, token: str) -> EmailMessage:
    """The verification mail (pure): who asked, what it means, the link."""
    link = verification_link(settings, token)
    text = (
        f"The canarytrace account {owner.name!r} asks to forward mail and alerts to "
        f"{address}.\n\nIf you asked for this, open the link and confirm:\n\n  {link}\n\n"
        f"The link works for {TOKEN_LIFETIME.days} days. If you did not ask for it, ignore "
        "this mail: nothing will be sent to you.\n"
    )
    return mailer.plain_email(settings, address, "Confirm forwarding from canarytrace", text)


async def send_verification(settings: Settings, owner: User, address: str, token: str) -> None:
    """Send the verification mail through the relay (raises RelayError, ConfigError)."""
    message = verification_email(settings, owner, address, token)
    await mailer.send(settings, message, recipients=[address])


def verification_not_sent(session: Session, address_id: int) -> None:
    """Undo a request whose mail could not be sent, so the user may retry at once."""
    record = session.get(ForwardAddress, address_id)
    if record is not None and record.verified_at is None:
        record.token_hash = None
        record.verification_sent_at = None
        session.add(record)


def pending_verification(
    session: Session, token: str, now: datetime | None = None
) -> ForwardAddress:
    """The address a live token verifies, without verifying it; NotFound otherwise."""
    now = now or utcnow()
    record = session.exec(
        select(ForwardAddress).where(ForwardAddress.token_hash == _hash(token))
    ).first()
    if (
        record is None
        or record.verification_sent_at is None
        or as_utc(record.verification_sent_at) + TOKEN_LIFETIME < now
    ):
        raise NotFound("this verification link is unknown, used or expired")
    return record


def verify(session: Session, token: str, now: datetime | None = None) -> ForwardAddress:
    """Mark the address of ``token`` verified; the token cannot be used again."""
    now = now or utcnow()
    record = pending_verification(session, token, now)
    record.verified_at = now
    record.token_hash = None
    session.add(record)
    return record


def remove_address(session: Session, owner: User, address: str | int) -> None:
    """Stop using an address: its rules go and it needs verifying again (the record stays,
    because logged forwards point at it)."""
    record = get_address(session, owner, address)
    for rule in session.exec(select(ForwardRule).where(ForwardRule.address_id == record.id)):
        session.delete(rule)
    record.verified_at = None
    record.token_hash = None
    session.add(record)


# ---------------------------------------------------------------------- rules


def set_rule(
    session: Session,
    owner: User,
    target: str,
    address: str | int,
    *,
    drop_breach: bool = False,
) -> ForwardRule:
    """Forward mail of a source (name, slug or id) or identity (alias) to ``address``.

    An identity's rule wins over its source's. Setting a rule again replaces it. The
    address may still be unverified: nothing is forwarded until it is.
    """
    assert owner.id is not None
    record = get_address(session, owner, address)
    source_id = identity_id = None
    if "@" in target:
        identity_id = find_identity(session, owner, normalise_address(target)).id
    else:
        source_id = get_source(session, owner, target).id
    for old in session.exec(
        select(ForwardRule).where(
            ForwardRule.owner_id == owner.id,
            ForwardRule.source_id == source_id,
            ForwardRule.identity_id == identity_id,
        )
    ):
        session.delete(old)
    assert record.id is not None
    rule = ForwardRule(
        owner_id=owner.id,
        source_id=source_id,
        identity_id=identity_id,
        address_id=record.id,
        drop_breach=drop_breach,
    )
    session.add(rule)
    session.flush()
    return rule


def list_rules(session: Session, owner: User) -> list[ForwardRule]:
    """The owner's rules, oldest first."""
    statement = select(ForwardRule).where(ForwardRule.owner_id == owner.id)
    return list(session.exec(statement.order_by(col(ForwardRule.id))))


def remove_rule(session: Session, owner: User, rule_id: int) -> None:
    """Stop a rule; NotFound for anyone else's."""
    session.delete(owned(session, ForwardRule, rule_id, owner, "forwarding rule"))
