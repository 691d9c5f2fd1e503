"""How the text of a ``CANARY_*`` variable (or a CLI flag) becomes a setting's value.

Each parser takes the raw string and returns the value or raises ``ValueError`` with a
message that completes "CANARY_X='...': "; :data:`PARSERS` maps the ``parse`` name a
field of :class:`canary.config.Settings` declares to its parser.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _parse_bool(raw: str) -> bool:
    value = raw.lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def _parse_secret(raw: str) -> str:
    if len(raw) < 32:
        raise ValueError("too short: use at least 32 random characters")
    return raw


def _parse_port(raw: str) -> int:
    try:
        port = int(raw)
    except ValueError:
        raise ValueError("not a port number") from None
    if not 0 <= port <= 65535:
        raise ValueError("port must be between 0 and 65535")
    return port


def _parse_positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValueError("not a whole number") from None
    if value <= 0:
        raise ValueError("must be greater than zero")
    return value


def _parse_positive_float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("not a number") from None
    if not value > 0:
        raise ValueError("must be greater than zero")
    return value


def _is_hostname(name: str) -> bool:
    labels = name.rstrip(".").split(".")
    return (
        bool(name)
        and len(name) <= 253
        and all(
            0 < len(label) <= 63
            and label[0] != "-"
            and label[-1] != "-"
            and all(c.isalnum() or c == "-" for c in label)
            for label in labels
        )
    )


def parse_domain(raw: str) -> str:
    """Validate and normalise one domain name (lower case, IDNA to ASCII)."""
    name = raw.strip().rstrip(".").lower()
    try:
        ascii_name = name.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError(f"{raw!r} is not a valid domain name") from None
    if "." not in ascii_name or not _is_hostname(ascii_name):
        raise ValueError(f"{raw!r} is not a valid domain name")
    return ascii_name


def _parse_domains(raw: str) -> tuple[str, ...]:
    domains: list[str] = []
    for part in raw.split(","):
        if part.strip():
            domain = parse_domain(part)
            if domain not in domains:
                domains.append(domain)
    if not domains:
        raise ValueError("no domain given")
    return tuple(domains)


def _parse_host(raw: str) -> str:
    try:
        ipaddress.ip_address(raw)
        return raw
    except ValueError:
        pass
    if raw == "localhost" or _is_hostname(raw):
        return raw
    raise ValueError("not an IP address or host name")


def _parse_dns_servers(raw: str) -> tuple[tuple[str, int], ...]:
    servers: list[tuple[str, int]] = []
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        host, port = part, 53
        if part.startswith("["):  # [v6]:port
            host, _, rest = part[1:].partition("]")
            if rest:
                port = _parse_port(rest.lstrip(":"))
        elif part.count(":") == 1:
            host, port_text = part.split(":")
            port = _parse_port(port_text)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"{part!r}: a DNS server must be an IP address") from None
        servers.append((host, port))
    if not servers:
        raise ValueError("no server given")
    return tuple(servers)


def _parse_url(raw: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(raw)
    except ArgumentError:
        raise ValueError("not a database URL (e.g. postgresql+psycopg://user@host/db)") from None
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise ValueError("only sqlite and postgresql databases are supported")
    return raw


def _parse_style(raw: str) -> str:
    from canary.identity import ALIAS_STYLES

    if raw not in ALIAS_STYLES:
        raise ValueError("must be one of " + ", ".join(ALIAS_STYLES))
    return raw


def _parse_log_level(raw: str) -> str:
    level = raw.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
    return level


def _parse_log_format(raw: str) -> str:
    value = raw.lower()
    if value not in ("text", "json"):
        raise ValueError("must be text or json")
    return value


def _parse_http_url(raw: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL")
    return raw.rstrip("/")


def _parse_address(raw: str) -> str:
    local, at, domain = raw.rpartition("@")
    if not at or not local or any(c in raw for c in " <>\r\n"):
        raise ValueError("must be a plain address like alerts@example.org")
    return f"{local}@{parse_domain(domain)}"


def _parse_password(raw: str) -> str:
    # A relay's password is chosen by its operator: no length rule, but kept out of repr.
    return raw


def _parse_verdict_days(raw: str) -> tuple[tuple[str, int], ...]:
    from canary.models import VERDICTS

    pairs: dict[str, int] = {}
    for part in raw.split(","):
        if not part.strip():
            continue
        verdict, eq, days = part.partition("=")
        verdict = verdict.strip()
        if not eq or verdict not in VERDICTS:
            raise ValueError(
                f"{part.strip()!r}: use verdict=days with a verdict among " + ", ".join(VERDICTS)
            )
        pairs[verdict] = _parse_positive_int(days.strip())
    if not pairs:
        raise ValueError("no verdict=days given")
    return tuple(sorted(pairs.items()))


PARSERS: dict[str, Callable[[str], Any]] = {
    "str": str,
    "bool": _parse_bool,
    "secret": _parse_secret,
    "path": lambda raw: Path(raw).expanduser(),
    "url": _parse_url,
    "domains": _parse_domains,
    "host": _parse_host,
    "port": _parse_port,
    "positive_int": _parse_positive_int,
    "positive_float": _parse_positive_float,
    "dns_servers": _parse_dns_servers,
    "style": _parse_style,
    "log_level": _parse_log_level,
    "log_format": _parse_log_format,
    "http_url": _parse_http_url,
    "address": _parse_address,
    "password": _parse_password,
    "verdict_days": _parse_verdict_days,
}
