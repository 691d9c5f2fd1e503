"""``canary db upgrade|status``."""

from __future__ import annotations

import argparse

from canary.cli.context import CliContext, add_json_flag
from canary.store import Store


def cmd_upgrade(ctx: CliContext) -> None:
    # Not ctx.store: that upgrades implicitly, and this command should say what it did.
    store = Store.from_settings(ctx.settings)
    try:
        before = store.current_revision()
        store.upgrade()
        after = store.current_revision()
    finally:
        store.close()
    data = {"from": before, "to": after}
    ctx.emit(
        data,
        lambda: print(
            f"schema already at {after}"
            if before == after
            else f"schema upgraded from {before or 'empty'} to {after}"
        ),
    )


def cmd_status(ctx: CliContext) -> None:
    store = Store.from_settings(ctx.settings)
    try:
        data = {
            "database": store.engine.url.render_as_string(hide_password=True),
            "backend": store.backend,
            "revision": store.current_revision(),
            "head": store.head_revision(),
        }
    finally:
        store.close()
    data["up_to_date"] = data["revision"] == data["head"]
    ctx.emit(
        data,
        lambda: print(
            f"{data['database']}: schema {data['revision'] or 'empty'}, newest {data['head']}"
        ),
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    db = subparsers.add_parser("db", help="database schema")
    commands = db.add_subparsers(dest="db_command", metavar="ACTION")
    commands.required = True
    up = commands.add_parser("upgrade", help="bring the schema up to this release, in place")
    add_json_flag(up)
    up.set_defaults(handler=cmd_upgrade)
    st = commands.add_parser("status", help="show the schema revision")
    add_json_flag(st)
    st.set_defaults(handler=cmd_status)
