"""Which tagged name keys and aliases exist, kept in memory by each analysis worker.

A message carries dozens of candidate name runs ("Dear Valued Customer", "Weekly
Offers") and usually no identity's name at all. Asking the database about every
candidate of every message was the largest single cost of analysis; this index answers
"can this key belong to an identity?" from memory, so only keys that can hit are looked
up, and the database still decides owner and source.

The index is a superset: a key in it may belong to no identity the current transaction
sees (that costs one lookup, nothing else). What it must never do is lack the key of an
identity issued before the batch was claimed, by this process or another (the CLI, the
dashboard, another worker). Identities are never deleted and their name key and alias
never change, so :meth:`TaggedKeyIndex.refresh`, called once per batch after the claim,
reads the row count and the rows above the highest id it knows in one statement (one
snapshot). When the count says more rows exist than it holds, a row with a lower id
committed late (PostgreSQL hands out ids before commit) and everything is read again.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, select, true
from sqlmodel import Session

from canary.models import Identity


class TaggedKeyIndex:
    """The name keys and aliases of every identity, for one worker process."""

    def __init__(self) -> None:
        self._names: set[str] = set()
        self._aliases: set[str] = set()
        self._count = 0  # identities held, all with an id up to _max_id
        self._max_id = 0
        self.full_loads = 0
        """How often every identity was read (diagnostics and tests)."""

    def __len__(self) -> int:
        return self._count

    def refresh(self, session: Session) -> None:
        """Take in every identity committed so far (one statement when nothing changed)."""
        table = Identity.__table__  # type: ignore[attr-defined]
        total = select(func.count().label("total")).select_from(table).subquery()
        newer = select(table.c.id, table.c.name_key, table.c.alias).where(table.c.id > self._max_id)
        newer_rows = newer.subquery()
        statement = select(
            total.c.total, newer_rows.c.id, newer_rows.c.name_key, newer_rows.c.alias
        ).select_from(total.outerjoin(newer_rows, true()))
        rows = session.execute(statement).all()
        count = rows[0][0] if rows else 0
        added = [(i, name, alias) for _, i, name, alias in rows if i is not None]
        if self._count + len(added) != count:
            self._load_all(session)
            return
        self._take(added)

    def _load_all(self, session: Session) -> None:
        table = Identity.__table__  # type: ignore[attr-defined]
        rows = session.execute(select(table.c.id, table.c.name_key, table.c.alias)).all()
        self._names.clear()
        self._aliases.clear()
        self._count = 0
        self._max_id = 0
        self._take(rows)
        self.full_loads += 1

    def _take(self, rows: Iterable[tuple[int, str, str]]) -> None:
        for identity_id, name, alias in rows:
            if name:
                self._names.add(name)
            self._aliases.add(alias)
            self._count += 1
            self._max_id = max(self._max_id, identity_id)

    def add(self, identity: Identity) -> None:
        """Know an identity issued in the caller's own, not yet committed, transaction.

        It is not counted: the next refresh counts it once committed (or, if the
        transaction rolled back, the extra keys only cost a lookup).
        """
        if identity.name_key:
            self._names.add(identity.name_key)
        self._aliases.add(identity.alias)

    def names_among(self, keys: Iterable[str]) -> list[str]:
        """The keys that may be an identity's name key, in the order given."""
        return [k for k in keys if k in self._names]

    def aliases_among(self, keys: Iterable[str]) -> list[str]:
        """The keys that may be an identity's alias, in the order given."""
        return [k for k in keys if k in self._aliases]
