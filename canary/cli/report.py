"""``canary report STUDY``: the measurement report, with graph and plot files on request."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from canary.cli.context import CliContext, add_json_flag, add_user_flag
from canary.report import (
    CDF_MARKS,
    Report,
    cdf_svg,
    graph_json,
    graphml,
    share_within,
    study_report,
)
from canary.study import get_study


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%"


def print_report(report: Report) -> None:
    """The report as Rich tables on stdout."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]{report.study}[/bold]: {report.sites:,} sites, "
                  f"{report.identities:,} personas")  # fmt: skip
    summary = Table(show_header=False, box=None)
    for label, count in (
        ("sites whose personas received any mail", report.sites_with_mail),
        ("sites with shared findings", report.sites_with_shared),
        ("sites with breach findings", report.sites_with_breach),
    ):
        summary.add_row(label, f"{count:,}", _pct(report.share(count)))
    tp = report.third_parties_per_site
    summary.add_row(
        "third parties per site",
        f"mean {tp['mean']:g}",
        f"median {tp['median']:g}, max {tp['max']:g}",
    )
    days = report.days_to_first_third_party
    if days["median"] is not None:
        summary.add_row(
            "days from signup to first third-party mail",
            f"median {days['median']:g}",
            f"quartiles {days['q1']:g} / {days['q3']:g} ({days['sites']} sites)",
        )
    console.print(summary)
    if report.cdf:
        curve = Table(title="share of sites with a third-party message by day")
        curve.add_column("within")
        curve.add_column("share")
        curve.add_column("")
        for mark in CDF_MARKS:
            share = share_within(report, mark)
            curve.add_row(f"{mark} days", _pct(share), "█" * round(share * 40))
        console.print(curve)
    if report.top_third_parties:
        top = Table(title="third parties reached by the most sites")
        top.add_column("organisation")
        top.add_column("sites", justify="right")
        for org, n in report.top_third_parties:
            top.add_row(org, str(n))
        console.print(top)


def cmd_report(ctx: CliContext) -> None:
    args = ctx.args
    with ctx.store.session() as session:
        owner = ctx.user(session)
        study = get_study(session, owner, args.study)
        report = study_report(session, study)
    if args.graphml:
        Path(args.graphml).write_bytes(graphml(report))
    if args.graph_json:
        Path(args.graph_json).write_text(json.dumps(graph_json(report), indent=2), encoding="utf-8")
    if args.plot:
        Path(args.plot).write_text(cdf_svg(report), encoding="utf-8")
    ctx.emit(report.as_dict(), lambda: print_report(report))


def register(subparsers: argparse._SubParsersAction) -> None:
    report = subparsers.add_parser("report", help="measurement report of a study")
    report.add_argument("study", help="study name or id")
    report.add_argument("--graphml", metavar="FILE", help="write the site-to-third-party graph")
    report.add_argument("--graph-json", metavar="FILE", help="the graph as node-link JSON")
    report.add_argument("--plot", metavar="FILE.svg", help="the cumulative time-to-leak curve")
    add_user_flag(report)
    add_json_flag(report)
    report.set_defaults(handler=cmd_report)
