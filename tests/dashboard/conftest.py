"""Fixtures of the dashboard tests (see tests/support/dashboard.py and browser.py)."""

from tests.support.browser import browser_page, live_dashboard  # noqa: F401
from tests.support.dashboard import alice, bob, client, dashboard_app  # noqa: F401
