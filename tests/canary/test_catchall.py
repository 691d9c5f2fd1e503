"""Catch-all subdomains: claiming one, identities issued by the first mail, tidying up.

Mail travels over the real SMTP server and is analysed by the real worker, with SPF
answered by the loopback DNS server.
"""

from __future__ import annotations

import pytest
from sqlmodel import select

from canary.assessment import reevaluate_after_correction
from canary.catchall import (
    CATCHALL_STYLE,
    claim_subdomain,
    issue_on_first_use,
    list_subdomains,
    release_subdomain,
)
from canary.config import Settings
from canary.errors import Conflict, InvalidInput, NotFound
from canary.issuance import verify_chain
from canary.models import (
    AuthorisedSender,
    Delivery,
    Identity,
    Incident,
    IssuanceRecord,
    Source,
    User,
)
from canary.pipeline import Analyzer
from canary.review import revoke_sender
from canary.source_merge import merge_sources, rename_source
from canary.store import Store
from canary.users import add_user
from tests.support.dns_server import TestDnsServer
from tests.support.smtp import (
    add_identity,
    add_source,
    message_bytes,
    message_from,
    send_message,
    start_server,
)

DOMAINS = ("canary.test",)


def _claim(store: Store, owner: User, domain: str = "alice.canary.test") -> None:
    with store.session() as session:
        claim_subdomain(session, owner, domain, DOMAINS)


async def _send(
    store: Store, settings: Settings, rcpt: str, sender: str, subject: str = "welcome"
) -> int:
    """Send one message from ``sender``'s domain to ``rcpt``; return the reply code."""
    domain = sender.rpartition("@")[2]
    content = message_from(sender, subject, to=rcpt)
    running = await start_server(store, settings)
    try:
        reply = await send_message(running.host, running.port, f"bounce@{domain}", [rcpt], content)
    finally:
        await running.stop()
    return reply.code


def _source_named(store: Store, name: str) -> Source | None:
    with store.session() as session:
        return session.exec(select(Source).where(Source.name == name)).first()


def _senders(store: Store, source: Source) -> dict[str, str]:
    with store.session() as session:
        rows = session.exec(select(AuthorisedSender).where(AuthorisedSender.source_id == source.id))
        return {r.domain: r.reason for r in rows}


# ---------------------------------------------------------------------- claiming


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("canary.test", "single label under a canary domain"),
        ("a.b.canary.test", "single label under a canary domain"),
        ("alice.other.test", "single label under a canary domain"),
        ("-alice.canary.test", "not a valid subdomain label"),
        ("mail.canary.test", "reserved"),
        ("al ice.canary.test", "not a valid"),
    ],
)
def test_only_one_new_label_under_a_canary_domain_can_be_claimed(
    store: Store, owner: User, text: str, problem: str
) -> None:
    with store.session() as session, pytest.raises(InvalidInput, match=problem):
        claim_subdomain(session, owner, text, DOMAINS)


def test_a_subdomain_has_one_owner(store: Store, owner: User) -> None:
    with store.session() as session:
        bob = add_user(session, "bob", password="another horse")
        claim = claim_subdomain(session, owner, "Alice.Canary.Test.", DOMAINS)
        assert claim.domain == "alice.canary.test"
        # Claiming again is harmless; someone else cannot.
        assert claim_subdomain(session, owner, "alice.canary.test", DOMAINS).id == claim.id
        with pytest.raises(Conflict, match="already claimed"):
            claim_subdomain(session, bob, "alice.canary.test", DOMAINS)
        with pytest.raises(NotFound):
            release_subdomain(session, bob, "alice.canary.test")
        assert [c.domain for c in list_subdomains(session, owner)] == ["alice.canary.test"]
        assert list_subdomains(session, bob) == []


def test_a_domain_with_issued_identities_cannot_be_claimed(store: Store, owner: User) -> None:
    with store.session() as session:
        source = Source(owner_id=owner.id, name="Old", slug="old")  # type: ignore[arg-type]
        session.add(source)
        session.flush()
        session.add(
            Identity(
                owner_id=owner.id,  # type: ignore[arg-type]
                source_id=source.id,  # type: ignore[arg-type]
                alias="k3m9abc@shared.canary.test",
                style="token",
                display_name="Marc Kollier",
                name_key="marc kollier",
            )
        )
        session.flush()
        with pytest.raises(Conflict, match="already has identities"):
            claim_subdomain(session, owner, "shared.canary.test", DOMAINS)


# ---------------------------------------------------------------------- first use


async def test_first_mail_issues_the_identity_and_trusts_its_authenticated_sender(
    store: Store, settings: Settings, owner: User, dns_server: TestDnsServer
) -> None:
    for domain in ("shopx.test", "brokerx.test"):
        dns_server.spf_pass_from_loopback(domain)
    _claim(store, owner)

    assert await _send(store, settings, "ShopX+signup@Alice.canary.test", "hi@shopx.test") == 250
    Analyzer(store, settings).drain()

    shopx = _source_named(store, "shopx")
    assert shopx is not None and shopx.owner_id == owner.id
    assert _senders(store, shopx) == {"shopx.test": "first_use"}
    with store.session() as session:
        [identity] = session.exec(select(Identity).where(Identity.source_id == shopx.id)).all()
        [delivery] = session.exec(select(Delivery)).all()
        records = session.exec(
            select(IssuanceRecord).where(IssuanceRecord.identity_id == identity.id)
        ).all()
        assert verify_chain(session) is None
    assert identity.alias == "shopx@alice.canary.test" and identity.style == CATCHALL_STYLE
    assert [r.event for r in records] == ["issued"]
    assert delivery.identity_id == identity.id and delivery.verdict == "expected"

    # From now on the alias is judged like any other: a broker's mail is shared.
    assert await _send(store, settings, "shopx@alice.canary.test", "deals@brokerx.test") == 250
    Analyzer(store, settings).drain()
    with store.session() as session:
        verdicts = [d.verdict for d in session.exec(select(Delivery).order_by(Delivery.id))]
        [incident] = session.exec(select(Incident)).all()
    assert verdicts == ["expected", "shared"]
    assert incident.source_id == shopx.id and incident.organisations == ["brokerx.test"]


async def test_first_use_counts_for_later_mail_of_the_same_batch(
    store: Store, settings: Settings, owner: User, dns_server: TestDnsServer
) -> None:
    for domain in ("shopx.test", "brokerx.test"):
        dns_server.spf_pass_from_loopback(domain)
    _claim(store, owner)
    assert await _send(store, settings, "shopx@alice.canary.test", "hi@shopx.test") == 250
    assert await _send(store, settings, "shopx@alice.canary.test", "deals@brokerx.test") == 250

    assert Analyzer(store, settings).run_once() == 2  # one batch, one transaction

    shopx = _source_named(store, "shopx")
    assert shopx is not None and _senders(store, shopx) == {"shopx.test": "first_use"}
    with store.session() as session:
        [identity] = session.exec(select(Identity).where(Identity.source_id == shopx.id)).all()
        deliveries = session.exec(select(Delivery).order_by(Delivery.id)).all()
    assert [d.identity_id for d in deliveries] == [identity.id, identity.id]
    assert [d.verdict for d in deliveries] == ["expected", "shared"]


async def test_unauthenticated_first_mail_trusts_nobody(
    store: Store, settings: Settings, owner: User
) -> None:
    _claim(store, owner)
    assert await _send(store, settings, "forum@alice.canary.test", "hi@forum.test") == 250
    Analyzer(store, settings).drain()
    forum = _source_named(store, "forum")
    assert forum is not None and _senders(store, forum) == {}
    with store.session() as session:
        [delivery] = session.exec(select(Delivery)).all()
    assert delivery.source_id == forum.id and delivery.verdict == "breach"


async def test_smtp_refuses_unclaimed_subdomains_and_relay_tricks_on_claimed_ones(
    store: Store, settings: Settings, owner: User
) -> None:
    _claim(store, owner)
    assert await _send(store, settings, "shop@bob.canary.test", "hi@shop.test") == 550
    assert await _send(store, settings, "bob%other.test@alice.canary.test", "x@y.test") == 550
    assert await _send(store, settings, "shop@xalice.canary.test", "hi@shop.test") == 550
    # Claimed while the server runs: accepted at once, no restart needed.
    running = await start_server(store, settings)
    try:
        with store.session() as session:
            claim_subdomain(session, owner, "carol.canary.test", DOMAINS)
        reply = await send_message(
            running.host, running.port, "x@shop.test", ["shop@carol.canary.test"], message_bytes()
        )
    finally:
        await running.stop()
    assert reply.code == 250


async def test_role_names_and_the_daily_limit_are_not_issued(
    store: Store, settings: Settings, owner: User, dns_server: TestDnsServer
) -> None:
    dns_server.spf_pass_from_loopback("spam.test")
    _claim(store, owner)
    limited = settings.replace(catchall_daily_limit=2)
    for local in ("info", "one", "two", "three"):
        assert await _send(store, limited, f"{local}@alice.canary.test", "x@spam.test") == 250
    Analyzer(store, limited).drain()
    with store.session() as session:
        issued = {a.partition("@")[0] for a in session.exec(select(Identity.alias))}
        kinds = {d.recipient.partition("@")[0]: d.kind for d in session.exec(select(Delivery))}
    # Two of the three, in whatever order the worker took them; never the role name.
    assert len(issued) == 2 and issued < {"one", "two", "three"}
    # Nothing is lost past the limit: the mail is kept, unattributed.
    assert sorted(kinds.values()) == ["canary", "canary", "unattributed", "unattributed"]
    assert kinds["info"] == "unattributed"


def test_a_new_local_part_joins_the_source_of_the_same_name(store: Store, owner: User) -> None:
    shop = add_source(store, owner, "Shop X", ["shopx.test"])
    _claim(store, owner)
    with store.session() as session:
        first = issue_on_first_use(session, "shop-x@alice.canary.test", daily_limit=10)
    assert first is not None and first.source.id == shop.id and not first.new_source
    # The user's own set-up stays: no first-use sender is added.
    assert _senders(store, shop) == {"shopx.test": "own"}
    with store.session() as session:
        assert issue_on_first_use(session, "shop@elsewhere.test", daily_limit=10) is None
        assert issue_on_first_use(session, "a..b!@alice.canary.test", daily_limit=10) is None


# ---------------------------------------------------------------------- tidying up


async def test_a_wrong_first_sender_can_be_revoked_and_the_verdict_follows(
    store: Store, settings: Settings, owner: User, dns_server: TestDnsServer
) -> None:
    dns_server.spf_pass_from_loopback("brokerx.test")
    _claim(store, owner)
    # The broker got there first (the alias leaked before the site wrote).
    assert await _send(store, settings, "shopx@alice.canary.test", "deals@brokerx.test") == 250
    Analyzer(store, settings).drain()
    shopx = _source_named(store, "shopx")
    assert shopx is not None and _senders(store, shopx) == {"brokerx.test": "first_use"}
    with store.session() as session:
        revoke_sender(session, owner, shopx.id, "brokerx.test", reevaluate_after_correction)
        with pytest.raises(NotFound):
            revoke_sender(session, owner, shopx.id, "brokerx.test")
    with store.session() as session:
        [delivery] = session.exec(select(Delivery)).all()
        [incident] = session.exec(select(Incident)).all()
    assert delivery.verdict == "shared" and incident.kind == "shared"


async def test_merging_moves_identities_mail_findings_and_senders(
    store: Store, settings: Settings, owner: User, dns_server: TestDnsServer
) -> None:
    for domain in ("shopx.test", "brokerx.test"):
        dns_server.spf_pass_from_loopback(domain)
    _claim(store, owner)
    assert await _send(store, settings, "shopx@alice.canary.test", "hi@shopx.test") == 250
    assert await _send(store, settings, "shopx2@alice.canary.test", "deals@brokerx.test") == 250
    Analyzer(store, settings).drain()
    shopx, shopx2 = _source_named(store, "shopx"), _source_named(store, "shopx2")
    assert shopx is not None and shopx2 is not None
    # shopx2 trusted the broker on first use: the user corrects that, then folds it in.
    with store.session() as session:
        revoke_sender(session, owner, shopx2.id, "brokerx.test", reevaluate_after_correction)
        kept = merge_sources(session, owner, "shopx2", "shopx", reevaluate_after_correction)
        renamed = rename_source(session, owner, kept.id, "Shop X")
        assert renamed.slug == "shop-x"
    with store.session() as session:
        assert session.get(Source, shopx2.id) is None
        aliases = session.exec(
            select(Identity.alias).where(Identity.source_id == shopx.id).order_by(Identity.alias)
        ).all()
        deliveries = session.exec(select(Delivery).order_by(Delivery.id)).all()
        [incident] = session.exec(select(Incident)).all()
        moved = session.exec(select(IssuanceRecord).where(IssuanceRecord.event == "moved")).all()
        assert verify_chain(session) is None
    assert aliases == ["shopx2@alice.canary.test", "shopx@alice.canary.test"]
    assert {d.source_id for d in deliveries} == {shopx.id}
    assert [d.verdict for d in deliveries] == ["expected", "shared"]
    assert incident.source_id == shopx.id and incident.organisations == ["brokerx.test"]
    assert [r.payload["source_name"] for r in moved] == ["shopx"]


def test_merge_and_rename_refuse_what_would_break(store: Store, owner: User) -> None:
    add_source(store, owner, "Shop", [])
    add_source(store, owner, "Other", [])
    with store.session() as session:
        with pytest.raises(InvalidInput, match="itself"):
            merge_sources(session, owner, "shop", "shop")
        with pytest.raises(Conflict, match="merge them instead"):
            rename_source(session, owner, "other", "SHOP")
        with pytest.raises(NotFound):
            merge_sources(session, owner, "nothing", "shop")
        bob = add_user(session, "bob", password="another horse")
        with pytest.raises(NotFound):
            merge_sources(session, bob, "other", "shop")


def test_identities_keep_their_issuance_when_their_source_is_renamed(
    store: Store, owner: User
) -> None:
    shop = add_source(store, owner, "Shop", [])
    add_identity(store, owner, shop, "k3m9abc", "Marc Q Kollier")
    with store.session() as session:
        rename_source(session, owner, shop.id, "Shop Ltd")
    with store.session() as session:
        [identity] = session.exec(select(Identity)).all()
    assert identity.source_id == shop.id
