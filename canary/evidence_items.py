"""Evidence items: the machine-readable facts behind every finding (not evidence packs).

An item is a code from a fixed vocabulary (``dkim_pass``, ``dmarc_fail``,
``address_in_third_party_url`` ...) plus free detail text (``d=brokerx.test``,
``p=reject``). Stored on ``Finding.evidence`` as ``{"code": ..., "detail": ...}`` and
shown to people as ``"dkim_pass d=brokerx.test"`` (a bare count as
``"first_mail_days_after_issue=143"``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, order=True)
class Evidence:
    """One fact supporting a verdict: a vocabulary ``code`` and a ``detail`` string."""

    code: str
    detail: str = ""

    def __str__(self) -> str:
        # Counts read as one token, as in the design brief: same_campaign_sources=5.
        if self.detail.isdigit():
            return f"{self.code}={self.detail}"
        return f"{self.code} {self.detail}".strip()

    def as_dict(self) -> dict[str, str]:
        """The JSON form stored on ``Finding.evidence``."""
        return {"code": self.code, "detail": self.detail}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Evidence:
        """Read back the JSON form."""
        return cls(str(data.get("code", "")), str(data.get("detail", "") or ""))


def evidence_json(items: Iterable[Evidence]) -> list[dict[str, str]]:
    """A list of items in the JSON form stored on ``Finding.evidence``."""
    return [item.as_dict() for item in items]


def details(detail_pairs: Mapping[str, object]) -> str:
    """``key=value`` pairs joined by spaces, skipping empty values (``d=x s=y``)."""
    return " ".join(f"{k}={v}" for k, v in detail_pairs.items() if v not in (None, ""))
