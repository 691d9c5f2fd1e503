"""The verdict engine: parsed facts about one delivery in, one finding out. Pure.

The pipeline gathers :class:`DeliveryFacts` (recipient kind, identity dates, the
source and its authorised senders, :class:`AuthFacts` from sender authentication,
content :class:`~canary.signals.Signals`, other sources named in the message, the
campaign signal) and calls :func:`evaluate`. The result, a :class:`FindingDraft`,
carries the verdict, the sender organisation, evidence items and one plain sentence.

Precedence (the first rule that applies wins; evidence from every rule is kept):

1. ``unattributed``: the recipient is not an issued identity (never issued, or a role
   address such as postmaster). Nothing can be blamed on a source.
2. ``after_retirement``: the identity was retired before this mail arrived. Whoever
   sends, the list lives on after opt-out.
3. ``cross_source``: the message carries the tagged name or alias of *another* source's
   identity: two lists were merged.
4. ``breach``: criminal mail. Any of: the From domain publishes DMARC quarantine/reject
   and the mail fails it (spoofed); the From line claims one of the source's own
   (authorised) domains without authenticating as it; malware (executable attachment,
   double extension) or phishing (credential wording, a password form, or a link
   whose text names another domain when combined with another phishing sign or with
   no authentication); a campaign reaching at least ``min_campaign_sources`` unrelated
   sources; or no authenticated sender at all (bulk or not: a legitimate business
   authenticates its mail, so an unauthenticated writer is not a "legitimate-looking"
   sharer).
5. ``expected``: the authenticated sender organisation is authorised for the source.
6. ``shared``: an authenticated sender organisation that is not authorised.

A link-text mismatch on its own is not a breach: newsletters routinely wrap links in
click-tracking hosts. DMARC failing under ``p=none`` is recorded but not a breach on its
own either: it is what a small business with an unsigned email provider looks like.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from canary.auth import AuthResult
from canary.campaigns import DEFAULT_MIN_SOURCES, CampaignSignal
from canary.evidence_items import Evidence, details
from canary.orgs import registrable_domain
from canary.signals import Signals

MALWARE_CODES = frozenset({"executable_attachment", "double_extension"})
PHISHING_CODES = frozenset({"credential_wording", "password_form"})


@dataclass(frozen=True)
class SourceFacts:
    """The source an identity was issued to, and who may mail it."""

    name: str
    authorised_domains: frozenset[str] = frozenset()
    """Registrable domains allowed to mail the source's identities (own, ESP, acquirer)."""


@dataclass(frozen=True)
class AuthFacts:
    """The part of sender authentication the engine needs (see :meth:`from_result`)."""

    sender_org: str | None = None
    verified_by: str = "not authenticated"
    from_domain: str | None = None
    from_org: str | None = None
    from_authenticated: bool = False
    dmarc_result: str = "none"
    dmarc_policy: str | None = None
    evidence: tuple[Evidence, ...] = ()
    temporary_error: bool = False

    @classmethod
    def from_result(cls, result: AuthResult) -> AuthFacts:
        """The facts of a full :class:`~canary.auth.AuthResult`."""
        return cls(
            sender_org=result.sender_org,
            verified_by=result.verified_by,
            from_domain=result.from_domain,
            from_org=result.from_org,
            from_authenticated=result.from_authenticated,
            dmarc_result=result.dmarc.result,
            dmarc_policy=result.dmarc.policy,
            evidence=result.evidence(),
            temporary_error=result.temporary_error,
        )


@dataclass(frozen=True)
class DeliveryFacts:
    """Everything known about one delivery when its verdict is decided."""

    recipient: str
    recipient_kind: str
    """``canary`` (an issued identity), ``role`` or ``unattributed``."""
    received_at: datetime
    auth: AuthFacts = field(default_factory=AuthFacts)
    signals: Signals = field(default_factory=lambda: Signals(False, None, (), ()))
    source: SourceFacts | None = None
    issued_at: datetime | None = None
    given_at: datetime | None = None
    """When the identity was handed to the source (signup); issue time if unknown."""
    retired_at: datetime | None = None
    first_seen_from_sender: datetime | None = None
    """Earliest earlier delivery from this sender org to this identity, if any."""
    cross_sources: tuple[str, ...] = ()
    """Names of *other* sources whose tagged name or alias appears in the message."""
    campaign: CampaignSignal | None = None
    min_campaign_sources: int = DEFAULT_MIN_SOURCES


@dataclass(frozen=True)
class FindingDraft:
    """A verdict with its evidence and sentence, ready to be stored as a ``Finding``."""

    verdict: str
    sender_org: str | None
    evidence: tuple[Evidence, ...]
    sentence: str
    provisional: bool = False
    """Decided while a DNS lookup failed temporarily: analyse again later."""

    def evidence_json(self) -> list[dict[str, str]]:
        """Evidence in the JSON form of ``Finding.evidence``."""
        return [e.as_dict() for e in self.evidence]


def evaluate(facts: DeliveryFacts) -> FindingDraft:
    """Decide the verdict for one delivery (see the module docstring for precedence)."""
    auth, source = facts.auth, facts.source
    evidence: list[Evidence] = [*auth.evidence, *facts.signals.evidence()]
    sender = auth.sender_org

    def draft(verdict: str, sentence: str, *extra: Evidence) -> FindingDraft:
        items = tuple(dict.fromkeys([*extra, *evidence]))  # specific first, no duplicates
        return FindingDraft(verdict, sender, items, sentence, auth.temporary_error)

    if facts.recipient_kind != "canary" or source is None:
        code = "role_address" if facts.recipient_kind == "role" else "unissued_address"
        return draft(
            "unattributed",
            f"Mail to {facts.recipient}, an address that was never issued to anyone"
            f"{' (a role address)' if code == 'role_address' else ''}: counted, not "
            "blamed on any source.",
            Evidence(code, details({"address": facts.recipient})),
        )

    authorised = {registrable_domain(d) or d.lower() for d in source.authorised_domains}
    days = _days_after_issue(facts)
    timing = [Evidence("first_mail_days_after_issue", str(days))] if days is not None else []
    who = _who(auth)

    if facts.retired_at is not None and facts.received_at >= facts.retired_at:
        after = (facts.received_at - facts.retired_at).days
        return draft(
            "after_retirement",
            f"Mail from {who} reached the address given to {source.name} {_days(after)} after it "
            "was retired: the list lives on after opt-out.",
            Evidence("mail_days_after_retirement", str(after)),
            *timing,
        )

    if facts.cross_sources:
        others = ", ".join(facts.cross_sources)
        return draft(
            "cross_source",
            f"Mail from {who} to the address given to {source.name} uses the name given to "
            f"{others}: the lists of {source.name} and {others} were merged.",
            *(
                Evidence("cross_source_identity", details({"source": s}))
                for s in facts.cross_sources
            ),
            *timing,
        )

    breach = _breach(facts, authorised)
    if breach is not None:
        reason, items = breach
        return draft(
            "breach",
            f"{reason} reached the address given to {source.name}"
            f"{_after_signup(facts, days)}: the address is in criminal hands.",
            *items,
            *timing,
        )

    if sender in authorised:
        return draft(
            "expected",
            f"Sent by {sender} ({auth.verified_by}), an authorised sender for {source.name}.",
            Evidence("authorised_for_source", details({"org": sender})),
            *timing,
        )

    return draft(
        "shared",
        f"Sent by {sender} ({auth.verified_by}), which was never given this address: "
        f"{source.name} shared it{_after_signup(facts, days)}.",
        Evidence("not_authorised_for_source", details({"org": sender})),
        *timing,
    )


def _breach(facts: DeliveryFacts, authorised: set[str]) -> tuple[str, list[Evidence]] | None:
    """The reason (a sentence subject) and evidence when the mail looks criminal."""
    auth, signals = facts.auth, facts.signals
    codes = {e.code for e in signals.phishing}
    malware = [e for e in signals.phishing if e.code in MALWARE_CODES]
    phishing = [e for e in signals.phishing if e.code in PHISHING_CODES]
    mismatch = [e for e in signals.phishing if e.code == "link_text_mismatch"]

    if (
        auth.from_org
        and auth.dmarc_result == "fail"
        and auth.dmarc_policy in ("quarantine", "reject")
    ):
        return (
            f"Forged mail claiming to be from {auth.from_domain} "
            f"(DMARC fail, policy {auth.dmarc_policy})",
            [Evidence("spoofed_from", details({"domain": auth.from_domain}))],
        )
    if (
        auth.from_org in authorised
        and not auth.from_authenticated
        and auth.sender_org not in authorised
    ):
        return (
            f"Mail forging {auth.from_domain}, the source's own domain, without authenticating",
            [Evidence("from_claims_source_domain", details({"domain": auth.from_domain}))],
        )
    if malware:
        return f"Malware from {_who(auth)}", malware
    if phishing or (mismatch and (codes - {"link_text_mismatch"} or auth.sender_org is None)):
        return f"Phishing from {_who(auth)}", [*phishing, *mismatch]
    campaign = facts.campaign
    if campaign is not None and campaign.source_count >= facts.min_campaign_sources:
        others = ", ".join(campaign.other_sources)
        return (
            f"One campaign from {_who(auth)} that hit {campaign.source_count} unrelated "
            f"sources at once (also {others})",
            [
                Evidence("same_campaign_sources", str(campaign.source_count)),
                Evidence("campaign_sources", others),
                *(Evidence("campaign_basis", b) for b in campaign.basis),
            ],
        )
    if auth.sender_org is None:
        if signals.bulk:
            return "Unauthenticated bulk mail (no DKIM or SPF pass)", [
                Evidence("unauthenticated_bulk")
            ]
        return "Unauthenticated mail (no DKIM or SPF pass)", [Evidence("unauthenticated")]
    return None


def _who(auth: AuthFacts) -> str:
    if auth.sender_org:
        return f"{auth.sender_org} ({auth.verified_by})"
    if auth.from_domain:
        return f"an unauthenticated sender claiming {auth.from_domain}"
    return "an unauthenticated sender"


def _days_after_issue(facts: DeliveryFacts) -> int | None:
    start = facts.given_at or facts.issued_at
    if start is None:
        return None
    first = min(
        (t for t in (facts.first_seen_from_sender, facts.received_at) if t is not None),
    )
    return max(0, (first - start).days)


def _days(n: int) -> str:
    return "1 day" if n == 1 else f"{n} days"


def _after_signup(facts: DeliveryFacts, days: int | None) -> str:
    if days is None:
        return ""
    event = "signup" if facts.given_at is not None else "the address was issued"
    return f" {_days(days)} after {event}"


def verdict_counts(drafts: Iterable[FindingDraft]) -> dict[str, int]:
    """How many drafts per verdict (for summaries and tests)."""
    counts: dict[str, int] = {}
    for d in drafts:
        counts[d.verdict] = counts.get(d.verdict, 0) + 1
    return counts
