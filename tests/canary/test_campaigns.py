"""Cross-source campaign detection over a sliding window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from canary.campaigns import RecentDelivery, content_fingerprint, detect_campaigns, ip_range

T0 = datetime(2024, 5, 1, 9, tzinfo=UTC)
SOURCES = {1: "alpha", 2: "beta", 3: "gamma", 4: "delta", 5: "epsilon"}


def delivery(
    did: int,
    source: int,
    minutes: int = 0,
    org: str | None = "crook.test",
    ip: str | None = None,
    fp: str | None = None,
    domains: frozenset[str] | None = None,
) -> RecentDelivery:
    return RecentDelivery(
        delivery_id=did,
        received_at=T0 + timedelta(minutes=minutes),
        source_id=source,
        source_name=SOURCES[source],
        source_domains=domains if domains is not None else frozenset({f"{SOURCES[source]}.test"}),
        sender_org=org,
        peer_ip=ip,
        fingerprint=fp,
    )


def test_one_org_reaching_several_sources_is_a_campaign() -> None:
    deliveries = [delivery(i, i, minutes=i) for i in range(1, 6)]
    signals = detect_campaigns(deliveries, min_sources=3)
    assert set(signals) == {1, 2, 3, 4, 5}
    s = signals[3]
    assert s.source_count == 5
    assert s.other_sources == ("alpha", "beta", "delta", "epsilon")
    assert s.basis == ("sender_org=crook.test",)


def test_below_threshold_or_outside_window_is_not() -> None:
    assert detect_campaigns([delivery(1, 1), delivery(2, 2)], min_sources=3) == {}
    spread = [delivery(i, i, minutes=i * 24 * 60) for i in range(1, 4)]  # a day apart
    assert detect_campaigns(spread, window=timedelta(hours=12), min_sources=3) == {}
    # the middle one sees both neighbours within 25 hours; the others see only one
    near = detect_campaigns(spread, window=timedelta(hours=25), min_sources=3)
    assert set(near) == {2}


def test_many_deliveries_to_one_source_are_not_a_campaign() -> None:
    assert detect_campaigns([delivery(i, 1, minutes=i) for i in range(10)]) == {}


def test_related_sources_count_once() -> None:
    group = frozenset({"holding.test"})
    deliveries = [
        delivery(1, 1, domains=group | {"alpha.test"}),
        delivery(2, 2, domains=group | {"beta.test"}),
        delivery(3, 3),
    ]
    assert detect_campaigns(deliveries, min_sources=3) == {}
    assert detect_campaigns(deliveries, min_sources=2)[3].other_sources == ("alpha", "beta")


def test_authorised_senders_are_left_out() -> None:
    # an ESP authorised by every source mails them all: expected mail, not a campaign
    esp = [
        delivery(i, i, org="esp.test", domains=frozenset({"esp.test"}) | {f"s{i}.test"})
        for i in (1, 2, 3)
    ]
    assert detect_campaigns(esp, min_sources=3) == {}


def test_ip_range_and_fingerprint_tie_unauthenticated_mail() -> None:
    fp = content_fingerprint("You won!", "Dear Jane Doe, claim at https://x.test/1", ["Jane Doe"])
    deliveries = [
        delivery(1, 1, org=None, ip="203.0.113.5"),
        delivery(2, 2, org=None, ip="203.0.113.77"),
        delivery(3, 3, org=None, ip="198.51.100.1", fp=fp),
        delivery(4, 4, org=None, ip="2001:db8:1:2::1", fp=fp),
        delivery(5, 5, org=None, ip="2001:db8:1:ffff::9", fp=fp),
    ]
    signals = detect_campaigns(deliveries, min_sources=2)
    assert signals[1].basis == ("ip_range=203.0.113.0/24",)
    assert signals[1].other_sources == ("beta",)
    assert signals[4].basis == ("fingerprint=" + fp, "ip_range=2001:db8:1::/48")
    assert signals[3].source_count == 3 and signals[3].other_sources == ("delta", "epsilon")


def test_fingerprint_ignores_personal_parts() -> None:
    a = content_fingerprint(
        "Offer 12", "Hi Jane Roe (jane@c.test), see https://t.test/a?u=1", ["Jane Roe"]
    )
    b = content_fingerprint(
        "Offer 99", "Hi Max Mu (max@c.test), see https://t.test/b?u=2", ["Max Mu"]
    )
    assert a == b
    assert a != content_fingerprint("Other", "text")


def test_ip_range() -> None:
    assert ip_range("192.0.2.200") == "192.0.2.0/24"
    assert ip_range("2001:db8:aa:bb::1") == "2001:db8:aa::/48"
    assert ip_range("nope") is None and ip_range(None) is None
