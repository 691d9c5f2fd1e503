"""``canary messages`` and ``canary message show``: what the mail server received."""

from __future__ import annotations

import argparse
from typing import Any

from canary.cli.context import CliContext, add_json_flag, add_user_flag
from canary.messages import list_messages, show_message


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``messages`` and ``message show``."""
    listing = subparsers.add_parser("messages", help="list received messages, newest first")
    listing.add_argument("--source", metavar="S", help="only messages to this source's identities")
    listing.add_argument("--limit", type=int, default=50, help="how many (default 50)")
    add_json_flag(listing)
    add_user_flag(listing)
    listing.set_defaults(handler=cmd_messages)

    message = subparsers.add_parser("message", help="one received message")
    sub = message.add_subparsers(dest="message_command", metavar="ACTION")
    sub.required = True
    show = sub.add_parser("show", help="envelope, key headers, attribution and verdict")
    show.add_argument("id", type=int, metavar="ID")
    add_json_flag(show)
    add_user_flag(show)
    show.set_defaults(handler=cmd_show)


_CONTROL = {c: "\ufffd" for c in [*range(0, 32), 127, *range(128, 160)]}
_CONTROL.update({9: " ", 10: " ", 13: " "})


def _safe(value: object) -> str:
    """Text from a message made safe for a terminal: no escape or control characters.

    Subjects and headers come from anyone; an ESC sequence in a subject must not be able
    to rewrite the operator's screen.
    """
    return str(value).translate(_CONTROL)


def _out(line: str) -> None:
    print(_safe(line))


def _verdicts(deliveries: list[dict[str, Any]]) -> str:
    parts = []
    for d in deliveries:
        verdict = d["verdict"] or ("role" if d["kind"] == "role" else "pending")
        parts.append(f"{d['recipient']}={verdict}")
    return ", ".join(parts)


def cmd_messages(ctx: CliContext) -> int:
    """List messages."""
    with ctx.store.session() as session:
        rows = list_messages(session, ctx.user(session), ctx.args.source, ctx.args.limit)

    def human() -> None:
        if not rows:
            _out("no messages")
        for r in rows:
            when = r["received_at"].strftime("%Y-%m-%d %H:%M:%S")
            sender = r["from"] or r["mail_from"] or "<>"
            subject = (r["subject"] or "")[:60]
            _out(f"{r['id']:>6}  {when}  {r['state']:<10}  {sender}  {subject}")
            _out(f"        {_verdicts(r['deliveries'])}")

    ctx.emit(rows, human)
    return 0


def cmd_show(ctx: CliContext) -> int:
    """Show one message."""
    with ctx.store.session() as session:
        data = show_message(session, ctx.user(session), ctx.args.id)

    def human() -> None:
        env = data["envelope"]
        _out(f"message {data['id']}  state={data['state']}")
        if data["error"]:
            _out(f"  error: {data['error']}")
        _out(f"  received  {env['received_at'].isoformat()} from {env['peer_ip']}")
        _out(f"  helo      {env['helo']}   tls={'yes' if env['tls'] else 'no'}")
        _out(f"  mail from {env['mail_from']}")
        _out(f"  rcpt to   {', '.join(env['rcpt_to'])}")
        _out(f"  size      {env['size']} bytes")
        headers = data["headers"]
        for key in ("from", "to", "reply_to"):
            if headers[key]:
                _out(f"  {key:<9} {', '.join(headers[key])}")
        for key in ("sender", "return_path", "message_id", "date", "subject", "list_id"):
            if headers[key]:
                _out(f"  {key:<9} {headers[key]}")
        if headers["list_unsubscribe"]:
            _out(f"  list-unsubscribe {headers['list_unsubscribe']}")
        _out(
            f"  received headers {len(headers['received'])}, dkim signatures "
            f"{headers['dkim_signatures']}"
        )
        for a in data["attachments"]:
            _out(
                f"  attachment {a['filename'] or '(no name)'} {a['type']} {a['size']} bytes "
                f"sha256={a['sha256'][:16]}"
            )
        if not data["parse"]["parsed"]:
            _out(f"  unparsable: {data['parse']['error']}")
        for d in data["deliveries"]:
            verdict = d["verdict"] or ("role mailbox" if d["kind"] == "role" else "pending")
            who = (
                f"{d['identity_name']} <{d['identity']}> of {d['source']}"
                if d["identity"]
                else d["kind"]
            )
            _out(f"  delivery {d['recipient']}: {who}: {verdict}")
            if d["sentence"]:
                _out(f"    {d['sentence']}")
            for e in d["evidence"]:
                _out(f"    - {e['code']} {e['detail']}".rstrip())

    ctx.emit(data, human)
    return 0
