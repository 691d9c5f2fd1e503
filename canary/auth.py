"""Sender authentication: who really sent a message, decided by DKIM, SPF and DMARC.

:func:`authenticate` takes the raw bytes and the SMTP envelope and returns an
:class:`AuthResult`. Well-kept libraries do the cryptography and the policy
evaluation (dkimpy for DKIM, pyspf for SPF); this module feeds them DNS answers from
our :class:`~canary.dns.Resolver` only, and judges DMARC alignment itself (the rules
are short, and pyspf/dkimpy do not cover them).

DNS reaches the libraries only through our resolver: see :mod:`canary.dkimverify`
(keys fetched first, handed to dkimpy) and :mod:`canary.spfcheck` (pyspf's lookup hook
answered from records fetched through the resolver beforehand). Nothing here starts a
thread: with a warm cache the whole check runs on the event loop.

Sender organisation (DESIGN.md, "Verdicts"): the registrable domain of the strongest
authenticated identifier, preferring one aligned with From. In order: a passing DKIM
signature whose d= aligns with From; a passing, aligned SPF identity; any passing DKIM
signature; any passing SPF identity. An email service provider signing with d=brand
while the Return-Path is at the provider therefore yields the brand.

A temporary DNS failure anywhere sets ``temporary_error``: the pipeline should analyse
the message again later instead of recording a verdict from half the facts.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import email.utils
import ipaddress
from dataclasses import dataclass

from canary import dmarc
from canary.dkimverify import DkimResult, verify_dkim
from canary.dns import DnsTemporaryError, Resolver
from canary.evidence_items import Evidence, details
from canary.orgs import domain_of, registrable_domain
from canary.spfcheck import SpfResult, check_spf

__all__ = ["AuthResult", "DkimResult", "DmarcResult", "SpfResult", "authenticate"]

# ---------------------------------------------------------------------- results


@dataclass(frozen=True)
class DmarcResult:
    """DMARC for the From domain: the record, its policy, alignment and the outcome."""

    from_domain: str | None
    record: dmarc.DmarcRecord | None
    policy: str | None
    dkim_aligned: bool
    spf_aligned: bool
    result: str
    """pass (an aligned identifier passed), fail, none (no record) or temperror."""


@dataclass(frozen=True)
class AuthResult:
    """Everything sender authentication established about one message."""

    peer_ip: str
    helo: str
    mail_from_domain: str | None
    from_address: str | None
    from_domain: str | None
    from_org: str | None
    dkim: tuple[DkimResult, ...]
    spf: SpfResult
    spf_helo: SpfResult | None
    dmarc: DmarcResult
    reverse_dns: str | None
    reverse_dns_confirmed: bool
    sender_org: str | None
    """Registrable domain responsible for the message; None when nothing authenticates."""
    sender_domain: str | None
    sender_method: str | None
    """``dkim`` or ``spf``: which identifier made ``sender_org``."""
    sender_aligned: bool
    temporary_error: bool
    errors: tuple[str, ...] = ()

    @property
    def from_authenticated(self) -> bool:
        """True when an identifier aligned with the From domain passed (DMARC-style)."""
        return self.dmarc.dkim_aligned or self.dmarc.spf_aligned

    @property
    def verified_by(self) -> str:
        """How the sender organisation was verified, for sentences ("DKIM verified")."""
        if self.sender_method == "dkim":
            return "DKIM verified"
        if self.sender_method == "spf":
            return "SPF pass"
        return "not authenticated"

    def evidence(self) -> tuple[Evidence, ...]:
        """Evidence items for every authentication fact."""
        items = [
            Evidence(f"dkim_{r.result}", details({"d": r.domain, "s": r.selector}))
            if r.result == "pass"
            else Evidence(f"dkim_{r.result}", details({"d": r.domain, "reason": r.reason}))
            for r in self.dkim
        ]
        if not self.dkim:
            items.append(Evidence("dkim_none"))
        for res, prefix in ((self.spf, "spf"), (self.spf_helo, "spf_helo")):
            if res is not None:
                items.append(Evidence(f"{prefix}_{res.result}", details({"domain": res.domain})))
        policy = self.dmarc.policy
        if self.dmarc.result == "none":
            items.append(Evidence("dmarc_none", details({"from": self.from_domain})))
        else:
            items.append(Evidence(f"dmarc_{self.dmarc.result}", details({"p": policy})))
        if self.reverse_dns:
            state = "confirmed" if self.reverse_dns_confirmed else "unconfirmed"
            items.append(Evidence("reverse_dns", f"host={self.reverse_dns} {state}"))
        elif self.peer_ip:
            items.append(Evidence("reverse_dns_missing", details({"ip": self.peer_ip})))
        if self.temporary_error:
            items.append(Evidence("dns_temporary_error", "; ".join(self.errors)[:300]))
        return tuple(items)


# ---------------------------------------------------------------------- entry point


async def authenticate(
    raw: bytes, peer_ip: str, helo: str, mail_from: str, resolver: Resolver
) -> AuthResult:
    """Authenticate one received message: DKIM, SPF (MAIL FROM and HELO), DMARC, rDNS.

    ``mail_from`` is the envelope sender ("" for a bounce); ``peer_ip`` the connecting
    address. Never raises for DNS trouble: see ``temporary_error``.
    """
    spf_errors: list[str] = []
    from_address = _from_address(raw)
    from_domain = domain_of(from_address)
    mail_from_domain = domain_of(mail_from)
    helo_domain = _helo_domain(helo)
    ip = _valid_ip(peer_ip)

    dkim_task = verify_dkim(raw, resolver)
    spf_task = check_spf(resolver, ip, mail_from, helo, "mailfrom", mail_from_domain, spf_errors)
    helo_task = (
        check_spf(resolver, ip, f"postmaster@{helo_domain}", helo, "helo", helo_domain, spf_errors)
        if helo_domain
        else _nothing()
    )
    dmarc_task = _dmarc_record(from_domain, resolver)
    rdns_task = _reverse_dns(ip, resolver)
    (dkim_results, dkim_errors), spf_mf, spf_helo, (record, dmarc_err), rdns = await asyncio.gather(
        dkim_task, spf_task, helo_task, dmarc_task, rdns_task
    )
    reverse_dns, confirmed, rdns_errors = rdns

    # RFC 7208 2.4 / RFC 7489 3.1.2: with a null reverse-path the HELO identity stands in.
    spf_identity = spf_mf if mail_from_domain else (spf_helo or spf_mf)
    adkim = record.adkim if record else "r"
    aspf = record.aspf if record else "r"
    passing_dkim = [r for r in dkim_results if r.result == "pass"]
    aligned_dkim = [r for r in passing_dkim if dmarc.aligned(r.domain, from_domain, adkim)]
    spf_pass = spf_identity.result == "pass"
    spf_aligned = spf_pass and dmarc.aligned(spf_identity.domain, from_domain, aspf)
    dmarc_result = _dmarc_outcome(
        from_domain,
        record,
        dmarc_err,
        bool(aligned_dkim),
        spf_aligned,
        any(r.result == "temperror" for r in dkim_results) or spf_identity.result == "temperror",
    )

    candidates: list[tuple[str, str, bool]] = []  # (domain, method, aligned), best first
    candidates += [(r.domain, "dkim", True) for r in aligned_dkim]
    if spf_aligned and spf_identity.domain:
        candidates.append((spf_identity.domain, "spf", True))
    candidates += [(r.domain, "dkim", False) for r in passing_dkim]
    if spf_pass and spf_identity.domain:
        candidates.append((spf_identity.domain, "spf", False))
    sender = next(((d, m, a) for d, m, a in candidates if registrable_domain(d)), None)

    errors = tuple(dkim_errors + spf_errors + dmarc_err + rdns_errors)
    temporary = bool(errors) or any(
        r is not None and r.result == "temperror" for r in (spf_mf, spf_helo)
    )
    return AuthResult(
        peer_ip=peer_ip,
        helo=helo,
        mail_from_domain=mail_from_domain,
        from_address=from_address,
        from_domain=from_domain,
        from_org=registrable_domain(from_domain),
        dkim=tuple(dkim_results),
        spf=spf_mf,
        spf_helo=spf_helo,
        dmarc=dmarc_result,
        reverse_dns=reverse_dns,
        reverse_dns_confirmed=confirmed,
        sender_org=registrable_domain(sender[0]) if sender else None,
        sender_domain=sender[0] if sender else None,
        sender_method=sender[1] if sender else None,
        sender_aligned=sender[2] if sender else False,
        temporary_error=temporary,
        errors=errors,
    )


# ---------------------------------------------------------------------- header facts


def _from_address(raw: bytes) -> str | None:
    """The single address of the From header, or None (absent, empty, several)."""
    headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
    values = headers.get_all("From") or []
    if len(values) != 1:
        return None  # RFC 7489 6.6.1: no single From, no DMARC evaluation
    try:
        pairs = email.utils.getaddresses([str(values[0])])
    except RecursionError:  # the parser recurses once per nested "(" of a comment
        return None
    addresses = [a for _, a in pairs if "@" in a]
    return addresses[0].lower() if len(addresses) == 1 else None


def _helo_domain(helo: str) -> str | None:
    name = (helo or "").strip().strip("[]").rstrip(".").lower()
    if "." not in name or _valid_ip(name):
        return None
    return name


def _valid_ip(ip: str) -> str | None:
    try:
        return str(ipaddress.ip_address((ip or "").strip()))
    except ValueError:
        return None


async def _nothing() -> None:
    return None


# ---------------------------------------------------------------------- DMARC and rDNS


async def _dmarc_record(
    from_domain: str | None, resolver: Resolver
) -> tuple[dmarc.DmarcRecord | None, list[str]]:
    if not from_domain:
        return None, []
    try:
        return await dmarc.lookup_record(from_domain, resolver), []
    except DnsTemporaryError as exc:
        return None, [str(exc)]


def _dmarc_outcome(
    from_domain: str | None,
    record: dmarc.DmarcRecord | None,
    lookup_errors: list[str],
    dkim_aligned: bool,
    spf_aligned: bool,
    auth_temperror: bool,
) -> DmarcResult:
    policy = dmarc.applicable_policy(record, from_domain) if record and from_domain else None
    if record is None:
        # Alignment without a published record is still kept (from_authenticated), but
        # DMARC itself has no result to give.
        result = "temperror" if lookup_errors else "none"
    elif dkim_aligned or spf_aligned:
        result = "pass"
    elif auth_temperror:
        result = "temperror"
    else:
        result = "fail"
    return DmarcResult(from_domain, record, policy, dkim_aligned, spf_aligned, result)


async def _reverse_dns(ip: str | None, resolver: Resolver) -> tuple[str | None, bool, list[str]]:
    """The first PTR name of the peer, and whether it resolves back (FCrDNS)."""
    if ip is None:
        return None, False, []
    try:
        names = await resolver.ptr(ip)
        if not names:
            return None, False, []
        host = names[0]
        family = ipaddress.ip_address(ip).version
        forward = await (resolver.a(host) if family == 4 else resolver.aaaa(host))
        return host, ip in {str(ipaddress.ip_address(a)) for a in forward}, []
    except DnsTemporaryError as exc:
        return None, False, [str(exc)]
