"""The schema is created and upgraded in place by migrations, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlmodel import SQLModel, select

from canary.config import Settings
from canary.models import Identity, Source
from canary.store import Store


def test_migrations_build_an_empty_database(settings: Settings) -> None:
    store = Store.from_settings(settings)
    assert store.current_revision() is None
    store.upgrade()
    assert store.current_revision() == store.head_revision()
    assert {"message", "delivery", "finding", "incident", "identity"} <= set(store.table_names())
    store.close()


def test_models_and_migrations_agree(store: Store) -> None:
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, SQLModel.metadata) == []


def test_a_previous_version_database_upgrades_in_place(settings: Settings) -> None:
    store = Store.from_settings(settings)
    store.upgrade("0001")
    assert "message" not in store.table_names()
    with store.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO user_account (id, name, is_admin, created_at) "
                "VALUES (1, 'alice', true, CURRENT_TIMESTAMP)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO source (id, owner_id, name, slug, notes, created_at) "
                "VALUES (1, 1, 'Shop X', 'shop-x', '', CURRENT_TIMESTAMP)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO identity (owner_id, source_id, alias, style, display_name, "
                "name_key, created_at) VALUES (1, 1, 'abc@canary.test', 'token', "
                "'Marc Kollier', 'marc kollier', CURRENT_TIMESTAMP)"
            )
        )
    store.upgrade()
    assert store.current_revision() == store.head_revision()
    with store.session() as session:
        assert session.exec(select(Source.name)).all() == ["Shop X"]
        assert session.exec(select(Identity.alias)).all() == ["abc@canary.test"]
    assert "message" in store.table_names()
    store.close()


def test_upgrade_is_idempotent(store: Store) -> None:
    store.upgrade()
    assert store.current_revision() == store.head_revision()


def test_sqlite_is_durable_and_concurrent(settings: Settings, backend: str) -> None:
    if backend != "sqlite":
        return
    store = Store.from_settings(settings)
    with store.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        # 2 = FULL: the WAL is synced before every commit returns.
        assert connection.execute(text("PRAGMA synchronous")).scalar() == 2
    store.close()
