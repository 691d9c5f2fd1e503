"""Outgoing mail through the relay the operator configures (aiosmtplib).

canarytrace never delivers mail to the internet itself: alerts, forwarded messages and
verification mails all go to ``CANARY_RELAY_HOST``, which does the delivering (and has
the reputation, SPF and DKIM for it). Recipients are always chosen by the callers from
verified addresses, so the relay can never be used to reach third parties.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import aiosmtplib

from canary.config import Settings
from canary.errors import ConfigError
from canary.models import utcnow

TIMEOUT = 60.0


class RelayError(Exception):
    """The relay did not take a message. ``permanent`` for a 5xx about sender,
    recipient or content (retrying cannot help); otherwise try again later."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def require_relay(settings: Settings) -> str:
    """The relay host; raises ConfigError when none is configured."""
    if not settings.relay_host:
        raise ConfigError("CANARY_RELAY_HOST is not set: no relay to send mail through")
    return settings.relay_host


def plain_email(settings: Settings, to: str, subject: str, text: str) -> EmailMessage:
    """A short text mail from ``CANARY_ALERT_FROM`` (alerts, digests, verification)."""
    message = EmailMessage()
    message["From"] = f"canarytrace <{settings.resolved_alert_from}>"
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = make_msgid(domain=settings.default_domain or "localhost")
    # RFC 3834: no vacation auto-replies to a machine.
    message["Auto-Submitted"] = "auto-generated"
    if text.isascii() and all(len(line) <= 998 for line in text.splitlines()):
        # Plain 7bit keeps long links whole (quoted-printable would break them at 76).
        message.set_content(text, cte="7bit")
    else:
        message.set_content(text)
    return message


async def send(
    settings: Settings,
    message: EmailMessage | bytes,
    *,
    recipients: list[str],
    sender: str | None = None,
) -> None:
    """Hand ``message`` to the relay for ``recipients``; raises RelayError or ConfigError.

    The envelope sender defaults to the bounce address on the first canary domain, so
    bounces come back to canarytrace rather than to the original sender of the mail.
    """
    host = require_relay(settings)
    implicit_tls = settings.relay_port == 465
    try:
        await aiosmtplib.send(
            message,
            sender=sender or settings.bounce_address,
            recipients=recipients,
            hostname=host,
            port=settings.relay_port,
            username=settings.relay_username,
            password=settings.relay_password if settings.relay_username else None,
            use_tls=implicit_tls,
            start_tls=settings.relay_starttls and not implicit_tls,
            timeout=TIMEOUT,
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        codes = [r.code for r in exc.recipients]
        raise RelayError(
            "relay refused the recipient: "
            + "; ".join(f"{r.code} {r.message}" for r in exc.recipients),
            permanent=all(code >= 500 for code in codes),
        ) from None
    except (aiosmtplib.SMTPSenderRefused, aiosmtplib.SMTPDataError) as exc:
        raise RelayError(f"relay refused: {exc.code} {exc.message}", exc.code >= 500) from None
    except aiosmtplib.SMTPResponseException as exc:
        # Authentication and other replies: a configuration matter, retried after a fix.
        raise RelayError(f"relay answered {exc.code} {exc.message}") from None
    except (aiosmtplib.SMTPException, OSError) as exc:
        raise RelayError(f"relay unreachable: {type(exc).__name__}: {exc}") from None
