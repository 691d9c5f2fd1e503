"""Durable SMTP ingest against a bare aiosmtpd sink that discards, on the same machine.

Usage::

    python bench/ingest.py                      # SQLite, 20 sessions, 10 KB, 3000 messages
    python bench/ingest.py --backend both --postgres-url postgresql+psycopg://postgres@127.0.0.1/test
    python bench/ingest.py --client python      # no smtp-source: the asyncio load generator

Both servers run as child processes started by this script: the reference is aiosmtpd's
SMTP protocol with a handler that answers 250 and discards; the measured one is
``canary serve --no-worker`` (receive and store only; analysis runs after the 250 and is
not part of ingest), with SQLite in WAL mode and ``synchronous=FULL`` (an fsync before
every 250) or PostgreSQL with ``synchronous_commit=on``. Every message goes over a new
connection. The load generator is Postfix's ``smtp-source`` when found (``--smtp-source``,
``$SMTP_SOURCE`` or ``PATH``; see --help), else a Python asyncio client. After each
durable run the script counts the rows to confirm that every acknowledged message is in
the database. Output: messages per second for the sink and for each backend, and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------- the bare sink


def run_sink(port: int) -> None:
    """Child process: aiosmtpd with a handler that accepts and discards everything."""
    from aiosmtpd.smtp import SMTP

    class Discard:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            return "250 2.0.0 OK discarded"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(Discard(), enable_SMTPUTF8=True, hostname="sink.bench", loop=loop),
            "127.0.0.1",
            port,
        )
        print(f"sink listening on 127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()

    asyncio.run(main())


def _start(
    cmd: list[str], env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    process = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE)
    assert process.stdout is not None
    line = process.stdout.readline().decode()
    if "listening on" not in line:
        process.kill()
        raise SystemExit(f"server did not start: {line!r}")
    return process, int(line.rsplit(":", 1)[1])


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# ---------------------------------------------------------------------- load generators


def find_smtp_source(explicit: str | None) -> str | None:
    """The smtp-source binary: --smtp-source, $SMTP_SOURCE, PATH, or /tmp/postfix-bench."""
    for candidate in (
        explicit,
        os.environ.get("SMTP_SOURCE"),
        shutil.which("smtp-source"),
        "/tmp/postfix-bench/usr/sbin/smtp-source",
    ):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def load_smtp_source(binary: str, port: int, sessions: int, messages: int, size: int) -> float:
    """Send with Postfix's smtp-source; return the elapsed seconds."""
    env = dict(os.environ)
    libdir = Path(binary).resolve().parents[1] / "lib" / "postfix"
    if libdir.is_dir():
        env["LD_LIBRARY_PATH"] = str(libdir)
    cmd = [binary, "-s", str(sessions), "-m", str(messages), "-l", str(size)]
    cmd += ["-M", "client.bench", "-f", "load@bench.test", "-t", "k3m9abc@canary.test"]
    cmd += [f"127.0.0.1:{port}"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env)
    return time.perf_counter() - start


async def _reply(reader: asyncio.StreamReader) -> bytes:
    while True:
        line = await reader.readline()
        if line[3:4] != b"-":
            return line


async def _python_session(port: int, payload: bytes, counter: list[int], total: int) -> None:
    while counter[0] < total:
        counter[0] += 1
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await _reply(reader)
        for command in (
            b"EHLO client.bench",
            b"MAIL FROM:<load@bench.test>",
            b"RCPT TO:<k3m9abc@canary.test>",
            b"DATA",
        ):
            writer.write(command + b"\r\n")
            await _reply(reader)
        writer.write(payload + b".\r\n")
        line = await _reply(reader)
        if not line.startswith(b"250"):
            raise SystemExit(f"unexpected reply {line!r}")
        writer.write(b"QUIT\r\n")
        await _reply(reader)
        writer.close()


def load_python(port: int, sessions: int, messages: int, size: int) -> float:
    """Send with an asyncio client (one new connection per message); return seconds."""
    line = b"x" * 78 + b"\r\n"
    body = line * (size // len(line) + 1)
    payload = b"From: load@bench.test\r\nTo: k3m9abc@canary.test\r\nSubject: bench\r\n\r\n" + body
    counter = [0]

    async def main() -> None:
        await asyncio.gather(
            *(_python_session(port, payload, counter, messages) for _ in range(sessions))
        )

    start = time.perf_counter()
    asyncio.run(main())
    return time.perf_counter() - start


# ---------------------------------------------------------------------- runs


def _load(args: argparse.Namespace, port: int, messages: int) -> float:
    if args.smtp_source:
        return load_smtp_source(args.smtp_source, port, args.sessions, messages, args.size)
    return load_python(port, args.sessions, messages, args.size)


def _durable_env(url: str, data_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        CANARY_DATABASE_URL=url,
        CANARY_DATA_DIR=str(data_dir),
        CANARY_DOMAINS="canary.test",
        CANARY_SMTP_HOST="127.0.0.1",
        CANARY_SMTP_PORT="0",
        CANARY_SMTP_HOSTNAME="mx.bench",
        CANARY_LOG_LEVEL="WARNING",
    )
    return env


def _count(url: str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:
        count = conn.execute(text("SELECT count(*) FROM message")).scalar_one()
    engine.dispose()
    return int(count)


def measure(args: argparse.Namespace, durable: dict[str, str], data_dir: Path) -> None:
    """Start the sink and one ``canary serve`` per database URL; alternate their runs.

    The machine may be shared, so the servers are measured in turns (sink, then each
    backend, ``--rounds`` times) and the median of each is reported.
    """
    warm = min(200, args.messages)
    processes: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    rates: dict[str, list[float]] = {}
    cmd = [sys.executable, "-m", "canary", "serve"]
    if not args.with_worker:
        cmd.append("--no-worker")
    try:
        processes["sink"] = _start([sys.executable, __file__, "--sink-only"])
        for name, url in durable.items():
            (data_dir / name).mkdir()
            processes[name] = _start(cmd, _durable_env(url, data_dir / name))
        for _, port in processes.values():
            _load(args, port, warm)
        for _ in range(args.rounds):
            for name, (_, port) in processes.items():
                rates.setdefault(name, []).append(args.messages / _load(args, port, args.messages))
    finally:
        for process, _ in processes.values():
            _stop(process)
    for name, url in durable.items():
        expected = warm + args.rounds * args.messages
        stored = _count(url)
        if stored != expected:
            raise SystemExit(f"{name}: only {stored} of {expected} messages are in the database")
    sink = statistics.median(rates["sink"])
    labels = {
        "sink": "bare aiosmtpd sink (discards)",
        "sqlite": "durable, SQLite (fsync per 250)",
        "postgresql": "durable, PostgreSQL",
    }
    for name, values in rates.items():
        rate = statistics.median(values)
        runs = ", ".join(f"{v:.0f}" for v in values)
        ratio = "" if name == "sink" else f"  ratio {rate / sink:.2f}"
        print(f"{labels[name]:<32} {rate:7.0f} msg/s{ratio}   (runs: {runs})")


def _postgres_database(admin_url: str) -> tuple[str, str]:
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(admin_url)
    name = f"canary_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        dbname=url.database,
        autocommit=True,
    ) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return url.set(database=name).render_as_string(hide_password=False), name


def _drop_postgres(admin_url: str, name: str) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(admin_url)
    with psycopg.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        dbname=url.database,
        autocommit=True,
    ) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=20, help="concurrent SMTP sessions")
    parser.add_argument("--messages", type=int, default=3000, help="messages per measured run")
    parser.add_argument("--size", type=int, default=10_240, help="payload bytes per message")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs per server")
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="sqlite")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "CANARY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
        help="an existing database used to create and drop the benchmark database",
    )
    parser.add_argument("--client", choices=("auto", "smtp-source", "python"), default="auto")
    parser.add_argument(
        "--smtp-source",
        help="path of Postfix's smtp-source (get it without installing Postfix: "
        "apt-get download postfix && dpkg -x postfix_*.deb /tmp/postfix-bench)",
    )
    parser.add_argument(
        "--with-worker", action="store_true", help="run the analysis worker during the load too"
    )
    parser.add_argument("--sink-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink_only:
        run_sink(0)
        return
    args.smtp_source = None if args.client == "python" else find_smtp_source(args.smtp_source)
    if args.client == "smtp-source" and not args.smtp_source:
        raise SystemExit("smtp-source not found (see --help)")
    client = "smtp-source" if args.smtp_source else "python asyncio"
    print(
        f"{args.messages} messages of {args.size} bytes, {args.sessions} concurrent sessions, "
        f"one connection per message, client {client}, {os.cpu_count()} CPUs",
        flush=True,
    )
    pg_name = None
    with tempfile.TemporaryDirectory(prefix="canary-bench-") as tmp:
        durable: dict[str, str] = {}
        if args.backend in ("sqlite", "both"):
            durable["sqlite"] = f"sqlite:///{Path(tmp) / 'canary.db'}"
        try:
            if args.backend in ("postgresql", "both"):
                durable["postgresql"], pg_name = _postgres_database(args.postgres_url)
            measure(args, durable, Path(tmp))
        finally:
            if pg_name:
                _drop_postgres(args.postgres_url, pg_name)


if __name__ == "__main__":
    main()
