"""Benchmark: bulk identity generation with the distance check on. Asserts nothing.

    python bench/identities.py [--count 100000] [--database-url URL] [--style token]

Issues ``--count`` identities to one source in one call, as ``canary identity new SOURCE
--count N`` does, and prints identities per second. The reference, measured in the same
run, is drawing the same number of persona names alone with no distance check and no
database: the ratio says what the check and the storage cost on top of making names.
Default database: a fresh SQLite file in a temporary directory.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from canary.identity import IdentityRequest, create_identities, owner_name_index  # noqa: E402
from canary.names import PersonaNames  # noqa: E402
from canary.sources import add_source  # noqa: E402
from canary.store import Store  # noqa: E402
from canary.users import add_user  # noqa: E402


def names_only(count: int, locale: str) -> float:
    """Seconds to draw ``count`` persona names into an index that accepts everything."""

    class Everything:
        def accepts(self, key: str) -> bool:
            return True

        def add(self, key: str) -> None:
            pass

    personas = PersonaNames(locale, 1)
    start = time.perf_counter()
    for _ in range(count):
        personas.next_name(Everything())  # type: ignore[arg-type]
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--database-url", help="default: SQLite in a temporary directory")
    parser.add_argument("--style", default="token", choices=("token", "words", "slug"))
    parser.add_argument("--locale", default="en_US")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/bench.db"
        store = Store(url)
        store.upgrade()
        with store.session() as session:
            owner = add_user(session, "bench", password="bench bench bench")
            source = add_source(session, owner, "Shop X", ["shopx.test"])
        reference = names_only(args.count, args.locale)
        start = time.perf_counter()
        with store.session() as session:
            request = IdentityRequest(
                domain="canary.test", count=args.count, style=args.style, locale=args.locale
            )
            made = create_identities(session, owner, source, request)
        elapsed = time.perf_counter() - start
        with store.session() as session:
            index = owner_name_index(session, owner)
        store.close()
    assert len(made) == args.count and len(index) == args.count
    print(f"names alone (no check, no database): {args.count / reference:10,.0f} names/s")
    print(
        f"identities with the distance check:  {args.count / elapsed:10,.0f} identities/s "
        f"({elapsed:.1f} s for {args.count:,}; ratio {reference / elapsed:.2f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
