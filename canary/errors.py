"""Errors raised by canarytrace's core.

    CanaryError                  every error a user can cause or fix
    ├── ConfigError              a setting is invalid (CLI exit 2)
    ├── NotFound                 a named thing does not exist (or belongs to someone else)
    ├── Conflict                 a name or address is already taken
    ├── InvalidInput             a value given by the user is malformed
    ├── IdentityExhausted        no further distinct tagged name can be made
    └── StoreUnavailable         the database cannot be reached or written

The CLI prints ``str(error)`` as one line; the API maps each class to a status code.
"""

from __future__ import annotations


class CanaryError(Exception):
    """Base of every error a user can cause or fix."""

    code = "error"


class ConfigError(CanaryError):
    """A setting (environment variable or flag) has an invalid value."""

    code = "invalid_config"


class NotFound(CanaryError):
    """A source, identity, user or other named object does not exist for this user."""

    code = "not_found"


class Conflict(CanaryError):
    """A unique name or address is already in use."""

    code = "conflict"


class InvalidInput(CanaryError):
    """A value given by the user is malformed."""

    code = "invalid_input"


class IdentityExhausted(CanaryError):
    """No further tagged name can be made that keeps the required distance from the others."""

    code = "identity_exhausted"


class StoreUnavailable(CanaryError):
    """The database cannot be reached or written; callers should retry later."""

    code = "store_unavailable"
