"""One function per outgoing message. Each renders its template and queues an outbox row; nothing is sent here.

Messages carry no patient data and no document title (DESIGN §4.2). They are bilingual (French first), because
the recipient's language is not always known when they are written.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from models import OutboxMessage

ZURICH = ZoneInfo("Europe/Zurich")
_TEMPLATES = Path(__file__).resolve().parent.parent / "web" / "templates"
_env = Environment(
    loader=FileSystemLoader(str(_TEMPLATES)),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
)


def local_time(value: dt.datetime) -> str:
    """A stored (naive UTC) time as people in Geneva read it: 28.11.2026 14:30."""
    return value.replace(tzinfo=dt.UTC).astimezone(ZURICH).strftime("%d.%m.%Y %H:%M")


class Portal:
    """What every message may say about the portal itself (set by the app factory from the configuration)."""

    url = "http://127.0.0.1:5000"
    support_email = "myhug@hcuge.ch"


def configure(url: str, support_email: str) -> None:
    Portal.url = url.rstrip("/")
    Portal.support_email = support_email


def _render_email(template: str, **context) -> tuple[str, str]:
    """(subject, body) of web/templates/email/<template>.txt: a "Subject: …" line, a blank line, the body."""
    rendered = _env.get_template(f"email/{template}.txt").render(portal=Portal, **context)
    subject, _, body = rendered.partition("\n\n")
    return subject.removeprefix("Subject: ").strip(), body


def _email(flow, template: str, to: str, **context) -> OutboxMessage:
    subject, body = _render_email(template, **context)
    message = OutboxMessage(
        channel="email", template=template, recipient=to, subject=subject, body=body, related_type=flow.workflow.name
    )
    flow.outbox.append(message)
    return message


def queue_email(
    template: str, to: str, *, related_type: str | None = None, related_id: int | None = None, **context
) -> OutboxMessage:
    """An e-mail that belongs to no workflow transition (a reminder): written to the outbox at once, inside the
    caller's transaction."""
    subject, body = _render_email(template, **context)
    return OutboxMessage.create(
        channel="email",
        template=template,
        recipient=to,
        subject=subject,
        body=body,
        related_type=related_type,
        related_id=related_id,
    )


def _render_sms(template: str, **context) -> str:
    return _env.get_template(f"sms/{template}.txt").render(portal=Portal, **context).strip()


def _sms(flow, template: str, to: str, **context) -> OutboxMessage:
    body = _render_sms(template, **context)
    message = OutboxMessage(channel="sms", template=template, recipient=to, body=body, related_type=flow.workflow.name)
    flow.outbox.append(message)
    return message


def queue_sms(
    template: str, to: str, *, related_type: str | None = None, related_id: int | None = None, **context
) -> OutboxMessage:
    """An SMS that belongs to no workflow transition (a login code): written to the outbox at once.

    The caller runs it inside its own transaction, so the message exists only if what caused it was committed.
    """
    body = _render_sms(template, **context)
    return OutboxMessage.create(
        channel="sms", template=template, recipient=to, body=body, related_type=related_type, related_id=related_id
    )


# -- enrolment ---------------------------------------------------------------------------------------------
def notify_enrollment_received(flow, token: str) -> OutboxMessage:
    app = flow.row
    return _email(
        flow,
        "enrollment_received",
        app.email,
        reference=app.reference,
        confirm_url=f"{Portal.url}/inscription/confirmer/{app.reference}/{token}",
    )


def notify_enrollment_validated(flow) -> OutboxMessage:
    return _email(flow, "enrollment_validated", flow.row.email, reference=flow.row.reference)


def notify_enrollment_closed(flow, outcome: str) -> OutboxMessage:
    return _email(flow, "enrollment_closed", flow.row.email, reference=flow.row.reference, outcome=outcome)


def notify_enrollment_completed(flow) -> OutboxMessage:
    return _email(flow, "enrollment_completed", flow.row.email, reference=flow.row.reference)


def send_control_code(flow, mobile: str, code: str) -> OutboxMessage:
    return _sms(flow, "control_code", mobile, code=code)


# -- accounts ------------------------------------------------------------------------------------------------
def notify_temporary_password(flow, password: str, hours: int, *, reissued: bool = False) -> OutboxMessage:
    account = flow.row
    return _email(
        flow,
        "temporary_password",
        account.email,
        username=account.username,
        password=password,
        hours=hours,
        reissued=reissued,
    )


def notify_login_code(account, mobile: str, code: str, minutes: int) -> OutboxMessage:
    """The SMS code of one login attempt (DESIGN §6): no name, no username, only the code and its lifetime."""
    return queue_sms("login_code", mobile, related_type="account", related_id=account.id, code=code, minutes=minutes)


def notify_temporary_password_expiring(account) -> OutboxMessage:
    """A day before an unused temporary password expires: no password in it, only what to do."""
    return queue_email(
        "temporary_password_expiring",
        account.email,
        related_type="account",
        related_id=account.id,
        username=account.username,
        expires_at=local_time(account.temporary_password_expires_at),
    )


# -- documents (workflows/notices.py) --------------------------------------------------------------------------
def notify_documents_waiting(physician, count: int, *, digest: bool) -> OutboxMessage:
    """New documents in "Mes documents": how many and where, nothing else (no patient, no title, no link token)."""
    return queue_email(
        "documents_waiting", physician.email, related_type="notification", related_id=physician.id, count=count,
        digest=digest,
    )  # fmt: skip


# -- appointments at a desk (enrolment step 2) ---------------------------------------------------------------
def _appointment_email(template: str, appointment, **context) -> OutboxMessage:
    app, slot = appointment.application, appointment.slot
    return queue_email(
        template,
        app.email,
        related_type="enrollment",
        related_id=app.id,
        reference=app.reference,
        desk=slot.desk,
        starts_at=local_time(slot.starts_at),
        tracking_url=f"{Portal.url}/inscription/suivi",
        **context,
    )


def notify_appointment_booked(appointment, *, moved: bool = False) -> OutboxMessage:
    """The applicant's booking (or its move) at a desk: when, where, and what to bring."""
    return _appointment_email("appointment_booked", appointment, moved=moved)


def notify_appointment_cancelled(appointment) -> OutboxMessage:
    return _appointment_email("appointment_cancelled", appointment)


def notify_appointment_reminder(appointment) -> OutboxMessage:
    """The day before the appointment (jobs/appointments.py)."""
    return _appointment_email("appointment_reminder", appointment)


# -- help ----------------------------------------------------------------------------------------------------------
def notify_support_message(message, account) -> OutboxMessage:
    """A message from the "Aide" page to the support mailbox: who wrote (so that they can be answered) and what."""
    physician = account.physician if account is not None and account.physician_id else None
    return queue_email(
        "support_message",
        Portal.support_email,
        related_type="support_message",
        related_id=message.id,
        subject=" ".join(message.subject.split()),  # one line: it becomes the e-mail's subject
        body=message.body,
        sent_at=local_time(message.created_at),
        username=account.username if account is not None else "",
        full_name=(account.full_name or account.username) if account is not None else "",
        email=(physician.email if physician is not None else account.email) if account is not None else "",
        gln=physician.gln if physician is not None else "",
    )
