"""Fixtures of the dashboard tests (see tests/support/dashboard.py)."""

from tests.support.dashboard import alice, bob, client, dashboard_app  # noqa: F401
