"""Shared fixtures: settings, a migrated store on SQLite and on PostgreSQL, a user."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from canary.config import Settings
from canary.models import User
from canary.store import Store
from tests.support.databases import database_url

if TYPE_CHECKING:
    from tests.support.dns_server import TestDnsServer

pytest_plugins = ["tests.support.dns_server"]

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
CANARY_DOMAIN = "canary.test"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each test using the database runs once per backend."""
    return str(request.param)


@pytest.fixture
def db_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """URL of an empty database of the current backend, removed after the test."""
    with database_url(backend, tmp_path) as url:
        yield url


@pytest.fixture
def make_settings(
    tmp_path: Path, db_url: str, dns_server: TestDnsServer
) -> Callable[..., Settings]:
    """Settings for the test database, data directory and the loopback DNS server.

    Sender authentication asks only ``dns_server``: a test publishes the SPF, DKIM and
    DMARC records it needs there, and nothing ever reaches a real resolver.
    """

    # Imported here: the module is a pytest plugin, and importing it at the top of
    # conftest would load it before pytest can rewrite its assertions.
    from tests.support.dns_server import ANSWER_TIMEOUT

    def make(**overrides: Any) -> Settings:
        base = Settings(
            data_dir=tmp_path / "data",
            database_url=db_url,
            domains=(CANARY_DOMAIN,),
            dns_servers=dns_server.servers,
            dns_timeout=ANSWER_TIMEOUT,
        )
        return base.replace(**overrides)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """Default test settings: one canary domain, the test database."""
    return make_settings()


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    """A store migrated to the newest schema."""
    s = Store.from_settings(settings)
    s.upgrade()
    yield s
    s.close()


@pytest.fixture
def owner(store: Store) -> User:
    """An admin user who owns the test's sources."""
    from canary.users import add_user

    with store.session() as session:
        return add_user(session, "alice", password="correct horse", admin=True)
