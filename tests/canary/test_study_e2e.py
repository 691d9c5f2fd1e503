"""End to end: a 50-site study, real mail over SMTP, the worker, the report, the export.

The SMTP server, the analysis worker and sender authentication are the real ones
(tests/support/smtp.py, canary.pipeline.Analyzer, a DNS server on 127.0.0.1): the sites
and the two third parties pass SPF, the breach campaign does not authenticate.
"""

from __future__ import annotations

import csv
import json
import mailbox
from datetime import timedelta
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path

from sqlmodel import select

from canary.config import Settings
from canary.export import DICTIONARY, export_study
from canary.models import Delivery, Finding, Identity, Message, User, utcnow
from canary.pipeline import Analyzer
from canary.report import study_report
from canary.store import Store
from canary.study import import_study, parse_plan, record_given
from tests.support.dns_server import TestDnsServer
from tests.support.smtp import send_message, start_server

SITES = 50
THIRD_PARTIES = ("brokerx.test", "adsy.test")
LEAKING = {3: 10, 17: 20, 41: 40}  # site number -> days since signup
BREACHED = (20, 21, 22, 23, 24)


def _plan() -> str:
    lines = ["name,url,domains,category"]
    lines += [f"Site {i:02d},https://www.site{i:02d}.test/,site{i:02d}.test,cat{i % 5}" for i in
              range(1, SITES + 1)]  # fmt: skip
    return "\n".join(lines) + "\n"


def _mail(sender: str, to: str, subject: str, body: str = "Hello") -> bytes:
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{abs(hash((sender, to, subject)))}@x.test>\r\n"
        f"Date: Mon, 03 Mar 2025 10:00:00 +0000\r\n\r\n{body}\r\n"
    ).encode()


async def test_fifty_site_study_report_and_export(
    store: Store, settings: Settings, owner: User, tmp_path: Path, dns_server: TestDnsServer
) -> None:
    # The sites and the two third parties authenticate by SPF; the campaign does not.
    for domain in [f"site{n:02d}.test" for n in range(1, SITES + 1)] + list(THIRD_PARTIES):
        dns_server.txt(domain, "v=spf1 ip4:127.0.0.0/8 -all")
    with store.session() as session:
        result = import_study(session, owner, "Fifty", parse_plan(_plan()), domain="canary.test")
        study = result.study
        personas = {i + 1: identity for i, identity in enumerate(result.identities)}
        now = utcnow()
        # Signups: leaking sites N days ago, the rest a week ago.
        record_given(
            session, owner,
            [(str(p.id), now - timedelta(days=LEAKING.get(n, 7))) for n, p in personas.items()],
        )  # fmt: skip

    running = await start_server(store, settings)
    try:
        for n, persona in personas.items():
            content = _mail(f"Site {n:02d} <hello@mail.site{n:02d}.test>", persona.alias, "Welcome")
            bounce = f"bounce@site{n:02d}.test"
            reply = await send_message(running.host, running.port, bounce, [persona.alias], content)
            assert reply.code == 250, reply
        for n in LEAKING:
            for org in THIRD_PARTIES:
                to = personas[n].alias
                content = _mail(f"Offers <deals@{org}>", to, f"An offer for site {n}")
                reply = await send_message(running.host, running.port, f"b@{org}", [to], content)
                assert reply.code == 250, reply
        targets = [personas[n].alias for n in BREACHED]
        content = _mail("Security <security@paypa1.test>", "undisclosed-recipients:;",
                        "Verify your account")  # fmt: skip
        reply = await send_message(running.host, running.port, "x@paypa1.test", targets, content)
        assert reply.code == 250, reply
    finally:
        await running.stop()

    assert Analyzer(store, settings).drain() == SITES + 2 * len(LEAKING) + 1

    with store.session() as session:
        report = study_report(session, study).as_dict()
    assert report["sites"] == SITES and report["identities"] == SITES
    assert report["sites_with_mail"] == SITES and report["share_with_mail"] == 1.0
    assert report["sites_with_shared"] == 3 and report["share_with_shared"] == 0.06
    assert report["sites_with_breach"] == 5 and report["share_with_breach"] == 0.1
    assert report["third_party_histogram"] == {"0": 47, "2": 3}
    assert report["third_parties_per_site"]["max"] == 2.0
    assert {(t["org"], t["sites"]) for t in report["top_third_parties"]} == {
        ("brokerx.test", 3),
        ("adsy.test", 3),
    }
    days = report["days_to_first_third_party"]
    assert days["sites"] == 3
    assert round(days["min"]) == 10 and round(days["median"]) == 20 and round(days["max"]) == 40
    assert round(days["q1"]) == 15 and round(days["q3"]) == 30
    assert len(report["graph"]["links"]) == 6

    with store.session() as session:
        out = export_study(session, study, tmp_path / "export", raw="mbox")
    messages = SITES + 2 * len(LEAKING) + 1  # welcome mails, third parties, one campaign
    deliveries = SITES + 2 * len(LEAKING) + len(BREACHED)
    assert out.rows == {"sites": SITES, "identities": SITES, "messages": messages,
                        "deliveries": deliveries, "findings": deliveries}  # fmt: skip
    _check_export_row_for_row(store, tmp_path / "export")


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _as_csv(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return str(value)
    return str(value)


def _check_export_row_for_row(store: Store, directory: Path) -> None:
    # Every table: the CSV and the JSON Lines file hold the same rows in the same order,
    # with exactly the columns of the data dictionary.
    for table, columns in DICTIONARY.items():
        rows_csv = _read_csv(directory / f"{table}.csv")
        rows_json = _read_jsonl(directory / f"{table}.jsonl")
        assert len(rows_csv) == len(rows_json)
        names = [c for c, _, _ in columns]
        for a, b in zip(rows_csv, rows_json, strict=True):
            assert list(a) == names and list(b) == names
            assert a == {k: _as_csv(v) for k, v in b.items()}
    dictionary = json.loads((directory / "data_dictionary.json").read_text())
    assert set(dictionary) == set(DICTIONARY)
    assert "## findings" in (directory / "DATA_DICTIONARY.md").read_text()

    with store.session() as session:
        findings = {f.id: f for f in session.exec(select(Finding))}
        messages = {m.id: m for m in session.exec(select(Message))}
        identities = {i.id: i for i in session.exec(select(Identity))}
        deliveries = {d.id: d for d in session.exec(select(Delivery))}
    for row in _read_jsonl(directory / "findings.jsonl"):
        f = findings[row["finding_id"]]
        assert (row["verdict"], row["sender_org"], row["evidence"], row["sentence"]) == (
            f.verdict,
            f.sender_org,
            f.evidence,
            f.sentence,
        )
        assert row["message_id"] == deliveries[f.delivery_id].message_id
    for row in _read_jsonl(directory / "deliveries.jsonl"):
        d = deliveries[row["delivery_id"]]
        assert (row["recipient"], row["identity_id"], row["verdict"]) == (
            d.recipient,
            d.identity_id,
            d.verdict,
        )
    for row in _read_jsonl(directory / "identities.jsonl"):
        i = identities[row["identity_id"]]
        assert (row["alias"], row["display_name"], row["given_at"]) == (
            i.alias,
            i.display_name,
            i.given_at.isoformat() if i.given_at else None,
        )
    for row in _read_jsonl(directory / "messages.jsonl"):
        m = messages[row["message_id"]]
        assert (row["mail_from"], row["header_subject"], row["size"]) == (
            m.mail_from,
            m.subject,
            m.size,
        )
        assert set(row["rcpt_to"]) <= set(m.rcpt_to)
    sites = _read_csv(directory / "sites.csv")
    assert [s["name"] for s in sites] == [f"Site {i:02d}" for i in range(1, SITES + 1)]
    assert json.loads(sites[0]["authorised_senders"]) == ["site01.test"]

    box = mailbox.mbox(str(directory / "messages.mbox"))
    subjects = sorted(
        BytesParser(policy=default_policy).parsebytes(entry.as_bytes())["Subject"] for entry in box
    )
    assert subjects == sorted(m.subject for m in messages.values())
    box.close()
