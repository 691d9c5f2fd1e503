"""``canary user add|list`` and ``canary token new|revoke``."""

from __future__ import annotations

import argparse
import getpass
import sys

from canary.cli.context import CliContext, CommandFailed, add_json_flag
from canary.users import add_user, get_user, list_users, new_token, revoke_token


def cmd_user_add(ctx: CliContext) -> None:
    password = ctx.args.password
    if password is None and not ctx.args.no_password:
        if not sys.stdin.isatty():
            raise CommandFailed(
                "no terminal to ask for a password: pass --password or --no-password"
            )
        password = getpass.getpass(f"password for {ctx.args.name}: ")
        if password != getpass.getpass("again: "):
            raise CommandFailed("the passwords differ")
    with ctx.store.session() as session:
        user = add_user(session, ctx.args.name, password=password, admin=ctx.args.admin)
        data = {"id": user.id, "name": user.name, "is_admin": user.is_admin}
    ctx.emit(
        data,
        lambda: print(f"user {data['name']!r} added" + (" (admin)" if data["is_admin"] else "")),
    )


def cmd_user_list(ctx: CliContext) -> None:
    with ctx.store.session() as session:
        data = [
            {"id": u.id, "name": u.name, "is_admin": u.is_admin, "created_at": u.created_at}
            for u in list_users(session)
        ]

    def human() -> None:
        for u in data:
            print(f"{u['id']:>4}  {u['name']}" + ("  (admin)" if u["is_admin"] else ""))

    ctx.emit(data, human)


def cmd_token_new(ctx: CliContext) -> None:
    with ctx.store.session() as session:
        user = get_user(session, ctx.args.user) if ctx.args.user else ctx.user(session)
        record, secret = new_token(session, user, label=ctx.args.label or "")
        data = {"id": record.id, "user": user.name, "token": secret}

    def human() -> None:
        print(secret)
        print(f"(token {data['id']} for {data['user']}; shown only once)", file=sys.stderr)

    ctx.emit(data, human)


def cmd_token_revoke(ctx: CliContext) -> None:
    with ctx.store.session() as session:
        user = get_user(session, ctx.args.user) if ctx.args.user else ctx.user(session)
        record = revoke_token(session, user, ctx.args.id)
        data = {"id": record.id, "revoked_at": record.revoked_at}
    ctx.emit(data, lambda: print(f"token {data['id']} revoked"))


def register(subparsers: argparse._SubParsersAction) -> None:
    user = subparsers.add_parser("user", help="manage accounts")
    commands = user.add_subparsers(dest="user_command", metavar="ACTION")
    commands.required = True
    add = commands.add_parser("add", help="add a user (asks for a password)")
    add.add_argument("name")
    add.add_argument("--password", help="the password (default: ask)")
    add.add_argument("--no-password", action="store_true", help="no password: CLI use only")
    add.add_argument("--admin", action="store_true", help="make the user an admin")
    add_json_flag(add)
    add.set_defaults(handler=cmd_user_add)
    lst = commands.add_parser("list", help="list users")
    add_json_flag(lst)
    lst.set_defaults(handler=cmd_user_list)

    token = subparsers.add_parser("token", help="manage API tokens")
    tcommands = token.add_subparsers(dest="token_command", metavar="ACTION")
    tcommands.required = True
    new = tcommands.add_parser("new", help="create an API token (printed once)")
    new.add_argument("--user", metavar="NAME", help="owner of the token (default: the admin)")
    new.add_argument("--label", help="a note to recognise the token by")
    add_json_flag(new)
    new.set_defaults(handler=cmd_token_new)
    revoke = tcommands.add_parser("revoke", help="revoke an API token")
    revoke.add_argument("id", type=int, help="token id")
    revoke.add_argument("--user", metavar="NAME", help="owner of the token (default: the admin)")
    add_json_flag(revoke)
    revoke.set_defaults(handler=cmd_token_revoke)
