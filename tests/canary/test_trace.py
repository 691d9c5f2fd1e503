"""Trace finds the source that got an address, a misspelt name or a code."""

from __future__ import annotations

from canary.identity import IdentityRequest, create_identities
from canary.models import User
from canary.sources import add_source
from canary.store import Store
from canary.trace import trace
from canary.users import add_user
from tests.conftest import CANARY_DOMAIN


def seed(store: Store, owner: User):
    with store.session() as session:
        shop = add_source(session, owner, "Shop X", ["shopx.example"])
        bank = add_source(session, owner, "Bank Y", ["banky.example"])
        noise = create_identities(
            session, owner, bank, IdentityRequest(count=300, domain=CANARY_DOMAIN, seed=5)
        )
        (marc,) = create_identities(
            session, owner, shop, IdentityRequest(domain=CANARY_DOMAIN, seed=1)
        )
        marc.display_name, marc.name_key = "Marc Q. Kollier", "marc q kollier"
        session.add(marc)
    return marc, noise


def test_trace_by_address_ignores_case_and_plus_tags(store: Store, owner: User) -> None:
    marc, _ = seed(store, owner)
    local, domain = marc.alias.split("@")
    with store.session() as session:
        result = trace(session, owner, f"{local.upper()}+newsletter@{domain}")
    assert [m.identity.id for m in result.matches] == [marc.id]
    assert result.matches[0].source.name == "Shop X"
    assert result.matches[0].matched_on == "alias"


def test_trace_by_misspelt_name_ranks_the_right_identity_first(store: Store, owner: User) -> None:
    marc, _ = seed(store, owner)
    with store.session() as session:
        for text in ("Marc Q Kolier", "marc kollier", "MARC Q. KOLLIER"):
            result = trace(session, owner, text)
            assert result.matches, text
            assert result.matches[0].identity.id == marc.id, text
            assert result.matches[0].matched_on == "name"


def test_trace_of_a_display_address_uses_both_parts(store: Store, owner: User) -> None:
    marc, noise = seed(store, owner)
    with store.session() as session:
        result = trace(session, owner, f'"Marc Q Kollier" <{noise[0].alias}>')
    ids = [m.identity.id for m in result.matches]
    assert ids[0] == noise[0].id and marc.id in ids


def test_unknown_address_says_whether_it_looks_issued(store: Store, owner: User) -> None:
    seed(store, owner)
    with store.session() as session:
        plain = trace(session, owner, f"nobody@{CANARY_DOMAIN}")
        assert plain.matches == [] and plain.note == "no identity has this address"
        valid = trace(session, owner, f"000000000000@{CANARY_DOMAIN}")
        assert valid.matches == [] and "never issued" in (valid.note or "")


def test_trace_never_shows_another_users_identities(store: Store, owner: User) -> None:
    marc, _ = seed(store, owner)
    with store.session() as session:
        mallory = add_user(session, "mallory")
        assert trace(session, mallory, marc.alias).matches == []
        assert trace(session, mallory, "Marc Q. Kollier").matches == []


def test_trace_sees_identities_issued_or_changed_after_an_earlier_trace(
    store: Store, owner: User
) -> None:
    marc, noise = seed(store, owner)
    with store.session() as session:
        assert not trace(session, owner, "Zelda Quorrington").matches
        assert not trace(session, owner, "REF-7731-QX").matches
    with store.session() as session:
        shop = add_source(session, owner, "Shop Z")
        (zelda,) = create_identities(
            session, owner, shop, IdentityRequest(domain=CANARY_DOMAIN, seed=9)
        )
        zelda.display_name, zelda.name_key = "Zelda Quorrington", "zelda quorrington"
        session.add(zelda)
        changed = session.get(type(marc), noise[0].id)
        assert changed is not None
        changed.reference = "REF-7731-QX"
        session.add(changed)
    with store.session() as session:
        by_name = trace(session, owner, "Zelda Quorington")
        by_code = trace(session, owner, "ref-7731")
    assert [m.identity.id for m in by_name.matches][:1] == [zelda.id]
    assert [(m.identity.id, m.matched_on) for m in by_code.matches] == [(noise[0].id, "reference")]
