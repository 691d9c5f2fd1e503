"""The SMTP listener: aiosmtpd's protocol on a plain asyncio server.

:func:`create_smtp_server` is the application factory. Tests start it on port 0 and
read the bound port back; ``canary serve`` starts it on the configured address.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import ssl
import types
from collections.abc import Callable
from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, syntax
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

    @syntax("RCPT TO: <address>", extended=" [SP <mail-parameters>]")
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

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """Parse the address of MAIL FROM or RCPT TO exactly as aiosmtpd does.

        aiosmtpd's own version defines a ``typing.Protocol`` class on every call (twice
        per message) and runs the email header parser, which cost more than the rest of
        the command; the common shape is matched by a regular expression instead.
        """
        if not arg:
            return "", ""
        simple = _SIMPLE_PATH.fullmatch(arg)
        if simple is not None:
            # Nearly every sender writes <dot-atom@host.name> [params]; the email parser
            # gives the same for that, at a tenth of the cost of building its tokens.
            addr, rest = simple.group(1), simple.group(2) or ""
        else:
            addr, rest = _parse_path(arg)
            if addr is None:
                return None, None
        if self.local_part_limit and len(addr.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return addr, rest

    @syntax("DATA")
    async def smtp_DATA(self, arg: str | None) -> None:
        """DATA as aiosmtpd answers it, reading the content in large pieces.

        aiosmtpd reads the content one line at a time (a hundred awaits for 10 KB of
        text); this reads up to each ``.<CRLF>`` and checks whether a CRLF precedes it.
        Only ``<CRLF>.<CRLF>`` ends DATA, lines over ``line_length_limit`` get 500 and
        content over ``data_size_limit`` gets 552 (both after the end of DATA, for this
        message only), and a dot opening a line is removed, all as in aiosmtpd.
        """
        if self._decode_data:  # not used by this server; aiosmtpd's path handles it
            await super().smtp_DATA(arg)
            return
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            content = await self._receive_content()
        except asyncio.CancelledError:
            self._writer.close()  # the connection went away mid-DATA (as aiosmtpd does)
            raise
        if content is None:
            return
        if isinstance(content, str):
            self._set_post_data_state()
            await self.push(content)
            return
        self.envelope.content = content
        self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)

    async def _receive_content(self) -> bytes | str | None:
        """The content up to ``<CRLF>.<CRLF>`` with transparency dots removed; or the
        reply refusing it; or None when the client closed the connection."""
        reader = self._reader
        size_limit = self.data_size_limit
        line_limit = self.line_length_limit
        # DATA starts at the beginning of a line, where "." alone ends it at once.
        buf = bytearray(b"\r\n")
        unchecked = 2  # lines before this offset are known to fit line_limit
        refusal: str | None = None
        while True:
            try:
                buf += await reader.readuntil(b".\r\n")
                found = buf[-5:-3] == b"\r\n"
            except asyncio.LimitOverrunError as error:
                buf += await reader.read(error.consumed)
                found = False
            except asyncio.IncompleteReadError:
                return None
            end = len(buf) - 3 if found else len(buf)  # the content, up to its last CRLF
            if refusal is None:
                unchecked = _unchecked_line(buf, unchecked, end, line_limit)
                if unchecked < 0:
                    refusal = "500 Line too long (see RFC5321 4.5.3.1.6)"
                elif size_limit and end - 2 > size_limit:
                    refusal = "552 Error: Too much mail data"
            if found:
                break
            if refusal is not None:
                # Read on to the end of DATA, keeping only what can precede ".<CRLF>".
                del buf[:-2]
        if refusal is not None:
            return refusal
        del buf[end:]
        return bytes(buf).replace(b"\r\n.", b"\r\n")[2:]


# <local@domain> with a dot-atom local part and a plain host name, then nothing or
# whitespace and parameters without comments or quotes: the only shapes the fast path
# of CanarySMTP._getaddr takes (tests/mailbox/test_aiosmtpd_equivalence.py compares it with
# the email parser).
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_SIMPLE_PATH = re.compile(
    rf"<({_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>"
    r"(?:[ \t]+([^ \t()\"\\<>@,;:\[\]][^()\"\\]*))?"
)


def _parse_path(arg: str) -> tuple[str | None, str]:
    """aiosmtpd's address parsing: the email package's parser for an addr-spec."""
    try:
        if arg.lstrip().startswith("<"):
            address, rest = get_angle_addr(arg)
        else:
            address, rest = get_addr_spec(arg)
    except HeaderParseError:
        return None, ""
    return str(address.addr_spec), rest


def _unchecked_line(buf: bytearray, start: int, stop: int, limit: int) -> int:
    """Offset of the first line in ``buf[start:stop]`` not yet known to fit in ``limit``
    bytes with its CRLF, or -1 when one does not fit."""
    while stop - start >= limit:
        crlf = buf.rfind(b"\r\n", start, start + limit)
        if crlf < 0:
            return -1
        start = crlf + 2
    return start


class ProtocolFactory:
    """Makes a :class:`CanarySMTP` per connection without aiosmtpd's introspection.

    ``SMTP.__init__`` collects the handler's hooks and its own command and AUTH methods
    with ``inspect.getmembers`` and ``dir`` on every connection, which takes more CPU
    than receiving a 10 KB message. What it computes depends only on the classes and
    the settings, so it is done once, on a prototype; each connection gets a copy of
    the prototype's attributes, its own stream state, and the methods bound to itself.
    If the prototype holds anything else bound to itself (a future aiosmtpd), every
    connection is built the full way instead.
    """

    def __init__(self, build: Callable[[], CanarySMTP]) -> None:
        self.build = build
        prototype = build()
        loop = prototype.loop
        stream_state = set(vars(asyncio.StreamReaderProtocol(asyncio.StreamReader(loop=loop))))
        rebound = {"_smtp_methods", "_auth_methods"}
        self._shared = {k: v for k, v in vars(prototype).items() if k not in stream_state}
        self._commands = {name: method.__func__ for name, method in prototype._smtp_methods.items()}
        self._auth = {
            name: (attr.method.__func__ if attr.is_builtin else attr.method, attr.is_builtin)
            for name, attr in prototype._auth_methods.items()
        }
        self.fast = all(
            not _refers_to(value, prototype)
            for key, value in self._shared.items()
            if key not in rebound
        ) and all(
            getattr(method, "__self__", None) is prototype
            for method in prototype._smtp_methods.values()
        )
        self._loop = loop
        self._line_limit = prototype.line_length_limit
        self._auth_type = (
            type(next(iter(prototype._auth_methods.values()))) if prototype._auth_methods else None
        )

    def __call__(self) -> CanarySMTP:
        if not self.fast:
            return self.build()
        protocol = CanarySMTP.__new__(CanarySMTP)
        protocol.__dict__.update(self._shared)
        asyncio.StreamReaderProtocol.__init__(
            protocol,
            asyncio.StreamReader(loop=self._loop, limit=self._line_limit),
            client_connected_cb=protocol._cb_client_connected,
            loop=self._loop,
        )
        protocol._smtp_methods = {
            name: types.MethodType(func, protocol) for name, func in self._commands.items()
        }
        if self._auth_type is not None:
            protocol._auth_methods = {
                name: self._auth_type(
                    types.MethodType(method, protocol) if builtin else method, builtin
                )
                for name, (method, builtin) in self._auth.items()
            }
        return protocol


def _refers_to(value: Any, target: object) -> bool:
    """True when ``value`` is ``target``, a method bound to it, or a container holding one."""
    if value is target or getattr(value, "__self__", None) is target:
        return True
    if isinstance(value, dict):
        return any(_refers_to(v, target) for v in value.values())
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(_refers_to(v, target) for v in value)
    return False


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

    def _protocol(self) -> CanarySMTP:
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
            ProtocolFactory(self._protocol),
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
