"""Owner-scoped lookups: ids that are not ids, and other users' rows, are not found."""

from __future__ import annotations

import pytest

from canary.errors import NotFound
from canary.models import Source, User
from canary.ownership import MAX_ID, as_id, owned
from canary.sources import add_source, get_source
from canary.store import Store
from canary.users import add_user


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (7, 7),
        ("42", 42),
        (" 42 ", 42),
        (str(MAX_ID), MAX_ID),
        (str(MAX_ID + 1), None),
        ("9" * 40, None),
        ("²", None),  # str.isdigit() says yes; int() says no
        ("٣", None),  # an Arabic-Indic digit
        ("0", None),
        (-3, None),
        (True, None),
        ("shop-x", None),
        ("", None),
    ],
)
def test_what_counts_as_a_row_id(value: object, expected: int | None) -> None:
    assert as_id(value) == expected


def test_another_users_row_and_an_impossible_id_are_both_not_found(
    store: Store, owner: User
) -> None:
    with store.session() as session:
        bob = add_user(session, "bob", password="another horse")
        shop = add_source(session, owner, "Shop", [])
        assert owned(session, Source, shop.id, owner, "source").id == shop.id  # type: ignore[arg-type]
        for who, row_id in ((bob, shop.id), (owner, MAX_ID + 1), (owner, 10**30)):
            with pytest.raises(NotFound, match="no source"):
                owned(session, Source, row_id, who, "source")  # type: ignore[arg-type]
        # A name that looks like a number but is not one is looked up as a name.
        for name in ("²", "9" * 40):
            with pytest.raises(NotFound):
                get_source(session, owner, name)
