"""``canary dns check DOMAIN``: are the canary domain's MX, SPF and DMARC records right?

The MX of every catch-all subdomain claimed under the domain is checked too.
"""

from __future__ import annotations

import argparse
import asyncio

from canary.catchall import claimed_domains
from canary.cli.context import CliContext, add_json_flag
from canary.config import parse_domain
from canary.dns import Resolver
from canary.dnscheck import check_domain
from canary.errors import InvalidInput


def cmd_check(ctx: CliContext) -> int:
    try:
        domain = parse_domain(ctx.args.domain)
    except ValueError as exc:
        raise InvalidInput(f"bad domain: {exc}") from None
    mx_host = ctx.args.mx_host or ctx.settings.smtp_hostname
    with ctx.store.session() as session:
        subdomains = claimed_domains(session)
    resolver = Resolver.from_settings(ctx.settings)
    report = asyncio.run(check_domain(resolver, domain, mx_host, subdomains))
    data = {
        "domain": report.domain,
        "mx_host": report.mx_host,
        "ok": report.ok,
        "checks": [c.as_dict() for c in report.checks],
        "records_to_add": report.zone_lines(),
    }

    def human() -> None:
        for check in report.checks:
            found = ", ".join(check.found) or "nothing"
            mark = "ok  " if check.ok else "FAIL"
            print(f"{mark} {check.name:<6} found: {found}")
            if check.advice:
                print(f"     {check.advice}")
        if not report.ok:
            print("\nrecords to add:")
            for line in report.zone_lines():
                print(f"  {line}")

    ctx.emit(data, human)
    return 0 if report.ok else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    dns = subparsers.add_parser("dns", help="DNS health of canary domains")
    commands = dns.add_subparsers(dest="dns_command", metavar="ACTION")
    commands.required = True
    check = commands.add_parser(
        "check",
        help="check MX (with claimed catch-all subdomains), SPF and DMARC of a canary domain",
    )
    check.add_argument("domain")
    check.add_argument(
        "--mx-host", help="public host name of this service (default: CANARY_SMTP_HOSTNAME)"
    )
    add_json_flag(check)
    check.set_defaults(handler=cmd_check)
