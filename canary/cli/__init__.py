"""The ``canary`` command line.

Each module in this package that defines ``register(subparsers)`` adds its commands;
:func:`main` discovers them, builds the settings once from the environment and flags,
and hands a :class:`~canary.cli.context.CliContext` to the chosen command.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence

from canary.cli.context import CliContext, CommandFailed
from canary.config import Settings
from canary.errors import CanaryError, ConfigError


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line on stderr and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"canary: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every command module's subcommands."""
    parser = _Parser(
        prog="canary",
        description="canarytrace: data-leak canaries and the mail server that watches them.",
    )
    parser.add_argument("--database-url", help="overrides CANARY_DATABASE_URL")
    parser.add_argument("--data-dir", help="overrides CANARY_DATA_DIR")
    parser.add_argument("--domains", help="overrides CANARY_DOMAINS (comma-separated)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``canary`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = Settings.from_env(
            database_url=args.database_url, data_dir=args.data_dir, domains=args.domains
        )
    except ConfigError as exc:
        sys.stderr.write(f"canary: configuration error: {exc}\n")
        return 2
    if settings.log_format != "text":
        from canary.logs import apply_format

        apply_format(settings)
    ctx = CliContext(settings=settings, args=args)
    try:
        result = args.handler(ctx)
    except ConfigError as exc:
        sys.stderr.write(f"canary: configuration error: {exc}\n")
        return 2
    except (CanaryError, CommandFailed) as exc:
        sys.stderr.write(f"canary: error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Output piped into `head` and the like: stop quietly, as Unix tools do.
        sys.stderr.close()
        return 0
    finally:
        ctx.close()
    return int(result or 0)
