"""Settings come from CANARY_* variables; bad values name the variable."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from canary.config import Settings, documented_settings
from canary.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_need_no_configuration(tmp_path: Path) -> None:
    settings = Settings.from_env({"CANARY_DATA_DIR": str(tmp_path)})
    assert (settings.smtp_host, settings.smtp_port) == ("127.0.0.1", 2525)
    assert (settings.http_host, settings.http_port) == ("127.0.0.1", 8025)
    assert settings.dns_servers == ()
    assert settings.resolved_database_url == f"sqlite:///{tmp_path / 'canary.db'}"


def test_default_data_dir_is_per_user() -> None:
    settings = Settings.from_env({})
    assert "canarytrace" in str(settings.resolved_data_dir)
    assert str(settings.resolved_data_dir).startswith(str(Path.home()))


def test_values_are_parsed() -> None:
    settings = Settings.from_env(
        {
            "CANARY_DOMAINS": "Canary.Example, leaks.example.,canary.example",
            "CANARY_SMTP_PORT": "25",
            "CANARY_DNS_SERVERS": "127.0.0.1:5353, ::1, [::1]:54",
            "CANARY_DATABASE_URL": "postgresql+psycopg://canary@db/canary",
        }
    )
    assert settings.domains == ("canary.example", "leaks.example")
    assert settings.smtp_port == 25
    assert settings.dns_servers == (("127.0.0.1", 5353), ("::1", 53), ("::1", 54))
    assert settings.resolved_database_url == "postgresql+psycopg://canary@db/canary"


def test_flags_override_environment() -> None:
    settings = Settings.from_env({"CANARY_SMTP_PORT": "25"}, smtp_port="2526")
    assert settings.smtp_port == 2526


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CANARY_SMTP_PORT", "smtp"),
        ("CANARY_HTTP_PORT", "70000"),
        ("CANARY_DOMAINS", "not a domain"),
        ("CANARY_DOMAINS", "localhost"),
        ("CANARY_DNS_SERVERS", "dns.example"),
        ("CANARY_DATABASE_URL", "mysql://x@y/z"),
        ("CANARY_DATABASE_URL", "::nonsense::"),
        ("CANARY_SMTP_MAX_MESSAGE_BYTES", "-1"),
        ("CANARY_DNS_TIMEOUT", "0"),
        ("CANARY_IDENTITY_STYLE", "emoji"),
        ("CANARY_SMTP_HOST", "not a host!"),
    ],
)
def test_invalid_values_name_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(variable)):
        Settings.from_env({variable: value})


def test_tls_certificate_and_key_go_together() -> None:
    with pytest.raises(ConfigError, match="CANARY_SMTP_TLS_KEY"):
        Settings.from_env({"CANARY_SMTP_TLS_CERT": "/etc/cert.pem"})


def test_cli_reports_a_bad_setting_in_one_line_and_exits_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "canary", "source", "list"],
        env={"CANARY_DATA_DIR": str(tmp_path), "CANARY_SMTP_PORT": "nope", "PATH": ""},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "CANARY_SMTP_PORT" in result.stderr


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [name for name, _, _ in documented_settings() if f"`{name}`" not in readme]
    assert not missing, f"README.md does not document {missing}"


def test_secrets_are_validated_and_never_shown() -> None:
    with pytest.raises(ConfigError) as error:
        Settings.from_env({"CANARY_SECRET_KEY": "short-secret"})
    assert "short-secret" not in str(error.value)
    settings = Settings.from_env(
        {"CANARY_SECRET_KEY": "k" * 40, "CANARY_HTTP_SECURE_COOKIES": "yes"}
    )
    assert settings.secret_key == "k" * 40 and settings.http_secure_cookies is True
    assert "k" * 40 not in repr(settings)
