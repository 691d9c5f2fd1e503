"""Durable SMTP ingest against bare sinks that discard, on the same machine, same run.

Usage::

    python bench/ingest.py                      # SQLite, 20 sessions, 10 KB, 3000 messages
    python bench/ingest.py --backend both       # SQLite and PostgreSQL
    python bench/ingest.py --matrix --backend both   # 1/20/100 sessions x 2/10/100 KB
    python bench/ingest.py --smtp-processes 2   # canary serve with CANARY_SMTP_PROCESSES=2
    python bench/ingest.py --client python      # no smtp-source: the asyncio load generator

Every server runs as a child process started by this script:

* two references that answer 250 and discard: aiosmtpd's SMTP protocol on the default
  asyncio event loop, and the same on uvloop (when installed); ratios are against the
  faster of the two;
* Postfix's C ``smtp-sink`` (when found), printed as the physical reference of this
  machine;
* canary's own SMTP server with an intake that discards (same protocol, recipient
  checks and loop as ``canary serve``): the durable figure against it is the cost of
  durability alone;
* the measured one: ``canary serve --no-worker`` (receive and store only; analysis runs
  after the 250 and is not part of ingest), with SQLite in WAL mode and
  ``synchronous=FULL`` (the 250 only after the fsync of the commit that holds the
  message) or PostgreSQL with ``synchronous_commit=on``.

Every message goes over a new connection. The load generator is Postfix's
``smtp-source`` when found, else a Python asyncio client. Postfix's tools need no mail
server installed: ``apt-get download postfix && dpkg -x postfix_*.deb DIR``, then pass
``--postfix DIR`` (or ``--smtp-source``/``--smtp-sink`` with the binaries' paths, or set
``$SMTP_SOURCE``/``$SMTP_SINK``). Servers are measured in turns, ``--rounds`` times, and
the median of each is printed with every run. After the runs the script counts the rows
to confirm that every acknowledged message is in the database.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------- the references


def run_sink(port: int, use_uvloop: bool = False) -> None:
    """Child process: aiosmtpd with a handler that accepts and discards everything."""
    from aiosmtpd.smtp import SMTP

    if use_uvloop:
        import uvloop

        uvloop.install()

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


def run_canary_sink() -> None:
    """Child process: canary's own SMTP server with an intake that discards.

    The same protocol, recipient checks and event loop as ``canary serve``, but the
    message is dropped where it would be stored: the durable figure against this one is
    the cost of durability alone. (Our protocol does less per message than stock
    aiosmtpd, so the bare aiosmtpd sinks are no longer a ceiling at high concurrency.)
    Settings come from the same environment as the durable servers.
    """
    from canary.mailbox.intake import IncomingMessage, Intake
    from canary.mailbox.server import create_smtp_server

    from canary.cli.serve import run_on_fastest_loop
    from canary.config import Settings
    from canary.store import Store

    class DiscardIntake(Intake):
        async def start(self) -> None:
            """Nothing to start: no writer."""

        async def stop(self) -> None:
            """Nothing to stop."""

        async def submit(self, message: IncomingMessage) -> int:
            self.committed += 1
            return self.committed

    async def main() -> None:
        settings = Settings.from_env()
        store = Store.from_settings(settings)
        store.upgrade()  # the recipient checks read the claimed catch-all subdomains
        server = create_smtp_server(settings, DiscardIntake(store.engine))
        await server.start()
        print(f"sink listening on 127.0.0.1:{server.port}", flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await server.stop(grace=0)

    run_on_fastest_loop(main())


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _postfix_env(binary: str) -> dict[str, str]:
    env = dict(os.environ)
    libdir = Path(binary).resolve().parents[1] / "lib" / "postfix"
    if libdir.is_dir():  # unpacked from the .deb: its shared libraries are beside it
        env["LD_LIBRARY_PATH"] = str(libdir)
    return env


def _start_smtp_sink(binary: str) -> tuple[subprocess.Popen[bytes], int]:
    """Postfix's C smtp-sink on a free port (it refuses to run as root without -u)."""
    port = _free_port()
    cmd = [binary]
    if os.geteuid() == 0:
        cmd += ["-u", "nobody"]
    cmd += [f"127.0.0.1:{port}", "256"]
    process = subprocess.Popen(cmd, env=_postfix_env(binary))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, port
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("smtp-sink did not start")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# ---------------------------------------------------------------------- load generators


def find_postfix_tool(name: str, explicit: str | None, postfix_dir: str | None) -> str | None:
    """A Postfix tool: its option, ``$SMTP_SOURCE``/``$SMTP_SINK``, --postfix DIR, PATH."""
    env_name = name.upper().replace("-", "_")
    for candidate in (
        explicit,
        os.environ.get(env_name),
        str(Path(postfix_dir) / "usr" / "sbin" / name) if postfix_dir else None,
        shutil.which(name),
        f"/usr/sbin/{name}",
    ):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def load_smtp_source(binary: str, port: int, sessions: int, messages: int, size: int) -> float:
    """Send with Postfix's smtp-source; return the elapsed seconds."""
    cmd = [binary, "-s", str(sessions), "-m", str(messages), "-l", str(size)]
    cmd += ["-M", "client.bench", "-f", "load@bench.test", "-t", "k3m9abc@canary.test"]
    cmd += [f"127.0.0.1:{port}"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=_postfix_env(binary))
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

LABELS = {
    "sink": "bare aiosmtpd sink, asyncio loop",
    "sink-uvloop": "bare aiosmtpd sink, uvloop",
    "smtp-sink": "Postfix smtp-sink (C reference)",
    "canary-sink": "canary protocol, discarding",
    "sqlite": "durable, SQLite (fsync per 250)",
    "postgresql": "durable, PostgreSQL",
}
REFERENCES = ("sink", "sink-uvloop", "smtp-sink", "canary-sink")


def _durable_env(url: str, data_dir: Path, processes: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        CANARY_DATABASE_URL=url,
        CANARY_DATA_DIR=str(data_dir),
        CANARY_DOMAINS="canary.test",
        CANARY_SMTP_HOST="127.0.0.1",
        CANARY_SMTP_PORT="0",
        CANARY_HTTP_PORT="0",
        CANARY_SMTP_HOSTNAME="mx.bench",
        CANARY_SMTP_PROCESSES=str(processes),
        # Every session of the load comes from 127.0.0.1: lift the per-address cap.
        CANARY_SMTP_MAX_CONNECTIONS_PER_IP="1000",
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


def start_servers(
    args: argparse.Namespace, durable: dict[str, str], data_dir: Path
) -> dict[str, tuple[subprocess.Popen[bytes], int]]:
    """The references and one ``canary serve`` per database URL, all listening."""
    processes: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    cmd = [sys.executable, "-m", "canary", "serve"]
    if not args.with_worker:
        cmd.append("--no-worker")
    try:
        processes["sink"] = _start([sys.executable, __file__, "--sink-only"])
        if _has_uvloop():
            processes["sink-uvloop"] = _start([sys.executable, __file__, "--sink-only", "uvloop"])
        if args.smtp_sink:
            processes["smtp-sink"] = _start_smtp_sink(args.smtp_sink)
        (data_dir / "canary-sink").mkdir()
        sink_env = _durable_env(f"sqlite:///{data_dir / 'canary-sink' / 'c.db'}",
                                data_dir / "canary-sink", 1)  # fmt: skip
        processes["canary-sink"] = _start([sys.executable, __file__, "--canary-sink"], sink_env)
        for name, url in durable.items():
            (data_dir / name).mkdir()
            env = _durable_env(url, data_dir / name, args.smtp_processes)
            processes[name] = _start(cmd, env)
    except BaseException:
        for process, _ in processes.values():
            _stop(process)
        raise
    return processes


def _messages_for(args: argparse.Namespace, sessions: int, size: int) -> int:
    """Messages per run: fewer for large messages and a single session, so runs are short."""
    messages = args.messages * 10_240 // max(size, 10_240)
    if sessions == 1:
        messages //= 3
    return max(100, messages)


def measure(
    args: argparse.Namespace,
    processes: dict[str, tuple[subprocess.Popen[bytes], int]],
    sessions: int,
    size: int,
    sent: dict[str, int],
) -> dict[str, list[float]]:
    """Alternate the servers ``--rounds`` times at one load; return each one's rates.

    The machine may be shared, so the servers are measured in turns (each reference,
    then each backend) and the median of each is reported.
    """
    messages = _messages_for(args, sessions, size)
    warm = min(100, messages)
    rates: dict[str, list[float]] = {}
    for name, (_, port) in processes.items():
        _load(args, port, sessions, warm, size)
        sent[name] = sent.get(name, 0) + warm
    for _ in range(args.rounds):
        for name, (_, port) in processes.items():
            seconds = _load(args, port, sessions, messages, size)
            rates.setdefault(name, []).append(messages / seconds)
            sent[name] = sent.get(name, 0) + messages
    return rates


def _load(args: argparse.Namespace, port: int, sessions: int, messages: int, size: int) -> float:
    if args.smtp_source:
        return load_smtp_source(args.smtp_source, port, sessions, messages, size)
    return load_python(port, sessions, messages, size)


def report(sessions: int, size: int, rates: dict[str, list[float]]) -> None:
    """Print each server's median rate and runs, durable ones with their ratio."""
    medians = {name: statistics.median(values) for name, values in rates.items()}
    best_sink = max(medians.get("sink", 0.0), medians.get("sink-uvloop", 0.0))
    print(f"-- {sessions} sessions, {size // 1024} KB messages")
    for name, values in rates.items():
        runs = ", ".join(f"{v:.0f}" for v in values)
        ratio = ""
        if name not in REFERENCES:
            ratio = f"  ratio {medians[name] / best_sink:.2f} of the faster bare sink"
        elif name == "smtp-sink":
            ratio = f"  ({medians[name] / best_sink:.1f}x the faster bare sink)"
        if name not in REFERENCES and medians.get("canary-sink"):
            ratio += (
                f", {medians[name] / medians['canary-sink']:.2f} of the same protocol discarding"
            )
        print(f"   {LABELS[name]:<34} {medians[name]:7.0f} msg/s{ratio}   (runs: {runs})")


def _check_counts(durable: dict[str, str], sent: dict[str, int]) -> None:
    for name, url in durable.items():
        stored = _count(url)
        if stored != sent[name]:
            raise SystemExit(f"{name}: only {stored} of {sent[name]} messages are in the database")
        print(f"{name}: all {stored} acknowledged messages are in the database")


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
    parser.add_argument(
        "--matrix", action="store_true", help="every load: 1, 20, 100 sessions x 2, 10, 100 KB"
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs per server")
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="sqlite")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "CANARY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
        help="an existing database used to create and drop the benchmark database",
    )
    parser.add_argument(
        "--smtp-processes", type=int, default=1, help="CANARY_SMTP_PROCESSES of canary serve"
    )
    parser.add_argument("--client", choices=("auto", "smtp-source", "python"), default="auto")
    parser.add_argument(
        "--postfix",
        help="directory a Postfix .deb was unpacked into (apt-get download postfix && "
        "dpkg -x postfix_*.deb DIR); smtp-source and smtp-sink are taken from DIR/usr/sbin",
    )
    parser.add_argument("--smtp-source", help="path of Postfix's smtp-source (load generator)")
    parser.add_argument("--smtp-sink", help="path of Postfix's smtp-sink (C reference)")
    parser.add_argument(
        "--with-worker", action="store_true", help="run the analysis worker during the load too"
    )
    parser.add_argument("--sink-only", nargs="?", const="asyncio", help=argparse.SUPPRESS)
    parser.add_argument("--canary-sink", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.canary_sink:
        run_canary_sink()
        return
    if args.sink_only:
        run_sink(0, use_uvloop=args.sink_only == "uvloop")
        return
    args.smtp_source = (
        None
        if args.client == "python"
        else find_postfix_tool("smtp-source", args.smtp_source, args.postfix)
    )
    if args.client == "smtp-source" and not args.smtp_source:
        raise SystemExit("smtp-source not found (see --help)")
    args.smtp_sink = find_postfix_tool("smtp-sink", args.smtp_sink, args.postfix)
    client = "smtp-source" if args.smtp_source else "python asyncio"
    loads = (
        [(n, size) for n in (1, 20, 100) for size in (2048, 10_240, 102_400)]
        if args.matrix
        else [(args.sessions, args.size)]
    )
    print(
        f"one connection per message, client {client}, {os.cpu_count()} CPUs, "
        f"canary serve with {args.smtp_processes} SMTP process(es)"
        + ("" if args.smtp_sink else "; smtp-sink not found (see --help)")
        + ("" if _has_uvloop() else "; uvloop not installed"),
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
            processes = start_servers(args, durable, Path(tmp))
            sent: dict[str, int] = {}
            try:
                for sessions, size in loads:
                    report(sessions, size, measure(args, processes, sessions, size, sent))
            finally:
                for process, _ in processes.values():
                    _stop(process)
            _check_counts(durable, sent)
        finally:
            if pg_name:
                _drop_postgres(args.postgres_url, pg_name)


if __name__ == "__main__":
    main()
