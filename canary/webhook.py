"""Signed webhook POSTs for alerts (standard library HTTP, run in a worker thread).

Every request carries ``X-Canary-Timestamp`` (Unix seconds) and
``X-Canary-Signature: sha256=<hex>``, the HMAC-SHA256 with the channel's secret of
``<timestamp>.<body>`` — the exact bytes sent. A receiver recomputes it (see
:func:`verify`) and rejects old timestamps, so a captured request cannot be replayed
later. ``X-Canary-Delivery`` is the alert id: the same alert retried keeps it, so a
receiver can drop duplicates.

Like confirmation fetches (:mod:`canary.confirm`), the target host is resolved first and
every address must be public unless the operator allows private ones
(``CANARY_WEBHOOK_ALLOW_PRIVATE``), and the connection goes to the vetted address: a user
cannot make the server call services on its own network. Redirects are not followed.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import secrets
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from canary.confirm import Resolver, _PinnedHTTP, _PinnedHTTPS, address_refusal, system_resolver

SIGNATURE_HEADER = "X-Canary-Signature"
TIMESTAMP_HEADER = "X-Canary-Timestamp"
USER_AGENT = "canarytrace-webhook/1"
TIMEOUT = 15.0
# Client errors that retrying can fix (timeouts, rate limits); other 4xx are final.
RETRYABLE_4XX = frozenset({408, 409, 425, 429})


def new_secret() -> str:
    """A fresh signing secret for a webhook channel."""
    return secrets.token_hex(32)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    secret: str, timestamp: str, body: bytes, signature: str, *, now: float | None = None,
    tolerance: float = 300.0,
) -> bool:  # fmt: skip
    """What a receiver does: check the signature and that the timestamp is recent."""
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - sent) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, sent, body), signature)


def validate_url(url: str) -> str:
    """``url`` if it is an http(s) URL with a host; raises ValueError otherwise."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError("a webhook must be an http:// or https:// URL")
    if parts.username or parts.password:
        raise ValueError("put no credentials in the webhook URL; the signature authenticates")
    return url


@dataclass(frozen=True)
class PostResult:
    """What happened to one POST: ``ok``; or an error, ``permanent`` when retrying cannot help."""

    ok: bool
    status: int | None = None
    error: str = ""
    permanent: bool = False


def post(
    url: str,
    body: bytes,
    secret: str,
    *,
    delivery_id: str = "",
    event: str = "",
    allow_private: bool = False,
    resolve: Resolver = system_resolver,
    timeout: float = TIMEOUT,
    now: float | None = None,
) -> PostResult:
    """POST ``body`` (JSON) to ``url``, signed with ``secret``; never raises for I/O."""
    try:
        validate_url(url)
    except ValueError as exc:
        return PostResult(False, error=str(exc), permanent=True)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    try:
        port = parts.port or (443 if scheme == "https" else 80)
        addresses = list(resolve(host, port))
    except (OSError, UnicodeError, ValueError) as exc:
        return PostResult(False, error=f"cannot resolve {host}: {exc}")
    if not addresses:
        return PostResult(False, error=f"{host} has no address")
    if not allow_private:
        for address in addresses:
            reason = address_refusal(address)
            if reason is not None:
                return PostResult(False, error=f"refused: {reason}", permanent=True)
    timestamp = int(time.time() if now is None else now)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, timestamp, body),
        "X-Canary-Delivery": delivery_id,
        "X-Canary-Event": event,
        "Connection": "close",
    }
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    cls = _PinnedHTTPS if scheme == "https" else _PinnedHTTP
    conn = cls(host, addresses[0], port, timeout)
    try:
        conn.request("POST", target, body=body, headers=headers)
        response = conn.getresponse()
        response.read(65536)  # drain a little; the answer's content is not used
        status = response.status
    except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
        return PostResult(False, error=f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()
    if 200 <= status < 300:
        return PostResult(True, status)
    permanent = 400 <= status < 500 and status not in RETRYABLE_4XX
    return PostResult(False, status, f"HTTP {status} {response.reason}".strip(), permanent)
