"""DNS health of a canary domain: does mail reach us, and can nobody send as it?

A canary domain needs three records: an MX pointing at this service's public host name
(and one for each catch-all subdomain users claim, or a wildcard), SPF ``v=spf1 -all``
(the domain never sends mail, so any message claiming it is forged) and DMARC
``p=reject`` (receivers drop such forgeries). :func:`check_domain` reads what is
published and says what to add.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from canary.dns import DnsTemporaryError, Resolver

SPF_RECORD = "v=spf1 -all"
DMARC_RECORD = "v=DMARC1; p=reject; sp=reject; adkim=s; aspf=s"


@dataclass(frozen=True)
class Check:
    """One record checked: what was found, whether it is right, and the record to publish."""

    name: str
    ok: bool
    found: tuple[str, ...]
    expected: str
    advice: str = ""

    def as_dict(self) -> dict[str, object]:
        """The JSON form."""
        return {
            "check": self.name,
            "ok": self.ok,
            "found": list(self.found),
            "expected": self.expected,
            "advice": self.advice,
        }


@dataclass(frozen=True)
class DomainReport:
    """Every check for one domain."""

    domain: str
    mx_host: str | None
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return all(c.ok for c in self.checks)

    def zone_lines(self) -> list[str]:
        """Zone-file lines to add for the failed checks."""
        return [c.expected for c in self.checks if not c.ok]


def _spf_ok(records: list[str]) -> bool:
    spf = [r for r in records if r.lower().startswith("v=spf1")]
    # Exactly one SPF record (RFC 7208 3.2) that ends in -all with nothing allowed.
    return len(spf) == 1 and spf[0].split() == ["v=spf1", "-all"]


def _dmarc_ok(records: list[str]) -> bool:
    dmarc = [r for r in records if r.replace(" ", "").lower().startswith("v=dmarc1")]
    if len(dmarc) != 1:
        return False
    tags = {}
    for part in dmarc[0].split(";"):
        key, _, value = part.strip().partition("=")
        tags[key.strip().lower()] = value.strip().lower()
    return tags.get("p") == "reject" and tags.get("sp", "reject") == "reject"


async def _mx_check(resolver: Resolver, name: str, mx_host: str | None, check: str) -> Check:
    """Does ``name`` have an MX, and does it point at ``mx_host`` when that is known?"""
    expected = f"{name}. MX 10 {mx_host or 'mx.your-host.example'}."
    try:
        mx = await resolver.mx(name)
    except DnsTemporaryError as exc:
        return Check(check, False, (), expected, f"lookup failed: {exc}")
    hosts = tuple(host for _, host in mx)
    if mx_host:
        ok = mx_host.rstrip(".").lower() in hosts
        advice = "" if ok else f"point the MX of {name} at {mx_host}"
    else:
        ok = bool(hosts)
        advice = "" if ok else "add an MX record (set CANARY_SMTP_HOSTNAME to check it)"
    return Check(check, ok, tuple(f"{pref} {host}" for pref, host in mx), expected, advice)


async def check_domain(
    resolver: Resolver,
    domain: str,
    mx_host: str | None,
    subdomains: Iterable[str] = (),
) -> DomainReport:
    """Check the MX, SPF and DMARC records of ``domain``, and the MX of its catch-all subdomains.

    ``mx_host`` is the public host name this service receives mail on; without it the
    MX check only requires that some MX exists. Each claimed catch-all subdomain of
    ``domain`` in ``subdomains`` needs an MX of its own (a wildcard ``*.domain`` MX
    covers them all): without one, senders deliver to the subdomain's address record or
    give up, and the catch-all never sees the mail. Temporary DNS failures are reported
    as failed checks saying so, never as exceptions.
    """
    domain = domain.rstrip(".").lower()
    checks = [await _mx_check(resolver, domain, mx_host, "mx")]
    for sub in sorted({s.rstrip(".").lower() for s in subdomains}):
        if sub.endswith("." + domain):
            check = await _mx_check(resolver, sub, mx_host, f"mx {sub}")
            if not check.ok and not check.advice.startswith("lookup failed"):
                wildcard = f"*.{domain}. MX 10 {mx_host or 'mx.your-host.example'}."
                advice = f"{check.advice}, or publish {wildcard!r} for every subdomain"
                check = replace(check, advice=advice)
            checks.append(check)

    for name, qname, expected, verdict in (
        ("spf", domain, SPF_RECORD, _spf_ok),
        ("dmarc", f"_dmarc.{domain}", DMARC_RECORD, _dmarc_ok),
    ):
        line = f'{qname}. TXT "{expected}"'
        try:
            records = await resolver.txt(qname)
        except DnsTemporaryError as exc:
            checks.append(Check(name, False, (), line, f"lookup failed: {exc}"))
            continue
        ok = verdict(records)
        advice = "" if ok else f"publish {expected!r} so nobody can send mail as {domain}"
        checks.append(Check(name, ok, tuple(records), line, advice))
    return DomainReport(domain=domain, mx_host=mx_host, checks=tuple(checks))
