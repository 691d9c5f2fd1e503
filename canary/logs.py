"""Log output: human text by default, or one JSON object per line (``CANARY_LOG_FORMAT``).

JSON lines suit log collectors (Loki, Elasticsearch, journald with a JSON parser): each
has ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, ``exception`` when
there is one, and any ``extra={...}`` fields the call passed.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from canary.config import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Attributes every LogRecord has; anything else came in through ``extra``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                data[key] = value
        return json.dumps(data, default=str, ensure_ascii=False)


def formatter(settings: Settings) -> logging.Formatter:
    """The formatter ``CANARY_LOG_FORMAT`` asks for."""
    return JsonFormatter() if settings.log_format == "json" else logging.Formatter(TEXT_FORMAT)


def apply_format(settings: Settings, logger: logging.Logger | None = None) -> None:
    """Give every handler of ``logger`` (default: the root logger) the configured format."""
    target = logger or logging.getLogger()
    chosen = formatter(settings)
    for handler in target.handlers:
        handler.setFormatter(chosen)
