"""Receivers for what canarytrace sends out: a recording SMTP relay and a webhook server.

Both listen on 127.0.0.1 on a free port and record everything they get. Import the
fixtures into a test module (``from tests.support.outbound import relay, webhook_server``).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RelayedMessage:
    """One message the relay accepted."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes


@dataclass
class RecordingRelay:
    """An SMTP relay on 127.0.0.1 that keeps what it receives and refuses listed recipients."""

    host: str = "127.0.0.1"
    port: int = 0
    messages: list[RelayedMessage] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)  # recipients answered with 550
    defer: int = 0  # this many DATA commands are answered 451 first

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:  # noqa: E501, N802
        if address.lower() in self.refuse:
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if self.defer > 0:
            self.defer -= 1
            return "451 4.3.0 try again later"
        self.messages.append(
            RelayedMessage(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content)
        )
        return "250 2.0.0 queued"


@pytest.fixture
def relay() -> Iterator[RecordingRelay]:
    """A running recording relay."""
    recorder = RecordingRelay(port=free_port())
    controller = Controller(recorder, hostname=recorder.host, port=recorder.port)
    controller.start()
    try:
        yield recorder
    finally:
        controller.stop()


@dataclass
class WebhookRequest:
    """One request the webhook server received."""

    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookServer:
    """An HTTP server that answers with ``statuses`` in turn (then 200) and records requests."""

    port: int = 0
    statuses: list[int] = field(default_factory=list)
    requests: list[WebhookRequest] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


@pytest.fixture
def webhook_server() -> Iterator[WebhookServer]:
    """A running webhook receiver on 127.0.0.1."""
    state = WebhookServer()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            state.requests.append(WebhookRequest(self.path, dict(self.headers.items()), body))
            status = state.statuses.pop(0) if state.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
