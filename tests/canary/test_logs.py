"""CANARY_LOG_FORMAT=json: one JSON object per line."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from canary.config import Settings
from canary.logs import JsonFormatter, formatter


def test_json_lines_carry_level_logger_message_and_extras() -> None:
    record = logging.LogRecord("canary.test", logging.WARNING, __file__, 1, "hi %s", ("x",), None)
    record.message_id = 42
    line = JsonFormatter().format(record)
    data = json.loads(line)
    assert data["level"] == "WARNING" and data["logger"] == "canary.test"
    assert data["message"] == "hi x" and data["message_id"] == 42
    assert data["time"].endswith("+00:00")
    try:
        raise ValueError("boom")
    except ValueError:
        record.exc_info = sys.exc_info()
    assert "ValueError: boom" in json.loads(JsonFormatter().format(record))["exception"]
    assert isinstance(formatter(Settings(log_format="json")), JsonFormatter)
    assert not isinstance(formatter(Settings()), JsonFormatter)


def test_the_cli_logs_json_when_asked(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "canary", "-v", "source", "list"],
        env={**os.environ, "CANARY_DATA_DIR": str(tmp_path), "CANARY_LOG_FORMAT": "json"},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, "verbose mode logs something"
    assert all(json.loads(line)["level"] for line in lines)
