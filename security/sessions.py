"""Server-side, revocable sessions (DESIGN §6): the cookie holds a random token, the database only its SHA-256."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from models import Account, Session, utcnow

COOKIE_NAME = "myhug_session"
# Only these account states may hold a session; `pending` reaches nothing but the temporary-password page.
LIVE_STATES = frozenset({"active", "pending"})
# last_seen_at is written at most this often: an idle timeout of 30 min does not need a write per request.
TOUCH_EVERY = dt.timedelta(minutes=1)


class Limits:
    """Idle and absolute lifetimes; the app factory sets them from the configuration."""

    idle = dt.timedelta(minutes=30)
    absolute = dt.timedelta(hours=12)


def configure(idle_minutes: int, absolute_hours: int) -> None:
    Limits.idle = dt.timedelta(minutes=idle_minutes)
    Limits.absolute = dt.timedelta(hours=absolute_hours)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start(account: Account, ip: str | None, user_agent: str | None, method: str) -> str:
    """A new session for `account` (always a new token: never reuse one from before the login); returns the token."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    Session.create(
        token_hash=token_digest(token),
        account=account.id,
        created_at=now,
        last_seen_at=now,
        ip=(ip or None) and ip[:64],
        user_agent=(user_agent or None) and user_agent[:255],
        auth_method=method,
    )
    return token


def load(token: str | None) -> Session | None:
    """The live session for `token`, its account joined; None (and revoked) once idle, too old or account inactive."""
    if not token:
        return None
    session = (
        Session.select(Session, Account)
        .join(Account)
        .where((Session.token_hash == token_digest(token)) & Session.revoked_at.is_null())
        .first()
    )
    if session is None:
        return None
    now = utcnow()
    if (
        now - session.last_seen_at >= Limits.idle
        or now - session.created_at >= Limits.absolute
        or session.account.state not in LIVE_STATES
    ):
        _revoke(Session.id == session.id, now)
        return None
    if now - session.last_seen_at >= TOUCH_EVERY:
        Session.update(last_seen_at=now).where(Session.id == session.id).execute()
        session.last_seen_at = now
    return session


def end(token: str | None) -> bool:
    """Revoke the session of `token` (logout); True if there was a live one."""
    if not token:
        return False
    return _revoke(Session.token_hash == token_digest(token), utcnow()) > 0


def end_all(account_id: int, except_session_id: int | None = None) -> int:
    """Revoke every live session of an account (password change, lock), but perhaps the one making the change."""
    condition = Session.account == account_id
    if except_session_id is not None:
        condition &= Session.id != except_session_id
    return _revoke(condition, utcnow())


def _revoke(condition, now: dt.datetime) -> int:
    return Session.update(revoked_at=now).where(condition & Session.revoked_at.is_null()).execute()
