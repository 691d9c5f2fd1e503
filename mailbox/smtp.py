"""The aiosmtpd handler of the canary domains: who may be a recipient, and storing DATA.

The handler only decides and stores. It never parses a message: the ``250`` after
DATA means "committed", and analysis happens afterwards in the worker.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from canary.mailbox.intake import IncomingMessage, Intake, delivery_kind
from canary.mailbox.subdomains import ClaimedSubdomains

from canary import metrics

log = logging.getLogger(__name__)

# Characters that only ever appear in a local part to ask a server to relay (the
# percent hack, UUCP bang paths, a quoted second address). No alias contains them.
_RELAY_TRICKS = ("%", "!", "@", '"', "\\")

RELAY_DENIED = "550 5.7.1 Relaying denied: not a canary domain"
TEMP_FAILURE = "451 4.3.0 Temporary failure storing the message, try again later"
TEMP_RECIPIENT_FAILURE = "451 4.3.0 Temporary failure checking the recipient, try again later"


def recipient_domain(address: str) -> str:
    """The domain of an envelope address, lower case, without a trailing dot.

    The last ``@`` separates the domain: a domain can never contain one, while a quoted
    local part can (``"a@b"@c``).
    """
    return address.rpartition("@")[2].strip().rstrip(".").lower()


def ascii_domain(domain: str) -> str | None:
    """``domain`` in the ASCII (A-label) form the canary domains are configured in.

    Only ASCII is lower-cased: ``str.lower`` also maps lookalikes such as the Kelvin
    sign to ``k``. A non-ASCII name counts only when IDNA turns it into real A-labels
    (``xn--``); a name that IDNA merely maps onto ASCII (full-width letters, the
    ideographic full stop) is a lookalike and never one of ours. None when not a name.
    """
    if domain.isascii():
        return domain.lower()
    try:
        encoded = domain.encode("idna").decode("ascii").lower()
    except (UnicodeError, ValueError):
        return None
    if not any(label.startswith("xn--") for label in encoded.split(".")):
        return None
    return encoded


class CanaryHandler:
    """aiosmtpd handler: accepts recipients on the canary domains and stores each message."""

    def __init__(
        self,
        domains: Iterable[str],
        intake: Intake,
        max_recipients: int,
        subdomains: ClaimedSubdomains | None = None,
    ) -> None:
        self.domains = frozenset(d.lower().rstrip(".") for d in domains)
        self.intake = intake
        self.max_recipients = max_recipients
        self.subdomains = subdomains

    def check_recipient(self, address: str, claimed: frozenset[str] = frozenset()) -> str | None:
        """The rejection reply for ``address``, or None when it may be a recipient.

        ``claimed`` holds catch-all subdomains accepted besides the canary domains.
        """
        local, at, _ = address.rpartition("@")
        if address.lower() == "postmaster":
            return None  # RFC 5321 section 4.1.1.3: <Postmaster> without a domain is ours
        if not at or not local:
            return "553 5.1.3 Recipient address must be local-part@domain"
        # Not recipient_domain(): its str.lower() would already have mapped lookalikes.
        domain = ascii_domain(address.rpartition("@")[2].strip().rstrip("."))
        if domain not in self.domains and domain not in claimed:
            return RELAY_DENIED
        if any(c in local for c in _RELAY_TRICKS):
            # Accepting user%other@canary would invite relay attempts even though
            # nothing is ever forwarded; no issued alias looks like this.
            return RELAY_DENIED
        return None

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        """Accept any sender (canaries want to hear from everyone); refuse NUL bytes."""
        if "\x00" in address:
            return "501 5.5.2 NUL byte in address"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        """Accept recipients on canary domains only; count them against the limit."""
        if "\x00" in address:
            return "501 5.5.2 NUL byte in address"
        rejection = self.check_recipient(address)
        if rejection == RELAY_DENIED and self.subdomains is not None:
            domain = recipient_domain(address)
            claimed = await self.subdomains.holds(domain)
            if claimed is None:
                return TEMP_RECIPIENT_FAILURE
            if claimed:
                rejection = self.check_recipient(address, frozenset({domain}))
        if rejection is not None:
            log.info("relay attempt from %s to %r refused", _peer_ip(session), address)
            metrics.inc("smtp_recipients_rejected_total", reason="relay")
            return rejection
        if len(envelope.rcpt_tos) >= self.max_recipients:
            metrics.inc("smtp_recipients_rejected_total", reason="too_many")
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        kind = delivery_kind(address)
        return "250 2.1.5 OK" if kind == "canary" else "250 2.1.5 OK (role mailbox)"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """Commit the raw bytes and envelope; ``250`` only after the commit."""
        raw = envelope.original_content
        if raw is None:  # decode_data is off, so this is a programming error
            raw = envelope.content if isinstance(envelope.content, bytes) else b""
        message = IncomingMessage(
            raw=bytes(raw),
            mail_from=envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos),
            peer_ip=_peer_ip(session),
            helo=session.host_name or "",
            tls=session.ssl is not None,
        )
        try:
            message_id = await self.intake.submit(message)
        except Exception as exc:
            log.warning("DATA from %s not stored: %s", message.peer_ip, exc)
            metrics.inc("smtp_messages_rejected_total", reason="store_unavailable")
            return TEMP_FAILURE
        metrics.inc("smtp_messages_received_total")
        return f"250 2.0.0 OK queued as {message_id}"

    async def handle_exception(self, error: Exception) -> str:
        """Any unexpected error: a temporary failure, so nothing accepted is ever lost."""
        log.exception("SMTP session error", exc_info=error)
        return "451 4.3.0 Temporary local error"


def _peer_ip(session: Any) -> str:
    peer = getattr(session, "peer", None)
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer or "")
