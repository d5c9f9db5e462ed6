"""The administrators' view of the outbox: the messages that could not be delivered (dead letters) first, any other
status on request, one message's details, and "Renvoyer" for a dead one.

The body of a message that holds a secret (a code, a temporary password, a link with a token) is never shown, and
it is erased anyway once the message leaves the queue (workflows/outbox.py): such a dead message cannot be resent,
and the page says what to do instead. A resend is audited: who, which message; never its content.
"""

from __future__ import annotations

from flask import abort, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext

from models import OutboxMessage, OutboxStatus, db
from security.permissions import is_administrator
from workflows import outbox

from .admin import bp, list_page, query_choice
from .auth import permission_required
from .trail import record_account_event

ALL = "all"  # the status filter's "every status" (no value means the default: dead)

STATUS_LABELS = {
    OutboxStatus.PENDING: lazy_gettext("Waiting to be sent"),
    OutboxStatus.SENDING: lazy_gettext("Being sent"),
    OutboxStatus.SENT: lazy_gettext("Sent"),
    OutboxStatus.DEAD: lazy_gettext("Not delivered"),
    OutboxStatus.CANCELLED: lazy_gettext("Cancelled (no longer needed)"),
}
CHANNEL_LABELS = {"email": lazy_gettext("E-mail"), "sms": lazy_gettext("SMS")}


def status_label(status: str) -> str:
    label = STATUS_LABELS.get(status)
    return str(label) if label is not None else status


def channel_label(channel: str) -> str:
    label = CHANNEL_LABELS.get(channel)
    return str(label) if label is not None else channel


def _status_filter() -> str | None:
    """Dead messages unless another status (or all of them) is asked for."""
    asked = request.args.get("status")
    if asked == ALL:
        return None
    return asked if asked in OutboxStatus.ALL else OutboxStatus.DEAD


def _message_or_404(message_id: int) -> OutboxMessage:
    message = OutboxMessage.get_or_none(message_id)
    if message is None:
        abort(404)
    return message


@bp.get("/messages")
@permission_required(is_administrator)
def messages():
    templates = OutboxMessage.templates()
    status = _status_filter()
    channel, template = query_choice("channel", OutboxMessage.CHANNELS), query_choice("template", templates)
    filters = {"status": status or ALL, "channel": channel, "template": template}
    listing = list_page(OutboxMessage.listing(status=status, channel=channel, template=template), ".messages", filters)
    return render_template(
        "admin/outbox.html",
        messages=listing.pop("rows"),
        **listing,
        statuses=[(s, status_label(s)) for s in OutboxStatus.ALL],
        status_counts=OutboxMessage.counts_by_status(),
        channels=[(c, channel_label(c)) for c in OutboxMessage.CHANNELS],
        templates=templates,
        status_label=status_label,
        channel_label=channel_label,
        all_statuses=ALL,
    )


@bp.get("/messages/<int:message_id>")
@permission_required(is_administrator)
def message(message_id: int):
    message = _message_or_404(message_id)
    return render_template(
        "admin/outbox_detail.html",
        message=message,
        secret=outbox.holds_secret(message),
        why_not_resend=outbox.why_not_resend(message),
        status_label=status_label,
        channel_label=channel_label,
    )


@bp.post("/messages/<int:message_id>/renvoyer")
@permission_required(is_administrator)
def resend(message_id: int):
    message = _message_or_404(message_id)
    # A refusal (not dead, secret erased, resent meanwhile) is answered by web/errors.py with its reason.
    with db.atomic():
        outbox.resend(message)
        record_account_event(
            "outbox.resend",
            g.account,
            about=("outbox_message", message.id),
            template=message.template,
            channel=message.channel,
        )
    flash(_("The message is back in the queue: it leaves with the next dispatch."), "success")
    return redirect(url_for(".message", message_id=message.id), 303)
