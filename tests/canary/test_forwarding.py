"""Forwarding: verified addresses only, verdict headers and banner, retries, breach drop."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlmodel import select

from canary import forward_addresses, forwarding
from canary.config import Settings
from canary.errors import Conflict, InvalidInput, NotFound
from canary.forwarding import banner, forwarded_bytes
from canary.models import Delivery, Forward, ForwardAddress, User, utcnow
from canary.store import Store
from tests.support.dashboard import Seeded, seed_user
from tests.support.outbound import RecordingRelay, relay  # noqa: F401

HOME = "alice@home.example"
RAW = (
    b"X-Canary-Verdict: expected\r\n"
    b"From: Broker X <offers@brokerx.test>\r\n"
    b"Subject: Great\r\n deals\r\n"
    b"To: x@canary.test\r\n"
    b"\r\n"
    b"Body line\r\n\r\nX-Canary-Verdict: in the body stays\r\n"
)


@pytest.fixture
def seeded(store: Store) -> Seeded:
    """alice with Shop X and one shared message from brokerx.test."""
    return seed_user(store, "alice", admin=True, source_name="Shop X", domain="shopx.test")


@pytest.fixture
def relay_settings(
    make_settings: Callable[..., Settings],
    relay: RecordingRelay,  # noqa: F811
) -> Settings:
    return make_settings(
        relay_host="127.0.0.1",
        relay_port=relay.port,
        relay_starttls=False,
        public_url="https://canary.example",
    )


def _verify(store: Store, settings: Settings, user: User, address: str = HOME) -> None:
    with store.session() as session:
        _, token = forward_addresses.request_verification(session, settings, user, address)
        forward_addresses.verify(session, token)


def _rule(store: Store, user: User, target: str, drop_breach: bool = False) -> None:
    with store.session() as session:
        forward_addresses.set_rule(session, user, target, HOME, drop_breach=drop_breach)


def _queue(store: Store, seeded: Seeded, verdict: str = "shared") -> Forward | None:
    with store.session() as session:
        delivery = session.get(Delivery, seeded.delivery.id)
        assert delivery is not None
        return forwarding.queue_forward(session, delivery, verdict, "brokerx.test")


def _forwards(store: Store) -> list[Forward]:
    with store.session() as session:
        return list(session.exec(select(Forward).order_by(Forward.id)))  # type: ignore[arg-type]


# ---------------------------------------------------------------------- the message


def test_banner_only_when_not_expected() -> None:
    assert banner("expected", "shopx.test") == ""
    assert banner("shared", "brokerx.test") == "[canary: shared by brokerx.test] "
    assert banner("breach", None) == "[canary: breach] "
    assert banner("shared", "evil.test\r\nBcc: x@y") == "[canary: shared by evil.testBccxy] "


def test_forwarded_message_keeps_the_original_and_adds_the_verdict() -> None:
    out = forwarded_bytes(
        RAW, verdict="shared", sender_org="brokerx.test", source="Shop X", identity="x@canary.test"
    )
    head, _, body = out.partition(b"\r\n\r\n")
    assert body == b"Body line\r\n\r\nX-Canary-Verdict: in the body stays\r\n"
    lines = head.split(b"\r\n")
    assert lines[:3] == [
        b"X-Canary-Verdict: shared; sender=brokerx.test",
        b"X-Canary-Source: Shop X",
        b"X-Canary-Identity: x@canary.test",
    ]
    # The sender's forged verdict header is gone; the folded subject keeps its fold.
    assert head.count(b"X-Canary-Verdict") == 1
    assert b"Subject: [canary: shared by brokerx.test] Great\r\n deals" in head
    assert b"From: Broker X <offers@brokerx.test>" in head


def test_expected_mail_keeps_its_subject_and_a_missing_subject_gets_the_banner() -> None:
    same = forwarded_bytes(
        RAW, verdict="expected", sender_org="shopx.test", source=None, identity=None
    )
    assert b"Subject: Great\r\n deals" in same
    bare = forwarded_bytes(
        b"From: a@b.test\n\nhi\n",
        verdict="breach",
        sender_org=None,
        source="Sh\u00f6p",
        identity=None,
    )
    assert bare.endswith(b"\n\nhi\n")
    assert b"Subject: [canary: breach]\n" in bare
    assert b"X-Canary-Source: =?utf-8?" in bare  # non-ASCII encoded, never raw


# ---------------------------------------------------------------------- verification


async def test_verification_mail_link_verifies_once(
    store: Store,
    relay_settings: Settings,
    seeded: Seeded,
    relay: RecordingRelay,  # noqa: F811
) -> None:
    with store.session() as session:
        record, token = forward_addresses.request_verification(
            session, relay_settings, seeded.user, " Alice@Home.example "
        )
    assert record.address == HOME and record.verified_at is None
    await forward_addresses.send_verification(relay_settings, seeded.user, HOME, token)
    (mail,) = relay.messages
    assert mail.rcpt_tos == [HOME]
    link = re.search(rb"https://canary\.example/forwarding/verify/(\S+)", mail.data)
    assert link is not None and link.group(1).decode() == token
    with store.session() as session:
        assert forward_addresses.verify(session, token).verified_at is not None
    with store.session() as session, pytest.raises(NotFound):
        forward_addresses.verify(session, token)
    with store.session() as session:
        stored = session.exec(select(ForwardAddress)).one()
        assert stored.token_hash is None  # only ever a hash, and gone once used


def test_verification_is_rate_limited_and_refuses_odd_addresses(
    store: Store, settings: Settings, seeded: Seeded
) -> None:
    now = utcnow()
    with store.session() as session:
        forward_addresses.request_verification(session, settings, seeded.user, HOME, now)
    with store.session() as session, pytest.raises(Conflict, match="retry in"):
        forward_addresses.request_verification(session, settings, seeded.user, HOME, now)
    with store.session() as session:
        later = now + timedelta(minutes=11)
        forward_addresses.request_verification(session, settings, seeded.user, HOME, later)
    for bad in ("someone@canary.test", "not an address", "a@b@localhost", "x@y.test\r\nBcc: z"):
        with store.session() as session, pytest.raises(InvalidInput):
            forward_addresses.request_verification(session, settings, seeded.user, bad)
    with store.session() as session, pytest.raises(NotFound):
        forward_addresses.verify(session, "made-up-token")


def test_expired_link_does_not_verify(store: Store, settings: Settings, seeded: Seeded) -> None:
    with store.session() as session:
        _, token = forward_addresses.request_verification(session, settings, seeded.user, HOME)
    with store.session() as session, pytest.raises(NotFound, match="expired"):
        forward_addresses.verify(session, token, utcnow() + timedelta(days=8))


# ---------------------------------------------------------------------- forwarding


async def test_forwarding_is_refused_to_an_unverified_address(
    store: Store,
    relay_settings: Settings,
    seeded: Seeded,
    relay: RecordingRelay,  # noqa: F811
) -> None:
    with store.session() as session:
        forward_addresses.request_verification(session, relay_settings, seeded.user, HOME)
    _rule(store, seeded.user, "shop-x")
    assert _queue(store, seeded) is None
    # Even a row that somehow points at an unverified address is never sent.
    with store.session() as session:
        address = session.exec(select(ForwardAddress)).one()
        assert seeded.delivery.id is not None and seeded.user.id is not None
        assert address.id is not None
        session.add(
            Forward(delivery_id=seeded.delivery.id, address_id=address.id,
                    owner_id=seeded.user.id, verdict="shared")
        )  # fmt: skip
    assert await forwarding.deliver_forwards(relay_settings, store) == 0
    (row,) = _forwards(store)
    assert row.state == "failed" and row.last_error == "the address is no longer verified"
    assert relay.messages == []


async def test_forward_through_the_relay_with_verdict_headers(
    store: Store,
    relay_settings: Settings,
    seeded: Seeded,
    relay: RecordingRelay,  # noqa: F811
) -> None:
    _verify(store, relay_settings, seeded.user)
    relay.messages.clear()
    _rule(store, seeded.user, "shop-x")
    queued = _queue(store, seeded)
    assert queued is not None and queued.state == "pending"
    assert _queue(store, seeded) is None  # at most once per delivery
    assert await forwarding.deliver_forwards(relay_settings, store) == 1
    (mail,) = relay.messages
    assert mail.rcpt_tos == [HOME]
    assert mail.mail_from == "bounces@canary.test"
    head, _, body = mail.data.partition(b"\r\n\r\n")
    assert b"X-Canary-Verdict: shared; sender=brokerx.test" in head
    assert b"X-Canary-Source: Shop X" in head
    assert f"X-Canary-Identity: {seeded.identity.alias}".encode() in head
    assert b"Subject: [canary: shared by brokerx.test] Offer for alice" in head
    # SMTP carries CRLF lines; the seeded HTML part has bare LFs, which the wire fixes.
    assert re.sub(rb"\r?\n", b"\r\n", seeded.message.raw.partition(b"\r\n\r\n")[2]) == body
    (row,) = _forwards(store)
    assert row.state == "sent" and row.sent_at is not None and row.attempts == 1


async def test_failed_forward_is_retried_and_visible(
    store: Store,
    relay_settings: Settings,
    seeded: Seeded,
    relay: RecordingRelay,  # noqa: F811
) -> None:
    _verify(store, relay_settings, seeded.user)
    relay.messages.clear()
    _rule(store, seeded.user, seeded.identity.alias)
    _queue(store, seeded)
    relay.defer = 1
    start = utcnow()
    assert await forwarding.deliver_forwards(relay_settings, store, now=start) == 0
    (row,) = _forwards(store)
    assert row.state == "pending" and "451" in (row.last_error or "")
    assert (
        await forwarding.deliver_forwards(relay_settings, store, now=start + timedelta(hours=1))
        == 1
    )
    (row,) = _forwards(store)
    assert row.state == "sent" and row.attempts == 2
    assert len(relay.messages) == 1


async def test_breach_is_dropped_when_the_rule_says_so(
    store: Store,
    relay_settings: Settings,
    seeded: Seeded,
    relay: RecordingRelay,  # noqa: F811
) -> None:
    _verify(store, relay_settings, seeded.user)
    relay.messages.clear()
    _rule(store, seeded.user, "shop-x", drop_breach=True)
    dropped = _queue(store, seeded, "breach")
    assert dropped is not None and dropped.state == "dropped"
    assert await forwarding.deliver_forwards(relay_settings, store) == 0
    assert relay.messages == []


def test_identity_rule_wins_over_source_rule(
    store: Store, settings: Settings, seeded: Seeded
) -> None:
    _verify(store, settings, seeded.user)
    _verify(store, settings, seeded.user, "other@home.example")
    with store.session() as session:
        forward_addresses.set_rule(session, seeded.user, "shop-x", "other@home.example")
        rule = forward_addresses.set_rule(session, seeded.user, seeded.identity.alias, HOME)
    queued = _queue(store, seeded)
    assert queued is not None and queued.address_id == rule.address_id
