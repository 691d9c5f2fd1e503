"""Incident roll-up, user status, and re-evaluation of findings."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from canary.evidence_items import Evidence
from canary.incidents import (
    FindingRecord,
    IncidentState,
    compare,
    incident_kind,
    news,
    rebuild,
    roll_up,
    set_status,
)
from canary.verdicts import FindingDraft

T0 = datetime(2024, 3, 1, tzinfo=UTC)
NOT_AUTH = Evidence("not_authorised_for_source", "org=brokerx.test")


def shared(org: str = "brokerx.test") -> FindingDraft:
    return FindingDraft("shared", org, (Evidence("not_authorised_for_source", f"org={org}"),), "s")


def test_kinds() -> None:
    assert incident_kind("shared") == "shared"
    assert incident_kind("breach") == "breach"
    assert incident_kind("expected") is None
    assert incident_kind("unattributed") is None


def test_first_finding_opens_an_incident() -> None:
    inc = roll_up(None, 7, shared(), T0)
    assert inc == IncidentState(7, "shared", T0, T0, 1, ("brokerx.test",), "open")
    assert roll_up(None, 7, FindingDraft("expected", "shop.test", (), "s"), T0) is None


def test_roll_up_counts_and_spans() -> None:
    inc = roll_up(None, 7, shared(), T0)
    inc = roll_up(inc, 7, shared("adco.test"), T0 + timedelta(days=3))
    inc = roll_up(inc, 7, shared(), T0 - timedelta(days=1))  # late-analysed older mail
    assert inc is not None
    assert inc.finding_count == 3
    assert inc.first_seen == T0 - timedelta(days=1)
    assert inc.last_seen == T0 + timedelta(days=3)
    assert inc.organisations == ("adco.test", "brokerx.test")
    with pytest.raises(ValueError):
        roll_up(inc, 8, shared(), T0)


def test_statuses_and_reopening_a_dismissed_incident() -> None:
    inc = roll_up(None, 7, shared(), T0)
    assert inc is not None
    confirmed = set_status(inc, "confirmed")
    assert roll_up(confirmed, 7, shared("new.test"), T0).status == "confirmed"  # type: ignore[union-attr]
    dismissed = set_status(inc, "dismissed")
    same = roll_up(dismissed, 7, shared(), T0 + timedelta(days=1))
    assert same is not None and same.status == "dismissed" and same.finding_count == 2
    fresh = roll_up(same, 7, shared("new.test"), T0 + timedelta(days=2))
    assert fresh is not None and fresh.status == "open"
    with pytest.raises(ValueError):
        set_status(inc, "closed")


def test_compare_for_re_evaluation() -> None:
    stored = FindingRecord(
        "shared", "brokerx.test", (NOT_AUTH, Evidence("dkim_pass", "d=brokerx.test"))
    )
    same = FindingDraft("shared", "brokerx.test", tuple(reversed(stored.evidence)), "reworded")
    assert compare(stored, same).supersedes is False

    authorised = FindingDraft(
        "expected",
        "brokerx.test",
        (
            Evidence("authorised_for_source", "org=brokerx.test"),
            Evidence("dkim_pass", "d=brokerx.test"),
        ),
        "Sent by brokerx.test ...",
    )
    result = compare(stored, authorised)
    assert result.supersedes
    assert result.changes == (
        "verdict shared -> expected",
        "+ authorised_for_source org=brokerx.test",
        "- not_authorised_for_source org=brokerx.test",
    )
    assert compare(None, authorised).supersedes


def test_rebuild_after_the_user_authorises_a_sender() -> None:
    findings = [
        FindingRecord("shared", "brokerx.test", (), seen_at=T0),
        FindingRecord("shared", "adco.test", (), seen_at=T0 + timedelta(days=5)),
        FindingRecord("breach", None, (), seen_at=T0 + timedelta(days=9)),
        FindingRecord("expected", "shop.test", (), seen_at=T0 + timedelta(days=1)),
    ]
    existing = {
        "shared": replace(
            IncidentState(7, "shared", T0, T0, 2, ("adco.test", "brokerx.test")), id=11
        ),
        "breach": IncidentState(7, "breach", T0, T0, 1, (), status="confirmed", id=12),
    }
    existing["shared"] = set_status(existing["shared"], "dismissed")
    built = rebuild(7, findings, existing)
    assert built["shared"].finding_count == 2 and built["shared"].status == "dismissed"
    assert built["shared"].id == 11
    assert built["breach"].status == "confirmed"

    # brokerx.test becomes authorised: its finding is now expected
    findings[0] = replace(findings[0], verdict="expected")
    built = rebuild(7, findings, existing)
    assert built["shared"].organisations == ("adco.test",)
    assert built["shared"].first_seen == T0 + timedelta(days=5)
    assert built["shared"].finding_count == 1

    # a dismissed incident re-opens when a new organisation shows up
    findings.append(FindingRecord("shared", "third.test", (), seen_at=T0 + timedelta(days=20)))
    assert rebuild(7, findings, existing)["shared"].status == "open"
    # no findings left of a kind: the kind is absent
    assert "breach" not in rebuild(7, findings[:2], existing)


def test_news_is_a_new_incident_a_new_organisation_or_a_reopening() -> None:
    first = roll_up(None, 1, shared(), T0)
    assert first is not None
    assert news(None, first) == "opened"
    same_org = roll_up(first, 1, shared(), T0 + timedelta(hours=1))
    assert same_org is not None and news(first, same_org) is None  # more of the same
    other = roll_up(first, 1, shared("listco.test"), T0 + timedelta(hours=2))
    assert other is not None and news(first, other) == "grew"
    dismissed = set_status(first, "dismissed")
    assert news(dismissed, replace(other, status="open")) == "reopened"
