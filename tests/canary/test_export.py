"""Export through the CLI: formats, .eml folder byte-exact, report files."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from canary.cli import main
from canary.config import Settings
from canary.models import Delivery, Finding, Message, User
from canary.store import Store
from canary.study import import_study, parse_plan


@pytest.fixture
def cli_env(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CANARY_DATABASE_URL", settings.resolved_database_url)
    monkeypatch.setenv("CANARY_DOMAINS", "canary.test")
    monkeypatch.setenv("CANARY_DATA_DIR", str(tmp_path / "data"))


def _study_with_mail(store: Store, owner: User) -> bytes:
    plan = parse_plan("name,url,domains,category\nShop,https://shop.test,shop.test,retail\n"
                      "Club,https://club.test,,sport\n")  # fmt: skip
    with store.session() as session:
        result = import_study(session, owner, "Pilot", plan, domain="canary.test")
        identity = result.identities[0]
        raw = (f"From: <deals@brokerx.test>\r\nTo: {identity.alias}\r\n"
               "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\r\nbody\r\n").encode()  # fmt: skip
        message = Message(
            raw=raw, size=len(raw), rcpt_to=[identity.alias, "other@canary.test"],
            state="analysed", mail_from="b@brokerx.test", sender_org="brokerx.test",
        )  # fmt: skip
        session.add(message)
        session.flush()
        assert message.id is not None and identity.id is not None
        delivery = Delivery(
            message_id=message.id, recipient=identity.alias, recipient_key=identity.alias,
            identity_id=identity.id, source_id=identity.source_id, owner_id=owner.id,
            verdict="shared",
        )  # fmt: skip
        session.add(delivery)
        session.flush()
        assert delivery.id is not None
        evidence = [{"code": "not_authorised_for_source", "detail": "x"}]
        session.add(Finding(delivery_id=delivery.id, owner_id=owner.id,
                            source_id=identity.source_id, verdict="shared",
                            sender_org="brokerx.test", evidence=evidence))  # fmt: skip
        return raw


def test_cli_export_jsonl_and_eml(
    store: Store, owner: User, cli_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = _study_with_mail(store, owner)
    out = tmp_path / "out"
    code = main(["study", "export", "Pilot", str(out), "--format", "jsonl", "--raw", "eml",
                 "--json"])  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == {"sites": 2, "identities": 2, "messages": 1, "deliveries": 1,
                               "findings": 1}  # fmt: skip
    assert not list(out.glob("*.csv"))
    (message,) = [json.loads(line) for line in (out / "messages.jsonl").read_text().splitlines()]
    assert message["header_subject"] == "Grüße"
    # Only the study's recipient is exported, not another user's address.
    assert message["rcpt_to"] == [message["rcpt_to"][0]] and "other@" not in message["rcpt_to"][0]
    (eml,) = list((out / "eml").iterdir())
    assert eml.read_bytes() == raw
    (finding,) = [json.loads(line) for line in (out / "findings.jsonl").read_text().splitlines()]
    assert finding["evidence"] == [{"code": "not_authorised_for_source", "detail": "x"}]


def test_cli_report_files(
    store: Store, owner: User, cli_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _study_with_mail(store, owner)
    graph = tmp_path / "g.graphml"
    plot = tmp_path / "cdf.svg"
    assert main(["report", "Pilot", "--graphml", str(graph), "--plot", str(plot)]) == 0
    text = capsys.readouterr().out
    assert "Pilot" in text and "brokerx.test" in text
    root = ET.parse(graph).getroot()
    assert len(root.findall(".//{http://graphml.graphdrawing.org/xmlns}edge")) == 1
    assert plot.read_text().startswith("<svg")
    assert main(["report", "Pilot", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["sites_with_shared"] == 1 and data["share_with_shared"] == 0.5
