"""The resolver against a real DNS server on 127.0.0.1: answers, absence, failures, cache."""

from __future__ import annotations

import asyncio
import time

import pytest

from canary.config import Settings
from canary.dns import BlockingResolver, DnsTemporaryError, Resolver
from tests.support.dns_server import TestDnsServer


def make_resolver(server: TestDnsServer, timeout: float = 2.0) -> Resolver:
    return Resolver.from_settings(server.settings(timeout))


async def test_answers_each_record_type(dns_server: TestDnsServer) -> None:
    dns_server.txt("brand.test", "v=spf1 ip4:127.0.0.2 -all")
    dns_server.txt("long.brand.test", "x" * 600)
    dns_server.add("mail.brand.test", "A", "127.0.0.2")
    dns_server.add("mail.brand.test", "AAAA", "::2")
    dns_server.add("brand.test", "MX", "20 mx2.brand.test")
    dns_server.add("brand.test", "MX", "10 mx1.brand.test")
    dns_server.ptr("127.0.0.2", "mail.brand.test")
    resolver = make_resolver(dns_server)

    assert await resolver.txt("brand.test") == ["v=spf1 ip4:127.0.0.2 -all"]
    assert await resolver.txt("long.brand.test") == ["x" * 600]  # strings joined
    assert await resolver.a("mail.brand.test") == ["127.0.0.2"]
    assert await resolver.aaaa("mail.brand.test") == ["::2"]
    assert await resolver.mx("brand.test") == [(10, "mx1.brand.test"), (20, "mx2.brand.test")]
    assert await resolver.ptr("127.0.0.2") == ["mail.brand.test"]


async def test_absence_is_an_empty_answer_not_an_error(dns_server: TestDnsServer) -> None:
    dns_server.add("mail.brand.test", "A", "127.0.0.2")
    resolver = make_resolver(dns_server)
    assert await resolver.txt("nothing.test") == []  # NXDOMAIN
    assert await resolver.txt("mail.brand.test") == []  # NoAnswer
    assert await resolver.ptr("not an ip") == []
    assert await resolver.txt("bad..name") == []


@pytest.mark.parametrize("mode", ["silent", "servfail", "refused", "garbage"])
async def test_failures_are_temporary_errors(dns_server: TestDnsServer, mode: str) -> None:
    dns_server.txt("brand.test", "hello")
    dns_server.mode = mode
    resolver = make_resolver(dns_server, timeout=0.5)
    with pytest.raises(DnsTemporaryError):
        await resolver.txt("brand.test")


async def test_unreachable_server_is_a_temporary_error() -> None:
    from tests.support.dns_server import free_port_unused

    settings = Settings(dns_servers=(("127.0.0.1", free_port_unused()),), dns_timeout=0.5)
    with pytest.raises(DnsTemporaryError):
        await Resolver.from_settings(settings).txt("brand.test")


async def test_positive_answers_are_cached_for_their_ttl(dns_server: TestDnsServer) -> None:
    dns_server.add("short.test", "TXT", "one", ttl=1)
    dns_server.add("long.test", "TXT", "two", ttl=300)
    resolver = make_resolver(dns_server)
    for _ in range(3):
        assert await resolver.txt("short.test") == ["one"]
        assert await resolver.txt("long.test") == ["two"]
    assert dns_server.count("short.test", "TXT") == 1
    assert dns_server.count("long.test", "TXT") == 1

    await asyncio.sleep(1.2)  # the 1-second TTL runs out; the 300-second one does not
    assert await resolver.txt("short.test") == ["one"]
    assert await resolver.txt("long.test") == ["two"]
    assert dns_server.count("short.test", "TXT") == 2
    assert dns_server.count("long.test", "TXT") == 1


async def test_nxdomain_is_cached_negatively(dns_server: TestDnsServer) -> None:
    resolver = make_resolver(dns_server)
    for _ in range(3):
        assert await resolver.txt("_dmarc.nobody.test") == []
    assert dns_server.count("_dmarc.nobody.test") == 1


async def test_temporary_errors_are_not_cached(dns_server: TestDnsServer) -> None:
    dns_server.txt("brand.test", "back")
    dns_server.mode = "servfail"
    resolver = make_resolver(dns_server)
    with pytest.raises(DnsTemporaryError):
        await resolver.txt("brand.test")
    dns_server.mode = "normal"
    assert await resolver.txt("brand.test") == ["back"]


async def test_blocking_adapter_shares_the_cache(dns_server: TestDnsServer) -> None:
    dns_server.txt("brand.test", "shared")
    resolver = make_resolver(dns_server)
    assert await resolver.txt("brand.test") == ["shared"]
    blocking = BlockingResolver(resolver, asyncio.get_running_loop())
    assert await asyncio.to_thread(blocking.txt, "brand.test") == [b"shared"]
    assert dns_server.count("brand.test") == 1

    dns_server.mode = "silent"
    started = time.monotonic()
    slow = Resolver.from_settings(dns_server.settings(0.3))
    blocking = BlockingResolver(slow, asyncio.get_running_loop())
    with pytest.raises(DnsTemporaryError):
        await asyncio.to_thread(blocking.txt, "other.test")
    assert blocking.temporary_errors
    assert time.monotonic() - started < 5
