"""DMARC (RFC 7489): policy records, their discovery, and identifier alignment.

Alignment is judged against the RFC 5322 From domain. Relaxed alignment (the default)
means "same registrable domain", taken from the bundled public suffix list; strict
alignment (``adkim=s`` / ``aspf=s``) means the exact domain.
"""

from __future__ import annotations

from dataclasses import dataclass

from canary.dns import Resolver
from canary.orgs import registrable_domain, same_organisation

POLICIES = ("none", "quarantine", "reject")


@dataclass(frozen=True)
class DmarcRecord:
    """A parsed ``v=DMARC1`` record and where it was found."""

    domain: str
    """The domain whose ``_dmarc`` name held the record (From domain or its organisation)."""
    policy: str
    subdomain_policy: str | None
    adkim: str = "r"
    aspf: str = "r"
    pct: int = 100


def parse_record(domain: str, text: str) -> DmarcRecord | None:
    """Parse one TXT string; None unless it is a ``v=DMARC1`` record."""
    tags: dict[str, str] = {}
    for part in text.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            tags.setdefault(key.strip().lower(), value.strip())
    # RFC 7489 6.3: v must be the first tag and exactly DMARC1.
    first = text.split(";", 1)[0].replace(" ", "")
    if first.lower() != "v=dmarc1":
        return None
    policy = tags.get("p", "").lower()
    if policy not in POLICIES:
        # 6.6.3: a record with an invalid p= but a rua= is treated as p=none; without
        # rua it is not a DMARC record. We keep it as none either way: the published
        # intent to use DMARC is still evidence.
        policy = "none"
    sp = tags.get("sp", "").lower()
    try:
        pct = max(0, min(100, int(tags.get("pct", "100"))))
    except ValueError:
        pct = 100
    return DmarcRecord(
        domain=domain,
        policy=policy,
        subdomain_policy=sp if sp in POLICIES else None,
        adkim="s" if tags.get("adkim", "r").lower() == "s" else "r",
        aspf="s" if tags.get("aspf", "r").lower() == "s" else "r",
        pct=pct,
    )


async def lookup_record(from_domain: str, resolver: Resolver) -> DmarcRecord | None:
    """The DMARC record for ``from_domain``: its own, else its organisation's.

    Raises :class:`DnsTemporaryError` when the answer could not be had.
    """
    candidates = [from_domain]
    org = registrable_domain(from_domain)
    if org and org != from_domain:
        candidates.append(org)
    for domain in candidates:
        records = [
            r
            for r in (parse_record(domain, t) for t in await resolver.txt(f"_dmarc.{domain}"))
            if r is not None
        ]
        # 6.6.3: more than one record at a name means no usable record there.
        if len(records) == 1:
            return records[0]
    return None


def applicable_policy(record: DmarcRecord, from_domain: str) -> str:
    """``p=`` or, for a subdomain covered by its organisation's record, ``sp=``."""
    if record.domain != from_domain and record.subdomain_policy:
        return record.subdomain_policy
    return record.policy


def aligned(identifier: str | None, from_domain: str | None, mode: str = "r") -> bool:
    """Whether an authenticated domain aligns with the From domain (relaxed or strict)."""
    if not identifier or not from_domain:
        return False
    if mode == "s":
        return identifier.rstrip(".").lower() == from_domain.rstrip(".").lower()
    return same_organisation(identifier, from_domain)
