"""``canary identity new|retire|list`` and ``canary trace``."""

from __future__ import annotations

import argparse

from canary.cli.context import CliContext, CommandFailed, add_json_flag, add_user_flag
from canary.config import parse_domain
from canary.identity import (
    ALIAS_STYLES,
    IdentityRequest,
    create_identities,
    list_identities,
    retire_identity,
)
from canary.models import Identity
from canary.sources import get_source
from canary.trace import trace

# Below this many identities a progress bar is just noise.
_PROGRESS_THRESHOLD = 1000


def identity_dict(identity: Identity, source_name: str | None = None) -> dict:
    """The JSON form of an identity."""
    data = {
        "id": identity.id,
        "alias": identity.alias,
        "display_name": identity.display_name,
        "style": identity.style,
        "source_id": identity.source_id,
        "created_at": identity.created_at,
        "given_at": identity.given_at,
        "retired_at": identity.retired_at,
    }
    if source_name is not None:
        data["source"] = source_name
    return data


def _domain(ctx: CliContext) -> str:
    if ctx.args.domain:
        try:
            domain = parse_domain(ctx.args.domain)
        except ValueError as exc:
            raise CommandFailed(f"bad --domain: {exc}") from None
        if domain not in ctx.settings.domains:
            raise CommandFailed(
                f"{domain} is not a canary domain of this service "
                f"(CANARY_DOMAINS: {', '.join(ctx.settings.domains) or 'none set'})"
            )
        return domain
    if ctx.settings.default_domain is None:
        raise CommandFailed("no canary domain configured: set CANARY_DOMAINS (e.g. canary.example)")
    return ctx.settings.default_domain


def cmd_new(ctx: CliContext) -> None:
    args = ctx.args
    request = IdentityRequest(
        count=args.count,
        style=args.style or ctx.settings.identity_style,
        domain=_domain(ctx),
        real_name=args.real_name,
        locale=args.locale or ctx.settings.faker_locale,
    )
    with ctx.store.session() as session:
        owner = ctx.user(session)
        source = get_source(session, owner, args.source)
        if request.count >= _PROGRESS_THRESHOLD and not ctx.json:
            from rich.progress import Progress

            with Progress(transient=False) as bar:
                task = bar.add_task(f"identities for {source.name}", total=request.count)
                created = create_identities(
                    session,
                    owner,
                    source,
                    request,
                    progress=lambda done: bar.update(task, completed=done),
                )
        else:
            created = create_identities(session, owner, source, request)
        data = [identity_dict(i, source.name) for i in created]

    def human() -> None:
        if len(data) == 1:
            print(f"name:  {data[0]['display_name']}")
            print(f"email: {data[0]['alias']}")
        elif len(data) <= 50:
            for item in data:
                print(f"{item['alias']}\t{item['display_name']}")
        else:
            print(f"{len(data):,} identities issued to {source.name!r}")

    ctx.emit(data, human)


def cmd_retire(ctx: CliContext) -> None:
    with ctx.store.session() as session:
        owner = ctx.user(session)
        identity = retire_identity(session, owner, ctx.args.address)
        data = identity_dict(identity)
    ctx.emit(data, lambda: print(f"{data['alias']} retired"))


def cmd_given(ctx: CliContext) -> None:
    """Record when identities were used for a signup (time-to-leak starts there)."""
    from pathlib import Path

    from canary.study import parse_given_csv, parse_time, record_given

    args = ctx.args
    if args.csv:
        entries = parse_given_csv(Path(args.csv).read_text(encoding="utf-8-sig"))
    elif args.address:
        entries = [(args.address, parse_time(args.at or "now"))]
    else:
        raise CommandFailed("name an identity (id or alias) or give --csv FILE")
    with ctx.store.session() as session:
        owner = ctx.user(session)
        data = [identity_dict(i) for i in record_given(session, owner, entries)]

    def human() -> None:
        for item in data[:20]:
            print(f"{item['alias']} given at {item['given_at']:%Y-%m-%d %H:%M:%S %Z}")
        if len(data) > 20:
            print(f"... {len(data):,} signup times recorded")

    ctx.emit(data, human)


def cmd_list(ctx: CliContext) -> None:
    with ctx.store.session() as session:
        owner = ctx.user(session)
        source = get_source(session, owner, ctx.args.source) if ctx.args.source else None
        rows = list_identities(session, owner, source, limit=ctx.args.limit)
        data = [identity_dict(i) for i in rows]

    def human() -> None:
        for item in data:
            state = " (retired)" if item["retired_at"] else ""
            print(f"{item['id']:>7}  {item['alias']:<40} {item['display_name']}{state}")

    ctx.emit(data, human)


def cmd_trace(ctx: CliContext) -> int:
    with ctx.store.session() as session:
        owner = ctx.user(session)
        result = trace(session, owner, ctx.args.text)
        data = {
            "query": result.query,
            "note": result.note,
            "matches": [m.as_dict() for m in result.matches],
        }

    def human() -> None:
        if not data["matches"]:
            print(
                f"no source got {data['query']!r}" + (f": {data['note']}" if data["note"] else "")
            )
        for m in data["matches"]:
            ident = m["identity"]
            print(
                f"{m['source']['name']}: {ident['display_name']} <{ident['alias']}> "
                f"(matched on {m['matched_on']}, score {m['score']:g}, "
                f"issued {ident['created_at']:%Y-%m-%d})"
            )

    ctx.emit(data, human)
    # Like grep: exit 1 when nothing matched, so scripts can tell.
    return 0 if data["matches"] else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    identity = subparsers.add_parser("identity", help="issue and retire identities")
    commands = identity.add_subparsers(dest="identity_command", metavar="ACTION")
    commands.required = True

    new = commands.add_parser("new", help="issue identities to a source")
    new.add_argument("source", help="source name or id")
    new.add_argument("--real-name", help="tag this real name instead of a synthetic persona")
    new.add_argument("--style", choices=ALIAS_STYLES, help="alias style (default: token)")
    new.add_argument("--count", type=int, default=1, help="how many (default 1)")
    new.add_argument("--domain", help="canary domain (default: the first of CANARY_DOMAINS)")
    new.add_argument("--locale", help="Faker locale for personas (default: CANARY_FAKER_LOCALE)")
    add_user_flag(new)
    add_json_flag(new)
    new.set_defaults(handler=cmd_new)

    retire = commands.add_parser("retire", help="retire an identity (later mail is evidence)")
    retire.add_argument("address", help="alias address or identity id")
    add_user_flag(retire)
    add_json_flag(retire)
    retire.set_defaults(handler=cmd_retire)

    given = commands.add_parser("given", help="record when an identity was used for a signup")
    given.add_argument("address", nargs="?", help="alias address or identity id")
    given.add_argument("--at", help="ISO 8601 time of the signup (default: now; naive = UTC)")
    given.add_argument("--csv", help="bulk: a CSV with identity (id or alias) and given_at")
    add_user_flag(given)
    add_json_flag(given)
    given.set_defaults(handler=cmd_given)

    lst = commands.add_parser("list", help="list identities, newest first")
    lst.add_argument("--source", help="only this source")
    lst.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    add_user_flag(lst)
    add_json_flag(lst)
    lst.set_defaults(handler=cmd_list)

    tr = subparsers.add_parser("trace", help="which source got this address, name or code?")
    tr.add_argument("text", help="an address, a name, or a code read off a letter")
    add_user_flag(tr)
    add_json_flag(tr)
    tr.set_defaults(handler=cmd_trace)
