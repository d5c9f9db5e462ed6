"""Logging in (password, then a code by SMS), logging out, and the access decorators every blueprint uses.

Minimal but correct (DESIGN §6): same answer and cost for an unknown user and a wrong password, a hashed
single-use code tied to this login attempt and valid 5 minutes, a new server-side session at every login.
Lockout, back-off, rate limits and HIN come with the login-hardening issue.
"""

from __future__ import annotations

import datetime as dt
import functools
import secrets
from collections.abc import Callable
from urllib.parse import urlsplit

from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, session, url_for
from flask_babel import gettext as _

from models import Account, CodeChallenge, Role, db, utcnow
from security import otp, permissions, sessions
from security.passwords import verify_password
from workflows import notifications

from . import UNSESSIONED_ENDPOINTS, i18n
from .templating import url_if_exists
from .trail import record_account_event

bp = Blueprint("auth", __name__)

LOGIN_STATES = sessions.LIVE_STATES
CODE_MINUTES = 5  # an SMS code lives 5 minutes (DESIGN §6)
ATTEMPT_MINUTES = 10  # password step → code step within 10 minutes
MAX_CODE_FAILURES = 5  # wrong codes per challenge before the attempt must start again
ATTEMPT_KEY = "login_attempt"
AUTH_METHOD = "password+sms"

# Where each role lands after login: the first of these pages that exists (later issues add them).
LANDING_ENDPOINTS = {
    Role.VALIDATOR: ("desk.index",),
    Role.ADMINISTRATOR: ("admin.workflows",),
    Role.CLINICIAN: ("clinic.index",),
}
# A physician's landing page is their "Mon profil" choice (models.LandingPage) on the physician blueprint.
PHYSICIAN_ENDPOINTS = {
    "documents": "physician.documents",
    "patients": "physician.patients",
    "profile": "physician.profile",
}


# -- the logged-in account, on every request ------------------------------------------------------------------
def load_logged_in_account() -> None:
    g.account = None
    g.session = None
    if request.endpoint in UNSESSIONED_ENDPOINTS:
        return
    token = request.cookies.get(sessions.COOKIE_NAME)
    if not token:
        return
    row = sessions.load(token)
    if row is None:
        g.forget_session_cookie = True  # expired or revoked: the browser may as well drop it
        return
    g.session, g.account = row, row.account


def drop_dead_session_cookie(response):
    if g.pop("forget_session_cookie", False):
        response.delete_cookie(sessions.COOKIE_NAME, path="/")
    return response


def init_app(app) -> None:
    """Before CSRFProtect's check, so that even its refusal page knows who is logged in."""
    app.before_request(load_logged_in_account)
    app.after_request(drop_dead_session_cookie)


def _set_session_cookie(response, token: str) -> None:
    g.pop("forget_session_cookie", None)
    response.set_cookie(
        sessions.COOKIE_NAME,
        token,
        path="/",
        secure=current_app.config["SESSION_COOKIE_SECURE"],
        httponly=True,
        samesite="Lax",
    )


# -- decorators -----------------------------------------------------------------------------------------------
def safe_next(url: str | None) -> str | None:
    """A redirect target from a form or a query string, only if it stays on this site (a path, not `//host`)."""
    if not url or not url.startswith("/") or url.startswith(("//", "/\\")):
        return None
    parts = urlsplit(url)
    return url if not parts.scheme and not parts.netloc else None


def _this_page() -> str:
    return request.full_path.rstrip("?") if request.query_string else request.path


def login_required(view: Callable) -> Callable:
    """Anonymous → the login page (then back here); a pending account → the temporary-password page."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if g.account is None:
            return redirect(url_for("auth.login", next=_this_page()))
        if g.account.state != "active":
            return redirect(url_for("auth.pending"))
        return view(*args, **kwargs)

    return wrapped


def permission_required(predicate: Callable[[Account | None], bool]) -> Callable[[Callable], Callable]:
    """login_required, then 403 unless `predicate(g.account)` (one of security.permissions)."""

    def decorator(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            if not predicate(g.account):
                abort(403)
            return view(*args, **kwargs)

        return login_required(wrapped)

    return decorator


def role_required(*roles: str) -> Callable[[Callable], Callable]:
    """login_required, then 403 unless the account has one of `roles`."""
    return permission_required(lambda account: permissions.has_role(account, *roles))


def landing_url(account: Account) -> str:
    """The page shown after login: the role's own page once it exists, else the home page."""
    if account.state != "active":
        return url_for("auth.pending")
    if account.role == Role.PHYSICIAN and account.physician_id is not None:
        preferred = PHYSICIAN_ENDPOINTS.get(account.physician.landing_page)
        endpoints = (preferred, *PHYSICIAN_ENDPOINTS.values())
    else:
        endpoints = LANDING_ENDPOINTS.get(account.role, ())
    for endpoint in endpoints:
        url = endpoint and url_if_exists(endpoint)
        if url:
            return url
    return url_for("main.home")


# -- step 1: username and password ----------------------------------------------------------------------------
@bp.route("/login", methods=["GET", "POST"])
def login():
    g.no_store = True
    next_url = safe_next(request.values.get("next"))
    if g.account is not None and request.method == "GET":
        return redirect(next_url or landing_url(g.account))
    error = None
    username = ""
    if request.method == "POST":
        username = request.form.get("username", "").strip()
        password = request.form.get("password", "")
        if not username or not password:
            error = _("Enter your username and your password.")
        else:
            account = _check_password(username, password)
            if account is None:
                error = _("Wrong username or password.")
            else:
                mobile = _mobile_of(account)
                if mobile is None:
                    error = _("No mobile number is registered for this account: contact the e-health service.")
                    _audit_failure("login.failure", account, "no-mobile", step="password")
                else:
                    _send_code(account, mobile, next_url)
                    return redirect(url_for("auth.code"))
    return render_template("auth/login.html", error=error, username=username, next_url=next_url)


def _check_password(username: str, password: str) -> Account | None:
    account = Account.get_or_none(Account.username == username)
    # verify_password hashes even without an account: an unknown user costs what a wrong password costs.
    matches = verify_password(account.password_hash if account else None, password)
    reason = None
    if account is None:
        reason = "unknown-user"
    elif not matches:
        reason = "wrong-password"
    elif account.state not in LOGIN_STATES:
        reason = f"account-{account.state}"
    elif account.password_is_temporary and (
        account.temporary_password_expires_at is None or account.temporary_password_expires_at <= utcnow()
    ):
        reason = "temporary-password-expired"
    if reason is not None:
        _audit_failure("login.failure", account, reason, step="password")
        return None
    return account


def _mobile_of(account: Account) -> str | None:
    if account.mobile:
        return account.mobile
    if account.physician_id is not None and account.physician.mobile:
        return account.physician.mobile
    return None


def _send_code(account: Account, mobile: str, next_url: str | None) -> None:
    """A fresh challenge for this attempt: the code goes to the outbox, only its keyed hash to the database."""
    attempt_id = secrets.token_urlsafe(16)
    code = otp.new_code()
    now = utcnow()
    with db.atomic():
        challenge = CodeChallenge(
            purpose="login",
            account=account.id,
            attempt_id=attempt_id,
            created_at=now,
            expires_at=now + dt.timedelta(minutes=CODE_MINUTES),
        )
        challenge.code_hash = otp.code_digest(challenge.public_id, code)
        challenge.save(force_insert=True)
        notifications.notify_login_code(account, mobile, code, CODE_MINUTES)
        record_account_event("login.code_sent", account, at=now, challenge=challenge.public_id, channel="sms")
    session[ATTEMPT_KEY] = {"id": attempt_id, "started": now.isoformat(), "next": next_url}


# -- step 2: the code ---------------------------------------------------------------------------------------------
@bp.route("/login/code", methods=["GET", "POST"])
def code():
    g.no_store = True
    attempt = session.get(ATTEMPT_KEY)
    if not attempt or _attempt_is_stale(attempt):
        if attempt:
            session.pop(ATTEMPT_KEY, None)
            flash(_("Your login attempt has expired: please start again."), "error")
        return redirect(url_for("auth.login"))
    error = None
    if request.method == "POST":
        account, problem = _check_code(attempt["id"], request.form.get("code", ""))
        if account is not None:
            return log_in(account, AUTH_METHOD, attempt.get("next"))
        if problem == "too-many-failures":
            session.pop(ATTEMPT_KEY, None)
            flash(_("Too many wrong codes: please log in again."), "error")
            return redirect(url_for("auth.login"))
        error = _("The code is wrong or has expired.")
    dev_sms_url = url_if_exists("dev.sms") if current_app.config["MYHUG_ENV"] == "development" else None
    return render_template("auth/code.html", error=error, minutes=CODE_MINUTES, dev_sms_url=dev_sms_url)


def _attempt_is_stale(attempt: dict) -> bool:
    try:
        started = dt.datetime.fromisoformat(attempt["started"])
    except (KeyError, TypeError, ValueError):
        return True
    return utcnow() - started > dt.timedelta(minutes=ATTEMPT_MINUTES)


def _check_code(attempt_id: str, submitted: str) -> tuple[Account | None, str | None]:
    """The account if `submitted` is the live code of this attempt, consumed now; else (None, why)."""
    challenge = (
        CodeChallenge.select()
        .where((CodeChallenge.attempt_id == attempt_id) & (CodeChallenge.purpose == "login"))
        .order_by(CodeChallenge.id.desc())
        .first()
    )
    if challenge is None:
        return None, "no-challenge"
    now = utcnow()
    submitted = "".join(submitted.split())
    problem = None
    if challenge.consumed_at is not None:
        problem = "code-used"
    elif challenge.expires_at <= now:
        problem = "code-expired"
    elif challenge.failures >= MAX_CODE_FAILURES:
        problem = "too-many-failures"
    elif not otp.code_matches(challenge.public_id, submitted, challenge.code_hash):
        problem = "wrong-code"
        CodeChallenge.update(failures=CodeChallenge.failures + 1).where(CodeChallenge.id == challenge.id).execute()
        if challenge.failures + 1 >= MAX_CODE_FAILURES:
            problem = "too-many-failures"
    else:
        # Single use, also under two simultaneous submissions: only one UPDATE finds consumed_at still empty.
        consumed = (
            CodeChallenge.update(consumed_at=now)
            .where(
                (CodeChallenge.id == challenge.id)
                & CodeChallenge.consumed_at.is_null()
                & (CodeChallenge.expires_at > now)
            )
            .execute()
        )
        if consumed != 1:
            problem = "code-used"
    account = Account.get_or_none(Account.id == challenge.account_id)
    if problem is None and (account is None or account.state not in LOGIN_STATES):
        problem = "account-inactive"
    if problem is not None:
        _audit_failure("login.code_failed", account, problem, step="code", challenge=challenge.public_id)
        return None, problem
    return account, None


def log_in(account: Account, method: str, next_url: str | None = None):
    """The end of every way in (password + code, HIN): a new server-side session (never the one this browser had
    before), the browser's signed cookie restarted, then `next_url` or the role's landing page."""
    now = utcnow()
    with db.atomic():
        sessions.end(request.cookies.get(sessions.COOKIE_NAME))
        token = sessions.start(account, request.remote_addr, request.user_agent.string, method)
        Account.update(last_login_at=now).where(Account.id == account.id).execute()
        record_account_event("login.success", account, at=now, method=method)
    _restart_browser_session()
    target = safe_next(next_url) if account.state == "active" else None
    response = redirect(target or landing_url(account))
    _set_session_cookie(response, token)
    return response


def _restart_browser_session() -> None:
    """Forget everything the browser's signed cookie held before (attempt, CSRF secret), except its language."""
    language = session.get(i18n.SESSION_KEY)
    session.clear()
    if language:
        session[i18n.SESSION_KEY] = language


def _audit_failure(action: str, account: Account | None, reason: str, **details) -> None:
    # Never the submitted code, password or (for an unknown user) username: people type passwords there.
    record_account_event(action, account, outcome="failure", reason=reason, **details)


# -- a pending account, and logging out -----------------------------------------------------------------------
@bp.get("/login/provisoire")
def pending():
    """Honest about today's limits: replacing the temporary password is the next issue's page."""
    if g.account is None:
        return redirect(url_for("auth.login"))
    if g.account.state == "active":
        return redirect(landing_url(g.account))
    return render_template("auth/pending.html", change_password_url=url_if_exists("auth.change_password"))


@bp.post("/logout")
def logout():
    token = request.cookies.get(sessions.COOKIE_NAME)
    if g.account is not None:
        record_account_event("logout", g.account)
    sessions.end(token)
    _restart_browser_session()
    g.account, g.no_store = None, True
    flash(_("You are logged out."), "info")
    response = redirect(url_for("main.home"))
    response.delete_cookie(sessions.COOKIE_NAME, path="/")
    return response
