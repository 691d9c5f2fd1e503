"""The SMTP listener: aiosmtpd's protocol on a plain asyncio server.

:func:`create_smtp_server` is the application factory. Tests start it on port 0 and
read the bound port back; ``canary serve`` starts it on the configured address.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from typing import Any

from aiosmtpd.smtp import SMTP
from canary.mailbox.intake import Intake
from canary.mailbox.smtp import RELAY_DENIED, CanaryHandler
from canary.mailbox.subdomains import ClaimedSubdomains

from canary.config import Settings

log = logging.getLogger(__name__)

IDENT = "canarytrace ESMTP"

# Per-connection command budgets (aiosmtpd answers "421 4.7.0 ... sent too many times"
# and closes). Transaction commands get room for many messages on one connection;
# the commands that do nothing useful get little, so a flood of them ends quickly.
COMMAND_CALL_LIMITS = {
    "NOOP": 50,
    "HELP": 10,
    "VRFY": 10,
    "EXPN": 10,
    "HELO": 50,
    "EHLO": 50,
    "STARTTLS": 2,
    "*": 10_000,
}


SHUTTING_DOWN = b"421 4.3.2 Service shutting down, try again later\r\n"
# Seconds a transaction in flight may take to finish when the server stops.
SHUTDOWN_GRACE = 20.0


class CanarySMTP(SMTP):
    """aiosmtpd's SMTP protocol with the canary server's extra refusals."""

    def __init__(self, owner: SmtpServer, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._owner = owner
        self._counted = False
        self._refused = False
        self._peer_ip = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._counted:  # called again after STARTTLS for the same session
            self._peer_ip = _peer_ip(transport)
            if not self._owner.admit(self._peer_ip):
                # Refused before aiosmtpd sets anything up: no greeting, no handler task.
                self._refused = True
                assert isinstance(transport, asyncio.WriteTransport)
                transport.write(TOO_BUSY)
                transport.close()
                return
            self._counted = True
            self._owner.open.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:
            return
        if self._counted:
            self._counted = False
            self._owner.release(self._peer_ip)
            self._owner.open.discard(self)
        super().connection_lost(error)

    @property
    def in_transaction(self) -> bool:
        """True between MAIL FROM and the reply to the end of DATA (or RSET)."""
        envelope = getattr(self, "envelope", None)
        return envelope is not None and envelope.mail_from is not None

    def shut(self) -> None:
        """Tell the client the service is going away (RFC 5321 section 3.8) and close."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(SHUTTING_DOWN)
            self.transport.close()

    def eof_received(self) -> bool | None:
        if self._refused:
            return False
        return super().eof_received()

    # Real-world senders (and the spam we want as evidence) exceed the 1000-octet line
    # limit of RFC 5321; a larger buffer keeps them instead of answering 500.
    line_length_limit = 65_536

    # Loop time of the last bytes from the client (see data_received).
    _last_data = 0.0

    def data_received(self, data: bytes) -> None:
        """Count any bytes from the client as activity (the timeout is an idle timeout).

        aiosmtpd restarts its timer only on commands, so a large message on a slow link
        would be cut off after ``smtp_timeout`` seconds of DATA and retried forever. A
        timestamp here is cheaper than re-arming a timer for every chunk; the timer
        callback checks it.
        """
        if self._refused:
            return  # bytes a refused client sent before the close took effect
        self._last_data = self.loop.time()
        super().data_received(data)

    def _timeout_cb(self) -> None:
        idle = self.loop.time() - self._last_data
        if idle < self._timeout_duration and self.transport is not None:
            self._timeout_handle = self.loop.call_later(
                self._timeout_duration - idle, self._timeout_cb
            )
            return
        super()._timeout_cb()

    async def smtp_RCPT(self, arg: str | None) -> None:
        """Refuse source-routed recipients (``<@relay:user@host>``) before parsing.

        The address parser drops the route, which would hide that the client asked us
        to relay; no canary needs a route.
        """
        if arg is not None:
            rest = arg.strip()
            if rest[:3].upper() == "TO:" and rest[3:].lstrip().startswith("<@"):
                await self.push(RELAY_DENIED + " (source routes are not accepted)")
                return
        await super().smtp_RCPT(arg)


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """A server TLS context when a certificate and key are configured, else None."""
    if not (settings.smtp_tls_cert and settings.smtp_tls_key):
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(settings.smtp_tls_cert), str(settings.smtp_tls_key))
    return context


# The reply to a connection over either connection cap (RFC 5321 section 3.8 lets a
# server answer 421 instead of the greeting). A flood of idle connections, from one
# address or from many, then cannot exhaust memory or file descriptors, and one
# address cannot take every slot from the others.
TOO_BUSY = b"421 4.7.0 Too many connections, try again later\r\n"


def _peer_ip(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else ""


class SmtpServer:
    """A running (or ready to run) SMTP listener for the canary domains."""

    def __init__(self, settings: Settings, intake: Intake) -> None:
        self.settings = settings
        self.intake = intake
        self.max_sessions = settings.smtp_max_connections
        self.max_sessions_per_ip = settings.smtp_max_connections_per_ip
        self.sessions = 0
        self.sessions_by_ip: dict[str, int] = {}
        self.open: set[CanarySMTP] = set()
        self.handler = CanaryHandler(
            settings.domains,
            intake,
            settings.smtp_max_recipients,
            ClaimedSubdomains(intake.engine, settings.domains),
        )
        self.hostname = settings.smtp_hostname or socket.getfqdn()
        self.tls = tls_context(settings)
        self._server: asyncio.base_events.Server | None = None

    def admit(self, ip: str) -> bool:
        """Count a new session from ``ip``; False (and nothing counted) over either cap."""
        held = self.sessions_by_ip.get(ip, 0)
        if self.sessions >= self.max_sessions or held >= self.max_sessions_per_ip:
            log.debug(
                "connection from %s refused: %d open from it, %d in all", ip, held, self.sessions
            )
            return False
        self.sessions += 1
        self.sessions_by_ip[ip] = held + 1
        return True

    def release(self, ip: str) -> None:
        """Forget one ended session from ``ip``."""
        self.sessions -= 1
        held = self.sessions_by_ip.get(ip, 0) - 1
        if held > 0:
            self.sessions_by_ip[ip] = held
        else:
            self.sessions_by_ip.pop(ip, None)

    def _protocol(self) -> asyncio.Protocol:
        return CanarySMTP(
            self,
            self.handler,
            data_size_limit=self.settings.smtp_max_message_bytes,
            enable_SMTPUTF8=True,
            decode_data=False,  # keep the bytes exactly as received
            hostname=self.hostname,
            ident=IDENT,
            tls_context=self.tls,
            timeout=self.settings.smtp_timeout,
            command_call_limit=COMMAND_CALL_LIMITS,
            loop=asyncio.get_running_loop(),
        )

    async def start(self) -> None:
        """Bind and start accepting connections."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol,
            host=self.settings.smtp_host,
            port=self.settings.smtp_port,
            reuse_address=True,
            # Several ``canary serve`` processes bind the same port; the kernel spreads
            # new connections over them (CANARY_SMTP_PROCESSES).
            reuse_port=self.settings.smtp_processes > 1,
        )
        log.info("SMTP listening on %s:%d", *self.address)

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) actually bound, useful when port 0 was asked for."""
        assert self._server is not None, "server not started"
        sockname: Any = self._server.sockets[0].getsockname()
        return str(sockname[0]), int(sockname[1])

    @property
    def port(self) -> int:
        """The bound port."""
        return self.address[1]

    async def stop(self, grace: float = SHUTDOWN_GRACE) -> None:
        """Stop accepting, let transactions in flight finish, then close every session.

        Idle sessions are told ``421`` at once. A session between MAIL FROM and the end
        of DATA gets up to ``grace`` seconds to finish, so a message already being sent
        is stored and acknowledged rather than cut off and sent again; the intake, which
        commits it, is stopped by the caller afterwards. After ``grace`` the rest are
        closed too (the sender retries: nothing was acknowledged to it).
        """
        if self._server is None:
            return
        self._server.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while True:
            for protocol in [p for p in self.open if not p.in_transaction]:
                protocol.shut()
            if not any(p.in_transaction for p in self.open) or loop.time() >= deadline:
                break
            await asyncio.sleep(0.05)
        for protocol in list(self.open):
            protocol.shut()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), 5)
        self._server = None


def create_smtp_server(settings: Settings, intake: Intake) -> SmtpServer:
    """The application factory: an SMTP server for ``settings.domains`` writing to ``intake``."""
    if not settings.domains:
        log.warning("no canary domains configured: every recipient will be refused")
    return SmtpServer(settings, intake)
