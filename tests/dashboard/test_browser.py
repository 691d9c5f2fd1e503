"""The dashboard in a real browser (Debian's Chromium driven by Playwright).

One walk through the product (log in, make a source and an identity, receive mail over
real SMTP, see it attributed, dismiss an incident), and hostile mail that tries every
way to run script or load something from another host. Screenshots of the main pages
go to tests/artifacts/.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import select

from canary.config import Settings
from canary.models import Delivery, Incident, Source, User
from canary.store import Store
from tests.support.browser import (
    LiveDashboard,
    Recorder,
    browser_user,  # noqa: F401 - the fixture "user"
    deliver,
    log_in,
    screenshot,
    sqlite_only,  # noqa: F401 - the fixture "backend"
)
from tests.support.dashboard import hostile_message
from tests.support.dns_server import (
    TestDnsServer,
    dkim_sign,
    generate_dkim_key,
    publish_dkim_key,
)

pytestmark = pytest.mark.slow


def newsletter(to: str) -> bytes:
    return (
        "From: Broker X Deals <deals@brokerx.test>\r\n"
        f"To: Marc <{to}>\r\nSubject: Exclusive offers picked for you\r\n"
        "Message-ID: <deal-7@brokerx.test>\r\n"
        "List-Unsubscribe: <mailto:unsub@brokerx.test>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\n"
        "Hi Marc,\r\nour partner Shop X told us you like gardening.\r\n"
        "--b\r\nContent-Type: text/html\r\n\r\n"
        "<h2>Hi Marc,</h2><p>our partner <b>Shop X</b> told us you like gardening.</p>"
        '<img src="http://pixel.brokerx.test/o.gif">\r\n--b--\r\n'
    ).encode()


async def test_walk_through(
    browser_page: tuple[Any, Recorder],
    live_dashboard: LiveDashboard,
    store: Store,
    settings: Settings,
    user: User,
    dns_server: TestDnsServer,
) -> None:
    page, recorder = browser_page
    base = live_dashboard.url
    await log_in(page, base)
    await screenshot(page, "01-overview-empty")

    # New identity: type a new source name, press Enter, copy the alias.
    await page.click("text=+ New identity")
    await page.fill("input[name=source]", "Shop X")
    await page.press("input[name=source]", "Enter")
    await page.wait_for_selector("#alias")
    alias = (await page.text_content("#alias") or "").strip()
    name = (await page.text_content("#name") or "").strip()
    assert alias.endswith("@canary.test") and name
    await screenshot(page, "02-new-identity")

    # Broker X signs its mail with DKIM and publishes SPF and DMARC.
    key = generate_dkim_key()
    publish_dkim_key(dns_server, "brokerx.test", "mail", key)
    dns_server.txt("brokerx.test", "v=spf1 ip4:127.0.0.0/8 -all")
    dns_server.txt("_dmarc.brokerx.test", "v=DMARC1; p=reject")
    signed = dkim_sign(newsletter(alias), "brokerx.test", "mail", key)
    await deliver(store, settings, alias, signed)

    # The real pipeline attributed it and the verdict engine judged it.
    with store.session() as session:
        source = session.exec(select(Source).where(Source.name == "Shop X")).one()
        delivery = session.exec(select(Delivery).where(Delivery.recipient_key == alias)).one()
        assert delivery.source_id == source.id and delivery.verdict == "shared"
        incident = session.exec(select(Incident)).one()
        assert incident.kind == "shared" and incident.organisations == ["brokerx.test"]
        source_id, message_id = source.id, delivery.message_id

    await page.goto(f"{base}/")
    assert await page.locator(".tile.shared .n").text_content() == "1"
    await screenshot(page, "03-overview")

    await page.click("text=Messages")
    await page.wait_for_selector("text=Exclusive offers picked for you")
    await screenshot(page, "04-messages")
    await page.click("text=Exclusive offers picked for you")
    await page.wait_for_url(f"{base}/messages/{message_id}")
    assert "issued to Shop X" in (await page.text_content(".verdict-card") or "")
    await page.locator("iframe.htmlbody").wait_for()
    await screenshot(page, "05-message")

    await page.goto(f"{base}/sources/{source_id}")
    await screenshot(page, "06-source")
    await page.click("tr.incident button:has-text('Dismiss')")
    await page.wait_for_selector("tr.incident .status.dismissed")
    with store.session() as session:
        incident = session.exec(select(Incident).where(Incident.source_id == source_id)).one()
        assert incident.status == "dismissed"

    await page.goto(f"{base}/trace")
    await page.fill("input[name=q]", name)
    await page.press("input[name=q]", "Enter")
    await page.wait_for_selector("text=1 match")
    await screenshot(page, "07-trace")

    await page.goto(f"{base}/settings")
    await page.click("text=Create token")
    await page.wait_for_selector("#token")
    await screenshot(page, "08-settings")

    assert recorder.foreign(base) == []
    assert recorder.dialogs == []


async def test_hostile_mail_runs_nothing_and_loads_nothing(
    browser_page: tuple[Any, Recorder],
    live_dashboard: LiveDashboard,
    store: Store,
    settings: Settings,
    user: User,
) -> None:
    from canary.identity import IdentityRequest, create_identities
    from canary.sources import add_source

    with store.session() as session:
        source = add_source(session, user, "Shop X", domains=["shopx.test"])
        alias = create_identities(session, user, source, IdentityRequest(domain="canary.test"))[
            0
        ].alias
    await deliver(store, settings, alias, hostile_message(alias))
    with store.session() as session:
        message_id = session.exec(select(Delivery.message_id)).one()

    page, recorder = browser_page
    base = live_dashboard.url
    await log_in(page, base)
    await page.goto(f"{base}/messages/{message_id}")
    frame_element = await page.wait_for_selector("iframe.htmlbody")
    frame = await frame_element.content_frame()
    assert frame is not None
    await frame.wait_for_load_state("load")
    await page.wait_for_load_state("networkidle")
    assert "Hello Marc" in (await frame.text_content("body") or "")
    assert await page.title() != "PWNED"
    # Read through Playwright's own isolated world, which works with scripts disabled:
    # every inline script and handler in the mail would have marked the document.
    assert await frame.evaluate("document.documentElement.dataset.ran") is None
    assert await frame.evaluate("document.scripts.length") == 0
    await screenshot(page, "09-hostile-message")

    # The frame document opened on its own: the CSP sandbox still forbids everything.
    await page.goto(f"{base}/messages/{message_id}/body")
    await page.wait_for_load_state("networkidle")
    assert await page.title() != "PWNED"

    assert recorder.dialogs == [], recorder.dialogs
    assert recorder.foreign(base) == [], recorder.foreign(base)
    # Control: the recorders do see a dialog and a request when a script does run.
    await page.goto(f"{base}/login")
    await page.evaluate("alert('control')")
    assert recorder.dialogs == ["control"]
    assert any(u.endswith("/login") for u in recorder.requests)
    assert not any("evil.test" in u for u in recorder.requests)
