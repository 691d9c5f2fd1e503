"""``canary study import|list|show|personas|given|confirm|export``."""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from canary.cli.context import CliContext, CommandFailed, add_json_flag, add_user_flag
from canary.config import parse_domain
from canary.export import FORMATS, RAW_FORMATS, export_study
from canary.identity import ALIAS_STYLES
from canary.models import Identity
from canary.study import (
    get_study,
    import_study,
    list_studies,
    parse_given_csv,
    parse_plan,
    record_given,
    set_auto_confirm,
    study_sites,
)


def canary_domain(ctx: CliContext) -> str:
    """The canary domain from ``--domain`` (checked) or the first configured one."""
    given = getattr(ctx.args, "domain", None)
    if given:
        try:
            domain = parse_domain(given)
        except ValueError as exc:
            raise CommandFailed(f"bad --domain: {exc}") from None
        if domain not in ctx.settings.domains:
            raise CommandFailed(f"{domain} is not one of CANARY_DOMAINS")
        return domain
    if ctx.settings.default_domain is None:
        raise CommandFailed("no canary domain configured: set CANARY_DOMAINS (e.g. canary.example)")
    return ctx.settings.default_domain


@contextmanager
def progress_bar(enabled: bool) -> Iterator[Callable[[str, int, int], None]]:
    """A Rich progress callback ``(stage, done, total)``; silent when not enabled."""
    if not enabled:
        yield lambda stage, done, total: None
        return
    from rich.progress import Progress

    with Progress(transient=False, console=_stderr_console()) as bar:
        tasks: dict[str, int] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update


def _stderr_console():  # type: ignore[no-untyped-def]
    from rich.console import Console

    # Progress goes to stderr so that stdout stays clean for CSV and JSON.
    return Console(stderr=True)


def _read_text(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise CommandFailed(f"cannot read {path}: {exc.strerror}") from None


def cmd_import(ctx: CliContext) -> None:
    args = ctx.args
    sites = parse_plan(_read_text(args.plan))
    with ctx.store.session() as session, progress_bar(not ctx.json) as progress:
        owner = ctx.user(session)
        result = import_study(
            session,
            owner,
            args.name,
            sites,
            domain=canary_domain(ctx),
            personas_per_site=args.personas,
            locale=args.locale or ctx.settings.faker_locale,
            style=args.style or ctx.settings.identity_style,
            auto_confirm=args.auto_confirm,
            seed=args.seed,
            progress=progress,
        )
        data = {
            "study": {"id": result.study.id, "name": result.study.name},
            "sites": len(result.sources),
            "identities": len(result.identities),
            "auto_confirm": result.study.auto_confirm,
        }
    ctx.emit(
        data,
        lambda: print(
            f"study {data['study']['name']!r}: {data['sites']:,} sites, "
            f"{data['identities']:,} personas (list them: canary study personas "
            f"{data['study']['name']!r})"
        ),
    )


def cmd_list(ctx: CliContext) -> None:
    with ctx.store.session() as session:
        owner = ctx.user(session)
        data = [
            {"id": s.id, "name": s.name, "sites": n, "auto_confirm": s.auto_confirm,
             "created_at": s.created_at}
            for s, n in list_studies(session, owner)
        ]  # fmt: skip

    def human() -> None:
        if not data:
            print("no studies yet: canary study import NAME PLAN.csv")
        for s in data:
            confirm = "  auto-confirm" if s["auto_confirm"] else ""
            print(f"{s['id']:>5}  {s['name']:<30} {s['sites']:>7} sites{confirm}")

    ctx.emit(data, human)


def _personas(ctx: CliContext) -> list[dict]:
    from sqlmodel import col, select

    with ctx.store.session() as session:
        owner = ctx.user(session)
        study = get_study(session, owner, ctx.args.study)
        pairs = study_sites(session, study)
        sources = {source.id: (site, source) for site, source in pairs}
        rows = []
        ids = list(sources)
        for start in range(0, len(ids), 500):
            for i in session.exec(
                select(Identity)
                .where(col(Identity.source_id).in_(ids[start : start + 500]))
                .order_by(Identity.id)
            ):
                site, source = sources[i.source_id]
                rows.append(
                    {"identity_id": i.id, "site": source.name, "url": source.url or "",
                     "category": site.category, "name": i.display_name, "email": i.alias,
                     "given_at": i.given_at.isoformat() if i.given_at else ""}
                )  # fmt: skip
    return rows


def cmd_personas(ctx: CliContext) -> None:
    rows = _personas(ctx)
    if ctx.json:
        ctx.emit(rows)
        return
    columns = ["identity_id", "site", "url", "category", "name", "email", "given_at"]
    with ExitStack() as stack:
        out = (
            stack.enter_context(open(ctx.args.output, "w", newline="", encoding="utf-8"))
            if ctx.args.output
            else sys.stdout
        )
        writer = csv.DictWriter(out, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def cmd_given(ctx: CliContext) -> None:
    entries = parse_given_csv(_read_text(ctx.args.csv))
    with ctx.store.session() as session:
        owner = ctx.user(session)
        changed = record_given(session, owner, entries)
        data = {"recorded": len(changed)}
    ctx.emit(data, lambda: print(f"signup times recorded for {data['recorded']:,} identities"))


def cmd_confirm(ctx: CliContext) -> None:
    with ctx.store.session() as session:
        owner = ctx.user(session)
        study = get_study(session, owner, ctx.args.study)
        if ctx.args.enable or ctx.args.disable:
            set_auto_confirm(session, study, bool(ctx.args.enable))
        data: dict = {"study": study.name, "auto_confirm": study.auto_confirm}
    if ctx.args.run:
        from canary.confirm import resolver_for, run_confirmations

        # Every opted-in study of the installation is served; each link is fetched once.
        with ctx.store.session() as session:
            attempts = run_confirmations(session, resolve=resolver_for(ctx.settings))
            data["attempts"] = [
                {"identity_id": a.identity_id, "url": a.url, "outcome": a.outcome,
                 "status_code": a.status_code, "detail": a.detail}
                for a in attempts
            ]  # fmt: skip
    ctx.emit(
        data,
        lambda: print(
            f"automatic confirmation for {data['study']!r}: "
            + ("on" if data["auto_confirm"] else "off")
        ),
    )


def cmd_export(ctx: CliContext) -> None:
    args = ctx.args
    formats = tuple(args.format or FORMATS)
    with ctx.store.session() as session, progress_bar(not ctx.json) as progress:
        owner = ctx.user(session)
        study = get_study(session, owner, args.study)
        result = export_study(
            session, study, Path(args.directory), formats=formats, raw=args.raw, progress=progress
        )
        data = {
            "directory": str(result.directory),
            "rows": result.rows,
            "files": [str(p) for p in result.files],
        }
    ctx.emit(
        data,
        lambda: print(
            f"exported to {data['directory']}: "
            + ", ".join(f"{n:,} {t}" for t, n in data["rows"].items())
        ),
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    study = subparsers.add_parser("study", help="research studies: many sites, many personas")
    commands = study.add_subparsers(dest="study_command", metavar="ACTION")
    commands.required = True

    imp = commands.add_parser("import", help="create a study from a CSV of sites")
    imp.add_argument("name", help="name of the study")
    imp.add_argument("plan", help="CSV with name,url,domains,category (- for stdin)")
    imp.add_argument("--personas", type=int, default=1, help="personas per site (default 1)")
    imp.add_argument("--locale", help="Faker locale (default: CANARY_FAKER_LOCALE)")
    imp.add_argument("--style", choices=ALIAS_STYLES, help="alias style (default: token)")
    imp.add_argument("--domain", help="canary domain (default: the first of CANARY_DOMAINS)")
    imp.add_argument("--seed", type=int, help="random seed for reproducible persona names")
    imp.add_argument(
        "--auto-confirm",
        action="store_true",
        help="fetch the confirmation link of each site's first authenticated mail once",
    )
    add_user_flag(imp)
    add_json_flag(imp)
    imp.set_defaults(handler=cmd_import)

    lst = commands.add_parser("list", help="list studies")
    add_user_flag(lst)
    add_json_flag(lst)
    lst.set_defaults(handler=cmd_list)

    per = commands.add_parser("personas", help="the personas to sign up with, as CSV")
    per.add_argument("study", help="study name or id")
    per.add_argument("-o", "--output", help="write the CSV to this file (default: stdout)")
    add_user_flag(per)
    add_json_flag(per)
    per.set_defaults(handler=cmd_personas)

    given = commands.add_parser("given", help="record signup times from a CSV (identity,given_at)")
    given.add_argument("csv", help="CSV with identity (id or alias) and given_at columns")
    add_user_flag(given)
    add_json_flag(given)
    given.set_defaults(handler=cmd_given)

    confirm = commands.add_parser("confirm", help="show or switch automatic confirmation")
    confirm.add_argument("study", help="study name or id")
    switch = confirm.add_mutually_exclusive_group()
    switch.add_argument("--enable", action="store_true", help="opt in")
    switch.add_argument("--disable", action="store_true", help="opt out")
    confirm.add_argument(
        "--run", action="store_true", help="fetch pending confirmation links of opted-in studies"
    )
    add_user_flag(confirm)
    add_json_flag(confirm)
    confirm.set_defaults(handler=cmd_confirm)

    exp = commands.add_parser("export", help="export the study's data for analysis")
    exp.add_argument("study", help="study name or id")
    exp.add_argument("directory", help="output directory (created)")
    exp.add_argument(
        "--format", action="append", choices=FORMATS, help="csv and/or jsonl (default both)"
    )
    exp.add_argument("--raw", choices=RAW_FORMATS, help="also write raw messages (mbox or eml)")
    add_user_flag(exp)
    add_json_flag(exp)
    exp.set_defaults(handler=cmd_export)
