"""DNS down or lying: mail is still received, analysis retries, verdicts land once it is back.

The SMTP listener and the analysis worker run together, as in ``canary serve``. The
loopback DNS server is switched to never answer, to answer garbage, or to SERVFAIL
while messages from an authenticated third party arrive; every one must get its
``250``, the worker must keep retrying them (never deciding on a guess), and once the
server answers again every delivery must end ``analysed`` with the real verdict.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from sqlmodel import select

from canary.config import Settings
from canary.models import Delivery, Message, User
from canary.pipeline import Analyzer
from canary.store import Store
from tests.support.dns_server import SPF_LOOPBACK, TestDnsServer
from tests.support.smtp import add_identity, add_source, message_bytes, send_message, start_server

PER_MODE = 4  # messages sent while DNS misbehaves, per mode


async def _until(condition: Callable[[], bool], what: str, tries: int = 1200) -> None:
    """Poll ``condition`` (a stall detector, not a timing assertion)."""
    for _ in range(tries):
        if condition():
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"never happened: {what}")


def _messages(store: Store) -> list[Message]:
    with store.session() as session:
        return list(session.exec(select(Message).order_by(Message.id)))


@pytest.mark.parametrize("modes", [("silent",), ("garbage",), ("servfail", "silent", "garbage")])
async def test_receiving_continues_and_verdicts_land_when_dns_returns(
    store: Store,
    settings: Settings,
    owner: User,
    dns_server: TestDnsServer,
    modes: tuple[str, ...],
) -> None:
    dns_server.txt("brokerx.test", SPF_LOOPBACK)
    shop = add_source(store, owner, "Shop", ["shop.test"])
    add_identity(store, owner, shop, "k3m9abc", "Marc Q Kollier")
    fast = settings.replace(dns_timeout=0.2)
    running = await start_server(store, fast)
    # Keep retrying while DNS is down instead of deciding after a few attempts.
    analyzer = Analyzer(
        store, fast, poll_interval=0.05, dns_retry_delay=0.05, max_dns_attempts=10_000
    )
    stop = asyncio.Event()
    worker = asyncio.create_task(analyzer.run(stop))
    try:
        sent = 0
        for mode in modes:
            dns_server.mode = mode
            for i in range(PER_MODE):
                content = message_bytes(f"offer {mode} {i}").replace(
                    b"news@shop.test", b"deals@brokerx.test"
                )
                reply = await send_message(
                    running.host, running.port, "b@brokerx.test", ["k3m9abc@canary.test"], content
                )
                assert reply.code == 250, (mode, reply)  # receiving never waits for DNS
                sent += 1
            # Every message so far has been tried at least twice and none decided.
            await _until(
                lambda: all(m.attempts >= 2 for m in _messages(store)),
                f"analysis retried while DNS is {mode}",
            )
            assert all(m.state != "analysed" for m in _messages(store))
            assert any("DNS temporarily failed" in (m.error or "") for m in _messages(store))

        dns_server.mode = "normal"
        await _until(
            lambda: [m.state for m in _messages(store)] == ["analysed"] * sent,
            "every message analysed once DNS answers again",
        )
    finally:
        stop.set()
        await worker
        await running.stop()

    with store.session() as session:
        verdicts = [d.verdict for d in session.exec(select(Delivery).order_by(Delivery.id))]
    assert verdicts == ["shared"] * sent  # brokerx.test passes SPF and was never authorised
