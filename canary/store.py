"""The database: engine creation for SQLite and PostgreSQL, sessions, and migrations.

The same code runs on both backends. SQLite is opened in WAL mode with
``synchronous=FULL`` so that a committed transaction survives an operating-system crash
(a ``250`` reply after DATA is a promise, RFC 5321 section 6.1); PostgreSQL keeps its
default ``synchronous_commit=on``, which gives the same guarantee.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, create_engine

from canary.config import Settings
from canary.errors import StoreUnavailable

log = logging.getLogger(__name__)

MIGRATIONS = str(Path(__file__).resolve().parent / "migrations")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine for ``url``; for SQLite, create the file's directory first."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 10}, **kwargs
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


class Store:
    """The database of one canarytrace installation."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)

    @classmethod
    def from_settings(cls, settings: Settings) -> Store:
        """Open the database named by the settings (SQLite in the data directory by default)."""
        return cls(settings.resolved_database_url)

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on error."""
        try:
            with Session(self.engine, expire_on_commit=False) as session:
                yield session
                session.commit()
        except OperationalError as exc:
            raise StoreUnavailable(f"database unavailable: {exc.orig}") from exc

    # ------------------------------------------------------------------ migrations

    def _alembic_config(self) -> Any:
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", MIGRATIONS)
        config.attributes["engine"] = self.engine
        return config

    def upgrade(self, revision: str = "head") -> None:
        """Bring the schema up to ``revision`` (the newest by default), in place."""
        from alembic import command

        try:
            command.upgrade(self._alembic_config(), revision)
        except OperationalError as exc:
            raise StoreUnavailable(f"database unavailable: {exc.orig}") from exc

    def current_revision(self) -> str | None:
        """The schema revision the database is at, or None for an empty database."""
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def head_revision(self) -> str:
        """The newest schema revision this release knows."""
        from alembic.script import ScriptDirectory

        head = ScriptDirectory.from_config(self._alembic_config()).get_current_head()
        assert head is not None
        return head

    def table_names(self) -> list[str]:
        """Names of the tables present, for diagnostics and tests."""
        return sorted(inspect(self.engine).get_table_names())

    def close(self) -> None:
        """Release all pooled connections."""
        self.engine.dispose()
