"""DNS for sender authentication: one resolver, built from settings, with a TTL cache.

Every lookup canarytrace makes (DKIM keys, SPF, DMARC, reverse DNS) goes through one
:class:`Resolver`, so a test can point it at a DNS server on 127.0.0.1 and a deployment
at its own recursive resolver (``CANARY_DNS_SERVERS``, ``CANARY_DNS_TIMEOUT``).

Failures come in two kinds, and callers must treat them differently:

* permanent: the name does not exist (NXDOMAIN) or has no record of that type
  (NoAnswer). The lookup returns an empty list; that absence is evidence.
* temporary: timeout, SERVFAIL, REFUSED, an unparsable reply. The lookup raises
  :class:`DnsTemporaryError`; the message is analysed again later.

Answers (positive and NXDOMAIN/NoAnswer alike) are cached by dnspython's LRU cache for
the record's TTL (negative answers for the SOA minimum), so one campaign of a thousand
messages costs one key lookup, not a thousand.

dkimpy and pyspf are synchronous libraries; :class:`BlockingResolver` lets them look
names up from a worker thread through the same resolver and cache, by handing each
lookup back to the event loop that owns the resolver.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdata
import dns.rdatatype
import dns.resolver
import dns.reversename

if TYPE_CHECKING:
    from canary.config import Settings

DEFAULT_CACHE_SIZE = 50_000


class DnsTemporaryError(Exception):
    """A lookup failed in a way that may succeed later (timeout, SERVFAIL, bad reply)."""


class Resolver:
    """Asynchronous DNS lookups through configured servers, with a TTL-respecting cache.

    Keep one instance for the life of the process: the cache lives in it.
    """

    def __init__(
        self,
        nameservers: Sequence[tuple[str, int]] = (),
        timeout: float = 5.0,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        self.timeout = timeout
        if nameservers:
            self._resolver = dns.asyncresolver.Resolver(configure=False)
            self._resolver.nameservers = [
                dns.nameserver.Do53Nameserver(host, port) for host, port in nameservers
            ]
        else:
            try:
                self._resolver = dns.asyncresolver.Resolver(configure=True)
            except dns.resolver.NoResolverConfiguration:
                # No /etc/resolv.conf: every lookup will be a temporary error, which
                # keeps messages queued for retry instead of failing analysis outright.
                self._resolver = dns.asyncresolver.Resolver(configure=False)
        # One setting bounds both a single try and the whole lookup: the brief is "seconds
        # to wait for one DNS answer before treating the lookup as a temporary failure".
        self._resolver.timeout = timeout
        self._resolver.lifetime = timeout
        self._resolver.cache = dns.resolver.LRUCache(cache_size)

    @classmethod
    def from_settings(cls, settings: Settings) -> Resolver:
        """The resolver named by ``CANARY_DNS_SERVERS`` (else the system's) and timeout."""
        return cls(settings.dns_servers, settings.dns_timeout)

    def flush(self) -> None:
        """Forget every cached answer."""
        assert self._resolver.cache is not None
        self._resolver.cache.flush()

    async def lookup(self, name: str, rdtype: str) -> list[dns.rdata.Rdata]:
        """All records of ``rdtype`` at ``name``; empty if none exist.

        Raises :class:`DnsTemporaryError` when the answer could not be had.
        """
        try:
            qname = dns.name.from_text(name.rstrip(".") + ".")
        except (dns.exception.DNSException, UnicodeError, ValueError):
            return []  # not a valid DNS name: it can never have records
        try:
            answer = await self._resolver.resolve(
                qname, rdtype, search=False, raise_on_no_answer=False
            )
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.YXDOMAIN):
            return []
        except dns.exception.Timeout as exc:
            raise DnsTemporaryError(f"{name} {rdtype}: timed out") from exc
        except dns.resolver.NoNameservers as exc:
            raise DnsTemporaryError(f"{name} {rdtype}: no server answered ({exc})") from exc
        except dns.exception.DNSException as exc:
            raise DnsTemporaryError(f"{name} {rdtype}: {exc}") from exc
        except OSError as exc:  # network unreachable and friends
            raise DnsTemporaryError(f"{name} {rdtype}: {exc}") from exc
        if answer.rrset is None:
            return []
        return list(answer.rrset)

    async def txt(self, name: str) -> list[str]:
        """TXT records at ``name``, each record's strings joined (RFC 7208 section 3.3)."""
        return [
            b"".join(rdata.strings).decode("utf-8", "replace")  # type: ignore[attr-defined]
            for rdata in await self.lookup(name, "TXT")
        ]

    async def a(self, name: str) -> list[str]:
        """IPv4 addresses of ``name``."""
        return [rdata.address for rdata in await self.lookup(name, "A")]  # type: ignore[attr-defined]

    async def aaaa(self, name: str) -> list[str]:
        """IPv6 addresses of ``name``."""
        return [rdata.address for rdata in await self.lookup(name, "AAAA")]  # type: ignore[attr-defined]

    async def mx(self, name: str) -> list[tuple[int, str]]:
        """(preference, exchange) pairs of ``name``, lowest preference first."""
        records = [
            (rdata.preference, rdata.exchange.to_text(omit_final_dot=True).lower())  # type: ignore[attr-defined]
            for rdata in await self.lookup(name, "MX")
        ]
        return sorted(records)

    async def ptr(self, ip: str) -> list[str]:
        """Host names the reverse zone gives for an IP address (empty for a non-address)."""
        try:
            rev = dns.reversename.from_address(str(ipaddress.ip_address(ip)))
        except ValueError:
            return []
        return [
            rdata.target.to_text(omit_final_dot=True).lower()  # type: ignore[attr-defined]
            for rdata in await self.lookup(rev.to_text(), "PTR")
        ]


class BlockingResolver:
    """Synchronous face of a :class:`Resolver`, for library code running in a worker thread.

    Each call schedules the lookup on ``loop`` (the loop that owns the resolver) and
    waits for it, so cache and server settings are shared. Never call it from the loop's
    own thread: it would wait for itself.
    """

    def __init__(self, resolver: Resolver, loop: asyncio.AbstractEventLoop) -> None:
        self.resolver = resolver
        self.loop = loop
        self.temporary_errors: list[str] = []

    def lookup(self, name: str, rdtype: str) -> list[dns.rdata.Rdata]:
        """Blocking :meth:`Resolver.lookup`; records temporary errors before re-raising."""
        future = asyncio.run_coroutine_threadsafe(self.resolver.lookup(name, rdtype), self.loop)
        try:
            # The resolver's own lifetime bounds the lookup; the margin only guards
            # against a loop that stopped running.
            return future.result(timeout=self.resolver.timeout + 5)
        except FutureTimeout as exc:
            future.cancel()
            self.temporary_errors.append(f"{name} {rdtype}: timed out")
            raise DnsTemporaryError(f"{name} {rdtype}: timed out") from exc
        except DnsTemporaryError as exc:
            self.temporary_errors.append(str(exc))
            raise

    def txt(self, name: str) -> list[bytes]:
        """TXT records at ``name`` as bytes, each record's strings joined."""
        return [b"".join(r.strings) for r in self.lookup(name, "TXT")]  # type: ignore[attr-defined]
