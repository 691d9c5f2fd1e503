"""The in-memory index of tagged name keys and aliases that analysis workers keep."""

from __future__ import annotations

from canary.attribution import fold_name
from canary.models import Identity, Source, User
from canary.name_index import TaggedKeyIndex
from canary.store import Store
from tests.support.smtp import add_identity, add_source


def test_identities_issued_elsewhere_after_the_first_load_are_seen(
    store: Store, owner: User
) -> None:
    shop = add_source(store, owner, "Shop")
    add_identity(store, owner, shop, "aaa111", "Marc Q Kollier")
    index = TaggedKeyIndex()
    with store.session() as session:
        index.refresh(session)
    assert index.names_among(["ilse vandermeer", "marc q kollier"]) == ["marc q kollier"]

    # Another process (the CLI, the dashboard) issues an identity meanwhile.
    add_identity(store, owner, shop, "bbb222", "Ilse Vandermeer")
    with store.session() as session:
        index.refresh(session)
    assert index.names_among(["ilse vandermeer", "marc q kollier"]) == [
        "ilse vandermeer",
        "marc q kollier",
    ]
    assert index.aliases_among(["bbb222@canary.test", "zzz@canary.test"]) == ["bbb222@canary.test"]
    assert len(index) == 2 and index.full_loads == 0  # only the new row was read


def _identity_with_id(store: Store, owner: User, shop: Source, id_: int, name: str) -> None:
    assert owner.id is not None and shop.id is not None
    with store.session() as session:
        session.add(
            Identity(
                id=id_,
                owner_id=owner.id,
                source_id=shop.id,
                alias=f"id{id_}@canary.test",
                style="token",
                display_name=name,
                name_key=fold_name(name),
            )
        )


def test_an_identity_committed_late_with_a_lower_id_is_seen(store: Store, owner: User) -> None:
    shop = add_source(store, owner, "Shop")
    first = add_identity(store, owner, shop, "aaa111", "Marc Q Kollier")
    assert first.id is not None
    index = TaggedKeyIndex()
    _identity_with_id(store, owner, shop, first.id + 1000, "Anna Berg")
    with store.session() as session:
        index.refresh(session)
    # PostgreSQL hands out ids before commit, so a row can appear below the highest id
    # already read; an explicit id stands in for that here.
    _identity_with_id(store, owner, shop, first.id + 500, "Late Comer")
    with store.session() as session:
        index.refresh(session)
    assert index.names_among(["anna berg", "late comer"]) == ["anna berg", "late comer"]
    assert len(index) == 3 and index.full_loads == 1


def test_keys_added_by_a_transaction_that_rolled_back_only_cost_a_lookup(
    store: Store, owner: User
) -> None:
    shop = add_source(store, owner, "Shop")
    index = TaggedKeyIndex()
    assert owner.id is not None and shop.id is not None
    index.add(
        Identity(
            owner_id=owner.id,
            source_id=shop.id,
            alias="gone@canary.test",
            style="catchall",
            display_name="",
            name_key="",
        )
    )
    add_identity(store, owner, shop, "aaa111", "Marc Q Kollier")
    with store.session() as session:
        index.refresh(session)
    # A superset: the key never issued may stay, the committed one is there.
    assert index.aliases_among(["gone@canary.test", "aaa111@canary.test"]) == [
        "gone@canary.test",
        "aaa111@canary.test",
    ]
    assert len(index) == 1
