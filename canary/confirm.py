"""Opt-in automatic confirmation of study signups (double opt-in links), fetched once.

Many sites only start mailing (and sharing) after the address is confirmed, so a study
that never clicks measures less. For studies whose owner switched it on
(``Study.auto_confirm``), the first authenticated message from a site's *own* domain
that carries a confirmation link has that link fetched exactly once per persona.

Safety rules, in the order they are checked (a refusal is recorded, never retried):

1. only ``http``/``https`` links whose registrable domain is one of the site's own
   authorised domains (not its email provider's click tracker, not anyone else's);
2. only the default ports 80 and 443;
3. the host is resolved first and *every* address must be public: private, loopback,
   link-local, multicast, reserved, shared (CGNAT) and unspecified addresses, and IPv6
   addresses that embed one (IPv4-mapped, NAT64, 6to4, Teredo), are refused before any
   connection is made, unless the caller passes ``allow_private=True`` (tests on
   127.0.0.1 only). A host written as a number in any form a C library accepts
   (``2130706433``, ``0177.0.0.1``, ``0x7f.1``, ``127.1``) is that address, never a name;
4. the connection goes to the vetted address (no second lookup an attacker could
   rebind), one GET, no cookies kept or sent, redirects not followed, a short timeout
   and a cap on the bytes read.

The fetch runs outside the analysis worker's transaction: :func:`run_confirmations` is a
job (CLI or scheduler) that finds eligible deliveries and records a
:class:`~canary.models.ConfirmationAttempt` for each, reserving it before the fetch so
that two processes never both fetch the same persona's link.
"""

from __future__ import annotations

import html as html_lib
import http.client
import ipaddress
import re
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from canary.config import Settings
from canary.models import (
    AuthorisedSender,
    ConfirmationAttempt,
    Delivery,
    Finding,
    Identity,
    Message,
    Study,
    StudySite,
    utcnow,
)
from canary.orgs import registrable_domain

Resolver = Callable[[str, int], Sequence[str]]

DEFAULT_TIMEOUT = 5.0
DEFAULT_MAX_BYTES = 256 * 1024
DEFAULT_PORTS = (80, 443)
WINDOW_DAYS = 14  # confirmation links expire; older mail is not looked at
USER_AGENT = "canarytrace-confirm/1 (+research study; one request per signup)"
CONFIRM_WORDS = (
    "confirm", "verif", "activat", "validat", "opt-in", "optin", "doubleopt", "double-opt",
    "bestaetig", "bestätig", "confirmer", "confirmar", "conferma", "bevestig",
)  # fmt: skip
AVOID_WORDS = (
    "unsubscribe", "opt-out", "optout", "abmeld", "desinscri", "désinscri", "cancel",
    "delete", "remove", "not-me", "notme", "wasnt", "report", "block",
)  # fmt: skip
_ANCHOR = re.compile(r"<a\b[^>]*?href\s*=\s*([\"'])(.*?)\1[^>]*>(.*?)</a\s*>", re.I | re.S)
_TAG = re.compile(r"<[^>]+>")
_TEXT_URL = re.compile(r"https?://[^\s<>\"'()\[\]]+", re.I)


@dataclass(frozen=True)
class FetchOutcome:
    """What happened to one confirmation link."""

    outcome: str  # fetched | refused | error
    status_code: int | None = None
    address: str | None = None
    bytes_read: int = 0
    detail: str = ""


# ---------------------------------------------------------------------- links


def extract_links(text: str, markup: str) -> list[tuple[str, str]]:
    """(url, link text) pairs from an HTML body's anchors and a text body's bare URLs."""
    links: list[tuple[str, str]] = []
    for _, href, inner in _ANCHOR.findall(markup or ""):
        label = html_lib.unescape(_TAG.sub(" ", inner))
        links.append((html_lib.unescape(href).strip(), " ".join(label.split())))
    for match in _TEXT_URL.finditer(text or ""):
        links.append((match.group(0).rstrip(".,;:!?"), ""))
    return list(dict.fromkeys(links))


def confirmation_links(text: str, markup: str, site_domains: Sequence[str]) -> list[str]:
    """Links that look like confirmation links and belong to one of ``site_domains``."""
    allowed = {registrable_domain(d) or d for d in site_domains}
    found: list[str] = []
    for url, label in extract_links(text, markup):
        haystack = f"{url} {label}".lower()
        if not any(w in haystack for w in CONFIRM_WORDS) or any(w in haystack for w in AVOID_WORDS):
            continue
        parts = urlsplit(url)
        if (
            parts.scheme.lower() in ("http", "https")
            and registrable_domain(parts.hostname) in allowed
        ):
            found.append(url)
    return list(dict.fromkeys(found))


# ---------------------------------------------------------------------- addresses


_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NUMERIC_HOST = re.compile(r"^[0-9a-fx.]+$", re.I)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries to a v4 host, if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]  # the client behind the relay
    return None


def literal_address(host: str) -> str | None:
    """The address ``host`` spells when it is a number rather than a name, else None.

    Besides dotted quads and IPv6, C libraries accept ``2130706433``, ``0177.0.0.1``,
    ``0x7f.1`` and ``127.1`` as 127.0.0.1; a resolver would pass them through, so they
    are vetted as the addresses they are.
    """
    bare = host.strip("[]")
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        pass
    if _NUMERIC_HOST.match(bare):
        try:
            return socket.inet_ntoa(socket.inet_aton(bare))
        except OSError:
            return None
    return None


def address_refusal(address: str) -> str | None:
    """Why connecting to ``address`` is not allowed, or None for a public address."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return f"{address!r} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            reason = address_refusal(str(embedded))
            return f"{address} embeds {reason}" if reason else None
    for attribute in ("loopback", "link_local", "multicast", "private", "reserved", "unspecified"):
        if getattr(ip, f"is_{attribute}"):
            return f"{address} is a {attribute.replace('_', '-')} address"
    if not ip.is_global:
        return f"{address} is not a public address"
    return None


def system_resolver(host: str, port: int) -> list[str]:
    """The host's addresses from the system resolver, in its order, without duplicates."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def resolver_for(settings: Settings) -> Resolver:
    """The resolver for hosts the service connects to (confirmation links, webhooks):
    the configured DNS servers when ``CANARY_DNS_SERVERS`` is set, like sender
    authentication, otherwise the system resolver."""
    if settings.dns_servers:
        return dns_resolver(settings.dns_servers, settings.dns_timeout)
    return system_resolver


def dns_resolver(nameservers: Sequence[tuple[str, int]], timeout: float = 5.0) -> Resolver:
    """A resolver asking the given DNS servers (``CANARY_DNS_SERVERS``) for A and AAAA."""
    import dns.exception
    import dns.nameserver
    import dns.resolver

    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [dns.nameserver.Do53Nameserver(h, p) for h, p in nameservers]
    resolver.timeout = resolver.lifetime = timeout

    def resolve(host: str, port: int) -> list[str]:
        addresses: list[str] = []
        for rdtype in ("A", "AAAA"):
            try:
                answer = resolver.resolve(host, rdtype, search=False, raise_on_no_answer=False)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                continue
            except dns.exception.DNSException as exc:
                raise OSError(f"DNS lookup of {host} failed: {exc}") from exc
            addresses += [r.address for r in answer.rrset or ()]  # type: ignore[attr-defined]
        return list(dict.fromkeys(addresses))

    return resolve


class _PinnedHTTP(http.client.HTTPConnection):
    """HTTP to a vetted address while the Host header names the site."""

    def __init__(self, host: str, address: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to a vetted address, with SNI and certificate checks for the site's name."""

    def __init__(self, host: str, address: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def fetch_once(
    url: str,
    *,
    resolve: Resolver = system_resolver,
    allow_private: bool = False,
    allowed_ports: Sequence[int] | None = DEFAULT_PORTS,
    timeout: float = DEFAULT_TIMEOUT,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> FetchOutcome:
    """GET ``url`` once under the rules of the module docstring; never raises for I/O."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return FetchOutcome("refused", detail="not an http(s) link")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        return FetchOutcome("refused", detail="bad port")
    if allowed_ports is not None and port not in allowed_ports:
        return FetchOutcome("refused", detail=f"port {port} not allowed")
    host = parts.hostname
    literal = literal_address(host)
    try:
        addresses = [literal] if literal else list(resolve(host, port))
    except (OSError, UnicodeError) as exc:
        return FetchOutcome("error", detail=f"cannot resolve {host}: {exc}")
    if not addresses:
        return FetchOutcome("error", detail=f"{host} has no address")
    if not allow_private:
        # Every address must be public: a name that also resolves privately is refused.
        for address in addresses:
            reason = address_refusal(address)
            if reason is not None:
                return FetchOutcome("refused", address=address, detail=reason)
    address = addresses[0]
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    cls = _PinnedHTTPS if scheme == "https" else _PinnedHTTP
    conn = cls(host, address, port, timeout)
    try:
        conn.request(
            "GET",
            target,
            headers={"User-Agent": USER_AGENT, "Accept": "text/html,*/*;q=0.8",
                     "Connection": "close"},
        )  # fmt: skip
        response = conn.getresponse()
        body = response.read(max_bytes + 1)
        details = []
        if len(body) > max_bytes:
            details.append(f"body cut at {max_bytes} bytes")
            body = body[:max_bytes]
        if 300 <= response.status < 400 and response.getheader("Location"):
            details.append(f"redirect to {response.getheader('Location')} not followed")
        return FetchOutcome(
            "fetched", response.status, address, len(body), "; ".join(details) or response.reason
        )
    except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
        return FetchOutcome("error", address=address, detail=f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()


# ---------------------------------------------------------------------- the job


@dataclass(frozen=True)
class Candidate:
    """An expected delivery from a study site's own domain, not yet confirmed."""

    delivery_id: int
    identity_id: int
    source_id: int
    message_id: int
    sender_org: str | None
    authenticated: bool


def _candidates(session: Session, limit: int) -> list[Candidate]:
    since = utcnow() - timedelta(days=WINDOW_DAYS * 2)  # bounds the scan; refined below
    rows = session.exec(
        select(Delivery, Finding, Identity)
        .join(Finding, col(Finding.delivery_id) == col(Delivery.id))
        .join(Identity, col(Identity.id) == col(Delivery.identity_id))
        .join(StudySite, col(StudySite.source_id) == col(Delivery.source_id))
        .join(Study, col(Study.id) == col(StudySite.study_id))
        .where(
            col(Study.auto_confirm).is_(True),
            col(Study.owner_id) == col(Identity.owner_id),
            col(Finding.superseded_at).is_(None),
            Finding.verdict == "expected",
            col(Delivery.received_at) >= since,
            ~col(Identity.id).in_(select(ConfirmationAttempt.identity_id)),
        )
        .order_by(col(Delivery.received_at), col(Delivery.id))
        .limit(limit)
    )
    out = []
    for delivery, finding, identity in rows:
        start = identity.given_at or identity.created_at
        received = delivery.received_at
        if start.tzinfo is None or received.tzinfo is None:
            start, received = start.replace(tzinfo=None), received.replace(tzinfo=None)
        if received - start > timedelta(days=WINDOW_DAYS):
            continue
        codes = {e.get("code") for e in finding.evidence}
        out.append(
            Candidate(delivery.id, identity.id, identity.source_id, delivery.message_id,  # type: ignore[arg-type]
                      finding.sender_org, "from_not_authenticated" not in codes)
        )  # fmt: skip
    return out


@dataclass(frozen=True)
class PendingLink:
    """A persona's confirmation link, found in a qualifying message and not yet fetched."""

    identity_id: int
    delivery_id: int
    url: str


def pending_links(session: Session, limit: int = 500) -> list[PendingLink]:
    """Confirmation links of opted-in studies that are due for their one fetch.

    Only deliveries with a current ``expected`` finding whose sender organisation is one
    of the site's *own* domains and was authenticated (not the unauthenticated first
    pass) are considered; the first of them with a confirmation link is used.
    """
    from canary.mailbox.parse import parse_message

    links_found: list[PendingLink] = []
    done: set[int] = set()
    own_cache: dict[int, list[str]] = {}
    for cand in _candidates(session, limit):
        if cand.identity_id in done or not cand.authenticated:
            continue
        if cand.source_id not in own_cache:
            own_cache[cand.source_id] = list(
                session.exec(
                    select(AuthorisedSender.domain).where(
                        AuthorisedSender.source_id == cand.source_id,
                        AuthorisedSender.reason == "own",
                    )
                )
            )
        own = own_cache[cand.source_id]
        if cand.sender_org not in {registrable_domain(d) or d for d in own}:
            continue
        message = session.get(Message, cand.message_id)
        if message is None:
            continue
        parsed = parse_message(message.raw)
        links = confirmation_links(parsed.text, parsed.html, own)
        if not links:
            continue
        links_found.append(PendingLink(cand.identity_id, cand.delivery_id, links[0][:4000]))
        done.add(cand.identity_id)
    return links_found


def confirm_link(
    session: Session,
    pending: PendingLink,
    *,
    resolve: Resolver = system_resolver,
    allow_private: bool = False,
    allowed_ports: Sequence[int] | None = DEFAULT_PORTS,
    timeout: float = DEFAULT_TIMEOUT,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> ConfirmationAttempt | None:
    """Fetch one pending link, at most once across every process sharing the database.

    The attempt row is committed (outcome ``fetching``) *before* the fetch: the unique
    identity column lets exactly one process reserve a persona's fetch, and a process
    that loses the race gets ``None`` without having sent anything. A crash during the
    fetch leaves the row at ``fetching``: the link may have been fetched, so it is never
    fetched again. Commits the caller's session.
    """
    attempt = ConfirmationAttempt(
        identity_id=pending.identity_id, delivery_id=pending.delivery_id, url=pending.url,
        outcome="fetching",
    )  # fmt: skip
    session.add(attempt)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()  # another process reserved this persona's fetch first
        return None
    result = fetch_once(
        pending.url, resolve=resolve, allow_private=allow_private,
        allowed_ports=allowed_ports, timeout=timeout, max_bytes=max_bytes,
    )  # fmt: skip
    attempt.outcome = result.outcome
    attempt.status_code = result.status_code
    attempt.address = result.address
    attempt.bytes_read = result.bytes_read
    attempt.detail = result.detail[:2000]
    attempt.attempted_at = utcnow()
    session.add(attempt)
    session.commit()
    return attempt


def run_confirmations(
    session: Session,
    *,
    resolve: Resolver = system_resolver,
    allow_private: bool = False,
    allowed_ports: Sequence[int] | None = DEFAULT_PORTS,
    timeout: float = DEFAULT_TIMEOUT,
    max_bytes: int = DEFAULT_MAX_BYTES,
    limit: int = 500,
) -> list[ConfirmationAttempt]:
    """Fetch the pending confirmation links of opted-in studies; returns the attempts made.

    Safe to run in several processes at once (the scheduler of each ``canary serve``,
    the CLI): each link is fetched by one of them only (:func:`confirm_link`).
    """
    attempts = []
    for pending in pending_links(session, limit):
        attempt = confirm_link(
            session, pending, resolve=resolve, allow_private=allow_private,
            allowed_ports=allowed_ports, timeout=timeout, max_bytes=max_bytes,
        )  # fmt: skip
        if attempt is not None:
            attempts.append(attempt)
    return attempts


def attempts_for_study(session: Session, study: Study) -> list[ConfirmationAttempt]:
    """The study's confirmation attempts, oldest first (for reports and the dashboard)."""
    return list(
        session.exec(
            select(ConfirmationAttempt)
            .join(Identity, col(Identity.id) == col(ConfirmationAttempt.identity_id))
            .join(StudySite, col(StudySite.source_id) == col(Identity.source_id))
            .where(StudySite.study_id == study.id)
            .order_by(col(ConfirmationAttempt.id))
        )
    )
