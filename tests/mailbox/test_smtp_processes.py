"""Several SMTP processes on one port (CANARY_SMTP_PROCESSES): one service to the sender."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from sqlmodel import select

from canary.config import Settings
from canary.models import Message
from canary.store import Store
from tests.support.processes import start_serve
from tests.support.smtp import message_bytes, send_message

MESSAGES = 60


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def _listening_inodes(port: int) -> set[str]:
    """Inodes of the TCP sockets listening on ``port`` (IPv4), from the kernel's table."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].rsplit(":", 1)[1], 16)
        if local_port == port and fields[3] == "0A":  # 0A: LISTEN
            inodes.add(fields[9])
    return inodes


def _socket_inodes(pid: int) -> set[str]:
    out = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(target[8:-1])
    return out


async def test_two_smtp_processes_listen_on_one_port_and_store_every_message_once(
    settings: Settings, store: Store
) -> None:
    process, port = start_serve(settings, CANARY_SMTP_PROCESSES="2")
    try:
        (child,) = _children(process.pid)
        listening = _listening_inodes(port)
        assert len(listening) == 2
        assert listening & _socket_inodes(process.pid)
        assert listening & _socket_inodes(child)

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
