"""A small study whose mail is really sent: the plan, SMTP delivery, the analysis worker.

:func:`send_study_mail` imports :data:`PLAN` for a user, records signup times, publishes
SPF for the sites and the third parties on the loopback DNS server, sends every message
of :data:`MAIL` over SMTP to the real server and runs the real analysis worker. The
figures a report must show follow from this plan by hand:

========  =================  ===========================  ==================
site      signed up          mail                         third parties
========  =================  ===========================  ==================
Site 01   5 days ago         welcome, brokerx, adsy       brokerx, adsy
Site 02   12 days ago        welcome, brokerx, adsy       brokerx, adsy
Site 03   7 days ago         nothing                      -
Site 04   40 days ago        welcome, brokerx             brokerx
Site 05   7 days ago         welcome, breach campaign     -
Site 06   7 days ago         breach campaign              -
========  =================  ===========================  ==================

So: 6 sites, 5 with mail (83.3%), 3 with ``shared`` (50.0%), 2 with ``breach`` (33.3%);
third parties per site 2, 2, 0, 1, 0, 0 (mean 0.833, median 0.5, max 2); days to the
first third-party message 5, 12 and 40 (median 12, quartiles 8.5 and 26); brokerx.test
reached 3 sites, adsy.test 2; the graph has 5 edges.

Welcome mails carry a confirmation link on the site's own domain (``confirm_port``
puts a port in it, for a test server on 127.0.0.1).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlmodel import select

from canary.config import Settings
from canary.models import Identity, Message, User, utcnow
from canary.pipeline import Analyzer
from canary.store import Store
from canary.study import import_study, parse_plan, record_given
from tests.support.dns_server import TestDnsServer
from tests.support.smtp import send_message, start_server

STUDY = "Newsletter study"
SITES = 6
SIGNED_UP_DAYS_AGO = {1: 5, 2: 12, 4: 40}  # the others: 7
WELCOMES = (1, 2, 4, 5)
THIRD_PARTY_MAIL = {"brokerx.test": (1, 2, 4), "adsy.test": (1, 2)}
BREACHED = (5, 6)
CAMPAIGN_FROM = "paypa1.test"


def site_name(n: int) -> str:
    """The name of site ``n`` in the plan."""
    return f"Site {n:02d}"


def site_domain(n: int) -> str:
    """The own domain of site ``n``."""
    return f"site{n:02d}.test"


PLAN = "name,url,domains,category\n" + "".join(
    f"{site_name(n)},https://www.{site_domain(n)}/,{site_domain(n)},{'news' if n % 2 else 'shop'}\n"
    for n in range(1, SITES + 1)
)


@dataclass
class SentStudy:
    """The imported study and its personas by site number."""

    study_id: int
    name: str
    personas: dict[int, Identity]


def _mail(sender: str, to: str, subject: str, html: str = "<p>Hello</p>") -> bytes:
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{abs(hash((sender, to, subject)))}@mail.test>\r\n"
        "Date: Mon, 03 Mar 2025 10:00:00 +0000\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        f"{html}\r\n"
    ).encode()


async def send_study_mail(
    store: Store,
    settings: Settings,
    owner: User,
    dns_server: TestDnsServer,
    *,
    auto_confirm: bool = False,
    confirm_port: int | None = None,
) -> SentStudy:
    """Import the plan for ``owner``, send the study's mail over SMTP and analyse it."""
    for domain in [site_domain(n) for n in range(1, SITES + 1)] + list(THIRD_PARTY_MAIL):
        dns_server.txt(domain, "v=spf1 ip4:127.0.0.0/8 -all")
    with store.session() as session:
        imported = import_study(
            session,
            owner,
            STUDY,
            parse_plan(PLAN),
            domain="canary.test",
            auto_confirm=auto_confirm,
            seed=7,
        )
        personas = {n + 1: identity for n, identity in enumerate(imported.identities)}
        now = utcnow()
        record_given(
            session,
            owner,
            [
                (str(p.id), now - timedelta(days=SIGNED_UP_DAYS_AGO.get(n, 7)))
                for n, p in personas.items()
            ],
        )
        study_id = imported.study.id
        assert study_id is not None

    port = f":{confirm_port}" if confirm_port else ""
    outgoing: list[tuple[str, list[str], bytes]] = []
    for n in WELCOMES:
        link = f"http://{site_domain(n)}{port}/confirm?persona={n}"
        html = f'<p>Welcome!</p><p><a href="{link}">Confirm your address</a></p>'
        to = personas[n].alias
        content = _mail(f"{site_name(n)} <hello@{site_domain(n)}>", to, "Welcome", html)
        outgoing.append((f"bounce@{site_domain(n)}", [to], content))
    for org, sites in THIRD_PARTY_MAIL.items():
        for n in sites:
            to = personas[n].alias
            content = _mail(f"Offers <deals@{org}>", to, f"An offer from {org}")
            outgoing.append((f"bounce@{org}", [to], content))
    targets = [personas[n].alias for n in BREACHED]
    campaign = _mail(f"Security <security@{CAMPAIGN_FROM}>", "undisclosed-recipients:;",
                     "Verify your account")  # fmt: skip
    outgoing.append((f"x@{CAMPAIGN_FROM}", targets, campaign))

    running = await start_server(store, settings)
    try:
        for mail_from, rcpts, content in outgoing:
            reply = await send_message(running.host, running.port, mail_from, rcpts, content)
            assert reply.code == 250, reply
    finally:
        await running.stop()
    analyzer = Analyzer(store, settings)
    analyzer.drain()
    for _ in range(3):
        # On a busy machine a loopback DNS answer can come too late; the worker would ask
        # again later, so do that now instead of reporting half-decided verdicts.
        with store.session() as session:
            waiting = session.exec(select(Message).where(Message.state == "retry")).all()
            for message in waiting:
                message.next_attempt_at = utcnow()
                session.add(message)
        if not waiting:
            break
        analyzer.drain()
    with store.session() as session:
        states = session.exec(select(Message.state)).all()
    assert states and set(states) == {"analysed"}, states
    return SentStudy(study_id, STUDY, personas)
