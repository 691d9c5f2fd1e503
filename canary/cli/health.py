"""``canary healthcheck``: is the local ``canary serve`` answering? (for container checks)"""

from __future__ import annotations

import argparse
import smtplib
import urllib.error
import urllib.request

from canary.cli.context import CliContext, CommandFailed, add_json_flag


def _connect_host(bound: str) -> str:
    # A wildcard bind address is reachable on loopback.
    return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(bound, bound)


def check_smtp(host: str, port: int, timeout: float) -> str:
    """The SMTP greeting of the listener; raises CommandFailed when it does not answer."""
    try:
        with smtplib.SMTP(host, port, timeout=timeout) as client:
            code, _ = client.noop()
    except (OSError, smtplib.SMTPException) as exc:
        raise CommandFailed(f"SMTP on {host}:{port} is not answering: {exc}") from None
    if code != 250:
        raise CommandFailed(f"SMTP on {host}:{port} answered NOOP with {code}")
    return "ok"


def check_http(host: str, port: int, timeout: float) -> str:
    """The dashboard's liveness endpoint; raises CommandFailed unless it answers 200."""
    url = f"http://{host}:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            status = response.status
    except (OSError, urllib.error.URLError) as exc:
        raise CommandFailed(f"dashboard at {url} is not answering: {exc}") from None
    if status != 200:
        raise CommandFailed(f"dashboard at {url} answered {status}")
    return "ok"


def cmd_healthcheck(ctx: CliContext) -> None:
    s = ctx.settings
    data = {"smtp": check_smtp(_connect_host(s.smtp_host), s.smtp_port, ctx.args.timeout)}
    if not ctx.args.smtp_only:
        data["http"] = check_http(_connect_host(s.http_host), s.http_port, ctx.args.timeout)
    ctx.emit(data, lambda: print("healthy: " + ", ".join(data)))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "healthcheck", help="exit 0 when the local `canary serve` answers SMTP and HTTP"
    )
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per check")
    parser.add_argument("--smtp-only", action="store_true", help="skip the dashboard check")
    add_json_flag(parser)
    parser.set_defaults(handler=cmd_healthcheck)
