"""``canary seed new|list|export``: seed records for a company's vendors."""

from __future__ import annotations

import argparse
import sys

from canary.cli.context import CliContext, add_json_flag, add_user_flag
from canary.cli.study import canary_domain
from canary.identity import ALIAS_STYLES
from canary.seeds import (
    DEFAULT_COLUMNS,
    DEFAULT_POSTAL_FORMAT,
    FIELDS,
    batch_identities,
    get_batch,
    list_batches,
    new_seed_batch,
    parse_columns,
    seed_csv,
    seed_row,
)
from canary.sources import authorised_domains


def _write(ctx: CliContext, text: str) -> None:
    if ctx.args.output:
        with open(ctx.args.output, "w", newline="", encoding="utf-8") as handle:
            handle.write(text)
    else:
        sys.stdout.write(text)


def cmd_new(ctx: CliContext) -> None:
    args = ctx.args
    columns = parse_columns(args.columns)
    with ctx.store.session() as session:
        owner = ctx.user(session)
        progress = None
        bar = None
        if args.count >= 1000 and not ctx.json:
            from rich.console import Console
            from rich.progress import Progress

            bar = Progress(console=Console(stderr=True))
            bar.start()
            task = bar.add_task(f"seeds for {args.vendor}", total=args.count)
            progress = lambda done: bar.update(task, completed=done)  # noqa: E731
        try:
            result = new_seed_batch(
                session, owner, args.vendor, args.count, domain=canary_domain(ctx),
                vendor_domains=args.vendor_domain or (), company_domains=args.company_domain or (),
                postal_format=args.postal_format, label=args.label or "",
                locale=args.locale or ctx.settings.faker_locale,
                style=args.style or ctx.settings.identity_style, progress=progress,
            )  # fmt: skip
        finally:
            if bar is not None:
                bar.stop()
        vendor = result.source.name
        text = seed_csv(result.identities, columns, vendor, result.batch.id, args.delimiter)
        data = {
            "batch": result.batch.id,
            "vendor": vendor,
            "authorised_senders": authorised_domains(session, result.source),
            "seeds": [seed_row(i, vendor, result.batch.id) for i in result.identities],
        }
    if ctx.json:
        ctx.emit(data)
        return
    _write(ctx, text)
    if args.output:
        print(
            f"batch {data['batch']}: {len(data['seeds']):,} seeds for {vendor!r} in {args.output}"
        )


def cmd_list(ctx: CliContext) -> None:
    with ctx.store.session() as session:
        owner = ctx.user(session)
        data = [
            {"batch": b.id, "vendor": s.name, "count": b.count, "label": b.label,
             "created_at": b.created_at}
            for b, s in list_batches(session, owner)
        ]  # fmt: skip

    def human() -> None:
        if not data:
            print("no seed batches yet: canary seed new VENDOR --count N")
        for b in data:
            print(f"{b['batch']:>5}  {b['vendor']:<30} {b['count']:>6} seeds  "
                  f"{b['created_at']:%Y-%m-%d}  {b['label']}")  # fmt: skip

    ctx.emit(data, human)


def cmd_export(ctx: CliContext) -> None:
    columns = parse_columns(ctx.args.columns)
    with ctx.store.session() as session:
        owner = ctx.user(session)
        batch = get_batch(session, owner, ctx.args.batch)
        from canary.models import Source

        vendor = session.get(Source, batch.source_id)
        assert vendor is not None
        identities = batch_identities(session, batch)
        text = seed_csv(identities, columns, vendor.name, batch.id, ctx.args.delimiter)
        data = [seed_row(i, vendor.name, batch.id) for i in identities]
    if ctx.json:
        ctx.emit(data)
    else:
        _write(ctx, text)


def _csv_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--columns",
        default=DEFAULT_COLUMNS,
        help=f"column layout, e.g. 'Full name=name,E-mail=email,Address 2=postal_line,"
        f"Country=const:DE' (fields: {', '.join(FIELDS)}; default {DEFAULT_COLUMNS})",
    )
    parser.add_argument("--delimiter", default=",", help="CSV delimiter (default ,)")
    parser.add_argument("-o", "--output", help="write the CSV to this file (default: stdout)")


def register(subparsers: argparse._SubParsersAction) -> None:
    seed = subparsers.add_parser("seed", help="seed records for the lists you hand to vendors")
    commands = seed.add_subparsers(dest="seed_command", metavar="ACTION")
    commands.required = True

    new = commands.add_parser("new", help="make a batch of seed records for a vendor")
    new.add_argument("vendor", help="vendor name (a source; created when missing)")
    new.add_argument("--count", type=int, default=10, help="how many seeds (default 10)")
    new.add_argument("--vendor-domain", action="append", metavar="D",
                     help="a domain of the vendor, allowed to mail seeds (repeatable)")  # fmt: skip
    new.add_argument("--company-domain", action="append", metavar="D",
                     help="your company's domain, allowed to mail seeds (repeatable)")  # fmt: skip
    new.add_argument("--postal-format", default=DEFAULT_POSTAL_FORMAT,
                     help="tagged postal line with {code} (default 'Suite {code}')")  # fmt: skip
    new.add_argument("--label", help="a note for this batch (e.g. the list's name)")
    new.add_argument("--locale", help="Faker locale (default: CANARY_FAKER_LOCALE)")
    new.add_argument("--style", choices=ALIAS_STYLES, help="alias style (default: token)")
    new.add_argument("--domain", help="canary domain (default: the first of CANARY_DOMAINS)")
    _csv_flags(new)
    add_user_flag(new)
    add_json_flag(new)
    new.set_defaults(handler=cmd_new)

    lst = commands.add_parser("list", help="list seed batches")
    add_user_flag(lst)
    add_json_flag(lst)
    lst.set_defaults(handler=cmd_list)

    exp = commands.add_parser("export", help="write a batch's seeds again as CSV")
    exp.add_argument("batch", type=int, help="batch id")
    _csv_flags(exp)
    add_user_flag(exp)
    add_json_flag(exp)
    exp.set_defaults(handler=cmd_export)
