"""Sender authentication against real DKIM signatures and a real DNS server on loopback."""

from __future__ import annotations

import pytest

from canary.auth import AuthResult, authenticate
from canary.dns import Resolver
from tests.support.dns_server import DkimKey, TestDnsServer, dkim_sign, generate_dkim_key

PEER = "127.0.0.2"


@pytest.fixture(scope="module")
def key() -> DkimKey:
    return generate_dkim_key()


def message(from_: str = "News <news@brand.test>", body: str = "Hello there.\r\n") -> bytes:
    return (
        f"From: {from_}\r\n"
        "To: a1b2c3@canary.test\r\n"
        "Subject: Our spring offers\r\n"
        "Date: Mon, 01 Apr 2024 10:00:00 +0000\r\n"
        "Message-ID: <1@brand.test>\r\n"
        "\r\n"
        f"{body}"
    ).encode()


async def run(
    server: TestDnsServer,
    raw: bytes,
    mail_from: str = "bounce@brand.test",
    helo: str = "mail.brand.test",
    peer: str = PEER,
    resolver: Resolver | None = None,
    timeout: float = 2.0,
) -> AuthResult:
    resolver = resolver or Resolver.from_settings(server.settings(timeout))
    return await authenticate(raw, peer, helo, mail_from, resolver)


def codes(result: AuthResult) -> set[str]:
    return {str(e) for e in result.evidence()}


async def test_dkim_pass_aligned(dns_server: TestDnsServer, key: DkimKey) -> None:
    dns_server.txt("sel._domainkey.brand.test", key.record())
    raw = dkim_sign(message(), "brand.test", "sel", key)
    result = await run(dns_server, raw, mail_from="")
    assert [(r.domain, r.result) for r in result.dkim] == [("brand.test", "pass")]
    assert result.sender_org == "brand.test"
    assert result.sender_method == "dkim" and result.sender_aligned
    assert result.dmarc.result == "none"  # no DMARC record published
    assert result.verified_by == "DKIM verified"
    assert "dkim_pass d=brand.test s=sel" in codes(result)
    assert not result.temporary_error


async def test_body_tampered_fails(dns_server: TestDnsServer, key: DkimKey) -> None:
    dns_server.txt("sel._domainkey.brand.test", key.record())
    raw = dkim_sign(message(), "brand.test", "sel", key).replace(b"Hello", b"Jello")
    result = await run(dns_server, raw, mail_from="")
    assert result.dkim[0].result == "fail"
    assert "body hash" in result.dkim[0].reason
    assert result.sender_org is None
    assert result.verified_by == "not authenticated"


async def test_header_tampered_fails(dns_server: TestDnsServer, key: DkimKey) -> None:
    dns_server.txt("sel._domainkey.brand.test", key.record())
    raw = dkim_sign(message(), "brand.test", "sel", key).replace(b"spring", b"autumn")
    result = await run(dns_server, raw, mail_from="")
    assert result.dkim[0].result == "fail"


async def test_missing_key_is_a_permanent_error(dns_server: TestDnsServer, key: DkimKey) -> None:
    raw = dkim_sign(message(), "brand.test", "sel", key)
    result = await run(dns_server, raw, mail_from="")
    assert result.dkim[0].result == "permerror"
    assert "no key" in result.dkim[0].reason
    assert not result.temporary_error


async def test_wrong_key_fails(dns_server: TestDnsServer, key: DkimKey) -> None:
    dns_server.txt("sel._domainkey.brand.test", generate_dkim_key().record())
    result = await run(dns_server, dkim_sign(message(), "brand.test", "sel", key), mail_from="")
    assert result.dkim[0].result == "fail"


async def test_unsigned_message(dns_server: TestDnsServer) -> None:
    result = await run(dns_server, message(), mail_from="")
    assert result.dkim == ()
    assert "dkim_none" in codes(result)


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ("v=spf1 ip4:127.0.0.0/24 -all", "pass"),
        ("v=spf1 ip4:127.0.0.9 -all", "fail"),
        ("v=spf1 ip4:127.0.0.9 ~all", "softfail"),
        ("v=spf1 ip4:127.0.0.9 ?all", "neutral"),
        ("v=spf1 include:spf.esp.test -all", "pass"),
        ("v=spf1 a:mail.brand.test mx -all", "pass"),
        ("v=spf1 bogus:x -all", "permerror"),
    ],
)
async def test_spf_for_mail_from(dns_server: TestDnsServer, record: str, expected: str) -> None:
    dns_server.txt("brand.test", record)
    dns_server.txt("spf.esp.test", "v=spf1 ip4:127.0.0.2 -all")
    dns_server.add("mail.brand.test", "A", "127.0.0.3")
    dns_server.add("brand.test", "MX", "10 mx.brand.test")
    dns_server.add("mx.brand.test", "A", "127.0.0.2")
    result = await run(dns_server, message())
    assert result.spf.identity == "mailfrom"
    assert result.spf.domain == "brand.test"
    assert result.spf.result == expected
    assert f"spf_{expected} domain=brand.test" in codes(result)
    assert (result.sender_org == "brand.test") == (expected == "pass")


@pytest.mark.parametrize(("depth", "expected"), [(9, "pass"), (12, "permerror")])
async def test_spf_include_chains_are_followed_up_to_the_lookup_limit(
    dns_server: TestDnsServer, depth: int, expected: str
) -> None:
    # Each include is another name the evaluation must fetch; RFC 7208 4.6.4 allows ten
    # DNS-querying terms in all.
    dns_server.txt("brand.test", "v=spf1 include:l1.esp.test -all")
    for level in range(1, depth):
        dns_server.txt(f"l{level}.esp.test", f"v=spf1 include:l{level + 1}.esp.test -all")
    dns_server.txt(f"l{depth}.esp.test", "v=spf1 ip4:127.0.0.2 -all")
    result = await run(dns_server, message())
    assert result.spf.result == expected
    assert not result.temporary_error


async def test_spf_none_and_helo(dns_server: TestDnsServer) -> None:
    dns_server.txt("mail.brand.test", "v=spf1 ip4:127.0.0.2 -all")
    result = await run(dns_server, message())
    assert result.spf.result == "none"
    assert result.spf_helo is not None and result.spf_helo.result == "pass"
    # HELO only stands in for a null reverse-path
    assert result.sender_org is None
    bounce = await run(dns_server, message(), mail_from="")
    assert bounce.sender_org == "brand.test" and bounce.sender_method == "spf"


async def test_esp_sends_for_brand(dns_server: TestDnsServer, key: DkimKey) -> None:
    """DKIM d=brand, Return-Path at the provider: the message belongs to the brand."""
    dns_server.txt("esp1._domainkey.brand.test", key.record())
    dns_server.txt("bounces.mailer-esp.test", "v=spf1 ip4:127.0.0.2 -all")
    dns_server.txt("_dmarc.brand.test", "v=DMARC1; p=reject")
    raw = dkim_sign(message(), "brand.test", "esp1", key)
    result = await run(dns_server, raw, mail_from="b-123@bounces.mailer-esp.test")
    assert result.spf.result == "pass"
    assert result.dmarc.dkim_aligned and not result.dmarc.spf_aligned
    assert result.dmarc.result == "pass" and result.dmarc.policy == "reject"
    assert result.sender_org == "brand.test"
    assert result.sender_method == "dkim"
    assert "dmarc_pass p=reject" in codes(result)


async def test_esp_without_brand_signature_is_the_esp(
    dns_server: TestDnsServer, key: DkimKey
) -> None:
    dns_server.txt("k1._domainkey.mailer-esp.test", key.record())
    raw = dkim_sign(message(), "mailer-esp.test", "k1", key)
    result = await run(dns_server, raw, mail_from="b@bounces.mailer-esp.test")
    assert result.sender_org == "mailer-esp.test"
    assert result.sender_method == "dkim" and not result.sender_aligned
    assert result.from_org == "brand.test"


async def test_spf_aligned_subdomain(dns_server: TestDnsServer) -> None:
    dns_server.txt("bounce.brand.test", "v=spf1 ip4:127.0.0.2 -all")
    dns_server.txt("_dmarc.brand.test", "v=DMARC1; p=quarantine; sp=reject")
    result = await run(
        dns_server, message(from_="x@news.brand.test"), mail_from="b@bounce.brand.test"
    )
    assert result.dmarc.spf_aligned and result.dmarc.result == "pass"
    assert result.dmarc.policy == "reject"  # sp= applies to the subdomain
    assert result.sender_org == "brand.test" and result.sender_method == "spf"


async def test_strict_alignment(dns_server: TestDnsServer) -> None:
    dns_server.txt("bounce.brand.test", "v=spf1 ip4:127.0.0.2 -all")
    dns_server.txt("_dmarc.brand.test", "v=DMARC1; p=reject; aspf=s")
    result = await run(dns_server, message(), mail_from="b@bounce.brand.test")
    assert result.dmarc.result == "fail"
    assert result.sender_org == "brand.test" and not result.sender_aligned


async def test_spoofed_from_with_reject_policy(dns_server: TestDnsServer, key: DkimKey) -> None:
    dns_server.txt("_dmarc.bigbank.test", "v=DMARC1; p=reject")
    dns_server.txt("sel._domainkey.crook.test", key.record())
    dns_server.txt("crook.test", "v=spf1 ip4:127.0.0.2 -all")
    raw = dkim_sign(message(from_="Security <alert@bigbank.test>"), "crook.test", "sel", key)
    result = await run(dns_server, raw, mail_from="x@crook.test")
    assert result.from_org == "bigbank.test"
    assert result.dmarc.result == "fail" and result.dmarc.policy == "reject"
    assert not result.from_authenticated
    assert result.sender_org == "crook.test"
    assert "dmarc_fail p=reject" in codes(result)


async def test_no_from_header(dns_server: TestDnsServer) -> None:
    raw = b"Subject: hi\r\n\r\nbody\r\n"
    result = await run(dns_server, raw)
    assert result.from_domain is None and result.dmarc.result == "none"


async def test_reverse_dns(dns_server: TestDnsServer) -> None:
    dns_server.ptr(PEER, "mail.brand.test")
    dns_server.add("mail.brand.test", "A", PEER)
    dns_server.ptr("127.0.0.3", "liar.brand.test")
    ok = await run(dns_server, message())
    assert ok.reverse_dns == "mail.brand.test" and ok.reverse_dns_confirmed
    liar = await run(dns_server, message(), peer="127.0.0.3")
    assert liar.reverse_dns == "liar.brand.test" and not liar.reverse_dns_confirmed
    none = await run(dns_server, message(), peer="127.0.0.4")
    assert none.reverse_dns is None
    assert "reverse_dns_missing ip=127.0.0.4" in codes(none)


@pytest.mark.parametrize("mode", ["silent", "servfail"])
async def test_dns_failure_is_a_temporary_error(
    dns_server: TestDnsServer, key: DkimKey, mode: str
) -> None:
    dns_server.txt("sel._domainkey.brand.test", key.record())
    dns_server.mode = mode
    raw = dkim_sign(message(), "brand.test", "sel", key)
    result = await run(dns_server, raw, timeout=0.4)
    assert result.temporary_error
    assert result.dkim[0].result == "temperror"
    assert result.spf.result == "temperror"
    assert result.sender_org is None
    assert any(e.code == "dns_temporary_error" for e in result.evidence())


async def test_key_and_policy_lookups_are_cached(dns_server: TestDnsServer, key: DkimKey) -> None:
    dns_server.txt("sel._domainkey.brand.test", key.record())
    dns_server.txt("brand.test", "v=spf1 ip4:127.0.0.2 -all")
    dns_server.txt("_dmarc.brand.test", "v=DMARC1; p=none")
    resolver = Resolver.from_settings(dns_server.settings())
    raw = dkim_sign(message(), "brand.test", "sel", key)
    for _ in range(3):
        result = await run(dns_server, raw, resolver=resolver)
        assert result.dmarc.result == "pass" and result.sender_org == "brand.test"
    assert dns_server.count("sel._domainkey.brand.test", "TXT") == 1
    assert dns_server.count("brand.test", "TXT") == 1
    assert dns_server.count("_dmarc.brand.test", "TXT") == 1


async def test_garbage_input_does_not_crash(dns_server: TestDnsServer) -> None:
    raw = b"\x00\xff not a message\r\nDKIM-Signature: v=1; a=\r\n\r\n"
    result = await run(dns_server, raw, peer="not-an-ip", helo="[1.2.3.4]", mail_from="<>")
    assert result.sender_org is None
    assert result.spf.result == "none"


async def test_end_to_end_with_signals_and_verdict(dns_server: TestDnsServer, key: DkimKey) -> None:
    """authenticate -> signals -> evaluate: the design brief's example sentence."""
    from datetime import UTC, datetime, timedelta

    from canary.signals import analyse
    from canary.verdicts import AuthFacts, DeliveryFacts, SourceFacts, evaluate

    dns_server.txt("s1._domainkey.brokerx.test", key.record())
    dns_server.txt("_dmarc.brokerx.test", "v=DMARC1; p=quarantine")
    raw = dkim_sign(message(from_="Deals <deals@brokerx.test>"), "brokerx.test", "s1", key)
    auth = await run(dns_server, raw, mail_from="b@bounce.esp-mail.test")
    html = '<img src="https://px.adnet.test/o.gif?e=a1b2c3%40canary.test">'
    signals = analyse(
        {"List-Unsubscribe": "<mailto:u@x>"}, "", html, [], "a1b2c3@canary.test", auth.sender_org
    )
    signup = datetime(2024, 1, 1, tzinfo=UTC)
    draft = evaluate(
        DeliveryFacts(
            recipient="a1b2c3@canary.test",
            recipient_kind="canary",
            received_at=signup + timedelta(days=143),
            auth=AuthFacts.from_result(auth),
            signals=signals,
            source=SourceFacts("pinterest.com", frozenset({"pinterest.com"})),
            given_at=signup,
        )
    )
    assert draft.verdict == "shared"
    assert draft.sentence == (
        "Sent by brokerx.test (DKIM verified), which was never given this address: "
        "pinterest.com shared it 143 days after signup."
    )
    evidence = [str(e) for e in draft.evidence]
    for item in (
        "not_authorised_for_source org=brokerx.test",
        "first_mail_days_after_issue=143",
        "dkim_pass d=brokerx.test s=s1",
        "dmarc_pass p=quarantine",
        "list_unsubscribe_present",
        "address_in_third_party_url host=px.adnet.test encoding=url-encoded",
    ):
        assert item in evidence
