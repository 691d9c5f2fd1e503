"""The verdict engine: every verdict, its evidence and its sentence; precedence."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from canary.campaigns import CampaignSignal
from canary.evidence_items import Evidence
from canary.signals import Signals
from canary.verdicts import AuthFacts, DeliveryFacts, SourceFacts, evaluate, verdict_counts

SIGNUP = datetime(2024, 1, 1, 12, tzinfo=UTC)
LATER = SIGNUP + timedelta(days=143)
PINTEREST = SourceFacts("pinterest.com", frozenset({"pinterest.com", "sendgrid.net"}))
ADDR = "k7x2m9q4a1b3@canary.test"

BROKER = AuthFacts(
    sender_org="brokerx.test",
    verified_by="DKIM verified",
    from_domain="news.brokerx.test",
    from_org="brokerx.test",
    from_authenticated=True,
    dmarc_result="pass",
    dmarc_policy="none",
    evidence=(Evidence("dkim_pass", "d=brokerx.test s=s1"), Evidence("dmarc_pass", "p=none")),
)
UNAUTH = AuthFacts(
    from_domain="lotto.test", from_org="lotto.test", evidence=(Evidence("dkim_none"),)
)
NO_SIGNALS = Signals(False, None, (), ())


def facts(**changes: object) -> DeliveryFacts:
    base = DeliveryFacts(
        recipient=ADDR,
        recipient_kind="canary",
        received_at=LATER,
        auth=BROKER,
        source=PINTEREST,
        issued_at=SIGNUP - timedelta(days=2),
        given_at=SIGNUP,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def strs(draft) -> list[str]:  # type: ignore[no-untyped-def]
    return [str(e) for e in draft.evidence]


def test_shared_matches_the_design_example() -> None:
    draft = evaluate(facts())
    assert draft.verdict == "shared"
    assert draft.sender_org == "brokerx.test"
    assert draft.sentence == (
        "Sent by brokerx.test (DKIM verified), which was never given this address: "
        "pinterest.com shared it 143 days after signup."
    )
    assert strs(draft)[:2] == [
        "not_authorised_for_source org=brokerx.test",
        "first_mail_days_after_issue=143",
    ]
    assert "dkim_pass d=brokerx.test s=s1" in strs(draft)
    assert draft.evidence_json()[0] == {
        "code": "not_authorised_for_source",
        "detail": "org=brokerx.test",
    }
    assert not draft.provisional


def test_days_fall_back_to_issue_and_to_first_mail() -> None:
    draft = evaluate(facts(given_at=None))
    assert "145 days after the address was issued" in draft.sentence
    assert "first_mail_days_after_issue=145" in strs(draft)
    first = evaluate(facts(first_seen_from_sender=SIGNUP + timedelta(days=1)))
    assert "first_mail_days_after_issue=1" in strs(first)
    assert "shared it 1 day after signup" in first.sentence


def test_expected_for_an_authorised_sender() -> None:
    auth = replace(BROKER, sender_org="sendgrid.net", verified_by="SPF pass")
    draft = evaluate(facts(auth=auth))
    assert draft.verdict == "expected"
    assert (
        draft.sentence == "Sent by sendgrid.net (SPF pass), an authorised sender for pinterest.com."
    )
    assert strs(draft)[0] == "authorised_for_source org=sendgrid.net"


def test_authorised_domains_are_compared_as_organisations() -> None:
    source = SourceFacts("Shop", frozenset({"mail.shop.test"}))
    auth = replace(BROKER, sender_org="shop.test")
    assert evaluate(facts(auth=auth, source=source)).verdict == "expected"


def test_unattributed_and_role() -> None:
    draft = evaluate(
        facts(recipient="guess@canary.test", recipient_kind="unattributed", source=None)
    )
    assert draft.verdict == "unattributed"
    assert draft.sentence.startswith("Mail to guess@canary.test, an address that was never issued")
    assert strs(draft)[0] == "unissued_address address=guess@canary.test"
    role = evaluate(facts(recipient="postmaster@canary.test", recipient_kind="role", source=None))
    assert role.verdict == "unattributed"
    assert "(a role address)" in role.sentence
    assert strs(role)[0] == "role_address address=postmaster@canary.test"


def test_after_retirement_wins_over_everything_but_unattributed() -> None:
    retired = SIGNUP + timedelta(days=100)
    draft = evaluate(facts(retired_at=retired, cross_sources=("Other",), auth=UNAUTH))
    assert draft.verdict == "after_retirement"
    assert draft.sentence == (
        "Mail from an unauthenticated sender claiming lotto.test reached the address given to "
        "pinterest.com 43 days after it was retired: the list lives on after opt-out."
    )
    assert "mail_days_after_retirement=43" in strs(draft)
    # mail before the retirement is judged normally
    assert evaluate(facts(retired_at=LATER + timedelta(days=1))).verdict == "shared"


def test_cross_source() -> None:
    draft = evaluate(facts(cross_sources=("shopB",)))
    assert draft.verdict == "cross_source"
    assert draft.sentence == (
        "Mail from brokerx.test (DKIM verified) to the address given to pinterest.com uses the "
        "name given to shopB: the lists of pinterest.com and shopB were merged."
    )
    assert strs(draft)[0] == "cross_source_identity source=shopB"


def test_breach_spoofed_from_with_reject() -> None:
    auth = AuthFacts(
        sender_org="crook.test",
        verified_by="SPF pass",
        from_domain="bigbank.test",
        from_org="bigbank.test",
        dmarc_result="fail",
        dmarc_policy="reject",
        evidence=(Evidence("dmarc_fail", "p=reject"),),
    )
    draft = evaluate(facts(auth=auth))
    assert draft.verdict == "breach"
    assert draft.sentence == (
        "Forged mail claiming to be from bigbank.test (DMARC fail, policy reject) reached the "
        "address given to pinterest.com 143 days after signup: the address is in criminal hands."
    )
    assert strs(draft)[0] == "spoofed_from domain=bigbank.test"
    assert "dmarc_fail p=reject" in strs(draft)


def test_dmarc_fail_with_policy_none_is_not_a_breach() -> None:
    auth = replace(BROKER, from_authenticated=False, dmarc_result="fail", dmarc_policy="none")
    assert evaluate(facts(auth=auth)).verdict == "shared"


def test_breach_forging_the_sources_own_domain() -> None:
    auth = AuthFacts(from_domain="pinterest.com", from_org="pinterest.com")
    draft = evaluate(facts(auth=auth))
    assert draft.verdict == "breach"
    assert strs(draft)[0] == "from_claims_source_domain domain=pinterest.com"
    assert draft.sender_org is None


def test_breach_unauthenticated_bulk_and_plain() -> None:
    bulk = evaluate(facts(auth=UNAUTH, signals=Signals(True, None, (), ())))
    assert bulk.verdict == "breach"
    assert bulk.sentence.startswith("Unauthenticated bulk mail (no DKIM or SPF pass) reached")
    assert strs(bulk)[0] == "unauthenticated_bulk"
    assert "list_unsubscribe_present" in strs(bulk)
    plain = evaluate(facts(auth=UNAUTH))
    assert plain.verdict == "breach" and strs(plain)[0] == "unauthenticated"


def test_breach_malware_and_phishing() -> None:
    exe = Evidence("double_extension", "name=invoice.pdf.exe")
    draft = evaluate(facts(signals=Signals(False, None, (exe,), ())))
    assert draft.verdict == "breach"
    assert draft.sentence.startswith("Malware from brokerx.test (DKIM verified) reached")
    assert strs(draft)[0] == "double_extension name=invoice.pdf.exe"

    words = Evidence("credential_wording", "verify your password")
    phish = evaluate(facts(signals=Signals(False, None, (words,), ())))
    assert phish.verdict == "breach" and phish.sentence.startswith("Phishing from")


def test_link_mismatch_alone_from_an_authenticated_sender_is_not_a_breach() -> None:
    mismatch = Evidence("link_text_mismatch", "text=shop.test href=click.test")
    assert evaluate(facts(signals=Signals(False, None, (mismatch,), ()))).verdict == "shared"
    words = Evidence("credential_wording", "confirm your account")
    both = evaluate(facts(signals=Signals(False, None, (mismatch, words), ())))
    assert both.verdict == "breach"


def test_breach_campaign() -> None:
    campaign = CampaignSignal(
        7, 5, ("alpha", "beta", "gamma", "delta"), ("sender_org=brokerx.test",)
    )
    draft = evaluate(facts(campaign=campaign))
    assert draft.verdict == "breach"
    assert "hit 5 unrelated sources at once (also alpha, beta, gamma, delta)" in draft.sentence
    assert strs(draft)[:3] == [
        "same_campaign_sources=5",
        "campaign_sources alpha, beta, gamma, delta",
        "campaign_basis sender_org=brokerx.test",
    ]
    small = CampaignSignal(7, 2, ("alpha",), ("sender_org=brokerx.test",))
    assert evaluate(facts(campaign=small)).verdict == "shared"


def test_address_leak_evidence_is_carried() -> None:
    leak = Evidence("address_in_third_party_url", "host=t.tracker.test encoding=sha256")
    draft = evaluate(facts(signals=Signals(False, None, (), (leak,))))
    assert draft.verdict == "shared"
    assert "address_in_third_party_url host=t.tracker.test encoding=sha256" in strs(draft)


def test_temporary_dns_error_makes_the_draft_provisional() -> None:
    draft = evaluate(facts(auth=replace(BROKER, temporary_error=True)))
    assert draft.provisional


def test_every_verdict_is_reachable() -> None:
    drafts = [
        evaluate(facts()),
        evaluate(facts(auth=replace(BROKER, sender_org="pinterest.com"))),
        evaluate(facts(auth=UNAUTH)),
        evaluate(facts(retired_at=SIGNUP)),
        evaluate(facts(cross_sources=("x",))),
        evaluate(facts(recipient_kind="unattributed", source=None)),
    ]
    assert set(verdict_counts(drafts)) == {
        "shared",
        "expected",
        "breach",
        "after_retirement",
        "cross_source",
        "unattributed",
    }
    for d in drafts:
        assert d.sentence.endswith(".") and d.sentence[0].isupper()
