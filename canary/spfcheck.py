"""SPF evaluation (RFC 7208) with pyspf, every lookup answered by our resolver.

pyspf looks names up recursively (include:, a:, mx:) through its module-level
``spf.DNSLookup`` hook. That hook is replaced, once at import, by a dispatcher that
answers from the :class:`~canary.dns.BlockingResolver` set for the current thread in a
context variable; with none set it falls back to pyspf's own lookup, so other users of
pyspf in the process are unaffected. Evaluation runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import spf

from canary.dns import BlockingResolver, DnsTemporaryError


@dataclass(frozen=True)
class SpfResult:
    """The SPF result for one identity (``mailfrom`` or ``helo``) against the peer IP."""

    identity: str
    domain: str | None
    result: str
    """pass, fail, softfail, neutral, none, permerror or temperror (RFC 7208)."""
    explanation: str = ""


_SPF_RESOLVER: contextvars.ContextVar[BlockingResolver | None] = contextvars.ContextVar(
    "canary_spf_resolver", default=None
)
_PYSPF_LOOKUP: Callable[..., Any] = spf.DNSLookup


def _spf_dns(name: str, qtype: str, strict: Any = True, timeout: Any = None) -> list[Any]:
    """pyspf's DNS hook, answered by the resolver set for this thread (see module doc)."""
    blocking = _SPF_RESOLVER.get()
    if blocking is None:
        return _PYSPF_LOOKUP(name, qtype, strict, timeout)
    try:
        rdatas = blocking.lookup(name, "TXT" if qtype == "SPF" else qtype)
    except DnsTemporaryError as exc:
        raise spf.TempError(f"DNS {exc}") from exc
    out: list[Any] = []
    for r in rdatas:
        if qtype in ("A", "AAAA"):
            out.append(((name, qtype), r.address))  # type: ignore[attr-defined]
        elif qtype == "MX":
            exchange = r.exchange.to_text(omit_final_dot=True)  # type: ignore[attr-defined]
            out.append(((name, qtype), (r.preference, exchange)))  # type: ignore[attr-defined]
        elif qtype == "PTR":
            out.append(((name, qtype), r.target.to_text(omit_final_dot=True)))  # type: ignore[attr-defined]
        elif qtype in ("TXT", "SPF"):
            out.append(((name, qtype), tuple(r.strings)))  # type: ignore[attr-defined]
    return out


if getattr(spf.DNSLookup, "__name__", "") != "_spf_dns":
    spf.DNSLookup = _spf_dns


async def check_spf(
    blocking: BlockingResolver,
    ip: str | None,
    sender: str,
    helo: str,
    identity: str,
    domain: str | None,
) -> SpfResult:
    """SPF for one identity; ``none`` when there is no domain or no usable peer IP."""
    if not domain:
        return SpfResult(identity, None, "none", "no domain to check")
    if ip is None:
        return SpfResult(identity, domain, "none", "no connecting IP")

    def run() -> tuple[str, str]:
        token = _SPF_RESOLVER.set(blocking)
        try:
            query = spf.query(i=ip, s=sender, h=helo or domain, timeout=blocking.resolver.timeout)
            result, _code, explanation = query.check()
            return str(result), str(explanation)
        except Exception as exc:  # pyspf chokes on odd input: record it, never crash
            return "permerror", str(exc)[:200]
        finally:
            _SPF_RESOLVER.reset(token)

    result, explanation = await asyncio.to_thread(run)
    return SpfResult(identity, domain, result, explanation)
