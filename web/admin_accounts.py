"""The administrators' account pages: find an account, see its history, lock, unlock, disable, re-issue a password.

Every change goes through the account workflow (workflows/account.py): the one POST endpoint fires the trigger it
is given, and the engine re-checks state, role and guards, writes the transition log and the audit event, and
queues the e-mail. Administrators never see or choose a password: a re-issued one is e-mailed to the holder.
"""

from __future__ import annotations

import datetime as dt

from flask import abort, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext

from models import ACCOUNT_ROLES, Account, Physician, Session, utcnow
from security import sessions
from security.permissions import can_manage_accounts
from workflows import ACCOUNT, AccountState, available_actions, fire

from .admin import administrator, bp, list_page, query_choice
from .auth import permission_required
from .templating import role_label
from .trail import record_account_event

STATE_LABELS = {
    AccountState.PENDING: lazy_gettext("Temporary password issued"),
    AccountState.ACTIVE: lazy_gettext("Active"),
    AccountState.LOCKED: lazy_gettext("Locked"),
    AccountState.DISABLED: lazy_gettext("Disabled"),
}
LISTED_STATES = tuple(STATE_LABELS)

# Triggers the administrator must confirm with a ticked box (no JavaScript confirm: the CSP forbids inline script).
CONFIRMATIONS = {
    "disable": lazy_gettext("Yes, disable this account for good: it will never be able to log in again."),
}

# What the administrator is told once a trigger has fired; %(name)s is the account holder.
DONE = {
    "lock": lazy_gettext("The account of %(name)s is locked; its sessions have ended."),
    "unlock": lazy_gettext("The account of %(name)s is unlocked."),
    "disable": lazy_gettext("The account of %(name)s is disabled; its sessions have ended."),
    "reissue_password": lazy_gettext("A new temporary password was e-mailed to %(email)s."),
}


def state_label(state: str) -> str:
    if state == AccountState.NEW:
        return _("(creation)")
    label = STATE_LABELS.get(state)
    return str(label) if label is not None else state


def role_labels(account: Account) -> list[str]:
    """The primary role first, then any other the account holds (hospital staff only)."""
    extra = [r for r in account.extra_roles.split(",") if r and r != account.role]
    return [role_label(r) for r in (account.role, *extra) if r in account.roles]


def trigger_label(trigger: str) -> str:
    label = next((spec.label for spec in ACCOUNT.transitions if spec.trigger == trigger), trigger)
    return _(label)


def login_methods(account: Account) -> str:
    """How the holder logs in: with a password and an SMS code, with HIN, or both."""
    password, hin = account.password_hash is not None, account.hin_subject is not None
    if password and hin:
        return _("Password and SMS code, or HIN")
    if hin:
        return _("HIN")
    if password:
        return _("Password and SMS code")
    return "—"


def display_name(account: Account) -> str:
    return account.full_name or account.username


def _account_or_404(public_id: str) -> Account:
    account = Account.by_public_id(public_id)
    if account is None:
        abort(404)
    return account


# -- the list ---------------------------------------------------------------------------------------------------
@bp.get("/comptes")
@permission_required(can_manage_accounts)
def accounts():
    text = request.args.get("q", "").strip()[:200]
    role, state = query_choice("role", ACCOUNT_ROLES), query_choice("state", LISTED_STATES)
    listing = list_page(
        Account.search(text, role=role, state=state), ".accounts", {"q": text, "role": role, "state": state}
    )
    return render_template(
        "admin/accounts.html",
        accounts=listing.pop("rows"),
        **listing,
        roles=[(str(r), role_label(r)) for r in ACCOUNT_ROLES],
        states=[(str(s), state_label(s)) for s in LISTED_STATES],
        state_counts=Account.count_by_state(),
        state_label=state_label,
        role_labels=role_labels,
        login_methods=login_methods,
    )


# -- one account --------------------------------------------------------------------------------------------------
@bp.get("/comptes/<public_id>")
@permission_required(can_manage_accounts)
def account(public_id: str):
    account = _account_or_404(public_id)
    now = utcnow()
    return render_template(
        "admin/accounts_detail.html",
        account=account,
        name=display_name(account),
        history=list(Account.state_history(account.id)),
        live_sessions=Session.count_live(
            account.id, idle_since=now - sessions.Limits.idle, started_since=now - sessions.Limits.absolute
        ),
        actions=available_actions(ACCOUNT, account, administrator()),
        confirmations=CONFIRMATIONS,
        state_label=state_label,
        role_labels=role_labels,
        trigger_label=trigger_label,
        login_methods=login_methods,
        temporary_password_expired=_temporary_password_expired(account, now),
    )


def _temporary_password_expired(account: Account, now: dt.datetime) -> bool:
    expires = account.temporary_password_expires_at
    return bool(account.password_is_temporary and expires is not None and expires <= now)


@bp.post("/comptes/<public_id>/<trigger>")
@permission_required(can_manage_accounts)
def account_action(public_id: str, trigger: str):
    account = _account_or_404(public_id)
    here = url_for(".account", public_id=account.public_id)
    if trigger in CONFIRMATIONS and request.form.get("confirm") != "yes":
        flash(_("Nothing was changed: tick the box to confirm."), "error")
        return redirect(here, 303)
    # The engine checks state, role and guards again and refuses through web/errors.py (403/409/422 + reason).
    fire(ACCOUNT, account, trigger, administrator())
    flash(_done(trigger, account), "success")
    return redirect(here, 303)


@bp.post("/comptes/<public_id>/adresse-confirmee")
@permission_required(can_manage_accounts)
def email_confirmed(public_id: str):
    """The holder's mail server refused notifications (a hard bounce); an administrator, having checked the
    address with the physician, lets notifications go out again."""
    account = _account_or_404(public_id)
    if account.physician is None:
        abort(404)
    if Physician.clear_bounce(account.physician_id):
        record_account_event("physician.email_confirmed", g.account, about=("physician", account.physician_id))
        flash(_("Notifications will be sent to %(email)s again.", email=account.physician.email), "success")
    return redirect(url_for(".account", public_id=account.public_id), 303)


def _done(trigger: str, account: Account) -> str:
    done = DONE.get(trigger)
    if done is not None:
        return str(done) % {"name": display_name(account), "email": account.email}
    return _("Done: %(action)s.", action=trigger_label(trigger))
