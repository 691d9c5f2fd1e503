"""Several dashboard processes on one port (CANARY_HTTP_PROCESSES): one site to the user."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp

from canary.config import Settings
from canary.models import User
from canary.sources import add_source
from canary.store import Store
from canary.users import new_token
from tests.support.processes import (
    children,
    dashboard_port,
    listening_inodes,
    socket_inodes,
    start_serve,
)

REQUESTS = 40


async def test_two_dashboard_processes_share_the_port_and_serve_the_same_data(
    settings: Settings, store: Store, owner: User
) -> None:
    with store.session() as session:
        _, secret = new_token(session, owner, "dashboards")
        add_source(session, owner, "Shop")
    process, _ = start_serve(settings, CANARY_HTTP_PROCESSES="2")
    try:
        port = dashboard_port(process)
        (child,) = children(process.pid)
        listening = listening_inodes(port)
        assert len(listening) == 2
        assert listening & socket_inodes(process.pid)
        assert listening & socket_inodes(child)

        # A new connection per request, so the kernel spreads them over both listeners;
        # every one is authenticated and answered from the shared database alike.
        connector = aiohttp.TCPConnector(force_close=True)
        headers = {"Authorization": f"Bearer {secret}"}
        async with aiohttp.ClientSession(connector=connector, headers=headers) as client:

            async def sources() -> tuple[int, list[str]]:
                async with client.get(f"http://127.0.0.1:{port}/api/v1/sources") as reply:
                    body = await reply.json()
                    return reply.status, [s["name"] for s in body["items"]]

            answers = await asyncio.gather(*(sources() for _ in range(REQUESTS)))
        assert answers == [(200, ["Shop"])] * REQUESTS
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    assert process.returncode == 0
    assert not Path(f"/proc/{child}").exists()  # the extra process stopped with the first
