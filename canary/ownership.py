"""One rule for every owner-scoped lookup: another user's row is the same as no row.

Lookups by a user-supplied id go through :func:`owned` (or, where a name is accepted
too, through :func:`as_id` and an owner check), so a guessed id of someone else's
source, incident or channel gets exactly the answer a missing id gets (``NotFound``),
and nothing about it can be learned from the error.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from sqlmodel import Session

from canary.errors import NotFound
from canary.models import User

# Id columns are 32-bit integers on PostgreSQL; a larger number is no row of ours.
MAX_ID = 2**31 - 1


def as_id(value: object) -> int | None:
    """``value`` as a row id when it spells one (an int, or ASCII digits) within range;
    None otherwise, so callers treat it as a name. ``"²".isdigit()`` is true, and
    ``int()`` of a 40-digit string overflows the database's integer: neither is an id."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    else:
        text = str(value).strip()
        if not (text.isascii() and text.isdigit()) or len(text) > 10:
            return None
        number = int(text)
    return number if 0 < number <= MAX_ID else None


class _Owned(Protocol):
    owner_id: Any


T = TypeVar("T", bound=_Owned)


def owned(session: Session, model: type[T], row_id: int, owner: User, what: str) -> T:
    """The ``model`` row ``row_id`` if ``owner`` owns it; otherwise NotFound("no WHAT ID")."""
    row = session.get(model, row_id) if as_id(row_id) is not None else None
    if row is None or row.owner_id != owner.id:
        raise NotFound(f"no {what} {row_id}")
    return row
