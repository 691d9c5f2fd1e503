"""One rule for every owner-scoped lookup: another user's row is the same as no row.

Every service function that takes an id from a user goes through :func:`owned`, so a
guessed id of someone else's source, incident or channel gets exactly the answer a
missing id gets (``NotFound``), and nothing about it can be learned from the error.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from sqlmodel import Session

from canary.errors import NotFound
from canary.models import User


class _Owned(Protocol):
    owner_id: Any


T = TypeVar("T", bound=_Owned)


def owned(session: Session, model: type[T], row_id: int, owner: User, what: str) -> T:
    """The ``model`` row ``row_id`` if ``owner`` owns it; otherwise NotFound("no WHAT ID")."""
    row = session.get(model, row_id)
    if row is None or row.owner_id != owner.id:
        raise NotFound(f"no {what} {row_id}")
    return row
