"""Automatic confirmation: link choice, address vetting before connecting, one GET, opt-in.

It is the one place the service fetches a URL taken from a message, so it is also where
server-side request forgery is tried: private, loopback, link-local and IPv6 forms of
them, numbers spelling an address, DNS names resolving to one (through the loopback DNS
server), and redirects. A last test reads the whole service's source to show that no
other module can fetch anything.
"""

from __future__ import annotations

import ast
import inspect
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlmodel import select

from canary import confirm
from canary.config import Settings
from canary.confirm import (
    address_refusal,
    confirm_link,
    confirmation_links,
    dns_resolver,
    fetch_once,
    pending_links,
    run_confirmations,
)
from canary.models import ConfirmationAttempt, Delivery, Finding, Message, User
from canary.store import Store
from canary.study import import_study, parse_plan
from tests.support.dns_server import ANSWER_TIMEOUT, TestDnsServer

LOOPBACK = lambda host, port: ["127.0.0.1"]  # noqa: E731


@dataclass
class Seen:
    requests: list[dict[str, str]] = field(default_factory=list)
    body: bytes = b"<html>thanks, confirmed</html>"
    status: int = 200
    location: str | None = None


@contextmanager
def recording_server() -> Iterator[tuple[int, Seen]]:
    """A real HTTP server on 127.0.0.1 that records every request."""
    seen = Seen()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            seen.requests.append({"path": self.path, **{k: v for k, v in self.headers.items()}})
            self.send_response(seen.status)
            self.send_header("Set-Cookie", "session=abc")
            if seen.location:
                self.send_header("Location", seen.location)
            self.end_headers()
            self.wfile.write(seen.body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def web() -> Iterator[tuple[int, Seen]]:
    """The site a confirmation link points at."""
    with recording_server() as running:
        yield running


def test_links_must_look_like_confirmation_and_belong_to_the_site() -> None:
    html = (
        '<a href="https://click.esp.test/t?u=1">Confirm your address</a>'
        '<a href="https://www.shop.test/account/confirm?t=abc&amp;x=1">Click here</a>'
        '<a href="https://shop.test/unsubscribe?confirm=1">Unsubscribe</a>'
        '<a href="https://shop.test/deals">Deals</a>'
    )
    text = "Or paste https://shop.test/verify/xyz. Thanks"
    assert confirmation_links(text, html, ["shop.test"]) == [
        "https://www.shop.test/account/confirm?t=abc&x=1",
        "https://shop.test/verify/xyz",
    ]
    assert confirmation_links(text, html, ["other.test"]) == []


NON_PUBLIC = [
    "127.0.0.1", "127.255.255.254", "10.1.2.3", "172.16.0.1", "192.168.0.1",
    "169.254.169.254", "100.64.0.1", "0.0.0.0", "224.0.0.1", "240.0.0.1",
    "255.255.255.255", "198.18.0.1", "192.0.2.1",
    "::1", "::", "fe80::1", "fe80::1%eth0", "fc00::1", "fd12:3456::1", "ff02::1",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::127.0.0.1",
    "64:ff9b::a00:1", "64:ff9b::7f00:1", "2002:7f00:1::", "2002:c0a8:1::1",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001:db8::1",
]  # fmt: skip
# Hosts a URL may spell as numbers: each is 127.0.0.1 (or ::1) to a C library.
NUMERIC_LOOPBACK = [
    "2130706433", "0177.0.0.1", "0x7f.0.0.1", "0x7f.1", "127.1", "127.0.1", "0x7f000001",
    "017700000001", "0177.1", "[::1]", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]",
    "[0:0:0:0:0:ffff:127.0.0.1]",
]  # fmt: skip


def no_lookup(host: str, port: int) -> list[str]:
    """A resolver for hosts that must never be looked up."""
    raise AssertionError(f"{host} was looked up as a name")


@pytest.mark.parametrize("address", NON_PUBLIC)
def test_non_public_addresses_are_refused_before_connecting(
    address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert address_refusal(address) is not None

    def no_connection(*args: object, **kwargs: object) -> None:
        raise AssertionError("a refused address must never be connected to")

    monkeypatch.setattr(confirm.socket, "create_connection", no_connection)
    outcome = fetch_once("http://shop.test/confirm", resolve=lambda h, p: [address])
    assert outcome.outcome == "refused" and outcome.status_code is None
    assert address in outcome.detail or "address" in outcome.detail


def test_public_address_passes_vetting() -> None:
    for address in ("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "::ffff:93.184.216.34"):
        assert address_refusal(address) is None, address


@pytest.mark.parametrize("host", NUMERIC_LOOPBACK)
def test_numeric_hosts_are_the_addresses_they_spell(host: str, web: tuple[int, Seen]) -> None:
    port, seen = web
    outcome = fetch_once(f"http://{host}:{port}/confirm", resolve=no_lookup, allowed_ports=None)
    assert outcome.outcome == "refused" and "loopback" in outcome.detail
    assert seen.requests == []


def test_numeric_ipv4_forms_do_reach_the_server_when_allowed(web: tuple[int, Seen]) -> None:
    """The control: with the test opt-in the same URLs connect, so the refusals above are
    the vetting at work, not a URL that could never have connected."""
    port, seen = web
    ipv4_forms = [h for h in NUMERIC_LOOPBACK if not h.startswith("[")]
    for host in ipv4_forms:
        outcome = fetch_once(f"http://{host}:{port}/c", resolve=no_lookup, allow_private=True,
                             allowed_ports=None)  # fmt: skip
        assert outcome.outcome == "fetched" and outcome.address == "127.0.0.1", host
    assert len(seen.requests) == len(ipv4_forms)


NAMES = {
    "loopback.shop.test": [("A", "127.0.0.1")],
    "private.shop.test": [("A", "10.0.0.5")],
    "metadata.shop.test": [("A", "169.254.169.254")],
    "zero.shop.test": [("A", "0.0.0.0")],
    "v6loopback.shop.test": [("AAAA", "::1")],
    "mapped.shop.test": [("AAAA", "::ffff:7f00:1")],
    "ula.shop.test": [("AAAA", "fd00::1")],
    "linklocal6.shop.test": [("AAAA", "fe80::1")],
    "nat64.shop.test": [("AAAA", "64:ff9b::a9fe:a9fe")],
    # One public address is not enough: a connection could go to the other.
    "mixed.shop.test": [("A", "93.184.216.34"), ("A", "127.0.0.1")],
    "mixed6.shop.test": [("A", "93.184.216.34"), ("AAAA", "::1")],
}


@pytest.mark.parametrize("name", sorted(NAMES))
def test_names_resolving_to_non_public_addresses_are_refused(
    name: str, dns_server: TestDnsServer, web: tuple[int, Seen]
) -> None:
    port, seen = web
    for rtype, value in NAMES[name]:
        dns_server.add(name, rtype, value)
    resolve = dns_resolver(dns_server.servers, timeout=ANSWER_TIMEOUT)
    outcome = fetch_once(f"http://{name}:{port}/confirm", resolve=resolve, allowed_ports=None)
    assert outcome.outcome == "refused", outcome
    assert outcome.address is not None and address_refusal(outcome.address) is not None
    assert seen.requests == []
    assert dns_server.count(name) >= 1  # it was asked, through the loopback DNS server


def test_a_name_resolving_to_loopback_connects_only_with_the_test_opt_in(
    dns_server: TestDnsServer, web: tuple[int, Seen]
) -> None:
    port, seen = web
    dns_server.add("signup.shop.test", "A", "127.0.0.1")
    resolve = dns_resolver(dns_server.servers, timeout=ANSWER_TIMEOUT)
    url = f"http://signup.shop.test:{port}/confirm"
    assert fetch_once(url, resolve=resolve, allowed_ports=None).outcome == "refused"
    assert seen.requests == []
    allowed = fetch_once(url, resolve=resolve, allowed_ports=None, allow_private=True)
    assert allowed.outcome == "fetched" and [r["Host"] for r in seen.requests] == [
        f"signup.shop.test:{port}"
    ]
    unknown = fetch_once("http://nowhere.shop.test/confirm", resolve=resolve)
    assert unknown.outcome == "error" and "no address" in unknown.detail


@pytest.mark.parametrize(
    "location",
    ["http://127.0.0.1:{internal}/internal", "http://2130706433:{internal}/internal",
     "http://[::1]:{internal}/internal", "http://169.254.169.254/latest/meta-data/",
     "//127.0.0.1:{internal}/internal", "/internal"],
)  # fmt: skip
def test_redirects_are_never_followed(location: str, web: tuple[int, Seen]) -> None:
    port, seen = web
    with recording_server() as (internal, reached):
        target = location.format(internal=internal)
        seen.status, seen.location = 302, target
        outcome = fetch_once(f"http://shop.test:{port}/confirm", resolve=LOOPBACK,
                             allow_private=True, allowed_ports=None)  # fmt: skip
        assert outcome.outcome == "fetched" and outcome.status_code == 302
        assert f"redirect to {target} not followed" in outcome.detail
        assert reached.requests == []
    assert len(seen.requests) == 1


def test_the_test_opt_in_is_off_unless_passed() -> None:
    """Only a caller that passes allow_private=True (the tests here) reaches private
    addresses: every default is False, and the scheduler and CLI pass nothing."""
    from canary import scheduler

    confirming = (fetch_once, run_confirmations, scheduler.confirm_job)
    for function in confirming:
        assert inspect.signature(function).parameters["allow_private"].default is False
    names = {f.__name__ for f in confirming}
    calls = 0
    for directory in CODE_DIRS:
        for module in directory.rglob("*.py"):
            for node in ast.walk(ast.parse(module.read_text())):
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if called not in names:
                    continue
                calls += 1
                for keyword in node.keywords:
                    # Only passing on the caller's own parameter (default False) is allowed.
                    assert keyword.arg != "allow_private" or (
                        isinstance(keyword.value, ast.Name) and keyword.value.id == "allow_private"
                    ), f"{module}:{node.lineno} sets allow_private"
    assert calls >= 3  # run_confirmations from the CLI and the scheduler, fetch_once inside


def test_loopback_refused_without_opt_in_even_with_a_server(web: tuple[int, Seen]) -> None:
    port, seen = web
    outcome = fetch_once(f"http://shop.test:{port}/confirm", resolve=LOOPBACK, allowed_ports=None)
    assert outcome.outcome == "refused" and "loopback" in outcome.detail
    assert seen.requests == []


def test_one_get_without_cookies_and_with_a_size_cap(web: tuple[int, Seen]) -> None:
    port, seen = web
    seen.body = b"x" * 10_000
    outcome = fetch_once(f"http://shop.test:{port}/confirm?t=1", resolve=LOOPBACK,
                         allow_private=True, allowed_ports=None, max_bytes=1000)  # fmt: skip
    assert outcome.outcome == "fetched" and outcome.status_code == 200
    assert outcome.bytes_read == 1000 and "cut at 1000" in outcome.detail
    assert len(seen.requests) == 1
    request = seen.requests[0]
    assert request["path"] == "/confirm?t=1" and request["Host"] == f"shop.test:{port}"
    assert "Cookie" not in request


def test_default_ports_only() -> None:
    outcome = fetch_once("http://shop.test:8080/confirm", resolve=LOOPBACK, allow_private=True)
    assert outcome.outcome == "refused" and "port 8080" in outcome.detail


def _welcome(store: Store, owner: User, study_name: str, auto: bool, port: int) -> int:
    plan = parse_plan("name,url,domains\nShop,https://shop.test,shop.test\n")
    with store.session() as session:
        result = import_study(session, owner, study_name, plan, domain="canary.test",
                              auto_confirm=auto)  # fmt: skip
        identity = result.identities[0]
        raw = (
            f"From: <hello@shop.test>\r\nTo: {identity.alias}\r\nSubject: Please confirm\r\n"
            "Content-Type: text/html\r\n\r\n"
            f'<a href="http://shop.test:{port}/confirm?id=7">Confirm</a>'
            f'<a href="http://tracker.test:{port}/confirm">Confirm too</a>\r\n'
        ).encode()
        message = Message(raw=raw, size=len(raw), rcpt_to=[identity.alias], state="analysed",
                          mail_from="b@shop.test", sender_org="shop.test")  # fmt: skip
        session.add(message)
        session.flush()
        assert message.id is not None and identity.id is not None
        for _ in range(2):  # two welcome mails: still one fetch
            delivery = Delivery(message_id=message.id, recipient=identity.alias,
                                recipient_key=identity.alias, identity_id=identity.id,
                                source_id=identity.source_id, owner_id=owner.id,
                                verdict="expected")  # fmt: skip
            session.add(delivery)
            session.flush()
            assert delivery.id is not None
            evidence = [{"code": "dkim_pass", "detail": "d=shop.test"}]
            session.add(Finding(delivery_id=delivery.id, owner_id=owner.id,
                                source_id=identity.source_id, verdict="expected",
                                sender_org="shop.test", evidence=evidence))  # fmt: skip
        return identity.id


def test_opted_in_study_confirms_once(store: Store, owner: User, web: tuple[int, Seen]) -> None:
    port, seen = web
    identity_id = _welcome(store, owner, "Opted in", True, port)
    for _ in range(2):
        with store.session() as session:
            run_confirmations(session, resolve=LOOPBACK, allow_private=True, allowed_ports=None)
    assert [r["path"] for r in seen.requests] == ["/confirm?id=7"]
    with store.session() as session:
        attempt = session.exec(select(ConfirmationAttempt)).one()
    assert attempt.identity_id == identity_id and attempt.outcome == "fetched"
    assert attempt.status_code == 200 and attempt.address == "127.0.0.1"


def test_two_processes_racing_for_one_link_fetch_it_once(
    store: Store, owner: User, web: tuple[int, Seen]
) -> None:
    """Two schedulers (two `canary serve` sharing PostgreSQL, say) both find the link due;
    the one that reserves it second fetches nothing and records nothing."""
    port, seen = web
    identity_id = _welcome(store, owner, "Raced", True, port)
    with store.session() as first, store.session() as second:
        (mine,) = pending_links(first)
        (theirs,) = pending_links(second)
        assert mine == theirs and mine.identity_id == identity_id
        won = confirm_link(first, mine, resolve=LOOPBACK, allow_private=True,
                           allowed_ports=None)  # fmt: skip
        lost = confirm_link(second, theirs, resolve=LOOPBACK, allow_private=True,
                            allowed_ports=None)  # fmt: skip
    assert won is not None and won.outcome == "fetched"
    assert lost is None
    assert [r["path"] for r in seen.requests] == ["/confirm?id=7"]
    with store.session() as session:
        assert [a.outcome for a in session.exec(select(ConfirmationAttempt))] == ["fetched"]


def test_not_without_opt_in(store: Store, owner: User, web: tuple[int, Seen]) -> None:
    port, seen = web
    _welcome(store, owner, "Not opted in", False, port)
    with store.session() as session:
        assert run_confirmations(session, resolve=LOOPBACK, allow_private=True,
                                 allowed_ports=None) == []  # fmt: skip
    assert seen.requests == []


def test_opted_in_but_private_address_is_recorded_as_refused(
    store: Store, owner: User, web: tuple[int, Seen]
) -> None:
    port, seen = web
    _welcome(store, owner, "Opted in", True, port)
    with store.session() as session:
        (attempt,) = run_confirmations(session, resolve=LOOPBACK, allowed_ports=None)
    assert attempt.outcome == "refused" and seen.requests == []


def test_system_resolver_answers_for_localhost() -> None:
    assert set(confirm.system_resolver("localhost", 80)) & {"127.0.0.1", "::1"}
    assert socket  # the module is patched per test above, never globally


REPO = Path(__file__).resolve().parents[2]
CODE_DIRS = [REPO / "canary", REPO / "mailbox", REPO / "dashboard"]
# Modules and names that open outbound connections, and the modules allowed to use
# them: the confirmation fetch (URLs from messages), the webhook and mail senders
# (targets the user configured), and the health check (the local service itself).
NETWORK = {
    "http.client", "urllib.request", "urllib3", "requests", "httpx", "aiohttp.ClientSession",
    "aiohttp.request", "aiohttp.client", "aiohttp.TCPConnector", "smtplib", "aiosmtplib",
    "socket.create_connection", "socket.socket", "asyncio.open_connection", "ftplib",
    "telnetlib", "xmlrpc.client", "webbrowser", "pycurl",
}  # fmt: skip
ALLOWED = {
    "canary/confirm.py": "the opt-in study confirmation (URLs from messages)",
    "canary/webhook.py": "alert webhooks (URLs the user configured, vetted like confirm)",
    "canary/mailer.py": "alert, forward and verification mail through the configured relay",
    "canary/cli/health.py": "the health check of the local service",
}


def network_uses(path: Path) -> set[str]:
    """Names from :data:`NETWORK` that ``path`` imports or calls."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                aliases[alias.asname or alias.name.split(".")[0]] = alias.name
                found |= {n for n in NETWORK if alias.name == n or alias.name.startswith(n + ".")}
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                aliases[alias.asname or alias.name] = full
                found |= {n for n in NETWORK if full == n or node.module == n}
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            base = aliases.get(node.value.id, node.value.id)
            if f"{base}.{node.attr}" in NETWORK:
                found.add(f"{base}.{node.attr}")
    return found


def test_nothing_else_in_the_service_fetches_urls() -> None:
    users = {}
    for directory in CODE_DIRS:
        for module in directory.rglob("*.py"):
            uses = network_uses(module)
            if uses:
                users[module.relative_to(REPO).as_posix()] = uses
    unexpected = {path: uses for path, uses in users.items() if path not in ALLOWED}
    assert unexpected == {}, "only the modules in ALLOWED may open connections"
    # The check can see what it looks for.
    assert "http.client" in users["canary/confirm.py"]
    assert "aiosmtplib" in users["canary/mailer.py"]
    # The webhook sender vets its targets with the same rules as the confirmation.
    webhook = (REPO / "canary" / "webhook.py").read_text()
    assert "address_refusal" in webhook and "_Pinned" in webhook


def test_the_service_resolves_through_the_configured_dns_servers(
    settings: Settings, dns_server: TestDnsServer
) -> None:
    dns_server.add("shop-confirm.test", "A", "127.0.0.9")
    assert confirm.resolver_for(settings)("shop-confirm.test", 443) == ["127.0.0.9"]
    assert dns_server.count("shop-confirm.test", "A") == 1
    # Without CANARY_DNS_SERVERS the system resolver answers.
    assert confirm.resolver_for(settings.replace(dns_servers=())) is confirm.system_resolver
