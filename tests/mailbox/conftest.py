"""Fixtures of the mailbox tests: the real SMTP server (see tests/support/smtp.py)."""

from tests.support.smtp import smtp_server  # noqa: F401  (makes the fixture visible here)
