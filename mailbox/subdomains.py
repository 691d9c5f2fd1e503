"""The claimed catch-all subdomains, as the SMTP server sees them at RCPT time.

Looking each recipient up in the database would put a query on the path of every RCPT,
most of them spam. The set is small and changes rarely, so it is cached and read again
only when a subdomain of a canary domain is not in it and the copy is older than
``max_age`` seconds: a subdomain claimed a moment ago is accepted at once, while a
dictionary attack on random subdomains costs at most one query per ``max_age``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from sqlalchemy.engine import Engine
from sqlmodel import Session

from canary.catchall import claimed_domains

log = logging.getLogger(__name__)


class ClaimedSubdomains:
    """A cached view of :func:`canary.catchall.claimed_domains` for the SMTP handler."""

    def __init__(self, engine: Engine, canary_domains: Iterable[str], max_age: float = 5.0):
        self.engine = engine
        self.parents = tuple("." + d.lower().rstrip(".") for d in canary_domains)
        self.max_age = max_age
        self._domains: frozenset[str] = frozenset()
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()

    def _load(self) -> frozenset[str]:
        with Session(self.engine) as session:
            return frozenset(claimed_domains(session))

    async def holds(self, domain: str) -> bool | None:
        """True when ``domain`` (lower case) is a claimed catch-all subdomain; None when
        that cannot be told because the database could not be read."""
        if domain in self._domains:
            return True
        if not domain.endswith(self.parents):
            return False  # not under a canary domain: no need to ask the database
        loop = asyncio.get_running_loop()
        async with self._lock:
            if loop.time() - self._loaded_at >= self.max_age:
                try:
                    self._domains = await asyncio.to_thread(self._load)
                except Exception as exc:  # the database is down: the sender should retry
                    log.warning("catch-all subdomains not reloaded: %s", exc)
                    return None
                self._loaded_at = loop.time()
        return domain in self._domains
