"""The ``canary`` command, run as a user runs it: a separate process, text and JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

Run = Callable[..., subprocess.CompletedProcess]


@pytest.fixture
def canary(tmp_path: Path, db_url: str) -> Run:
    """Run ``canary ARGS`` against the test database; returns the finished process."""
    env = {
        **os.environ,
        "CANARY_DATA_DIR": str(tmp_path / "data"),
        "CANARY_DATABASE_URL": db_url,
        "CANARY_DOMAINS": "canary.test",
    }

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "canary", *args],
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run


def ok_json(result: subprocess.CompletedProcess):
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_new_user_creates_a_source_and_identities_and_traces_them(canary: Run) -> None:
    source = ok_json(canary("source", "add", "Shop X", "--domain", "shopx.com", "--json"))
    assert source["authorised_senders"] == ["shopx.com"]
    (identity,) = ok_json(canary("identity", "new", "Shop X", "--json"))
    assert identity["alias"].endswith("@canary.test")
    many = ok_json(canary("identity", "new", "shop-x", "--count", "25", "--json"))
    assert len({i["alias"] for i in many}) == 25

    by_address = ok_json(canary("trace", identity["alias"].upper(), "--json"))
    assert by_address["matches"][0]["source"]["name"] == "Shop X"
    misspelt = identity["display_name"].replace(" ", "  ").lower()[:-1]
    by_name = ok_json(canary("trace", misspelt, "--json"))
    assert by_name["matches"][0]["identity"]["id"] == identity["id"]

    listing = ok_json(canary("source", "list", "--json"))
    assert listing[0]["identities"] == 26

    text = canary("identity", "new", "Shop X", "--real-name", "Jane Doe")
    assert text.returncode == 0 and "email:" in text.stdout and "Jane" in text.stdout


def test_retire_and_allow(canary: Run) -> None:
    canary("source", "add", "Shop X")
    (identity,) = ok_json(canary("identity", "new", "Shop X", "--json"))
    retired = ok_json(canary("identity", "retire", identity["alias"], "--json"))
    assert retired["retired_at"]
    allowed = ok_json(canary("source", "allow", "Shop X", "sendgrid.net", "--json"))
    assert allowed["authorised_senders"] == ["sendgrid.net"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("identity", "new", "Nope"), "no source named 'Nope'"),
        (("source", "add", "Bad", "--domain", "not a domain"), "bad domain"),
        (("identity", "retire", "nobody@canary.test"), "no identity"),
        (("identity", "new", "Shop X", "--style", "emoji"), "invalid choice"),
        (("identity", "new", "Shop X", "--count", "0"), "count must be"),
        (("identity", "new", "Shop X", "--domain", "other.test"), "not a canary domain"),
        (("user", "add", "x", "--password", "short"), "password too short"),
        (("token", "new", "--user", "ghost"), "no user named 'ghost'"),
    ],
)
def test_errors_are_one_clear_line_and_non_zero(canary: Run, args, message: str) -> None:
    canary("source", "add", "Shop X")
    result = canary(*args)
    assert result.returncode != 0
    assert message in result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "Traceback" not in result.stderr


def test_duplicate_source_is_refused(canary: Run) -> None:
    assert canary("source", "add", "Shop X").returncode == 0
    result = canary("source", "add", "shop x")
    assert result.returncode == 1
    assert "already exists" in result.stderr


def test_trace_without_a_match_exits_1(canary: Run) -> None:
    result = canary("trace", "nobody@canary.test")
    assert result.returncode == 1
    assert "no source got" in result.stdout


def test_users_and_tokens(canary: Run) -> None:
    user = ok_json(canary("user", "add", "bob", "--password", "long enough", "--json"))
    assert user["name"] == "bob" and not user["is_admin"]
    token = ok_json(canary("token", "new", "--user", "bob", "--json"))
    assert token["token"].startswith("ct_") and token["user"] == "bob"
    revoked = ok_json(canary("token", "revoke", str(token["id"]), "--user", "bob", "--json"))
    assert revoked["revoked_at"]
    names = [u["name"] for u in ok_json(canary("user", "list", "--json"))]
    assert names == ["bob"]


def test_db_upgrade_reports_what_it_did(canary: Run) -> None:
    first = ok_json(canary("db", "upgrade", "--json"))
    assert first["from"] is None and first["to"]
    again = ok_json(canary("db", "upgrade", "--json"))
    assert again["from"] == again["to"] == first["to"]
    status = ok_json(canary("db", "status", "--json"))
    assert status["up_to_date"] is True


def test_catch_all_subdomains_and_tidying_sources_from_the_command_line(canary: Run) -> None:
    claim = ok_json(canary("catchall", "claim", "Alice.canary.test", "--json"))
    assert claim["domain"] == "alice.canary.test"
    assert [c["domain"] for c in ok_json(canary("catchall", "list", "--json"))] == [
        "alice.canary.test"
    ]
    refused = canary("catchall", "claim", "alice.other.test")
    assert refused.returncode != 0 and "under a canary domain" in refused.stderr

    ok_json(canary("source", "add", "shopx", "--domain", "shopx.test", "--json"))
    ok_json(canary("source", "add", "shopx2", "--domain", "shopx.test", "--json"))
    merged = ok_json(canary("source", "merge", "shopx2", "shopx", "--json"))
    assert merged["name"] == "shopx" and merged["authorised_senders"] == ["shopx.test"]
    renamed = ok_json(canary("source", "rename", "shopx", "Shop X", "--json"))
    assert renamed["slug"] == "shop-x"
    cleared = ok_json(canary("source", "disallow", "Shop X", "shopx.test", "--json"))
    assert cleared["authorised_senders"] == []
    missing = canary("source", "disallow", "Shop X", "shopx.test")
    assert missing.returncode != 0 and "not an authorised sender" in missing.stderr

    released = canary("catchall", "release", "alice.canary.test")
    assert released.returncode == 0 and "released" in released.stdout
    assert ok_json(canary("catchall", "list", "--json")) == []
