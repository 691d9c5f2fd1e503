"""Cross-source campaign detection: one sender reaching several unrelated sources at once.

A shop that sells its list produces mail to its own identities only. When one sender
organisation, one sending network (IPv4 /24, IPv6 /48) or one piece of content reaches
identities of several *unrelated* sources within a short window, the addresses came
from somewhere else: a breach or a scraped/merged list. Each delivery in such a group
gets a :class:`CampaignSignal` naming the other sources, which the verdict engine turns
into ``breach`` with ``same_campaign_sources=N``.

Pure: the scheduler loads recent deliveries (:class:`RecentDelivery`) and calls
:func:`detect_campaigns` over a sliding window.

Two sources are related (one company, one group of sites) when their authorised sender
domains overlap; related sources count once. Deliveries from a sender authorised for
their own source are expected mail and are left out, so an email service provider
that signs for many brands is never a "campaign" by itself.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

DEFAULT_WINDOW = timedelta(hours=24)
DEFAULT_MIN_SOURCES = 3

_URL = re.compile(r"(?:https?:)?//\S+", re.IGNORECASE)
_ADDRESS = re.compile(r"\S+@\S+")
_DIGITS = re.compile(r"\d+")
_NON_WORD = re.compile(r"[\W_]+")


@dataclass(frozen=True)
class RecentDelivery:
    """What campaign detection needs to know about one delivery to an identity."""

    delivery_id: int
    received_at: datetime
    source_id: int
    source_name: str
    source_domains: frozenset[str] = frozenset()
    """The source's authorised sender domains (registrable), for relatedness."""
    sender_org: str | None = None
    peer_ip: str | None = None
    fingerprint: str | None = None
    """See :func:`content_fingerprint`."""


@dataclass(frozen=True)
class CampaignSignal:
    """One delivery's part in a campaign: how many unrelated sources, which, and why."""

    delivery_id: int
    source_count: int
    """Unrelated sources reached, this delivery's own included."""
    other_sources: tuple[str, ...]
    basis: tuple[str, ...]
    """What tied the group together: ``sender_org=x``, ``ip_range=y``, ``fingerprint=z``."""


def ip_range(ip: str | None) -> str | None:
    """The sending network of an address: its /24 (IPv4) or /48 (IPv6), or None."""
    try:
        addr = ipaddress.ip_address((ip or "").strip())
    except ValueError:
        return None
    prefix = 24 if addr.version == 4 else 48
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))


def content_fingerprint(subject: str, body: str, personal: Iterable[str] = ()) -> str:
    """A hash of the content with per-recipient parts removed.

    Lower-cased; the ``personal`` strings (recipient address, tagged name), URLs,
    addresses, digits and punctuation are dropped, so one mail merge to many
    recipients yields one fingerprint.
    """
    text = f"{subject}\n{body}".lower()
    for item in personal:
        if item and item.strip():
            text = text.replace(item.lower(), " ")
    # The patterns backtrack over every word; most mail has neither a URL nor an address.
    if "//" in text:
        text = _URL.sub(" ", text)
    if "@" in text:
        text = _ADDRESS.sub(" ", text)
    text = _DIGITS.sub(" ", text)
    text = " ".join(_NON_WORD.sub(" ", text).split())
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _keys(d: RecentDelivery) -> list[str]:
    keys = []
    if d.sender_org:
        keys.append(f"sender_org={d.sender_org}")
    network = ip_range(d.peer_ip)
    if network:
        keys.append(f"ip_range={network}")
    if d.fingerprint:
        keys.append(f"fingerprint={d.fingerprint}")
    return keys


def _components(deliveries: Iterable[RecentDelivery]) -> list[set[int]]:
    """Sources grouped into related families (overlapping authorised domains)."""
    families: list[tuple[set[int], set[str]]] = []
    for d in deliveries:
        merged_ids, merged_domains = {d.source_id}, set(d.source_domains)
        rest = []
        for ids, domains in families:
            if d.source_id in ids or (domains & merged_domains):
                merged_ids |= ids
                merged_domains |= domains
            else:
                rest.append((ids, domains))
        families = [*rest, (merged_ids, merged_domains)]
    return [ids for ids, _ in families]


def detect_campaigns(
    deliveries: Sequence[RecentDelivery],
    window: timedelta = DEFAULT_WINDOW,
    min_sources: int = DEFAULT_MIN_SOURCES,
) -> dict[int, CampaignSignal]:
    """Campaign signals by delivery id, for deliveries in a group reaching enough sources.

    A delivery's group is every delivery sharing one key (sender organisation, IP range
    or fingerprint) received within ``window`` before or after it.
    """
    candidates = [d for d in deliveries if not (d.sender_org and d.sender_org in d.source_domains)]
    groups: dict[str, list[RecentDelivery]] = defaultdict(list)
    for d in candidates:
        for key in _keys(d):
            groups[key].append(d)

    found: dict[int, tuple[set[str], set[str], int]] = {}
    for key, members in groups.items():
        if len({m.source_id for m in members}) < min_sources:
            continue  # cheap exit: most groups are one source's own mail
        members.sort(key=lambda m: m.received_at)
        start = end = 0
        for d in members:
            while members[start].received_at < d.received_at - window:
                start += 1
            while end < len(members) and members[end].received_at <= d.received_at + window:
                end += 1
            nearby = members[start:end]
            families = _components(nearby)
            if len(families) < min_sources:
                continue
            own = next(f for f in families if d.source_id in f)
            others = {m.source_name for m in nearby if m.source_id not in own}
            names, bases, count = found.get(d.delivery_id, (set(), set(), 0))
            found[d.delivery_id] = (names | others, bases | {key}, max(count, len(families)))
    return {
        delivery_id: CampaignSignal(delivery_id, count, tuple(sorted(names)), tuple(sorted(bases)))
        for delivery_id, (names, bases, count) in found.items()
    }
