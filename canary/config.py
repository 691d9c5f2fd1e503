"""The one configuration object, built from ``CANARY_*`` environment variables and CLI flags.

``Settings.from_env`` is called once by the command line (the composition root) and the
result is passed down explicitly; nothing else in the package reads the environment.
Every field carries its variable name and a description, and the README documents each
one (a test keeps the two in step).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from canary.errors import ConfigError
from canary.setting_values import PARSERS, parse_domain

__all__ = ["PREFIX", "Settings", "documented_settings", "env_name", "parse_domain"]

PREFIX = "CANARY_"


def _setting(default: Any, help: str, parse: str = "str") -> Any:
    # Secrets stay out of repr(), so a logged Settings never shows them.
    hidden = parse in ("secret", "password")
    return field(default=default, repr=not hidden, metadata={"help": help, "parse": parse})


def default_data_dir() -> Path:
    """The per-user data directory (XDG on Linux), used when ``CANARY_DATA_DIR`` is unset."""
    import platformdirs

    return Path(platformdirs.user_data_dir("canarytrace", appauthor=False))


@dataclass(frozen=True)
class Settings:
    """Every runtime setting of canarytrace. Build with :meth:`from_env`."""

    data_dir: Path | None = _setting(
        None,
        "Directory for the embedded SQLite database and other state; created on first use. "
        "Default: the per-user data directory (e.g. ~/.local/share/canarytrace).",
        "path",
    )
    database_url: str | None = _setting(
        None,
        "SQLAlchemy URL of the database. Default: SQLite file canary.db in the data "
        "directory. PostgreSQL: postgresql+psycopg://user@host/dbname.",
        "url",
    )
    domains: tuple[str, ...] = _setting(
        (),
        "Comma-separated canary domains this service receives mail for "
        "(e.g. canary.example,leaks.example).",
        "domains",
    )
    smtp_host: str = _setting("127.0.0.1", "Address the SMTP listener binds to.", "host")
    smtp_port: int = _setting(2525, "Port of the SMTP listener (25 on a real MX).", "port")
    smtp_hostname: str | None = _setting(
        None, "Host name announced in the SMTP greeting. Default: the machine's FQDN.", "str"
    )
    smtp_max_message_bytes: int = _setting(
        26_214_400, "Largest message accepted, in bytes; larger ones get 552.", "positive_int"
    )
    smtp_max_recipients: int = _setting(
        100, "Most recipients accepted in one message; more get 452.", "positive_int"
    )
    smtp_timeout: float = _setting(
        60.0, "Seconds a client may stay silent before the connection is closed.", "positive_float"
    )
    smtp_max_connections: int = _setting(
        1000,
        "Most SMTP connections open at once; more are answered 421 4.7.0 and closed.",
        "positive_int",
    )
    smtp_max_connections_per_ip: int = _setting(
        50,
        "Most SMTP connections open at once from one client address; more are answered "
        "421 4.7.0 and closed.",
        "positive_int",
    )
    smtp_processes: int = _setting(
        1,
        "SMTP processes canary serve runs on the one listening port (SO_REUSEPORT, "
        "Linux); each has its own intake and shares the database. The first also runs "
        "analysis, dashboard and scheduler.",
        "positive_int",
    )
    smtp_tls_cert: Path | None = _setting(
        None, "PEM certificate chain for STARTTLS; STARTTLS is offered when set.", "path"
    )
    smtp_tls_key: Path | None = _setting(
        None, "PEM private key for STARTTLS (with CANARY_SMTP_TLS_CERT).", "path"
    )
    http_host: str = _setting("127.0.0.1", "Address the dashboard and API bind to.", "host")
    http_port: int = _setting(8025, "Port of the dashboard and API.", "port")
    http_processes: int = _setting(
        1,
        "Dashboard processes canary serve runs on the one HTTP port (SO_REUSEPORT, "
        "Linux), so pages and API calls are served on several cores; the first process "
        "also runs SMTP, analysis and scheduler.",
        "positive_int",
    )
    secret_key: str | None = _setting(
        None,
        "Key that signs dashboard session cookies; set the same value on every "
        "dashboard process. Default: a random key kept in the data directory.",
        "secret",
    )
    http_secure_cookies: bool = _setting(
        False,
        "Mark session cookies Secure even on plain HTTP, for TLS that ends at a "
        "reverse proxy (they are always Secure on a direct TLS connection).",
        "bool",
    )
    dns_servers: tuple[tuple[str, int], ...] = _setting(
        (),
        "Comma-separated DNS servers as host[:port] for every lookup the service makes: "
        "sender authentication, confirmation links, webhook targets. "
        "Default: the system resolver.",
        "dns_servers",
    )
    dns_timeout: float = _setting(
        5.0,
        "Seconds to wait for one DNS answer before treating the lookup as a temporary failure.",
        "positive_float",
    )
    identity_style: str = _setting(
        "token", "Default alias style for new identities: token, words or slug.", "style"
    )
    faker_locale: str = _setting(
        "en_US", "Faker locale for synthetic personas (e.g. de_DE, fr_FR).", "str"
    )
    catchall_daily_limit: int = _setting(
        100,
        "Most identities one user's catch-all subdomains create a day; mail to further "
        "new local parts is kept as unattributed.",
        "positive_int",
    )
    log_level: str = _setting("INFO", "Logging level: DEBUG, INFO, WARNING or ERROR.", "log_level")
    log_format: str = _setting(
        "text", "Log line format: text, or json (one JSON object per line).", "log_format"
    )
    relay_host: str | None = _setting(
        None,
        "SMTP relay for email alerts, forwarding and verification mails. Unset: no mail "
        "is sent out (webhook alerts still work).",
        "host",
    )
    relay_port: int = _setting(587, "Port of the SMTP relay (465 means implicit TLS).", "port")
    relay_username: str | None = _setting(
        None, "User name for the relay (AUTH); unset: no authentication.", "str"
    )
    relay_password: str | None = _setting(
        None, "Password for the relay (with CANARY_RELAY_USERNAME).", "password"
    )
    relay_starttls: bool = _setting(
        True,
        "Require STARTTLS with the relay (set false only for a relay on this host or a "
        "private network).",
        "bool",
    )
    public_url: str | None = _setting(
        None,
        "The dashboard's public URL (e.g. https://canary.example), for links in alerts and "
        "verification mails. Default: http://CANARY_HTTP_HOST:CANARY_HTTP_PORT.",
        "http_url",
    )
    alert_from: str | None = _setting(
        None,
        "From address of alerts, forwarded mail and verification mails. Default: "
        "postmaster@ the first canary domain.",
        "address",
    )
    webhook_allow_private: bool = _setting(
        False,
        "Allow alert webhooks to private, loopback and link-local addresses (by default "
        "only public addresses, so a user cannot make the server call internal services).",
        "bool",
    )
    retention_days: int | None = _setting(
        None,
        "Days a message's raw bytes are kept; older ones are purged daily (envelope, "
        "findings and evidence stay). Default: keep forever.",
        "positive_int",
    )
    retention_days_by_verdict: tuple[tuple[str, int], ...] = _setting(
        (),
        "Per-verdict retention in days overriding CANARY_RETENTION_DAYS, e.g. "
        "unattributed=30,breach=365. A verdict named here is purged on time even when an "
        "open or confirmed incident rests on the message.",
        "verdict_days",
    )
    metrics_token: str | None = _setting(
        None,
        "Bearer token that Prometheus must send to scrape /metrics (at least 32 characters). "
        "Unset: /metrics answers only direct connections from this machine, unless "
        "CANARY_METRICS_PUBLIC is true.",
        "secret",
    )
    metrics_public: bool = _setting(
        False, "Serve /metrics to anyone without a token (behind a trusted network only).", "bool"
    )
    confirm_interval: int = _setting(
        300,
        "Seconds between runs of the job that fetches the confirmation links of studies "
        "opted in to automatic confirmation (each link is fetched at most once).",
        "positive_int",
    )

    # ------------------------------------------------------------------ derived values

    @property
    def resolved_data_dir(self) -> Path:
        """The data directory, falling back to the per-user default."""
        return self.data_dir if self.data_dir is not None else default_data_dir()

    @property
    def resolved_database_url(self) -> str:
        """The database URL, falling back to SQLite in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.resolved_data_dir / 'canary.db'}"

    @property
    def default_domain(self) -> str | None:
        """The canary domain new identities get when none is named."""
        return self.domains[0] if self.domains else None

    @property
    def resolved_public_url(self) -> str:
        """The dashboard's public URL without a trailing slash, for links in mail."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.http_host}]" if ":" in self.http_host else self.http_host
        return f"http://{host}:{self.http_port}"

    @property
    def resolved_alert_from(self) -> str:
        """The From address of outgoing mail (alerts, forwards, verification)."""
        if self.alert_from:
            return self.alert_from
        return f"postmaster@{self.default_domain or 'localhost'}"

    @property
    def bounce_address(self) -> str:
        """Envelope sender of outgoing mail: bounces come back to the canary domain."""
        return f"bounces@{self.default_domain or 'localhost'}"

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed (values already parsed)."""
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: str | None
    ) -> Settings:
        """Read ``CANARY_*`` variables; ``overrides`` (raw strings, e.g. CLI flags) win.

        Raises :class:`ConfigError` naming the variable when a value is invalid.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            name = env_name(f.name)
            raw = overrides.get(f.name)
            if raw is None:
                raw = env.get(name)
            if raw is None or raw == "":
                continue
            parser = PARSERS[f.metadata["parse"]]
            try:
                values[f.name] = parser(raw.strip())
            except ValueError as exc:
                hidden = f.metadata["parse"] in ("secret", "password")
                shown = "(hidden)" if hidden else repr(raw)
                raise ConfigError(f"{name}={shown}: {exc}") from None
        if bool(values.get("smtp_tls_cert")) != bool(values.get("smtp_tls_key")):
            raise ConfigError("CANARY_SMTP_TLS_CERT and CANARY_SMTP_TLS_KEY must be set together")
        return cls(**values)


def env_name(field_name: str) -> str:
    """The environment variable that sets a field."""
    return PREFIX + field_name.upper()


def documented_settings() -> list[tuple[str, str, Any]]:
    """(variable, description, default) for every setting, for docs and ``--help``."""
    return [(env_name(f.name), f.metadata["help"], f.default) for f in dataclasses.fields(Settings)]
