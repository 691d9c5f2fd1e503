"""Browser test helpers: the dashboard on a real 127.0.0.1 port, Debian's Chromium.

Playwright drives ``/usr/bin/chromium`` (``CANARY_TEST_CHROMIUM`` overrides); nothing
is downloaded. Chromium is started with its background networking off and a host
resolver that resolves nothing, and every request a page makes is recorded (and aborted
unless it goes to 127.0.0.1), so tests can prove nothing left the machine and a failing
test cannot reach the internet either.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from canary.config import Settings
from canary.models import User
from canary.pipeline import Analyzer
from canary.store import Store
from canary.users import add_user
from tests.support.dashboard import PASSWORD, build_app
from tests.support.smtp import send_message, start_server

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "tests" / "artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # No name resolves, so no request can leave even through a DNS lookup.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
LOCAL_PREFIXES = ("http://127.0.0.1:", "http://127.0.0.1/", "data:", "about:", "blob:")


def chromium_path() -> str | None:
    """The Chromium binary to drive, or None when the machine has none."""
    path = os.environ.get("CANARY_TEST_CHROMIUM", "/usr/bin/chromium")
    return path if Path(path).exists() else shutil.which("chromium")


@dataclass
class LiveDashboard:
    """The dashboard served on a free loopback port."""

    url: str
    runner: web.AppRunner


@pytest.fixture
async def live_dashboard(settings: Settings, store: Store) -> AsyncIterator[LiveDashboard]:
    """The real app behind a real socket on 127.0.0.1."""
    runner = web.AppRunner(build_app(settings, store))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield LiveDashboard(f"http://127.0.0.1:{port}", runner)
    finally:
        await runner.cleanup()


@dataclass
class Recorder:
    """Everything a page asked for, and every dialog a script tried to open."""

    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    def foreign(self, base: str) -> list[str]:
        """Requests to anything but the dashboard itself (data: URLs load nothing)."""
        return [u for u in self.requests if not (u.startswith(base + "/") or u.startswith("data:"))]


@pytest.fixture
async def browser_page(live_dashboard: LiveDashboard) -> AsyncIterator[tuple[Any, Recorder]]:
    """A fresh Chromium page with a request recorder."""
    path = chromium_path()
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("browser tests must run under CI=true, but no Chromium was found")
        pytest.skip("no Chromium at /usr/bin/chromium (apt-get install chromium)")
    from playwright.async_api import async_playwright

    recorder = Recorder()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=path, args=CHROMIUM_ARGS, headless=True
        )
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        page = await context.new_page()
        page.on("request", lambda request: recorder.requests.append(request.url))

        async def only_local(route: Any) -> None:
            # Recorded by the "request" listener first; then stopped unless it is local.
            if route.request.url.startswith(LOCAL_PREFIXES):
                await route.continue_()
            else:
                await route.abort("blockedbyclient")

        await context.route("**/*", only_local)
        page.on("console", lambda message: recorder.console.append(message.text))

        async def on_dialog(dialog: Any) -> None:
            recorder.dialogs.append(dialog.message)
            await dialog.dismiss()

        page.on("dialog", on_dialog)
        try:
            yield page, recorder
        finally:
            await context.close()
            await browser.close()


async def screenshot(page: Any, name: str) -> Path:
    """Save a full-page screenshot as tests/artifacts/<name>.png (git-ignored)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    # Grow the viewport to the whole page instead of full_page=True: Chromium paints
    # the sandboxed message frame in its own process, and full-page capture leaves
    # such frames blank when they lie below the original viewport.
    size = page.viewport_size
    height = await page.evaluate("document.documentElement.scrollHeight")
    await page.set_viewport_size({"width": size["width"], "height": max(height, size["height"])})
    await page.screenshot(path=str(path))
    await page.set_viewport_size(size)
    return path


async def log_in(page: Any, base: str, name: str = "marc", password: str = PASSWORD) -> None:
    """Log in through the login form the way a person does."""
    await page.goto(f"{base}/")
    assert "/login" in page.url
    await page.fill("input[name=name]", name)
    await page.fill("input[name=password]", password)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base}/")


async def deliver(store: Store, settings: Settings, to: str, *contents: bytes) -> None:
    """Send each message over real SMTP to the real server, then run the analysis worker."""
    server = await start_server(store, settings)
    try:
        for content in contents:
            reply = await send_message(
                server.host, server.port, "bounce@brokerx.test", [to], content
            )
            assert reply.code == 250, reply
    finally:
        await server.stop()
    Analyzer(store, settings).drain()


# Browser tests import these two by name; they override the conftest fixtures of the
# same names only in those modules.
@pytest.fixture(name="backend")
def sqlite_only() -> str:
    """The browser adds nothing per backend; SQLite keeps browser tests quick."""
    return "sqlite"


@pytest.fixture(name="user")
def browser_user(store: Store) -> User:
    """The account `canary user add --admin` would make, as :func:`log_in` logs in."""
    with store.session() as session:
        return add_user(session, "marc", password=PASSWORD, admin=True)
