"""Study plans: validation by line, study-wide personas, signup times (service and CLI)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rapidfuzz.distance import Levenshtein
from sqlmodel import select

from canary.cli import main
from canary.config import Settings
from canary.errors import Conflict, InvalidInput
from canary.issuance import records_for, verify_chain
from canary.models import AuthorisedSender, Identity, StudySite, User
from canary.sources import add_source
from canary.store import Store
from canary.study import (
    get_study,
    import_study,
    parse_given_csv,
    parse_plan,
    record_given,
    study_sites,
)

PLAN = """name,url,domains,category
Shop A,https://shop-a.test,shop-a.test;mail.shop-a.test,retail
News B,https://www.news-b.test/,,news
Forum C,forum-c.test,forum-c.test,forum
"""


def test_plan_errors_name_their_lines() -> None:
    text = "name,url,domains\nOK,https://ok.test,\nX,ftp://x,\n,https://a.test,\nY,,bad_domain!\nOK,,ok.test\n"
    with pytest.raises(InvalidInput) as err:
        parse_plan(text)
    message = str(err.value)
    assert "line 3: url 'ftp://x'" in message
    assert "line 4: site name ''" in message
    assert "line 5: bad domain" in message
    assert "line 6: site 'OK' repeats line 2" in message
    assert "line 2" not in message.replace("repeats line 2", "")


def test_plan_domains_come_from_the_url_when_missing() -> None:
    sites = parse_plan(PLAN)
    assert [s.name for s in sites] == ["Shop A", "News B", "Forum C"]
    assert sites[0].domains == ("shop-a.test", "mail.shop-a.test")
    assert sites[1].domains == ("news-b.test",)
    assert sites[2].category == "forum" and sites[2].line == 4


def test_plan_needs_a_name_column() -> None:
    with pytest.raises(InvalidInput, match="line 1"):
        parse_plan("site,url\nA,https://a.test\n")


def test_import_creates_sources_senders_and_distinct_personas(store: Store, owner: User) -> None:
    with store.session() as session:
        result = import_study(
            session, owner, "Pilot", parse_plan(PLAN), domain="canary.test", personas_per_site=3
        )
        study_id = result.study.id
    with store.session() as session:
        study = get_study(session, owner, "pilot")
        assert study.id == study_id
        pairs = study_sites(session, study)
        assert [(s.category, src.name) for s, src in pairs] == [
            ("retail", "Shop A"),
            ("news", "News B"),
            ("forum", "Forum C"),
        ]
        senders = session.exec(
            select(AuthorisedSender.domain).where(AuthorisedSender.source_id == pairs[0][1].id)
        ).all()
        assert sorted(senders) == ["mail.shop-a.test", "shop-a.test"]
        identities = session.exec(select(Identity)).all()
        assert len(identities) == 9
        assert {i.source_id for i in identities} == {src.id for _, src in pairs}
        keys = [i.name_key for i in identities]
        for a, b in itertools.combinations(keys, 2):
            assert Levenshtein.distance(a, b) >= 2, (a, b)
        assert verify_chain(session) is None
        assert len(session.exec(select(StudySite)).all()) == 3


def test_import_refuses_existing_sources_naming_the_line(store: Store, owner: User) -> None:
    with store.session() as session:
        add_source(session, owner, "News B", ["news-b.test"])
    with store.session() as session, pytest.raises(Conflict, match="line 3"):
        import_study(session, owner, "Pilot", parse_plan(PLAN), domain="canary.test")
    with store.session() as session:
        assert session.exec(select(StudySite)).all() == []


def test_given_times_single_and_bulk(store: Store, owner: User) -> None:
    with store.session() as session:
        result = import_study(session, owner, "Pilot", parse_plan(PLAN), domain="canary.test")
        first, second, third = result.identities
    moment = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)
    with store.session() as session:
        record_given(session, owner, [(str(first.id), moment)])
    csv_text = (
        f"identity,given_at\n{second.alias.upper()},2025-03-15T10:00:00Z\n{third.id},2025-03-16\n"
    )
    with store.session() as session:
        record_given(session, owner, parse_given_csv(csv_text))
    with store.session() as session:
        rows = {i.id: i for i in session.exec(select(Identity))}
        assert rows[first.id].given_at == moment
        assert rows[second.id].given_at == datetime(2025, 3, 15, 10, tzinfo=UTC)
        assert rows[third.id].given_at == datetime(2025, 3, 16, tzinfo=UTC)
        events = [r.event for r in records_for(session, rows[first.id])]
        assert events == ["issued", "given"]
        assert verify_chain(session) is None


def test_given_csv_errors_name_the_line() -> None:
    with pytest.raises(InvalidInput, match="line 3"):
        parse_given_csv("identity,given_at\n1,2025-01-01\n2,yesterday\n")


def test_cli_import_personas_and_given(
    store: Store,
    settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CANARY_DATABASE_URL", settings.resolved_database_url)
    monkeypatch.setenv("CANARY_DOMAINS", "canary.test")
    monkeypatch.setenv("CANARY_DATA_DIR", str(tmp_path / "data"))
    plan = tmp_path / "plan.csv"
    plan.write_text(PLAN)
    assert main(["study", "import", "Pilot", str(plan), "--personas", "2", "--json"]) == 0
    assert '"identities": 6' in capsys.readouterr().out
    assert main(["study", "personas", "Pilot", "-o", str(tmp_path / "p.csv")]) == 0
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "identity_id,site,url,category,name,email,given_at" and len(lines) == 7
    identity_id = lines[1].split(",")[0]
    assert main(["identity", "given", identity_id, "--at", "2025-01-02T03:04:05Z"]) == 0
    with store.session() as session:
        identity = session.get(Identity, int(identity_id))
        assert identity is not None
        assert identity.given_at == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    bad = tmp_path / "bad.csv"
    bad.write_text("name,url\nA,ftp://a\n")
    assert main(["study", "import", "Bad", str(bad)]) == 1
    assert "line 2" in capsys.readouterr().err
