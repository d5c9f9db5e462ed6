"""Logging in (password, then a code by SMS), choosing one's password, logging out, and the access decorators.

The rules (failures, back-off, lock, codes) live in workflows/login.py; these views turn their outcome into
pages. Unknown user, wrong password, locked account and back-off read the same sentence and cost one argon2
hash each (DESIGN §6). Per-address limits come from web/limits.py.
"""

from __future__ import annotations

import datetime as dt
import functools
import secrets
from collections.abc import Callable
from urllib.parse import urlsplit

from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, session, url_for
from flask_babel import gettext
from flask_babel import gettext as _

from gateways.sms import backend_from_config
from models import Account, CodeChallenge, Role, db, utcnow
from security import passwords, permissions, sessions
from workflows import login as login_rules
from workflows.engine import TransitionRefused
from workflows.outbox import send_sms_now

from . import UNSESSIONED_ENDPOINTS, i18n
from .limits import limiter, login_limit, sms_limit, sms_was_sent
from .templating import url_if_exists
from .trail import record_account_event

bp = Blueprint("auth", __name__)

ATTEMPT_KEY = "login_attempt"
AUTH_METHOD = "password+sms"

# Where each role lands after login: the first of these pages that exists (later issues add them).
LANDING_ENDPOINTS = {
    Role.VALIDATOR: ("desk.index",),
    Role.ADMINISTRATOR: ("admin.dashboard", "admin.workflows"),
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
@limiter.limit(login_limit, methods=["POST"])
@limiter.limit(sms_limit, methods=["POST"], scope="sms", deduct_when=sms_was_sent)
def login():
    g.no_store = True
    next_url = safe_next(request.values.get("next"))
    if g.account is not None and request.method == "GET":
        return redirect(next_url or landing_url(g.account))
    error, username = None, ""
    if request.method == "POST":
        username = request.form.get("username", "").strip()
        password = request.form.get("password", "")
        if not username or not password:
            error = _("Enter your username and your password.")
        else:
            outcome = login_rules.check_password(username, password)
            if outcome.ok:
                attempt_id = secrets.token_urlsafe(16)
                session[ATTEMPT_KEY] = {"id": attempt_id, "started": utcnow().isoformat(), "next": next_url}
                if login_rules.uses_authenticator_app(outcome.account):
                    login_rules.open_app_attempt(outcome.account, attempt_id)
                    return redirect(url_for("auth.code"))
                error = _send_code(outcome.account, attempt_id)
                if error is None:
                    return redirect(url_for("auth.code"))
            else:
                _audit_failure("login.failure", outcome.account, outcome.reason, step="password")
                # One sentence for an unknown user, a wrong password, a locked account and a back-off.
                error = _("Wrong username or password.")
    return render_template("auth/login.html", error=error, username=username, next_url=next_url)


def _send_code(account: Account, attempt_id: str) -> str | None:
    """Issue and send a code now (the login does not wait for the scheduler); the error to show, or None."""
    try:
        challenge, message = login_rules.issue_code(account, attempt_id)
    except TransitionRefused as refused:
        _audit_failure("login.code_refused", account, refused.reason.code, step="password")
        if refused.reason.code == "no-mobile":
            return _("No mobile number is registered for this account: contact the e-health service.")
        return gettext(refused.reason.text)
    g.sms_sent = True
    if not send_sms_now(message, backend_from_config(current_app.config)):
        login_rules.cancel_code(challenge)
        _audit_failure("login.code_failed", account, "sms-gateway", step="password", challenge=challenge.public_id)
        return _("The SMS could not be sent. Please try again in a moment.")
    record_account_event("login.code_sent", account, challenge=challenge.public_id, channel="sms")
    return None


def _live_attempt() -> dict | None:
    attempt = session.get(ATTEMPT_KEY)
    if not attempt or _attempt_is_stale(attempt):
        if attempt:
            session.pop(ATTEMPT_KEY, None)
            flash(_("Your login attempt has expired: please start again."), "error")
        return None
    return attempt


# -- step 2: the code ---------------------------------------------------------------------------------------------
@bp.route("/login/code", methods=["GET", "POST"])
@limiter.limit(login_limit, methods=["POST"])
def code():
    g.no_store = True
    attempt = _live_attempt()
    if attempt is None:
        return redirect(url_for("auth.login"))
    error = None
    if request.method == "POST":
        outcome = login_rules.check_code(attempt["id"], request.form.get("code", ""))
        if outcome.ok:
            login_rules.record_success(outcome.account)
            return log_in(outcome.account, AUTH_METHOD, attempt.get("next"))
        _audit_failure("login.code_failed", outcome.account, outcome.reason, step="code")
        if outcome.reason in {"no-challenge", "account-locked", "account-disabled"}:
            session.pop(ATTEMPT_KEY, None)
            flash(_("Your login attempt was stopped: please log in again."), "error")
            return redirect(url_for("auth.login"))
        error = _("The code is wrong or has expired.")
    return _code_page(error, attempt)


@bp.post("/login/code/renvoyer")
@limiter.limit(login_limit)
@limiter.limit(sms_limit, scope="sms", deduct_when=sms_was_sent)
def resend_code():
    """A new code for the same attempt; the previous one stops working. At most 5 codes an hour per account."""
    g.no_store = True
    attempt = _live_attempt()
    if attempt is None:
        return redirect(url_for("auth.login"))
    latest = CodeChallenge.latest_of_attempt(attempt["id"])
    account = Account.get_or_none(Account.id == latest.account_id) if latest else None
    if account is None or account.state not in login_rules.LOGIN_STATES:
        session.pop(ATTEMPT_KEY, None)
        return redirect(url_for("auth.login"))
    error = _send_code(account, attempt["id"])
    if error is None:
        flash(_("A new code was sent by SMS. An earlier SMS code no longer works."), "info")
        return redirect(url_for("auth.code"))
    return _code_page(error, attempt)


def _code_page(error: str | None, attempt: dict):
    """The code step: the authenticator app's code when the attempt waits for it, else the SMS code."""
    latest = CodeChallenge.latest_of_attempt(attempt["id"])
    via_app = latest is not None and latest.purpose == "login-app"
    dev_sms_url = url_if_exists("dev.sms") if current_app.config["MYHUG_ENV"] == "development" else None
    return render_template(
        "auth/code.html", error=error, minutes=login_rules.CODE_MINUTES, dev_sms_url=dev_sms_url, via_app=via_app
    )


def _attempt_is_stale(attempt: dict) -> bool:
    try:
        started = dt.datetime.fromisoformat(attempt["started"])
    except (KeyError, TypeError, ValueError):
        return True
    return utcnow() - started > dt.timedelta(minutes=login_rules.ATTEMPT_MINUTES)


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


# -- choosing one's own password ----------------------------------------------------------------------------------
def _password_problems(account: Account, new: str, confirmation: str) -> list[str]:
    if new != confirmation:
        return [_("The two new passwords differ.")]
    names = tuple((account.full_name or "").split())
    if account.physician_id is not None:
        names += (account.physician.first_name, account.physician.last_name)
    problems = passwords.check_password(new, username=account.username, email=account.email, names=names)
    return [gettext(p.text) for p in problems]


@bp.route("/login/provisoire", methods=["GET", "POST"])
def pending():
    """First login with a temporary password: nothing else is reachable until the holder chooses their own."""
    g.no_store = True
    if g.account is None:
        return redirect(url_for("auth.login"))
    if g.account.state == "active":
        return redirect(landing_url(g.account))
    errors = []
    if request.method == "POST":
        new = request.form.get("new_password", "")
        errors = _password_problems(g.account, new, request.form.get("confirmation", ""))
        if not errors:
            account = login_rules.set_own_password(g.account, new, keep_session_id=g.session.id)
            record_account_event("account.password_set", account, first=True)
            if account.state == "active":
                flash(_("Your password is saved and your account is active."), "info")
                return redirect(landing_url(account))
            errors = [_("Your password is saved; complete your profile to activate your account.")]
    return render_template("auth/first_password.html", errors=errors)


@bp.route("/profil/mot-de-passe", methods=["GET", "POST"])
@login_required
def change_password():
    """Mon profil, setting 6: needs the current password; every other session of the account ends."""
    g.no_store = True
    errors = []
    if request.method == "POST":
        current = request.form.get("current_password", "")
        new = request.form.get("new_password", "")
        if not passwords.verify_password(g.account.password_hash, current):
            errors = [_("The current password is wrong.")]
            _audit_failure("account.password_change_failed", g.account, "wrong-current-password")
        else:
            errors = _password_problems(g.account, new, request.form.get("confirmation", ""))
        if not errors:
            account = login_rules.set_own_password(g.account, new, keep_session_id=g.session.id)
            record_account_event("account.password_changed", account)
            flash(_("Your new password is saved. Your other sessions were closed."), "info")
            return redirect(landing_url(account))
    return render_template("auth/change_password.html", errors=errors)


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
