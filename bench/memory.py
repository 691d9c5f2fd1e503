"""Benchmark: resident memory of ``canary serve`` after many messages, against 10,000.

    python bench/memory.py [--messages 100000] [--backend sqlite|postgresql] [--no-worker]
                           [--postfix DIR]

Starts ``canary serve`` (SMTP, analysis worker, dashboard, scheduler; ``--no-worker``
leaves analysis out) on a fresh database, sends 10,000 messages of ``--size`` bytes
over new connections from ``--sessions`` concurrent sessions, reads the resident set
size (VmRSS, summed over the SMTP processes) as the reference, sends the rest up to
``--messages``, reads it again, and prints both and their ratio (target: at most 1.2).
The load generator is Postfix's smtp-source when found (see bench/ingest.py --help),
else the Python client.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import (  # noqa: E402
    _drop_postgres,
    _durable_env,
    _postgres_database,
    _start,
    _stop,
    find_postfix_tool,
    load_python,
    load_smtp_source,
)

REFERENCE = 10_000


def rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` and of its child processes (the extra SMTP processes), in KiB."""
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for p in pids:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=10_240)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    parser.add_argument("--no-worker", action="store_true", help="receive and store only")
    parser.add_argument("--postfix", help="directory a Postfix .deb was unpacked into")
    args = parser.parse_args()
    source = find_postfix_tool("smtp-source", None, args.postfix)

    def send(port: int, count: int) -> float:
        if source:
            return load_smtp_source(source, port, args.sessions, count, args.size)
        return load_python(port, args.sessions, count, args.size)

    cmd = [sys.executable, "-m", "canary", "serve"] + (["--no-worker"] if args.no_worker else [])
    pg_name = None
    with tempfile.TemporaryDirectory(prefix="canary-bench-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'canary.db'}"
        if args.backend == "postgresql":
            url, pg_name = _postgres_database(args.postgres_url)
        try:
            process, port = _start(cmd, _durable_env(url, Path(tmp), 1))
            try:
                send(port, min(1000, REFERENCE))  # warm-up: imports, caches, pools
                start = time.perf_counter()
                send(port, REFERENCE - min(1000, REFERENCE))
                reference = rss_kib(process.pid)
                send(port, args.messages - REFERENCE)
                elapsed = time.perf_counter() - start
                after = rss_kib(process.pid)
            finally:
                _stop(process)
        finally:
            if pg_name:
                _drop_postgres(args.postgres_url, pg_name)
    print(
        f"canary serve ({args.backend}{', no worker' if args.no_worker else ''}), "
        f"{args.size} byte messages, {args.sessions} sessions, "
        f"{args.messages / elapsed:.0f} msg/s on average"
    )
    print(f"RSS after {REFERENCE} messages (reference): {reference / 1024:8.1f} MiB")
    print(
        f"RSS after {args.messages} messages:        {after / 1024:8.1f} MiB  "
        f"ratio {after / reference:.2f} (target at most 1.20)"
    )


if __name__ == "__main__":
    main()
