"""The study report in a real browser (Debian's Chromium driven by Playwright).

The report of a study whose mail was really sent over SMTP shows the graph picture and
the cumulative plot as drawn SVG, and the page asks nothing of any other host.
"""

from __future__ import annotations

from typing import Any

import pytest

from canary.config import Settings
from canary.store import Store
from tests.support.browser import (
    LiveDashboard,
    Recorder,
    screenshot,
    sqlite_only,  # noqa: F401 - the fixture "backend"
)
from tests.support.dashboard import PASSWORD, Seeded
from tests.support.dns_server import TestDnsServer
from tests.support.study import send_study_mail

pytestmark = pytest.mark.slow


async def test_report_page_draws_the_graph_and_the_plot(
    browser_page: tuple[Any, Recorder],
    live_dashboard: LiveDashboard,
    store: Store,
    settings: Settings,
    alice: Seeded,
    dns_server: TestDnsServer,
) -> None:
    sent = await send_study_mail(store, settings, alice.user, dns_server)
    page, recorder = browser_page
    base = live_dashboard.url
    await page.goto(f"{base}/login")
    await page.fill("input[name=name]", "alice")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base}/")

    await page.click("nav >> text=Studies")
    await page.click(f"text={sent.name}")
    await page.wait_for_url(f"{base}/studies/{sent.study_id}")
    await page.wait_for_load_state("networkidle")

    graph = page.locator("figure.graph svg")
    await graph.wait_for(state="visible")
    box = await graph.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 60
    assert await page.locator("figure.graph svg path.edge").count() == 5
    assert await page.locator("figure.graph svg g.site").count() == 3
    assert await page.locator("figure.graph svg g.org").count() == 2
    # The lines really are painted: each has a length on screen.
    lengths = await page.eval_on_selector_all(
        "figure.graph svg path.edge", "paths => paths.map(p => p.getTotalLength())"
    )
    assert all(length > 50 for length in lengths)

    plot = page.locator("figure.plot svg")
    await plot.wait_for(state="visible")
    plot_box = await plot.bounding_box()
    assert plot_box is not None and plot_box["width"] > 300
    assert await page.locator("figure.plot svg polyline").count() == 1
    assert (await page.text_content("#fig-shared") or "").strip().startswith("50.0%")
    await screenshot(page, "10-study-report")

    assert recorder.foreign(base) == [], recorder.foreign(base)
    assert recorder.dialogs == []
    assert not [c for c in recorder.console if "Content Security Policy" in c]
