"""The "Aide" pages: the e-health service's contact details, a message to the support mailbox, and "Je ne reçois pas
de document…" (the seed's checklist, and for a logged-in physician the facts of their own account).

Both pages are public (someone who cannot log in needs them most); sending a message needs an active account, so
that the support team knows who writes and can answer.
"""

from __future__ import annotations

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext
from flask_limiter.util import get_remote_address

from models import Delivery, SupportMessage, db
from security.permissions import can_read_own_documents, is_active
from workflows import AccountState, DeliveryState
from workflows.notifications import notify_support_message

from .limits import limiter
from .physician import NOTIFICATION_LABELS
from .trail import record_account_event

bp = Blueprint("help", __name__, url_prefix="/aide")

SUBJECT_MAX, BODY_MAX = 200, 5000

# Why a delivery of "Je ne reçois pas de document" waits, by state: facts about the physician's own account only.
WAITING_LABELS = {
    DeliveryState.FINALIZED: lazy_gettext("being checked by the portal (it takes a moment)"),
    DeliveryState.COMMUNICABLE: lazy_gettext(
        "waiting for the patient's authorization to send documents electronically"
    ),
    DeliveryState.CONSENTED: lazy_gettext("waiting for your account to be active"),
}
ACCOUNT_STATE_LABELS = {
    AccountState.ACTIVE: lazy_gettext("Active"),
    AccountState.PENDING: lazy_gettext("Temporary password issued"),
    AccountState.LOCKED: lazy_gettext("Locked"),
    AccountState.DISABLED: lazy_gettext("Disabled"),
}


def help_message_limit() -> str:
    return current_app.config.get("HELP_MESSAGE_RATE_LIMIT", "5 per hour")


def _sender_key() -> str:
    """Per account when logged in (several physicians may share a practice's address), else per address."""
    account = g.get("account")
    return f"account:{account.id}" if account is not None else get_remote_address()


def _read_message(form) -> tuple[dict, dict]:
    typed = {"subject": " ".join(form.get("subject", "").split()), "body": form.get("body", "").strip()}
    errors = {}
    if not typed["subject"]:
        errors["subject"] = _("Give your message a subject.")
    elif len(typed["subject"]) > SUBJECT_MAX:
        errors["subject"] = _("The subject is too long (at most %(max)d characters).", max=SUBJECT_MAX)
    if not typed["body"]:
        errors["body"] = _("Write your message.")
    elif len(typed["body"]) > BODY_MAX:
        errors["body"] = _("The message is too long (at most %(max)d characters).", max=BODY_MAX)
    return typed, errors


def send_support_message(account, subject: str, body: str) -> SupportMessage:
    """Keep the message and queue its e-mail to the support mailbox, both or neither."""
    with db.atomic():
        message = SupportMessage.create(account=account, subject=subject, body=body)
        notify_support_message(message, account)
    return message


@bp.route("", methods=["GET", "POST"])
@limiter.limit(help_message_limit, methods=["POST"], key_func=_sender_key, scope="help-message")
def index():
    """Contact details and the message form (seed: "la page « Aide » contient nos coordonnées ainsi qu'un lien pour
    nous envoyer un message directement")."""
    typed, errors, status = {"subject": "", "body": ""}, {}, 200
    if request.method == "POST":
        if not is_active(g.account):
            return redirect(url_for("auth.login", next=url_for(".index")))
        typed, errors = _read_message(request.form)
        if not errors:
            message = send_support_message(g.account, typed["subject"], typed["body"])
            # The audit event says that a message was sent, never what it says.
            record_account_event("support.message_sent", g.account, about=("support_message", message.id))
            flash(_("Your message was sent to the e-health service. They answer by e-mail."), "success")
            return redirect(url_for(".index"))
        status = 422
    return render_template("help/index.html", typed=typed, errors=errors, can_write=is_active(g.account)), status


@bp.get("/documents-manquants")
def missing_documents():
    """The seed's checklist; for a logged-in physician also their notification mode, bounced e-mail, account state
    and how many documents wait for them, and why."""
    situation = None
    if can_read_own_documents(g.account):
        g.no_store = True
        physician = g.account.physician
        counts = Delivery.counts_by_state(physician.id)
        situation = {
            "physician": physician,
            "notification": NOTIFICATION_LABELS.get(physician.notification_mode, physician.notification_mode),
            "notifications_off": physician.notification_mode == "none",
            "account_state": ACCOUNT_STATE_LABELS.get(g.account.state, g.account.state),
            "in_space": sum(counts.get(state, 0) for state in Delivery.VISIBLE_STATES),
            "unread": sum(counts.get(state, 0) for state in ("available", "notified")),
            "waiting": [(label, counts[state]) for state, label in WAITING_LABELS.items() if counts.get(state)],
        }
    return render_template("help/missing_documents.html", situation=situation)
