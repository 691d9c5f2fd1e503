"""PostgreSQL stopped and started under load: 451 while it is down, nothing acknowledged lost.

The database is a private cluster (tests/support/private_postgres.py), never the shared
server. Senders keep sending unique messages throughout; the SMTP server and its intake
are never restarted, so the recovery is the service's own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlmodel import select

from canary.config import Settings
from canary.models import Message
from canary.store import Store
from tests.support.dns_server import TestDnsServer
from tests.support.private_postgres import (  # noqa: F401  (makes the fixture visible)
    PrivatePostgres,
    private_postgres,
)
from tests.support.smtp import send_message, start_server

SENDERS = 10


async def _until(condition: Callable[[], bool], what: str, tries: int = 2400) -> None:
    for _ in range(tries):
        if condition():
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"never happened: {what}")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["fast", "immediate"])
async def test_postgres_restart_under_load(
    private_postgres: PrivatePostgres,  # noqa: F811 (the fixture imported above)
    dns_server: TestDnsServer,
    tmp_path: Path,
    how: str,
    record_property: Callable[[str, object], None],
) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=private_postgres.url,
        domains=("canary.test",),
        dns_servers=dns_server.servers,
    )
    store = Store(private_postgres.url)
    store.upgrade()
    running = await start_server(store, settings)
    acknowledged: dict[int, bytes] = {}
    codes: list[tuple[str, int]] = []  # (phase, reply code)
    phase = "up"
    done = asyncio.Event()
    counter = iter(range(1_000_000))

    async def sender() -> None:
        while not done.is_set():
            n = next(counter)
            content = f"Subject: load {n}\r\n\r\nmessage number {n}\r\n".encode()
            sent_in = phase
            try:
                reply = await send_message(
                    running.host, running.port, "l@x.test", ["a@canary.test"], content
                )
            except (OSError, AssertionError, asyncio.IncompleteReadError) as exc:
                pytest.fail(f"the SMTP server itself failed while the database was {phase}: {exc}")
            codes.append((sent_in, reply.code))
            if reply.code == 250:
                acknowledged[int(reply.text.rsplit(" ", 1)[1])] = content
            else:
                assert reply.code == 451 and "4.3.0" in reply.text, reply
                await asyncio.sleep(0.01)  # a real MTA waits before retrying

    senders = [asyncio.create_task(sender()) for _ in range(SENDERS)]
    try:
        await _until(lambda: len(acknowledged) >= 50, "mail accepted before the outage")
        await asyncio.to_thread(private_postgres.stop, how)
        phase = "down"
        await _until(
            lambda: sum(1 for p, c in codes if p == "down" and c == 451) >= 20,
            "senders told 451 while the database is down",
        )
        assert all(c == 451 for p, c in codes if p == "down")  # nothing accepted meanwhile
        before_restart = len(acknowledged)
        await asyncio.to_thread(private_postgres.start)
        phase = "restarted"
        await _until(lambda: len(acknowledged) >= before_restart + 50, "service resumed by itself")
    finally:
        done.set()
        outcomes = await asyncio.gather(*senders, return_exceptions=True)
        await running.stop()
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    if failures:
        raise failures[0]

    with store.session() as session:
        stored = [(m.id, m.raw) for m in session.exec(select(Message))]
    store.close()
    by_id = dict(stored)
    assert {i: by_id.get(i) for i in acknowledged} == acknowledged  # byte-exact, none lost
    raws = [raw for _, raw in stored]
    assert len(raws) == len(set(raws))  # no message stored twice
    record_property("acknowledged", len(acknowledged))
    record_property("found", sum(1 for i in acknowledged if i in by_id))
    record_property("temporary_failures", sum(1 for _, c in codes if c == 451))
