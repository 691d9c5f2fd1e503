"""SPF evaluation (RFC 7208) with pyspf, every lookup answered by our resolver.

pyspf looks names up recursively (include:, a:, mx:) through its module-level
``spf.DNSLookup`` hook, synchronously. Rather than run it in a worker thread that
blocks on the event loop for every lookup (a thread hop and two wake-ups per name,
measured as the larger part of authentication's cost in bench/analysis.py), the
evaluation runs on the loop itself against answers fetched beforehand:

1. pyspf runs with a hook that answers only from the answers gathered so far for this
   check; a name not among them is noted as missing and the run is abandoned;
2. the missing names are looked up through the :class:`~canary.dns.Resolver` (its
   cache makes this cheap for known senders), and pyspf runs again.

SPF's limit of ten DNS-querying terms bounds the rounds. The hook is installed once at
import; with no answers set for the current context it falls back to pyspf's own
lookup, so other users of pyspf in the process are unaffected.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dns.rdata
import spf

from canary.dns import DnsTemporaryError, Resolver

# One round per DNS lookup at most: RFC 7208 4.6.4 allows ten DNS-querying terms, each
# of which may need a further name (an MX host's address), plus the record itself.
MAX_ROUNDS = 25


@dataclass(frozen=True)
class SpfResult:
    """The SPF result for one identity (``mailfrom`` or ``helo``) against the peer IP."""

    identity: str
    domain: str | None
    result: str
    """pass, fail, softfail, neutral, none, permerror or temperror (RFC 7208)."""
    explanation: str = ""


@dataclass
class _Answers:
    """DNS answers gathered for one SPF check, and the names its last run lacked."""

    records: dict[tuple[str, str], list[dns.rdata.Rdata] | DnsTemporaryError] = field(
        default_factory=dict
    )
    missing: list[tuple[str, str]] = field(default_factory=list)


class _Missing(BaseException):
    """Raised through pyspf when a name has not been looked up yet.

    A BaseException, so pyspf's ``except Exception`` handlers let it through; the run is
    discarded anyway whenever a name was missing (pyspf has two bare ``except:`` too).
    """


_SPF_ANSWERS: contextvars.ContextVar[_Answers | None] = contextvars.ContextVar(
    "canary_spf_answers", default=None
)
_PYSPF_LOOKUP: Callable[..., Any] = spf.DNSLookup


def _spf_dns(name: str, qtype: str, strict: Any = True, timeout: Any = None) -> list[Any]:
    """pyspf's DNS hook, answered from this check's gathered answers (see module doc)."""
    answers = _SPF_ANSWERS.get()
    if answers is None:
        return _PYSPF_LOOKUP(name, qtype, strict, timeout)
    key = (name, "TXT" if qtype == "SPF" else qtype)
    found = answers.records.get(key)
    if found is None:
        answers.missing.append(key)
        raise _Missing(key)
    if isinstance(found, DnsTemporaryError):
        raise spf.TempError(f"DNS {found}")
    out: list[Any] = []
    for r in found:
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


def _evaluate(
    answers: _Answers, ip: str, sender: str, helo: str, timeout: float
) -> tuple[str, str]:
    """One pyspf run against ``answers``; the result is meaningless if names were missing."""
    answers.missing.clear()
    token = _SPF_ANSWERS.set(answers)
    try:
        query = spf.query(i=ip, s=sender, h=helo, timeout=timeout)
        result, _code, explanation = query.check()
        return str(result), str(explanation)
    except _Missing:
        return "", ""
    except Exception as exc:  # pyspf chokes on odd input: record it, never crash
        return "permerror", str(exc)[:200]
    finally:
        _SPF_ANSWERS.reset(token)


async def check_spf(
    resolver: Resolver,
    ip: str | None,
    sender: str,
    helo: str,
    identity: str,
    domain: str | None,
    temporary_errors: list[str] | None = None,
) -> SpfResult:
    """SPF for one identity; ``none`` when there is no domain or no usable peer IP.

    Temporary DNS failures met on the way are appended to ``temporary_errors``.
    """
    if not domain:
        return SpfResult(identity, None, "none", "no domain to check")
    if ip is None:
        return SpfResult(identity, domain, "none", "no connecting IP")
    answers = _Answers()
    for _ in range(MAX_ROUNDS):
        result, explanation = _evaluate(answers, ip, sender, helo or domain, resolver.timeout)
        if not answers.missing:
            return SpfResult(identity, domain, result, explanation)
        for name, rdtype in dict.fromkeys(answers.missing):
            try:
                answers.records[(name, rdtype)] = await resolver.lookup(name, rdtype)
            except DnsTemporaryError as exc:
                answers.records[(name, rdtype)] = exc
                if temporary_errors is not None:
                    temporary_errors.append(str(exc))
    return SpfResult(identity, domain, "permerror", "too many DNS lookups")
