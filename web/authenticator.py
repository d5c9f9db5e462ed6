"""Mon profil → authenticator app: add one (QR code, then a first code), see since when it is active, remove it.

An authenticator app (TOTP) is an optional second method beside the SMS code; the login's code step uses
`security.otp.consume_totp(active_credential(account), code)`. At most one active app per account.
"""

from __future__ import annotations

import datetime as dt

import qrcode
from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from markupsafe import Markup

from models import Account, AuditEvent, TotpCredential, utcnow
from security import otp
from security.otp import active_credential
from security.passwords import verify_password

from .auth import login_required
from .trail import record_account_event

bp = Blueprint("authenticator", __name__, url_prefix="/profil/authentificateur")

__all__ = ["active_credential", "bp"]

# Removing asks for a current code or the password: wrong answers are limited so that a stolen session cannot guess
# the password here without the login's lockout.
MAX_REMOVE_FAILURES = 5
REMOVE_FAILURE_WINDOW = dt.timedelta(minutes=15)
QR_MODULE_PIXELS = 5


@bp.get("")
@login_required
def index():
    account = g.account
    active = active_credential(account)
    pending = None if active else otp.pending_credential(account)
    enrolment = _enrolment(account, pending) if pending else None
    return render_template("authenticator/index.html", active=active, pending=pending, enrolment=enrolment)


@bp.post("/ajouter")
@login_required
def add():
    account = g.account
    if active_credential(account) is not None:
        flash(_("You already have an authenticator app: remove it before adding another one."), "error")
        return redirect(url_for(".index"))
    credential = otp.add_totp_credential(account)
    record_account_event("totp.added", account, credential=credential.id)
    return redirect(url_for(".index"))


@bp.post("/confirmer")
@login_required
def confirm():
    account = g.account
    pending = otp.pending_credential(account)
    if pending is None:
        flash(_("There is no authenticator app to confirm: add one first."), "error")
        return redirect(url_for(".index"))
    if otp.confirm_totp(pending, request.form.get("code", "")):
        record_account_event("totp.confirmed", account, credential=pending.id)
        flash(_("Your authenticator app is active. You can use its codes to log in."), "success")
        return redirect(url_for(".index"))
    reason = "already-active" if active_credential(account) is not None else "wrong-code"
    record_account_event("totp.confirm_failed", account, outcome="failure", credential=pending.id, reason=reason)
    error = _("The code is wrong or has expired.")
    return render_template(
        "authenticator/index.html", active=None, pending=pending, enrolment=_enrolment(account, pending), error=error
    ), 422


@bp.post("/annuler")
@login_required
def cancel():
    """Drop an app that was never confirmed (its QR code is then worthless)."""
    account = g.account
    dropped = otp.drop_pending_credential(account)
    if dropped is not None:
        record_account_event("totp.cancelled", account, credential=dropped)
    return redirect(url_for(".index"))


@bp.post("/supprimer")
@login_required
def remove():
    account = g.account
    active = active_credential(account)
    if active is None:
        return redirect(url_for(".index"))
    code = request.form.get("code", "").strip()
    password = request.form.get("password", "")
    error, method = None, None
    if recent_remove_failures(account) >= MAX_REMOVE_FAILURES:
        error = _("Too many wrong answers: try again in 15 minutes.")
    elif not code and not password:
        error = _("Enter a current code from your app, or your password.")
    elif code and otp.consume_totp(active, code):
        method = "code"
    elif password and verify_password(account.password_hash, password):
        method = "password"
    else:
        error = _("This code or password is wrong.")
        record_account_event("totp.remove_failed", account, outcome="failure", credential=active.id)
    if error:
        return render_template("authenticator/index.html", active=active, pending=None, remove_error=error), 422
    otp.remove_totp_credentials(account)
    record_account_event("totp.removed", account, credential=active.id, method=method)
    flash(_("Your authenticator app is removed: your codes come by SMS again."), "success")
    return redirect(url_for(".index"))


def recent_remove_failures(account: Account) -> int:
    """Wrong answers to "remove" in the last 15 minutes, counted from the audit trail (which records each one)."""
    return (
        AuditEvent.select()
        .where(
            (AuditEvent.action == "totp.remove_failed")
            & (AuditEvent.actor_id == account.id)
            & (AuditEvent.at > utcnow() - REMOVE_FAILURE_WINDOW)
        )
        .count()
    )


def _enrolment(account: Account, pending: TotpCredential) -> dict:
    """What the page shows while an app is being added: the QR code and the same secret for typing by hand."""
    secret = otp.totp_secret(pending)
    uri = otp.provisioning_uri(secret, account.username)
    return {
        "qr_svg": qr_svg(uri, _("QR code to scan with your authenticator app")),
        "secret_groups": " ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
    }


def qr_svg(data: str, label: str) -> Markup:
    """The QR code of `data` as inline SVG drawn here from the module matrix: one path, no script, no style.

    (The CSP allows no inline style; qrcode's own SVG factories add attributes we do not need, so we draw the
    matrix ourselves: each run of dark modules on a row is one rectangle of the path.)
    """
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4)
    code.add_data(data)
    code.make(fit=True)
    matrix = code.get_matrix()
    size = len(matrix)
    path = []
    for y, row in enumerate(matrix):
        x = 0
        while x < size:
            if not row[x]:
                x += 1
                continue
            start = x
            while x < size and row[x]:
                x += 1
            path.append(f"M{start},{y}h{x - start}v1h-{x - start}z")
    pixels = size * QR_MODULE_PIXELS
    return Markup(
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}" width="{pixels}" height="{pixels}"'
        ' role="img" aria-label="{label}" shape-rendering="crispEdges">'
        '<rect width="{size}" height="{size}" fill="#fff"/><path fill="#000" d="{path}"/></svg>'
    ).format(size=size, pixels=pixels, label=label, path="".join(path))
