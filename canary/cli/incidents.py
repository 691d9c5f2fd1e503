"""Findings, incidents, and acting on an incident: confirm, dismiss, reopen, export."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from canary.assessment import reevaluate_after_correction
from canary.cli.context import CliContext, add_json_flag, add_user_flag
from canary.evidence_pack import build_pack
from canary.inbox import Page, incident_dict, list_findings, list_incidents
from canary.models import VERDICTS
from canary.review import set_incident_status
from canary.sources import get_source


def _source_id(ctx: CliContext, session) -> int | None:  # type: ignore[no-untyped-def]
    if not ctx.args.source:
        return None
    return get_source(session, ctx.user(session), ctx.args.source).id


def _list(
    ctx: CliContext,
    lister: Callable[..., Page],
    filters: dict[str, Any],
    line: Callable[[dict[str, Any]], str],
    empty: str,
) -> None:
    """Print one page of ``lister``'s rows for the acting user, one line each."""
    with ctx.store.session() as session:
        page = lister(
            session,
            ctx.user(session),
            source_id=_source_id(ctx, session),
            limit=ctx.args.limit,
            **filters,
        )
    data = page.items

    def human() -> None:
        if not data:
            print(empty)
        for row in data:
            print(line(row))

    ctx.emit(data, human)


def _finding_line(f: dict[str, Any]) -> str:
    when = f["created_at"].strftime("%Y-%m-%d %H:%M")
    return f"{f['id']:>6}  {when}  {f['verdict']:<16} {f.get('source') or '-':<20} {f['sentence']}"


def _incident_line(i: dict[str, Any]) -> str:
    orgs = ", ".join(i["organisations"]) or "-"
    return (
        f"{i['id']:>5}  {i['status']:<9} {i['kind']:<16} {i['source'] or '-':<20} "
        f"{i['finding_count']:>4} findings  {orgs}"
    )


def cmd_findings(ctx: CliContext) -> None:
    _list(ctx, list_findings, {"verdict": ctx.args.verdict}, _finding_line, "no findings")


def cmd_incidents(ctx: CliContext) -> None:
    _list(ctx, list_incidents, {"status": ctx.args.status}, _incident_line, "no incidents")


def _set_status(ctx: CliContext, status: str) -> None:
    with ctx.store.session() as session:
        incident = set_incident_status(
            session, ctx.user(session), ctx.args.id, status, on_change=reevaluate_after_correction
        )
        data = incident_dict(incident)
    ctx.emit(data, lambda: print(f"incident {data['id']} is {data['status']}"))


def cmd_export(ctx: CliContext) -> None:
    with ctx.store.session() as session:
        pack = build_pack(session, ctx.user(session), ctx.args.id)
    output = Path(ctx.args.output or f"incident-{ctx.args.id}-evidence.zip")
    output.write_bytes(pack.data)
    data = {"file": str(output), "messages": pack.message_ids, "files": pack.files}
    ctx.emit(
        data,
        lambda: print(
            f"wrote {output} ({len(pack.message_ids)} messages, {len(pack.files) + 1} files)",
            file=sys.stdout,
        ),
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    findings = subparsers.add_parser("findings", help="current verdicts, newest first")
    findings.add_argument("--source", help="only this source")
    findings.add_argument("--verdict", choices=VERDICTS, help="only this verdict")
    findings.add_argument("--limit", type=int, default=50)
    add_user_flag(findings)
    add_json_flag(findings)
    findings.set_defaults(handler=cmd_findings)

    incidents = subparsers.add_parser("incidents", help="incidents, newest first")
    incidents.add_argument("--source", help="only this source")
    incidents.add_argument("--status", choices=("open", "confirmed", "dismissed"))
    incidents.add_argument("--limit", type=int, default=50)
    add_user_flag(incidents)
    add_json_flag(incidents)
    incidents.set_defaults(handler=cmd_incidents)

    incident = subparsers.add_parser("incident", help="act on one incident")
    actions = incident.add_subparsers(dest="incident_command", metavar="ACTION")
    actions.required = True
    for name, status, text in (
        ("confirm", "confirmed", "confirm: yes, this source leaked"),
        ("dismiss", "dismissed", "dismiss: not a leak (re-opens if a new organisation writes)"),
        ("reopen", "open", "open the incident again"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("id", type=int)
        add_user_flag(action)
        add_json_flag(action)
        action.set_defaults(handler=lambda ctx, status=status: _set_status(ctx, status))
    export = actions.add_parser("export", help="write the incident's evidence pack (a zip)")
    export.add_argument("id", type=int)
    export.add_argument("-o", "--output", help="zip file (default incident-ID-evidence.zip)")
    add_user_flag(export)
    add_json_flag(export)
    export.set_defaults(handler=cmd_export)
