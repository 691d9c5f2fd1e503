"""Attribution: recipient to identity, and tagged names found inside messages."""

from __future__ import annotations

from canary.mailbox.parse import parse_message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import select

from canary.attribution import (
    find_tagged,
    fold_name,
    from_organisation,
    html_to_text,
    match_recipient,
)
from canary.models import Identity, User
from canary.store import Store
from tests.support.smtp import add_identity, add_source

DOMAINS = ("canary.test",)
WHERE = {"to_name", "greeting", "body", "to_address", "body_address"}


def test_fold_name_matches_identity_keys() -> None:
    assert fold_name("Marc Q. Kollier") == "marc q kollier"
    assert fold_name("  JOSÉ   María-López ") == "jose maria lopez"


def test_match_recipient_ignores_case_and_tags(store: Store, owner: User) -> None:
    shop = add_source(store, owner, "Shop", ["shop.test"])
    identity = add_identity(store, owner, shop, "k3m9abc", "Marc Q Kollier")
    with store.session() as session:
        for address in (
            "k3m9abc@canary.test",
            "K3M9ABC+promo@Canary.Test",
            "<k3m9abc@canary.test>",
        ):
            match = match_recipient(session, address)
            assert match.kind == "canary" and match.identity is not None
            assert match.identity.id == identity.id and match.source is not None
            assert match.source.id == shop.id
        assert match_recipient(session, "postmaster@canary.test").kind == "role"
        assert match_recipient(session, "ABUSE@canary.test").kind == "role"
        assert match_recipient(session, "<Postmaster>").kind == "role"
        assert match_recipient(session, "unknown@canary.test").kind == "unattributed"
        assert match_recipient(session, "no-at-sign").kind == "unattributed"


def test_tagged_names_in_to_greeting_and_body(store: Store, owner: User) -> None:
    shop = add_source(store, owner, "Shop")
    club = add_source(store, owner, "Club")
    fair = add_source(store, owner, "Fair")
    a = add_identity(store, owner, shop, "aaa111", "Marc Q. Kollier")
    b = add_identity(store, owner, club, "bbb222", "Ilse Vandermeer")
    c = add_identity(store, owner, fair, "ccc333", "Tomas Brenner")
    raw = (
        b'From: x@y.test\r\nTo: "Marc Q. Kollier" <aaa111@canary.test>\r\n'
        b"Subject: hi\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        b"Hello Ilse Vandermeer,\r\n\r\nline two\r\nline three\r\n"
        b"We also wrote to TOMAS BRENNER and to bbb222@canary.test yesterday.\r\n"
        b"marc q kollier in lower case in the body is not a name.\r\n"
    )
    parsed = parse_message(raw)
    with store.session() as session:
        hits = {h.identity_id: h.where for h in find_tagged(session, parsed, DOMAINS)}
    assert hits == {a.id: "to_name", b.id: "greeting", c.id: "body"}


def test_tagged_names_are_per_owner(store: Store, owner: User) -> None:
    from canary.users import add_user

    with store.session() as session:
        other = add_user(session, "bob")
    add_identity(store, other, add_source(store, other, "Shop"), "zzz999", "Ilse Vandermeer")
    parsed = parse_message(b"To: x@canary.test\r\n\r\nDear Ilse Vandermeer,\r\n")
    with store.session() as session:
        assert find_tagged(session, parsed, DOMAINS, owner_id=owner.id) == []
        assert len(find_tagged(session, parsed, DOMAINS)) == 1


def test_names_in_html_bodies_and_from_organisation() -> None:
    html = "<html><style>.a{}</style><p>Dear <b>Ilse&nbsp;Vandermeer</b>,</p></html>"
    assert "Ilse\xa0Vandermeer" in html_to_text(html)
    parsed = parse_message(b"From: Deals <offers@mail.brokerx.co.uk>\r\n\r\nx\r\n")
    assert from_organisation(parsed) == "brokerx.co.uk"
    assert from_organisation(parse_message(b"Subject: no from\r\n\r\nx\r\n")) is None


# ---------------------------------------------------------------------- properties

_mail_text = st.one_of(
    st.binary(max_size=3000),
    st.builds(
        lambda to, body: b"To: " + to + b"\r\nContent-Type: text/html\r\n\r\n" + body,
        st.binary(max_size=300),
        st.binary(max_size=3000),
    ),
    st.lists(
        st.sampled_from(
            ["Ilse", "Vandermeer", "Marc", "Q.", "Kollier", "aaa111@canary.test", "\u0130",
             "<b>", "</b>", "&amp;", "\r\n", " ", "@", "canary.test", "\x00", "\ufffd"]
        ),
        max_size=200,
    ).map(lambda words: ("To: Ilse <x@canary.test>\r\n\r\n" + " ".join(words)).encode()),
)  # fmt: skip


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(raw=_mail_text)
def test_any_message_attributes_without_raising(store: Store, owner: User, raw: bytes) -> None:
    """Whatever arrives, attribution answers (read-only, so one store serves all examples)."""
    with store.session() as session:
        if not session.exec(select(Identity)).first():
            shop = add_source(store, owner, "Shop")
            add_identity(store, owner, shop, "aaa111", "Ilse Vandermeer")
    parsed = parse_message(raw)
    with store.session() as session:
        hits = find_tagged(session, parsed, DOMAINS)
        for _display, address in parsed.to + parsed.cc:
            match_recipient(session, address)
    assert all(h.where in WHERE for h in hits)
    if b"Ilse Vandermeer" in raw and parsed.text.startswith("Ilse Vandermeer"):
        assert hits  # the tagged name in the greeting is still found amid the noise


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=500))
def test_any_text_folds_and_matches_without_raising(text: str) -> None:
    folded = fold_name(text)
    assert folded == fold_name(folded)  # folding is idempotent
    html_to_text(text)
