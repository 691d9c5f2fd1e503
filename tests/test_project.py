"""Promises about the project itself: packaging, the README and CI agree."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_stdlib_mailbox_is_not_shadowed_from_the_repository_root() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import aiosmtpd.handlers, mailbox; mailbox.Maildir"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_mailbox_and_dashboard_install_under_canary() -> None:
    import canary.dashboard
    import canary.mailbox

    assert Path(canary.mailbox.__path__[0]).resolve() == ROOT / "mailbox"
    assert Path(canary.dashboard.__path__[0]).resolve() == ROOT / "dashboard"


def _readme_block_after(heading: str) -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split(heading, 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, f"no shell block after {heading!r}"
    return match.group(1).strip()


def test_ci_runs_exactly_the_readme_test_command() -> None:
    command = _readme_block_after("## Run the tests")
    ci = (ROOT / ".ci" / "run").read_text()
    assert command in ci.splitlines()


def test_readme_start_command_names_a_real_entry_point() -> None:
    command = _readme_block_after("## Start it")
    assert "pip install -e ." in command and "canary serve" in command
