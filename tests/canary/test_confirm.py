"""Automatic confirmation: link choice, address vetting before connecting, one GET, opt-in."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlmodel import select

from canary import confirm
from canary.confirm import address_refusal, confirmation_links, fetch_once, run_confirmations
from canary.models import ConfirmationAttempt, Delivery, Finding, Message, User
from canary.store import Store
from canary.study import import_study, parse_plan

LOOPBACK = lambda host, port: ["127.0.0.1"]  # noqa: E731


@dataclass
class Seen:
    requests: list[dict[str, str]] = field(default_factory=list)
    body: bytes = b"<html>thanks, confirmed</html>"


@pytest.fixture
def web() -> Iterator[tuple[int, Seen]]:
    """A real HTTP server on 127.0.0.1 that records every request."""
    seen = Seen()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            seen.requests.append({"path": self.path, **{k: v for k, v in self.headers.items()}})
            self.send_response(200)
            self.send_header("Set-Cookie", "session=abc")
            self.end_headers()
            self.wfile.write(seen.body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], seen
    server.shutdown()
    server.server_close()


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


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "10.1.2.3", "169.254.169.254", "192.168.0.1", "::1", "fe80::1",
                "224.0.0.1", "0.0.0.0", "100.64.0.1", "::ffff:127.0.0.1"],
)  # fmt: skip
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
    assert address_refusal("93.184.216.34") is None


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
