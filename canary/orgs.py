"""Registrable domains (organisations) from the public suffix list bundled with the package.

The list ships inside the ``publicsuffixlist`` distribution, so nothing is downloaded at
run time. Unknown top-level domains (``.test``, ``.example``) count as public suffixes of
one label, so ``mail.brokerx.test`` belongs to ``brokerx.test``.
"""

from __future__ import annotations

from functools import lru_cache

from publicsuffixlist import PublicSuffixList


@lru_cache(maxsize=1)
def _psl() -> PublicSuffixList:
    return PublicSuffixList(accept_unknown=True)


@lru_cache(maxsize=65536)
def registrable_domain(domain: str | None) -> str | None:
    """The organisation a domain belongs to (``a.b.example.co.uk`` -> ``example.co.uk``).

    Returns None for empty input, bare public suffixes and IP literals.
    """
    if not domain:
        return None
    name = domain.strip().strip("[]").rstrip(".").lower()
    if not name or name.replace(".", "").replace(":", "").isdigit() or ":" in name:
        return None
    try:
        name = name.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    result = _psl().privatesuffix(name)
    return result.lower() if result else None


def domain_of(address: str | None) -> str | None:
    """The domain part of an email address, lower case, or None."""
    if not address or "@" not in address:
        return None
    return address.rpartition("@")[2].strip().strip(">").rstrip(".").lower() or None


def organisation_of(address: str | None) -> str | None:
    """The registrable domain of an email address's domain."""
    return registrable_domain(domain_of(address))


def same_organisation(a: str | None, b: str | None) -> bool:
    """True when two domains share a registrable domain (relaxed DMARC alignment)."""
    ra, rb = registrable_domain(a), registrable_domain(b)
    return ra is not None and ra == rb
