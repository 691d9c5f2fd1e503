"""``canary catchall claim|release|list``: subdomains where any alias is issued on first use."""

from __future__ import annotations

import argparse

from canary.catchall import claim_subdomain, list_subdomains, release_subdomain
from canary.cli.context import CliContext, add_json_flag, add_user_flag
from canary.models import CatchAllDomain


def claim_dict(claim: CatchAllDomain) -> dict:
    """The JSON form of a claimed subdomain."""
    return {"domain": claim.domain, "created_at": claim.created_at}


def cmd_claim(ctx: CliContext) -> None:
    with ctx.store.session() as session:
        owner = ctx.user(session)
        data = claim_dict(claim_subdomain(session, owner, ctx.args.domain, ctx.settings.domains))

    def human() -> None:
        print(f"{data['domain']} is yours: mail to any-name@{data['domain']} makes an identity")
        parent = data["domain"].partition(".")[2]
        print(f"  (its DNS needs an MX record, or a wildcard *.{parent}:")
        print(f"   `canary dns check {parent}` says whether mail reaches it)")

    ctx.emit(data, human)


def cmd_release(ctx: CliContext) -> None:
    with ctx.store.session() as session:
        data = claim_dict(release_subdomain(session, ctx.user(session), ctx.args.domain))
    ctx.emit(
        data,
        lambda: print(f"{data['domain']} released: its identities stay, new names are refused"),
    )


def cmd_list(ctx: CliContext) -> None:
    with ctx.store.session() as session:
        data = [claim_dict(c) for c in list_subdomains(session, ctx.user(session))]

    def human() -> None:
        if not data:
            print("no catch-all subdomains: claim one with `canary catchall claim NAME.DOMAIN`")
        for item in data:
            print(item["domain"])

    ctx.emit(data, human)


def register(subparsers: argparse._SubParsersAction) -> None:
    catchall = subparsers.add_parser(
        "catchall", help="catch-all subdomains: any alias there is issued on first use"
    )
    commands = catchall.add_subparsers(dest="catchall_command", metavar="ACTION")
    commands.required = True

    claim = commands.add_parser("claim", help="claim a subdomain of a canary domain")
    claim.add_argument("domain", help="e.g. alice.canary.example")
    release = commands.add_parser("release", help="stop issuing new aliases on a subdomain")
    release.add_argument("domain")
    lst = commands.add_parser("list", help="list your catch-all subdomains")
    for parser, handler in ((claim, cmd_claim), (release, cmd_release), (lst, cmd_list)):
        add_user_flag(parser)
        add_json_flag(parser)
        parser.set_defaults(handler=handler)
