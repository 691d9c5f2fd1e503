"""Typed keys for what the application and each request carry."""

from __future__ import annotations

from aiohttp import web

from canary.config import Settings
from canary.store import Store

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
SESSION_CODEC: web.AppKey = web.AppKey("session_codec")
SECURE_COOKIES = web.AppKey("secure_cookies", bool)
REEVALUATE: web.AppKey = web.AppKey("reevaluate")
LOGIN_LIMITER: web.AppKey = web.AppKey("login_limiter")

USER: web.RequestKey = web.RequestKey("user")  # the User, or None when anonymous
SESSION: web.RequestKey = web.RequestKey("session")  # auth.SessionData
SESSION_CHANGED = web.RequestKey("session_changed", bool)
