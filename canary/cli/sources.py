"""``canary source add|list|allow|disallow|rename|merge``."""

from __future__ import annotations

import argparse

from canary.assessment import reevaluate_after_correction
from canary.cli.context import CliContext, add_json_flag, add_user_flag
from canary.models import Source
from canary.review import authorise_sender, revoke_sender
from canary.source_merge import merge_sources, rename_source
from canary.sources import (
    SENDER_REASONS,
    add_source,
    authorised_domains,
    get_source,
    identity_counts,
    list_sources,
    sender_domain,
)


def source_dict(source: Source, domains: list[str], identities: int | None = None) -> dict:
    """The JSON form of a source."""
    data = {
        "id": source.id,
        "name": source.name,
        "slug": source.slug,
        "url": source.url,
        "authorised_senders": domains,
        "created_at": source.created_at,
    }
    if identities is not None:
        data["identities"] = identities
    return data


def cmd_add(ctx: CliContext) -> None:
    with ctx.store.session() as session:
        owner = ctx.user(session)
        source = add_source(session, owner, ctx.args.name, ctx.args.domain or (), url=ctx.args.url)
        data = source_dict(source, authorised_domains(session, source))
    ctx.emit(data, lambda: print(f"source {data['name']!r} added (id {data['id']})"))


def cmd_list(ctx: CliContext) -> None:
    with ctx.store.session() as session:
        owner = ctx.user(session)
        counts = identity_counts(session, owner)
        data = [
            source_dict(s, authorised_domains(session, s), counts.get(s.id or 0, 0))
            for s in list_sources(session, owner)
        ]

    def human() -> None:
        if not data:
            print("no sources yet: add one with `canary source add NAME --domain DOMAIN`")
        for s in data:
            senders = ", ".join(s["authorised_senders"]) or "-"
            print(f"{s['id']:>5}  {s['name']:<30} {s['identities']:>7} identities  {senders}")

    ctx.emit(data, human)


def _change_sender(ctx: CliContext, authorise: bool) -> dict:
    """Authorise or stop authorising ``--domain`` for the source; its JSON form after."""
    args = ctx.args
    with ctx.store.session() as session:
        owner = ctx.user(session)
        if authorise:
            record = authorise_sender(
                session, owner, args.source, args.domain, args.reason, reevaluate_after_correction
            )
            source = get_source(session, owner, record.source_id)
        else:
            source = revoke_sender(
                session, owner, args.source, args.domain, reevaluate_after_correction
            )
        return source_dict(source, authorised_domains(session, source))


def cmd_allow(ctx: CliContext) -> None:
    data = _change_sender(ctx, authorise=True)
    domain = sender_domain(ctx.args.domain)
    ctx.emit(data, lambda: print(f"{domain} may now mail {data['name']!r}'s identities"))


def cmd_disallow(ctx: CliContext) -> None:
    data = _change_sender(ctx, authorise=False)
    domain = sender_domain(ctx.args.domain)
    ctx.emit(data, lambda: print(f"{domain} is no longer authorised for {data['name']!r}"))


def cmd_rename(ctx: CliContext) -> None:
    with ctx.store.session() as session:
        owner = ctx.user(session)
        source = rename_source(session, owner, ctx.args.source, ctx.args.name)
        data = source_dict(source, authorised_domains(session, source))
    ctx.emit(data, lambda: print(f"source {data['id']} is now {data['name']!r}"))


def cmd_merge(ctx: CliContext) -> None:
    with ctx.store.session() as session:
        owner = ctx.user(session)
        source = merge_sources(
            session, owner, ctx.args.source, ctx.args.into, on_change=reevaluate_after_correction
        )
        data = source_dict(source, authorised_domains(session, source))
    ctx.emit(data, lambda: print(f"{ctx.args.source!r} merged into {data['name']!r}"))


def register(subparsers: argparse._SubParsersAction) -> None:
    source = subparsers.add_parser("source", help="manage sources (who received identities)")
    commands = source.add_subparsers(dest="source_command", metavar="ACTION")
    commands.required = True

    add = commands.add_parser("add", help="add a source")
    add.add_argument("name", help="name of the site, company or vendor")
    add.add_argument(
        "--domain", action="append", metavar="D", help="a domain of the source (repeatable)"
    )
    add.add_argument("--url", help="the source's web address")
    add_user_flag(add)
    add_json_flag(add)
    add.set_defaults(handler=cmd_add)

    lst = commands.add_parser("list", help="list sources")
    add_user_flag(lst)
    add_json_flag(lst)
    lst.set_defaults(handler=cmd_list)

    allow = commands.add_parser("allow", help="authorise a sender domain for a source")
    allow.add_argument("source", help="source name or id")
    allow.add_argument("domain", help="registrable domain allowed to mail this source")
    allow.add_argument("--reason", choices=SENDER_REASONS, default="user")
    add_user_flag(allow)
    add_json_flag(allow)
    allow.set_defaults(handler=cmd_allow)

    disallow = commands.add_parser("disallow", help="stop authorising a sender domain")
    disallow.add_argument("source", help="source name or id")
    disallow.add_argument("domain", help="the authorised domain to remove")
    disallow.set_defaults(handler=cmd_disallow)

    rename = commands.add_parser("rename", help="give a source a new name")
    rename.add_argument("source", help="source name or id")
    rename.add_argument("name", help="the new name")
    rename.set_defaults(handler=cmd_rename)

    merge = commands.add_parser(
        "merge", help="fold a source into another (identities, mail, findings, senders)"
    )
    merge.add_argument("source", help="the source to fold in and delete (name or id)")
    merge.add_argument("into", help="the source that remains (name or id)")
    merge.set_defaults(handler=cmd_merge)
    for parser in (disallow, rename, merge):
        add_user_flag(parser)
        add_json_flag(parser)
