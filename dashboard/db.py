"""Database calls from request handlers, off the event loop.

The store is synchronous (SQLAlchemy). Handlers run each unit of work in a worker
thread inside one transaction, so a slow query never stalls the SMTP server or other
requests sharing the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from sqlmodel import Session

from canary.store import Store

T = TypeVar("T")


async def run(store: Store, work: Callable[[Session], T]) -> T:
    """Run ``work(session)`` in a thread, committing on success."""

    def unit() -> T:
        with store.session() as session:
            return work(session)

    return await asyncio.to_thread(unit)
