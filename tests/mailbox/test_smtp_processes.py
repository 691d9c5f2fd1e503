"""Several SMTP processes on one port (CANARY_SMTP_PROCESSES): one service to the sender."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from sqlmodel import select

from canary.config import Settings
from canary.models import Message
from canary.store import Store
from tests.support.processes import children, listening_inodes, socket_inodes, start_serve
from tests.support.smtp import message_bytes, send_message

MESSAGES = 60


async def test_two_smtp_processes_listen_on_one_port_and_store_every_message_once(
    settings: Settings, store: Store
) -> None:
    process, port = start_serve(settings, CANARY_SMTP_PROCESSES="2")
    try:
        (child,) = children(process.pid)
        listening = listening_inodes(port)
        assert len(listening) == 2
        assert listening & socket_inodes(process.pid)
        assert listening & socket_inodes(child)

        replies = await asyncio.gather(
            *(
                send_message(
                    "127.0.0.1",
                    port,
                    "news@shop.test",
                    ["k3m9abc@canary.test"],
                    message_bytes(subject=f"offer {i}", to="k3m9abc@canary.test"),
                )
                for i in range(MESSAGES)
            )
        )
        assert [r.code for r in replies] == [250] * MESSAGES
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    assert process.returncode == 0
    assert not Path(f"/proc/{child}").exists()  # the extra process stopped with the first
    with store.session() as session:
        subjects = sorted(
            m.raw.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0].decode()
            for m in session.exec(select(Message))
        )
    assert subjects == sorted(f"offer {i}" for i in range(MESSAGES))
