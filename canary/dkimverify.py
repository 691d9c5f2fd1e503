"""DKIM verification (RFC 6376) with dkimpy, key records fetched through our resolver.

The key records are looked up here, asynchronously and through the shared cache,
before dkimpy runs; dkimpy's ``dnsfunc`` then just hands back the fetched record, so
dkimpy never touches the network itself. The cryptography runs inline: it holds the
interpreter lock either way, and a thread per message only added hand-over costs.
"""

from __future__ import annotations

from dataclasses import dataclass

import dkim
import dkim.util

from canary.dns import DnsTemporaryError, Resolver

MAX_SIGNATURES = 5  # more DKIM signatures than this are not checked (cost bound)


@dataclass(frozen=True)
class DkimResult:
    """The outcome of one DKIM-Signature: pass, fail, permerror or temperror."""

    domain: str
    selector: str
    result: str
    reason: str = ""


async def verify_dkim(raw: bytes, resolver: Resolver) -> tuple[list[DkimResult], list[str]]:
    """Verify up to MAX_SIGNATURES DKIM signatures; key records come from ``resolver``."""
    try:
        headers = dkim.DKIM(raw).headers
    except Exception:  # dkimpy could not parse the header block: no signature can verify
        return [], []
    signatures = [v for k, v in headers if k.lower() == b"dkim-signature"][:MAX_SIGNATURES]
    results: list[DkimResult] = []
    errors: list[str] = []
    to_check: list[tuple[int, str, str, bytes]] = []
    for idx, value in enumerate(signatures):
        try:
            tags = dkim.util.parse_tag_value(value)
        except dkim.util.InvalidTagValueList as exc:
            results.append(DkimResult("", "", "permerror", f"malformed signature: {exc}"))
            continue
        d = tags.get(b"d", b"").decode("ascii", "replace").strip().lower().rstrip(".")
        s = tags.get(b"s", b"").decode("ascii", "replace").strip().lower()
        if not d or not s:
            results.append(DkimResult(d, s, "permerror", "signature lacks d= or s="))
            continue
        name = f"{s}._domainkey.{d}"
        try:
            records = await resolver.txt(name)
        except DnsTemporaryError as exc:
            errors.append(str(exc))
            results.append(DkimResult(d, s, "temperror", f"key lookup failed: {exc}"))
            continue
        if not records:
            results.append(DkimResult(d, s, "permerror", f"no key published at {name}"))
            continue
        to_check.append((idx, d, s, records[0].encode("utf-8", "replace")))
        results.append(DkimResult(d, s, "pending"))
    checked = iter([_check_signature(raw, i, d, s, key) for i, d, s, key in to_check])
    return [next(checked) if r.result == "pending" else r for r in results], errors


def _check_signature(raw: bytes, idx: int, d: str, s: str, key: bytes) -> DkimResult:
    """Run dkimpy on signature ``idx`` with its already-fetched key record."""
    try:
        dkim.evaluate_pk(f"{s}._domainkey.{d}".encode(), key)
    except Exception as exc:  # any unusable key record is the sender's permanent fault
        return DkimResult(d, s, "permerror", f"unusable key: {exc}")

    def dnsfunc(_name: bytes, timeout: float = 5) -> bytes:
        return key

    try:
        ok = dkim.DKIM(raw).verify(idx, dnsfunc=dnsfunc)
    except dkim.ValidationError as exc:  # body hash mismatch, expired, bad tags
        return DkimResult(d, s, "fail", str(exc)[:200])
    except Exception as exc:  # malformed message or signature: evidence, not a crash
        return DkimResult(d, s, "permerror", str(exc)[:200])
    if ok:
        return DkimResult(d, s, "pass")
    return DkimResult(d, s, "fail", "signature does not verify")
