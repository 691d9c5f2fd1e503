"""Accounts, password hashing (argon2) and API tokens (stored as SHA-256 only)."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel import Session, select

from canary.errors import Conflict, InvalidInput, NotFound
from canary.models import ApiToken, User, as_utc, utcnow

# The account made on a fresh install the first time a command needs one, so that a
# single person never has to think about accounts.
DEFAULT_USER_NAME = "owner"
TOKEN_PREFIX = "ct_"
TOKEN_USE_RESOLUTION = timedelta(minutes=1)  # how fresh a token's "last used" is kept
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    """An argon2id hash of ``password``."""
    return _hasher.hash(password)


def verify_password(user: User, password: str) -> bool:
    """True when ``password`` matches the user's stored hash (False when none is set)."""
    if not user.password_hash:
        return False
    try:
        return _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def add_user(session: Session, name: str, password: str | None = None, admin: bool = False) -> User:
    """Create a user; raises Conflict when the name is taken."""
    if not _NAME_RE.match(name):
        raise InvalidInput(
            f"invalid user name {name!r}: use letters, digits, '.', '_' or '-' (max 64)"
        )
    if session.exec(select(User).where(User.name == name)).first():
        raise Conflict(f"user {name!r} already exists")
    if password is not None and len(password) < 8:
        raise InvalidInput("password too short: use at least 8 characters")
    user = User(
        name=name, is_admin=admin, password_hash=hash_password(password) if password else None
    )
    session.add(user)
    session.flush()
    return user


def get_user(session: Session, name: str) -> User:
    """The user called ``name``; raises NotFound."""
    user = session.exec(select(User).where(User.name == name)).first()
    if user is None:
        raise NotFound(f"no user named {name!r}")
    return user


def list_users(session: Session) -> list[User]:
    """Every user, oldest first."""
    return list(session.exec(select(User).order_by(User.id)))  # type: ignore[arg-type]


def default_user(session: Session) -> User:
    """The only user, else the first admin; on an empty database, a new admin account."""
    users = list_users(session)
    if not users:
        return add_user(session, DEFAULT_USER_NAME, admin=True)
    if len(users) == 1:
        return users[0]
    for user in users:
        if user.is_admin:
            return user
    raise InvalidInput("several users and no admin: name one with --user")


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(session: Session, user: User, label: str = "") -> tuple[ApiToken, str]:
    """Create an API token; returns the record and the secret, which is never stored."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    assert user.id is not None
    record = ApiToken(user_id=user.id, token_hash=_token_hash(secret), label=label)
    session.add(record)
    session.flush()
    return record, secret


def user_for_token(session: Session, secret: str) -> User | None:
    """The user a live (not revoked) token belongs to, or None."""
    record = session.exec(
        select(ApiToken).where(ApiToken.token_hash == _token_hash(secret))
    ).first()
    if record is None or record.revoked_at is not None:
        return None
    now = utcnow()
    last = record.last_used_at
    # "Last used" to the minute is all a person reads from it; writing it on every API
    # call would make each read a write transaction, which on SQLite queues every
    # request behind the single writer.
    if last is None or now - as_utc(last) >= TOKEN_USE_RESOLUTION:
        record.last_used_at = now
        session.add(record)
    return session.get(User, record.user_id)


def revoke_token(session: Session, user: User, token_id: int) -> ApiToken:
    """Revoke one of ``user``'s tokens; raises NotFound for anyone else's."""
    record = session.get(ApiToken, token_id)
    if record is None or record.user_id != user.id:
        raise NotFound(f"no token {token_id}")
    if record.revoked_at is None:
        record.revoked_at = utcnow()
        session.add(record)
    return record
