"""Logging in with HIN (DESIGN §4.3, §5): `/login/hin` starts the OpenID Connect flow, `/login/hin/callback` ends it.

A returning identity is found by (issuer, subject). A first login creates the account through the account
workflow (`provision_hin`): personal identity, valid GLN, one account per physician and per HIN identity, role
physician and nothing else, whatever the claims say. An existing account is never linked to a HIN identity here:
the e-health service does that. Every refusal is an explanation page and an audit event; the attempt (state,
nonce, PKCE verifier) lives in the signed session and is taken out of it before anything else, so it serves once.
"""

from __future__ import annotations

from flask import Blueprint, Flask, current_app, flash, g, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext
from peewee import IntegrityError

from gateways import hin
from models import Account, Physician, Role, db, gln_is_valid
from workflows import ACCOUNT, Actor, TransitionRefused, engine

from .auth import landing_url, log_in, safe_next
from .limits import limiter, login_limit
from .trail import record_account_event

bp = Blueprint("hin", __name__)

AUTH_METHOD = "hin"
ATTEMPTS_KEY = "hin_attempts"
MAX_ATTEMPTS = 3  # HIN logins started in other tabs of this browser that may still come back

# Refusal code → (HTTP status, title, explanation). Lazy: translated in the language of the request that shows it.
_TRY_AGAIN = lazy_gettext(
    "This HIN login could not be completed: it took too long, was already used, or was not started from this "
    "browser. Please start again."
)
_ALREADY = (
    lazy_gettext("You already have a myHUG account"),
    lazy_gettext(
        "A myHUG account already exists for you (for your GLN or your e-mail address). For your safety, myHUG never "
        "links a HIN identity to an existing account by itself. Log in as usual with your password and the code "
        "sent by SMS, and ask the e-health service to link your HIN identity to your account."
    ),
)
_NOT_PERSONAL = lazy_gettext("This HIN identity is not a personal one")
REFUSALS = {
    "team-identity": (
        403,
        _NOT_PERSONAL,
        lazy_gettext(
            "You logged in with the HIN identity of a team or a practice. myHUG accounts are personal: log in with "
            "your own personal HIN identity."
        ),
    ),
    "no-identity-type": (
        403,
        _NOT_PERSONAL,
        lazy_gettext(
            "HIN did not confirm that this identity is a personal one, and myHUG accounts are personal. Log in with "
            "your own personal HIN identity, or contact the e-health service."
        ),
    ),
    "no-gln": (
        403,
        lazy_gettext("Your HIN identity has no GLN"),
        lazy_gettext(
            "HIN did not send a GLN for this identity, and myHUG ties each account to one physician by their GLN. "
            "Ask HIN to add your GLN to your identity, or contact the e-health service."
        ),
    ),
    "bad-gln": (
        403,
        lazy_gettext("The GLN of your HIN identity is not valid"),
        lazy_gettext(
            "The GLN sent by HIN for this identity is not a valid GLN (its check digit is wrong). Ask HIN to "
            "correct it, or contact the e-health service."
        ),
    ),
    "gln-mismatch": (
        403,
        lazy_gettext("Your HIN identity does not match your account"),
        lazy_gettext(
            "The GLN sent by HIN is not the one of the physician this account belongs to. For your safety you are "
            "not logged in: contact the e-health service."
        ),
    ),
    "physician-has-account": (403, *_ALREADY),
    "email-has-account": (403, *_ALREADY),
    "hin-identity-taken": (403, *_ALREADY),
    "account-locked": (
        403,
        lazy_gettext("Your account is locked"),
        lazy_gettext("Your myHUG account is locked. Contact the e-health service to have it unlocked."),
    ),
    "account-disabled": (
        403,
        lazy_gettext("Your account is disabled"),
        lazy_gettext(
            "Your myHUG account has been disabled. Contact the e-health service if you think this is a mistake."
        ),
    ),
    "account-pending": (
        403,
        lazy_gettext("Your account is not active yet"),
        lazy_gettext("This account is not active yet. Contact the e-health service."),
    ),
    hin.DENIED: (
        400,
        lazy_gettext("HIN login cancelled"),
        lazy_gettext(
            "The login was cancelled or refused at HIN. You can try again, or log in with your password and the code "
            "sent by SMS."
        ),
    ),
    hin.ATTEMPT_INVALID: (400, lazy_gettext("HIN login failed"), _TRY_AGAIN),
    "conflict": (409, lazy_gettext("HIN login failed"), _TRY_AGAIN),
    hin.TOKEN_INVALID: (
        400,
        lazy_gettext("HIN login failed"),
        lazy_gettext(
            "The answer from HIN could not be verified, so you are not logged in. Please start again; if this "
            "happens again, contact the e-health service."
        ),
    ),
    hin.PROVIDER_REFUSED: (
        400,
        lazy_gettext("HIN login failed"),
        lazy_gettext(
            "HIN refused to complete this login. Please start again; if this happens again, contact the e-health "
            "service."
        ),
    ),
    hin.UNREACHABLE: (
        502,
        lazy_gettext("HIN cannot be reached"),
        lazy_gettext(
            "HIN could not be reached or did not answer properly. Please try again in a few minutes, or log in with "
            "your password and the code sent by SMS."
        ),
    ),
}


ADDRESSES = frozenset({"/login/hin", "/login/hin/callback"})


def init_app(app: Flask) -> None:
    """Routed only when HIN is configured, so that every "Log in with HIN" link (templating.link_if_routed) appears
    exactly when it leads somewhere. Without MYHUG_HIN_ISSUER the two bookmarked addresses (DESIGN §5) still answer:
    a page that says HIN login is not configured here, instead of a bare "page not found"."""
    if hin.Settings.from_config(app.config) is not None:
        app.register_blueprint(bp)
    else:
        app.before_request(_explain_when_not_configured)


def settings() -> hin.Settings | None:
    return hin.Settings.from_config(current_app.config)


def _explain_when_not_configured():
    if request.path in ADDRESSES:
        g.no_store = True
        return _not_configured()
    return None


# -- the two addresses ----------------------------------------------------------------------------------------
@bp.get("/login/hin")
@limiter.limit(login_limit)
def start():
    g.no_store = True
    config = settings()
    if config is None:
        return _not_configured()
    next_url = safe_next(request.args.get("next"))
    if g.account is not None:
        return redirect(next_url or landing_url(g.account))
    try:
        url, attempt = hin.start(config, redirect_uri())
    except hin.HinError as error:
        return refuse(error.code, None)
    attempt["next"] = next_url
    attempts = _attempts()
    attempts[attempt["state"]] = attempt
    # The newest few only: the cookie stays small, and an abandoned attempt does not live on.
    session[ATTEMPTS_KEY] = dict(sorted(attempts.items(), key=lambda item: item[1].get("started", 0))[-MAX_ATTEMPTS:])
    return redirect(url)


@bp.get("/login/hin/callback")
@limiter.limit(login_limit)  # per address, like /login: each refusal costs an audit event and maybe a call to HIN
def callback():
    g.no_store = True
    config = settings()
    if config is None:
        return _not_configured()
    # Taken out of the session first, whatever happens next: a state serves once (a replayed callback finds nothing).
    attempts = _attempts()
    attempt = attempts.pop(request.args.get("state", ""), None)
    session[ATTEMPTS_KEY] = attempts
    if attempt is None:
        return refuse(hin.ATTEMPT_INVALID, None)
    try:
        identity = hin.finish(config, attempt, request.args)
    except hin.HinError as error:
        return refuse(error.code, None)
    return sign_in(identity, attempt.get("next"))


def redirect_uri() -> str:
    """What is registered at HIN: the portal's public address (MYHUG_PUBLIC_URL), not whatever Host this request
    came with (a proxy may rewrite it, and the provider compares the two character for character)."""
    return current_app.config["PUBLIC_URL"].rstrip("/") + url_for("hin.callback")


def _attempts() -> dict:
    attempts = session.get(ATTEMPTS_KEY)
    return dict(attempts) if isinstance(attempts, dict) else {}


# -- who logged in ----------------------------------------------------------------------------------------------
def sign_in(identity: hin.Identity, next_url: str | None):
    """A returning identity logs in; a new one gets its account, or a page that says why not."""
    account = account_for(identity)
    if account is not None:
        problem = returning_problem(account, identity)
        if problem:
            return refuse(problem, account, identity)
        return log_in(account, AUTH_METHOD, next_url)
    problem = identity_problem(identity)
    if problem:
        return refuse(problem, None, identity)
    physician = Physician.get_or_none(Physician.gln == identity.gln)
    if physician is not None and Account.select().where(Account.physician == physician).exists():
        return refuse("physician-has-account", None, identity)
    if identity.email and Account.with_email(identity.email) is not None:
        return refuse("email-has-account", None, identity)
    try:
        account = provision(identity, physician)
    except TransitionRefused as refused:  # the workflow's own guards; nothing was written
        return refuse(refused.reason.code, None, identity, fallback=_(refused.reason.text))
    except IntegrityError:  # the same person's first login in another tab won the race; nothing was written
        return refuse("conflict", None, identity)
    response = log_in(account, AUTH_METHOD, next_url)
    flash(_("Welcome to myHUG: your account has been created with your HIN identity."), "success")
    return response


def account_for(identity: hin.Identity) -> Account | None:
    return Account.by_hin_identity(identity.issuer, identity.subject)


def identity_problem(identity: hin.Identity) -> str | None:
    """At every login, not only the first: the identity must be personal and carry a valid GLN."""
    if identity.identity_type is None:
        return "no-identity-type"
    if identity.identity_type != "personal":
        return "team-identity"
    if not identity.gln:
        return "no-gln"
    if not gln_is_valid(identity.gln):
        return "bad-gln"
    return None


def returning_problem(account: Account, identity: hin.Identity) -> str | None:
    """The account's state first (a locked account hears that it is locked), then the same checks as a first login,
    then the GLN: HIN must still vouch for the physician this account belongs to."""
    if account.state != "active":
        return f"account-{account.state}" if f"account-{account.state}" in REFUSALS else "account-pending"
    problem = identity_problem(identity)
    if problem:
        return problem
    if account.role != Role.PHYSICIAN or account.physician_id is None or account.physician.gln != identity.gln:
        return "gln-mismatch"
    return None


def provision(identity: hin.Identity, physician: Physician | None) -> Account:
    """The physician (by GLN, made from the claims if the hospital does not know them yet) and their account, in one
    transaction: if the workflow refuses, the new physician row goes too."""
    with db.atomic():
        if physician is None:
            physician = Physician.create(
                gln=identity.gln,
                first_name=identity.given_name,
                last_name=identity.family_name,
                email=identity.email,
            )
        account = Account(
            username=Account.free_username(f"hin-{identity.gln}"),
            email=identity.email or physician.email,
            full_name=identity.full_name or physician.display_name,
            role=Role.PHYSICIAN,  # never anything else: IdP attributes grant no role (DESIGN §6)
            extra_roles="",
            physician=physician,
        )
        return engine.create(
            ACCOUNT,
            account,
            "provision_hin",
            Actor(Role.SYSTEM, ip=request.remote_addr),
            identity_type=identity.identity_type,
            issuer=identity.issuer,
            subject=identity.subject,
        )


# -- the pages that say no --------------------------------------------------------------------------------------
def refuse(code: str, account: Account | None, identity: hin.Identity | None = None, fallback: str | None = None):
    """Audit the refusal (reason code, and the GLN's last four digits to help the service desk: no token, no claim
    value beyond that), then explain it. No session is started: the browser stays as anonymous as it came."""
    details = {"method": AUTH_METHOD, "step": "hin"}
    if identity is not None and identity.gln:
        details["gln_end"] = identity.gln[-4:]
    record_account_event("login.failure", account, outcome="failure", reason=code, **details)
    status, title, message = REFUSALS.get(code, (403, lazy_gettext("HIN login refused"), None))
    return (
        render_template(
            "auth/hin_refused.html", title=title, message=message or fallback or _TRY_AGAIN, code=code, retry=True
        ),
        status,
    )


def _not_configured():
    return (
        render_template(
            "auth/hin_refused.html",
            title=lazy_gettext("HIN login is not available"),
            message=lazy_gettext(
                "Logging in with HIN is not configured on this portal. Log in with your password and the code sent "
                "by SMS."
            ),
            code=hin.NOT_CONFIGURED,
            retry=False,
        ),
        404,
    )
