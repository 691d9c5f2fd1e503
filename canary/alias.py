"""Alias addresses: the token alphabet with its check character, and address normalisation.

A ``token`` alias is Crockford base32 (no i, l, o, u; case-insensitive; i/l read as 1
and o as 0) with one check character. Crockford's own check symbols (``*~$=U``) are
refused by many signup forms, so the check character is a weighted sum modulo 31 drawn
from the same alphabet: it catches every single-character substitution and every swap
of two neighbouring characters, which is what a person copying an address gets wrong.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_VALUES = {c: i for i, c in enumerate(ALPHABET)}
# Crockford decoding: letters people confuse with digits read as those digits.
_VALUES.update({"i": 1, "l": 1, "o": 0})
_CHECK_MODULUS = 31

TOKEN_DATA_CHARS = 11  # 55 bits of randomness
SHORT_TOKEN_CHARS = 6  # 30 bits, for slug aliases where the slug carries the rest

# Local parts that mean a role, never a person: RFC 2142 and common service names.
ROLE_NAMES = frozenset(
    {
        "abuse",
        "admin",
        "administrator",
        "billing",
        "bounce",
        "bounces",
        "ftp",
        "help",
        "hostmaster",
        "info",
        "mailer-daemon",
        "marketing",
        "news",
        "noc",
        "no-reply",
        "noreply",
        "postmaster",
        "root",
        "sales",
        "security",
        "support",
        "uucp",
        "usenet",
        "webmaster",
        "www",
    }
)


def check_char(data: str) -> str:
    """The check character for ``data`` (already in the alias alphabet)."""
    total = sum((i + 1) * _VALUES[c] for i, c in enumerate(data))
    return ALPHABET[total % _CHECK_MODULUS]


def new_token(rng: secrets.SystemRandom | None = None, length: int = TOKEN_DATA_CHARS) -> str:
    """A fresh random token with its check character appended."""
    choice = (rng or secrets.SystemRandom()).choice
    data = "".join(choice(ALPHABET) for _ in range(length))
    return data + check_char(data)


def canonical_token(text: str) -> str | None:
    """``text`` in canonical Crockford form (i/l -> 1, o -> 0, hyphens dropped), or None."""
    out = []
    for c in text.lower():
        if c == "-":
            continue
        value = _VALUES.get(c)
        if value is None:
            return None
        out.append(ALPHABET[value])
    return "".join(out)


def token_is_valid(text: str) -> bool:
    """True when ``text`` reads as a token whose check character matches."""
    token = canonical_token(text)
    if token is None or len(token) < 2:
        return False
    return check_char(token[:-1]) == token[-1]


@dataclass(frozen=True)
class Address:
    """An email address split into the parts attribution needs."""

    local: str
    domain: str
    tag: str | None

    @property
    def key(self) -> str:
        """Lower-case address without the +tag: the form identities are stored under."""
        return f"{self.local}@{self.domain}"


def split_address(address: str) -> Address | None:
    """Split ``address`` into local part, domain and +tag; None if it has no ``@``.

    Comparison is case-insensitive (no mail system hands out addresses that differ only
    in case, and list keepers change case freely), and ``user+anything`` is ``user``.
    """
    address = address.strip().strip("<>").strip()
    local, sep, domain = address.rpartition("@")
    if not sep or not local or not domain:
        return None
    local = local.lower()
    tag: str | None = None
    if "+" in local:
        local, _, tag = local.partition("+")
    return Address(local=local, domain=domain.lower().rstrip("."), tag=tag)


def normalise_address(address: str) -> str:
    """The lookup key of an address (see :func:`split_address`); unchanged-lowered if odd."""
    parts = split_address(address)
    return parts.key if parts else address.strip().lower()


def is_role_name(local: str) -> bool:
    """True for local parts such as postmaster or noreply that must never be an alias."""
    return local.lower() in ROLE_NAMES
