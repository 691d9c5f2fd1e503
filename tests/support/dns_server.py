"""A real DNS server on 127.0.0.1 (UDP and TCP) serving in-memory test zones, and DKIM helpers.

Tests point :class:`canary.dns.Resolver` at it instead of mocking DNS. The server can be
switched to misbehave (``mode``): ``silent`` (never answers: timeouts), ``servfail``,
``refused`` or ``garbage`` (an unparsable reply). Every question it receives is recorded
in ``queries`` so a test can count what reached the wire (and what the cache absorbed).

DKIM keys are made in pure Python (no OpenSSL, no ``cryptography``), published as TXT
records, and messages are signed with dkimpy's own ``dkim.sign``.
"""

from __future__ import annotations

import base64
import ipaddress
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dkim
import pytest
from dnslib import AAAA, MX, PTR, QTYPE, RCODE, RR, SOA, TXT, A, DNSLabel, DNSRecord
from dnslib.server import DNSError, DNSHandler, DNSServer

from canary.config import Settings

SPF_LOOPBACK = "v=spf1 ip4:127.0.0.0/8 -all"
# The loopback server always answers, but on a loaded machine (a CI run beside other
# work) its thread can wait seconds for the interpreter. Tests of silence set their own
# short timeout; every other test waits long enough that a slow answer is never a
# spurious temporary error.
ANSWER_TIMEOUT = 10.0
MODES = ("normal", "silent", "servfail", "refused", "garbage")


class _QuietLogger:
    """dnslib logs every packet to stdout by default; tests want silence."""

    def __getattr__(self, _name: str) -> Any:
        return lambda *args, **kwargs: None


class _Handler(DNSHandler):
    def get_reply(self, data: bytes) -> bytes:
        zone: TestDnsServer = self.server.zone  # type: ignore[attr-defined]
        request = DNSRecord.parse(data)
        q = request.q
        zone.record_query(str(q.qname).rstrip(".").lower(), QTYPE[q.qtype])
        mode = zone.mode
        if mode == "silent":
            raise DNSError("silent mode: no answer")  # handle() swallows it, sends nothing
        if mode == "garbage":
            return data[:2] + b"\x81\x80\x00\x01\x00\x05" + b"\xff" * 7
        reply = request.reply()
        if mode in ("servfail", "refused"):
            reply.header.rcode = RCODE.SERVFAIL if mode == "servfail" else RCODE.REFUSED
            return reply.pack()
        zone.answer(request, reply)
        return reply.pack()


class TestDnsServer:
    """Authoritative-style answers from in-memory records, over UDP and TCP on one port."""

    __test__ = False  # not a test class, despite the name

    def __init__(self, negative_ttl: int = 60) -> None:
        self.negative_ttl = negative_ttl
        self.mode = "normal"
        self.records: dict[tuple[str, str], list[tuple[Any, int]]] = {}
        self.queries: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._servers: list[DNSServer] = []
        self.host = "127.0.0.1"
        self.port = self._bind()

    # ------------------------------------------------------------------ lifecycle

    def _bind(self) -> int:
        # UDP first on a random port, then TCP on the same number; retry on a clash.
        for _ in range(50):
            udp = DNSServer(
                None, address=self.host, port=0, logger=_QuietLogger(), handler=_Handler
            )
            port = udp.server.server_address[1]
            try:
                tcp = DNSServer(
                    None,
                    address=self.host,
                    port=port,
                    tcp=True,
                    logger=_QuietLogger(),
                    handler=_Handler,
                )
            except OSError:
                udp.server.server_close()
                continue
            for server in (udp, tcp):
                server.server.zone = self  # type: ignore[attr-defined]
                # A short poll interval keeps shutdown (every test's teardown) fast.
                thread = threading.Thread(
                    target=server.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
                )
                thread.start()
            self._servers = [udp, tcp]
            return port
        raise RuntimeError("no free port for the test DNS server")

    def close(self) -> None:
        """Stop both listeners and release the port."""
        for server in self._servers:
            server.server.shutdown()
            server.server.server_close()
        self._servers = []

    @property
    def servers(self) -> tuple[tuple[str, int], ...]:
        """The value for ``Settings.dns_servers``."""
        return ((self.host, self.port),)

    def settings(self, timeout: float = ANSWER_TIMEOUT) -> Settings:
        """Settings whose resolver asks only this server."""
        return Settings(dns_servers=self.servers, dns_timeout=timeout)

    # ------------------------------------------------------------------ zone data

    def add(self, name: str, rtype: str, value: Any, ttl: int = 300) -> None:
        """Add one record. TXT takes text (split into 255-byte strings), MX "10 host"."""
        name = name.rstrip(".").lower()
        rdata: Any
        if rtype == "TXT":
            raw = value.encode() if isinstance(value, str) else value
            rdata = TXT([raw[i : i + 255] for i in range(0, len(raw), 255)] or [b""])
        elif rtype == "A":
            rdata = A(value)
        elif rtype == "AAAA":
            rdata = AAAA(value)
        elif rtype == "MX":
            pref, _, host = value.partition(" ")
            rdata = MX(host, int(pref))
        elif rtype == "PTR":
            rdata = PTR(value)
        else:
            raise ValueError(f"unsupported type {rtype}")
        with self._lock:
            self.records.setdefault((name, rtype), []).append((rdata, ttl))

    def txt(self, name: str, text: str, ttl: int = 300) -> None:
        """Add a TXT record."""
        self.add(name, "TXT", text, ttl)

    def spf_pass_from_loopback(self, domain: str) -> None:
        """Publish SPF for ``domain`` that passes mail sent from 127.0.0.0/8 (the tests)."""
        self.txt(domain, SPF_LOOPBACK)

    def ptr(self, ip: str, host: str, ttl: int = 300) -> None:
        """Add the reverse record of an IP address."""
        rev = ipaddress.ip_address(ip).reverse_pointer
        self.add(rev, "PTR", host, ttl)

    def remove(self, name: str, rtype: str | None = None) -> None:
        """Remove the records of one name (of one type, or all)."""
        name = name.rstrip(".").lower()
        with self._lock:
            for key in [k for k in self.records if k[0] == name and rtype in (None, k[1])]:
                del self.records[key]

    def record_query(self, name: str, rtype: str) -> None:
        """Note one question received (called by the handler thread)."""
        with self._lock:
            self.queries.append((name, rtype))

    def count(self, name: str, rtype: str | None = None) -> int:
        """How many questions for ``name`` (and type) reached the server."""
        name = name.rstrip(".").lower()
        with self._lock:
            return sum(1 for n, t in self.queries if n == name and rtype in (None, t))

    def answer(self, request: DNSRecord, reply: DNSRecord) -> None:
        """Fill ``reply``: records, or NOERROR/NXDOMAIN with an SOA for negative caching."""
        qname = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        with self._lock:
            found = list(self.records.get((qname, qtype), []))
            exists = any(n == qname or n.endswith("." + qname) for n, _ in self.records)
            if not exists:
                found, exists = self._wildcard(qname, qtype)
        for rdata, ttl in found:
            reply.add_answer(RR(request.q.qname, getattr(QTYPE, qtype), rdata=rdata, ttl=ttl))
        if not found:
            if not exists:
                reply.header.rcode = RCODE.NXDOMAIN
            apex = qname.rsplit(".", 1)[-1] or "test"
            soa = SOA(
                "ns." + apex,
                "hostmaster." + apex,
                (1, 3600, 600, 86400, self.negative_ttl),
            )
            reply.add_auth(RR(DNSLabel(apex), QTYPE.SOA, rdata=soa, ttl=self.negative_ttl))

    def _wildcard(self, qname: str, qtype: str) -> tuple[list[tuple[Any, int]], bool]:
        """Records of the closest ``*.parent`` for a name that does not exist (RFC 4592)."""
        labels = qname.split(".")
        for i in range(1, len(labels)):
            star = "*." + ".".join(labels[i:])
            if any(n == star for n, _ in self.records):
                return list(self.records.get((star, qtype), [])), True
        return [], False


@pytest.fixture
def dns_server() -> Iterator[TestDnsServer]:
    """A fresh DNS server on 127.0.0.1 with empty zones, stopped after the test."""
    server = TestDnsServer()
    try:
        yield server
    finally:
        server.close()


# ---------------------------------------------------------------------- DKIM helpers


@dataclass(frozen=True)
class DkimKey:
    """An RSA key pair: PKCS#1 PEM private key for dkimpy, base64 SPKI for the TXT record."""

    private_pem: bytes
    public_b64: str

    def record(self) -> str:
        """The DKIM key record (RFC 6376 section 3.6.1)."""
        return f"v=DKIM1; k=rsa; p={self.public_b64}"


def generate_dkim_key(bits: int = 1024) -> DkimKey:
    """A fresh RSA key pair made with the cryptography package."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,  # PKCS#1, what dkimpy reads
        serialization.NoEncryption(),
    )
    spki = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return DkimKey(pem, base64.b64encode(spki).decode())


def publish_dkim_key(server: TestDnsServer, domain: str, selector: str, key: DkimKey) -> None:
    """Put the key's public half at ``selector._domainkey.domain``."""
    server.txt(f"{selector}._domainkey.{domain}", key.record())


def dkim_sign(message: bytes, domain: str, selector: str, key: DkimKey) -> bytes:
    """The message with a DKIM-Signature by ``domain`` prepended (relaxed/relaxed)."""
    signature = dkim.sign(
        message,
        selector.encode(),
        domain.encode(),
        key.private_pem,
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
    )
    return signature + message


def free_port_unused() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (for unreachable-server tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
