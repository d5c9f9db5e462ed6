"""Development only (registered when MYHUG_ENV is development or testing): read the SMS and e-mails of the outbox."""

from __future__ import annotations

from flask import Blueprint, g, render_template

from models import OutboxMessage

bp = Blueprint("dev", __name__, url_prefix="/dev")


@bp.get("/sms")
def sms():
    """With MYHUG_SMS_BACKEND=outbox no SMS leaves the machine: this page is how `make run` reads login codes."""
    g.no_store = True
    messages = OutboxMessage.select().where(OutboxMessage.channel == "sms").order_by(OutboxMessage.id.desc()).limit(20)
    return render_template("dev/sms.html", messages=list(messages))


@bp.get("/mail")
def mail():
    """Without an SMTP server, `make run` keeps e-mails in the outbox: this page shows the latest ones whole."""
    g.no_store = True
    messages = (
        OutboxMessage.select().where(OutboxMessage.channel == "email").order_by(OutboxMessage.id.desc()).limit(20)
    )
    return render_template("dev/mail.html", messages=list(messages))
