"""Export of a study for analysis: CSV and JSON Lines, a data dictionary, raw messages.

One file per table (``sites``, ``identities``, ``messages``, ``deliveries``,
``findings``) in each chosen format, plus ``DATA_DICTIONARY.md`` and
``data_dictionary.json`` describing every column. Lists (authorised senders, evidence,
recipients) are JSON arrays in JSON Lines and JSON-encoded text in CSV cells, so a CSV
reader gets them back with one ``json.loads``. Times are ISO 8601 in UTC.

Only the study's own deliveries are exported: a message that also reached another
user's address lists only the study's recipients in ``rcpt_to``. Raw messages, on
request, go to ``messages.mbox`` (stdlib :mod:`mailbox`; this package's own mail server
lives at ``canary.mailbox``, so the import below is the standard library) or to
``eml/<message id>.eml``, byte-exact.
"""

from __future__ import annotations

import csv
import json
import mailbox
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from email.header import decode_header, make_header
from email.message import Message as EmailMessage
from email.parser import BytesHeaderParser
from email.policy import compat32
from pathlib import Path
from typing import Any, TextIO

from sqlmodel import Session, col, select

from canary.errors import InvalidInput
from canary.models import AuthorisedSender, Delivery, Finding, Identity, Message, Study
from canary.study import study_sites

FORMATS = ("csv", "jsonl")
RAW_FORMATS = ("mbox", "eml")
_CHUNK = 500

# table -> [(column, type, description)]; the writers emit exactly these columns.
DICTIONARY: dict[str, list[tuple[str, str, str]]] = {
    "sites": [
        ("source_id", "integer", "id of the site's source"),
        ("name", "string", "site name from the study plan"),
        ("slug", "string", "URL-safe form of the name"),
        ("url", "string", "site URL from the plan (may be empty)"),
        ("category", "string", "category from the plan"),
        ("plan_line", "integer", "line of the plan CSV the site came from"),
        ("authorised_senders", "list of string", "registrable domains allowed to mail it"),
    ],
    "identities": [
        ("identity_id", "integer", "id of the persona"),
        ("source_id", "integer", "site it was issued to (sites.source_id)"),
        ("site", "string", "site name"),
        ("alias", "string", "the email address used for the signup"),
        ("display_name", "string", "the tagged persona name"),
        ("created_at", "datetime", "when the persona was generated"),
        ("given_at", "datetime", "when it was used for the signup (empty: unknown)"),
        ("retired_at", "datetime", "when it was retired (empty: active)"),
        ("postal_line", "string", "tagged postal line, if any"),
        ("reference", "string", "tagged reference code, if any"),
    ],
    "messages": [
        ("message_id", "integer", "id of the SMTP transaction"),
        ("received_at", "datetime", "when the 250 reply was sent"),
        ("peer_ip", "string", "IP address of the sending server"),
        ("helo", "string", "HELO/EHLO name the sender gave"),
        ("mail_from", "string", "SMTP envelope sender (MAIL FROM)"),
        ("rcpt_to", "list of string", "envelope recipients that belong to this study"),
        ("tls", "boolean", "whether STARTTLS was used"),
        ("size", "integer", "size of the raw message in bytes"),
        ("state", "string", "analysis state (analysed, unparsable, queued ...)"),
        ("sender_org", "string", "registrable domain responsible for the message"),
        ("header_from", "string", "From header (decoded)"),
        ("header_sender", "string", "Sender header"),
        ("header_reply_to", "string", "Reply-To header"),
        ("header_to", "string", "To header"),
        ("header_subject", "string", "Subject header (decoded)"),
        ("header_date", "string", "Date header as sent"),
        ("header_message_id", "string", "Message-ID header"),
        ("header_return_path", "string", "Return-Path header"),
        ("header_list_id", "string", "List-Id header"),
        ("header_list_unsubscribe", "string", "List-Unsubscribe header"),
        ("dkim_domains", "list of string", "d= tags of the DKIM-Signature headers (unverified)"),
    ],
    "deliveries": [
        ("delivery_id", "integer", "id of one message to one recipient"),
        ("message_id", "integer", "messages.message_id"),
        ("recipient", "string", "envelope recipient as sent"),
        ("identity_id", "integer", "identities.identity_id"),
        ("source_id", "integer", "sites.source_id"),
        ("site", "string", "site name"),
        ("received_at", "datetime", "receive time"),
        ("verdict", "string", "current verdict (empty: not yet decided)"),
    ],
    "findings": [
        ("finding_id", "integer", "id of the current finding"),
        ("delivery_id", "integer", "deliveries.delivery_id"),
        ("message_id", "integer", "messages.message_id"),
        ("identity_id", "integer", "identities.identity_id"),
        ("source_id", "integer", "sites.source_id"),
        ("site", "string", "site name"),
        ("verdict", "string", "expected, shared, breach, after_retirement, cross_source"),
        ("sender_org", "string", "authenticated sender organisation"),
        ("sentence", "string", "the verdict in words"),
        ("evidence", "list of {code, detail}", "machine-readable evidence items"),
        ("created_at", "datetime", "when the verdict was reached"),
    ],
}


@dataclass
class ExportResult:
    """Where the export went and how many rows each table has."""

    directory: Path
    rows: dict[str, int] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


class _TableWriter:
    """Writes one table's rows to every chosen format at once."""

    def __init__(self, stack: ExitStack, directory: Path, table: str, formats: tuple[str, ...]):
        self.columns = [c for c, _, _ in DICTIONARY[table]]
        self.csv: Any = None
        self.jsonl: TextIO | None = None
        self.paths: list[Path] = []
        self.count = 0
        if "csv" in formats:
            path = directory / f"{table}.csv"
            handle = stack.enter_context(path.open("w", newline="", encoding="utf-8"))
            self.csv = csv.writer(handle)
            self.csv.writerow(self.columns)
            self.paths.append(path)
        if "jsonl" in formats:
            path = directory / f"{table}.jsonl"
            self.jsonl = stack.enter_context(path.open("w", encoding="utf-8"))
            self.paths.append(path)

    def write(self, row: dict[str, Any]) -> None:
        values = [_cell(row.get(c)) for c in self.columns]
        if self.csv is not None:
            self.csv.writerow(
                [
                    json.dumps(v, ensure_ascii=False)
                    if isinstance(v, list | dict)
                    else ("" if v is None else v)
                    for v in values
                ]
            )
        if self.jsonl is not None:
            record = dict(zip(self.columns, values, strict=True))
            self.jsonl.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.count += 1


def _header(msg: EmailMessage, name: str) -> str | None:
    value = msg.get(name)
    if value is None:
        return None
    try:
        return str(make_header(decode_header(str(value))))
    except (UnicodeError, LookupError, ValueError):
        return str(value)


def _dkim_domains(msg: EmailMessage) -> list[str]:
    domains = []
    for value in msg.get_all("DKIM-Signature") or []:
        for tag in str(value).replace("\r\n", "").split(";"):
            key, _, val = tag.strip().partition("=")
            if key.strip() == "d" and val.strip():
                domains.append(val.strip().lower())
    return domains


def _message_row(message: Message, recipients: list[str]) -> dict[str, Any]:
    headers = BytesHeaderParser(policy=compat32).parsebytes(message.raw)
    return {
        "message_id": message.id,
        "received_at": message.received_at,
        "peer_ip": message.peer_ip,
        "helo": message.helo,
        "mail_from": message.mail_from,
        "rcpt_to": recipients,
        "tls": message.tls,
        "size": message.size,
        "state": message.state,
        "sender_org": message.sender_org,
        "header_from": _header(headers, "From"),
        "header_sender": _header(headers, "Sender"),
        "header_reply_to": _header(headers, "Reply-To"),
        "header_to": _header(headers, "To"),
        "header_subject": _header(headers, "Subject"),
        "header_date": _header(headers, "Date"),
        "header_message_id": _header(headers, "Message-ID"),
        "header_return_path": _header(headers, "Return-Path"),
        "header_list_id": _header(headers, "List-Id"),
        "header_list_unsubscribe": _header(headers, "List-Unsubscribe"),
        "dkim_domains": _dkim_domains(headers),
    }


def _chunks(values: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def export_study(
    session: Session,
    study: Study,
    directory: Path,
    formats: tuple[str, ...] = FORMATS,
    raw: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> ExportResult:
    """Write the study's data to ``directory`` (created); ``progress(stage, done, total)``."""
    if not formats or any(f not in FORMATS for f in formats):
        raise InvalidInput(f"formats must be among {', '.join(FORMATS)}")
    if raw is not None and raw not in RAW_FORMATS:
        raise InvalidInput(f"raw messages go to {' or '.join(RAW_FORMATS)}")
    directory.mkdir(parents=True, exist_ok=True)
    result = ExportResult(directory=directory)
    report = progress or (lambda stage, done, total: None)
    pairs = study_sites(session, study)
    names = {source.id: source.name for _, source in pairs}
    source_ids = list(names)  # type: ignore[arg-type]
    with ExitStack() as stack:
        writers = {t: _TableWriter(stack, directory, t, formats) for t in DICTIONARY}
        senders: dict[int, list[str]] = {}
        for chunk in _chunks(source_ids):
            for sid, domain in session.exec(
                select(AuthorisedSender.source_id, AuthorisedSender.domain)
                .where(col(AuthorisedSender.source_id).in_(chunk))
                .order_by(AuthorisedSender.source_id, AuthorisedSender.domain)
            ):
                senders.setdefault(sid, []).append(domain)
        for site, source in pairs:
            writers["sites"].write(
                {"source_id": source.id, "name": source.name, "slug": source.slug,
                 "url": source.url, "category": site.category, "plan_line": site.plan_line,
                 "authorised_senders": senders.get(site.source_id, [])}
            )  # fmt: skip
        report("sites", len(pairs), len(pairs))

        deliveries: list[Delivery] = []
        for done, chunk in enumerate(_chunks(source_ids), 1):
            for identity in session.exec(
                select(Identity).where(col(Identity.source_id).in_(chunk)).order_by(Identity.id)
            ):
                writers["identities"].write(
                    {"identity_id": identity.id, "source_id": identity.source_id,
                     "site": names[identity.source_id], "alias": identity.alias,
                     "display_name": identity.display_name, "created_at": identity.created_at,
                     "given_at": identity.given_at, "retired_at": identity.retired_at,
                     "postal_line": identity.postal_line, "reference": identity.reference}
                )  # fmt: skip
            deliveries.extend(
                session.exec(select(Delivery).where(col(Delivery.source_id).in_(chunk)))
            )
            report("identities", min(done * _CHUNK, len(source_ids)), len(source_ids))
        deliveries.sort(key=lambda d: d.id or 0)

        by_message: dict[int, list[str]] = {}
        for d in deliveries:
            by_message.setdefault(d.message_id, []).append(d.recipient)
            writers["deliveries"].write(
                {"delivery_id": d.id, "message_id": d.message_id, "recipient": d.recipient,
                 "identity_id": d.identity_id, "source_id": d.source_id,
                 "site": names.get(d.source_id or 0), "received_at": d.received_at,
                 "verdict": d.verdict}
            )  # fmt: skip
        delivery_by_id = {d.id: d for d in deliveries}
        for chunk in _chunks(sorted(delivery_by_id)):  # type: ignore[arg-type]
            for f in session.exec(
                select(Finding)
                .where(col(Finding.delivery_id).in_(chunk), col(Finding.superseded_at).is_(None))
                .order_by(Finding.id)
            ):
                d = delivery_by_id[f.delivery_id]
                writers["findings"].write(
                    {"finding_id": f.id, "delivery_id": f.delivery_id,
                     "message_id": d.message_id, "identity_id": d.identity_id,
                     "source_id": d.source_id, "site": names.get(d.source_id or 0),
                     "verdict": f.verdict, "sender_org": f.sender_org, "sentence": f.sentence,
                     "evidence": f.evidence, "created_at": f.created_at}
                )  # fmt: skip

        message_ids = sorted(by_message)
        box = None
        if raw == "mbox":
            box = mailbox.mbox(str(directory / "messages.mbox"), create=True)
            box.lock()
            result.files.append(directory / "messages.mbox")
        elif raw == "eml":
            (directory / "eml").mkdir(exist_ok=True)
            result.files.append(directory / "eml")
        done = 0
        for chunk in _chunks(message_ids):
            for message in session.exec(
                select(Message).where(col(Message.id).in_(chunk)).order_by(Message.id)
            ):
                assert message.id is not None
                writers["messages"].write(_message_row(message, by_message[message.id]))
                if box is not None:
                    entry = mailbox.mboxMessage(message.raw)
                    entry.set_from(
                        message.mail_from or "MAILER-DAEMON", message.received_at.timetuple()
                    )
                    box.add(entry)
                elif raw == "eml":
                    (directory / "eml" / f"{message.id}.eml").write_bytes(message.raw)
            done += len(chunk)
            report("messages", done, len(message_ids))
        if box is not None:
            box.flush()
            box.unlock()
            box.close()
        for table, writer in writers.items():
            result.rows[table] = writer.count
            result.files.extend(writer.paths)
    result.files.extend(write_dictionary(directory, formats))
    return result


def write_dictionary(directory: Path, formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """Write ``DATA_DICTIONARY.md`` and ``data_dictionary.json`` for the export."""
    lines = [
        "# Data dictionary",
        "",
        "Times are ISO 8601 in UTC. In CSV files, list columns hold JSON text;",
        "in JSON Lines files they are JSON arrays. Empty CSV cells are nulls.",
        f"Files: {', '.join(f'<table>.{f}' for f in formats)}.",
        "",
    ]
    for table, columns in DICTIONARY.items():
        lines += [f"## {table}", "", "| column | type | description |", "|---|---|---|"]
        lines += [f"| {c} | {t} | {d} |" for c, t, d in columns]
        lines.append("")
    md = directory / "DATA_DICTIONARY.md"
    md.write_text("\n".join(lines), encoding="utf-8")
    js = directory / "data_dictionary.json"
    js.write_text(
        json.dumps(
            {t: [{"column": c, "type": ty, "description": d} for c, ty, d in cols]
             for t, cols in DICTIONARY.items()},
            indent=2,
        ),
        encoding="utf-8",
    )  # fmt: skip
    return [md, js]
