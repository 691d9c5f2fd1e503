"""Alias addresses: the token alphabet with its check character, and address normalisation.

A ``token`` alias is Crockford base32 (no i, l, o, u; case-insensitive; i/l read as 1
and o as 0) with one check character. Crockford's own check symbols (``*~$=U``) are
refused by many signup forms, so the check character comes from the same alphabet: each
character is a symbol of GF(32) and the token is a codeword of a linear code whose
position weights are distinct powers of a primitive element. That catches every
single-character substitution and every swap
of two neighbouring characters, which is what a person copying an address gets wrong.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_VALUES = {c: i for i, c in enumerate(ALPHABET)}
# Crockford decoding: letters people confuse with digits read as those digits.
_VALUES.update({"i": 1, "l": 1, "o": 0})
# x^5 + x^2 + 1, a primitive polynomial over GF(2): x generates all of GF(32)*.
_FIELD_POLY = 0b100101

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


def _times_x(value: int) -> int:
    value <<= 1
    return value ^ _FIELD_POLY if value & 32 else value


def _syndrome(text: str) -> int:
    """Sum of symbol * x^(position from the end) in GF(32), by Horner's rule."""
    acc = 0
    for c in text:
        acc = _times_x(acc) ^ _VALUES[c]
    return acc


def check_char(data: str) -> str:
    """The character that makes ``data`` + it a codeword (syndrome zero)."""
    return ALPHABET[_times_x(_syndrome(data))]


def new_token(length: int = TOKEN_DATA_CHARS) -> str:
    """A fresh random token (5 random bits a character) with its check character."""
    value = secrets.randbits(5 * length)
    data = "".join(ALPHABET[(value >> (5 * i)) & 31] for i in range(length))
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
    return _syndrome(token) == 0


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
