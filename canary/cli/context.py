"""What every command gets: the settings, an open store, the acting user, output helpers."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import Session

from canary.config import Settings
from canary.models import User
from canary.store import Store


class CommandFailed(Exception):
    """A command could not do what was asked; the message is shown as one line."""


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    """Give a command the ``--json`` flag for machine-readable output."""
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def add_user_flag(parser: argparse.ArgumentParser) -> None:
    """Give a command ``--user NAME`` (default: the only or first admin user)."""
    parser.add_argument("--user", metavar="NAME", help="act as this user (default: the admin)")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(f"cannot serialise {type(value).__name__}")


@dataclass
class CliContext:
    """State shared by one invocation of the command line."""

    settings: Settings
    args: argparse.Namespace
    _store: Store | None = field(default=None, repr=False)

    @property
    def store(self) -> Store:
        """The database, opened on first use and brought up to the current schema."""
        if self._store is None:
            store = Store.from_settings(self.settings)
            if store.current_revision() != store.head_revision():
                store.upgrade()
            self._store = store
        return self._store

    def user(self, session: Session) -> User:
        """The user named by ``--user``, or the default user (created on a fresh install)."""
        from canary.users import default_user, get_user

        name = getattr(self.args, "user", None)
        return get_user(session, name) if name else default_user(session)

    @property
    def json(self) -> bool:
        """True when ``--json`` was given."""
        return bool(getattr(self.args, "json", False))

    def emit(self, data: Any, human: Callable[[], None] | None = None) -> None:
        """Print ``data`` as JSON under ``--json``, otherwise call ``human`` to print text."""
        if self.json or human is None:
            json.dump(data, sys.stdout, indent=2, default=_json_default, ensure_ascii=False)
            sys.stdout.write("\n")
        else:
            human()

    def close(self) -> None:
        """Release the database connections."""
        if self._store is not None:
            self._store.close()
