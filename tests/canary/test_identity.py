"""Issuing identities: every style, uniqueness, distance, the issuance log, retirement."""

from __future__ import annotations

import re

import pytest
from sqlmodel import select

from canary.alias import ROLE_NAMES, token_is_valid
from canary.errors import IdentityExhausted, InvalidInput, NotFound
from canary.identity import IdentityRequest, create_identities, find_identity, retire_identity
from canary.issuance import records_for, verify_chain
from canary.models import Identity, IssuanceRecord, User
from canary.sources import add_source
from canary.store import Store
from canary.users import add_user
from tests.conftest import CANARY_DOMAIN
from tests.support.names import assert_min_distance


@pytest.fixture
def source(store: Store, owner: User):
    with store.session() as session:
        return add_source(session, owner, "Shop X", ["shopx.example"])


def issue(store: Store, owner: User, source, **kw) -> list[Identity]:
    kw.setdefault("domain", CANARY_DOMAIN)
    with store.session() as session:
        return create_identities(session, owner, source, IdentityRequest(**kw))


def test_token_style(store: Store, owner: User, source) -> None:
    (identity,) = issue(store, owner, source)
    local, domain = identity.alias.split("@")
    assert domain == CANARY_DOMAIN
    assert re.fullmatch(r"[0-9a-hjkmnp-tv-z]{12}", local)
    assert token_is_valid(local)
    assert identity.style == "token"
    assert len(identity.display_name.split()) >= 2


def test_words_style(store: Store, owner: User, source) -> None:
    for identity in issue(store, owner, source, style="words", count=20):
        assert re.fullmatch(r"[a-z]+\.[a-z]+\.\d{3}@canary\.test", identity.alias)


def test_slug_style(store: Store, owner: User, source) -> None:
    for identity in issue(store, owner, source, style="slug", count=20):
        assert re.fullmatch(r"shop-x\.[0-9a-z]{7}@canary\.test", identity.alias)


def test_aliases_are_lower_case_and_never_role_names(store: Store, owner: User, source) -> None:
    for identity in issue(store, owner, source, style="words", count=200):
        assert identity.alias == identity.alias.lower()
        assert identity.alias.split("@")[0] not in ROLE_NAMES


def test_bulk_generation_is_unique_and_keeps_distance(store: Store, owner: User, source) -> None:
    identities = issue(store, owner, source, count=3000, seed=11)
    second_batch = issue(store, owner, source, count=500, style="slug", seed=12)
    everyone = identities + second_batch
    assert len({i.alias for i in everyone}) == len(everyone)
    assert_min_distance([i.name_key for i in everyone])
    with store.session() as session:
        assert len(session.exec(select(Identity)).all()) == 3500


def test_real_name_variants_are_tagged_and_run_out(store: Store, owner: User, source) -> None:
    made = issue(store, owner, source, real_name="Jane Doe", count=5)
    names = {i.display_name for i in made}
    assert len(names) == 5
    assert "Jane Doe" not in names
    assert all(i.real_name == "Jane Doe" for i in made)
    with pytest.raises(IdentityExhausted, match="Jane Doe"):
        issue(store, owner, source, real_name="Jane Doe", count=500)


def test_bad_requests_are_refused(store: Store, owner: User, source) -> None:
    with pytest.raises(InvalidInput):
        issue(store, owner, source, count=0)
    with pytest.raises(InvalidInput):
        issue(store, owner, source, style="emoji")
    with pytest.raises(InvalidInput, match="canary domain"):
        issue(store, owner, source, domain="")


def test_issuance_is_logged_in_a_hash_chain(store: Store, owner: User, source) -> None:
    made = issue(store, owner, source, count=5)
    with store.session() as session:
        retire_identity(session, owner, made[0].alias)
    with store.session() as session:
        assert verify_chain(session) is None
        events = [r.event for r in records_for(session, made[0])]
        assert events == ["issued", "retired"]
        # Tampering with any record breaks the chain at that record.
        record = session.exec(select(IssuanceRecord).order_by(IssuanceRecord.id)).all()[2]
        record.payload = {**record.payload, "source_name": "someone else"}
        session.add(record)
        session.flush()
        assert verify_chain(session) == record.id
        session.rollback()


def test_retire_and_find_ignore_case_and_tags(store: Store, owner: User, source) -> None:
    (identity,) = issue(store, owner, source)
    local, domain = identity.alias.split("@")
    with store.session() as session:
        found = find_identity(session, owner, f"{local.upper()}+promo@{domain.upper()}")
        assert found.id == identity.id
        retired = retire_identity(session, owner, identity.alias)
        assert retired.retired_at is not None


def test_other_users_identities_are_invisible(store: Store, owner: User, source) -> None:
    (identity,) = issue(store, owner, source)
    with store.session() as session:
        mallory = add_user(session, "mallory")
        with pytest.raises(NotFound):
            find_identity(session, mallory, identity.alias)
        with pytest.raises(NotFound):
            retire_identity(session, mallory, str(identity.id))
        with pytest.raises(NotFound):
            create_identities(session, mallory, source, IdentityRequest(domain=CANARY_DOMAIN))
