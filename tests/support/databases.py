"""Fresh databases for tests: a SQLite file per test, and a PostgreSQL database per test.

PostgreSQL is reached at ``CANARY_TEST_POSTGRES_URL`` (default: the local server on
127.0.0.1:5432 as user postgres). Where it does not answer the PostgreSQL runs are
skipped, except under ``CI=true``, where they must run and a missing server fails them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy.engine import make_url

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def postgres_admin_url() -> str:
    """The URL of the PostgreSQL database used to create per-test databases."""
    return os.environ.get("CANARY_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


def _connect_admin():  # type: ignore[no-untyped-def]
    import psycopg

    url = make_url(postgres_admin_url())
    return psycopg.connect(
        host=url.host or "127.0.0.1",
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        dbname=url.database,
        autocommit=True,
        connect_timeout=3,
    )


def require_postgres() -> None:
    """Skip (or, under CI=true, fail) when PostgreSQL cannot be reached."""
    try:
        _connect_admin().close()
    except Exception as exc:  # any connection failure means "not here"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL is required under CI=true but unreachable: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {postgres_admin_url()}: {exc}")


@contextmanager
def postgres_database() -> Iterator[str]:
    """Create an empty PostgreSQL database, yield its URL, drop it afterwards."""
    require_postgres()
    name = f"canary_test_{uuid.uuid4().hex[:12]}"
    with _connect_admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield (
            make_url(postgres_admin_url()).set(database=name).render_as_string(hide_password=False)
        )
    finally:
        with _connect_admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def database_url(backend: str, tmp_path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """An empty database of ``backend`` ("sqlite" or "postgresql")."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'canary.db'}"
    else:
        with postgres_database() as url:
            yield url
