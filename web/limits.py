"""Per-address rate limits (Flask-Limiter): memory for one process, Redis (MYHUG_RATELIMIT_STORAGE_URI) for several."""

from __future__ import annotations

from flask import current_app, g
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

limiter = Limiter(key_func=get_remote_address, default_limits=[], headers_enabled=True)


def login_limit() -> str:
    return current_app.config["LOGIN_RATE_LIMIT"]


def sms_limit() -> str:
    return current_app.config["SMS_RATE_LIMIT"]


def sms_was_sent(_response) -> bool:
    """Only requests that really sent an SMS count against the address's SMS allowance."""
    return bool(g.get("sms_sent"))


def init_app(app) -> None:
    app.config.setdefault("RATELIMIT_STORAGE_URI", "memory://")
    app.config.setdefault("LOGIN_RATE_LIMIT", "20 per minute;200 per hour")
    app.config.setdefault("SMS_RATE_LIMIT", "30 per hour")
    limiter.init_app(app)
