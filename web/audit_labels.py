"""The audit trail's actions and outcomes in people's words, for the administrators' journal and dashboard and the
physician's access history: one label per action the web and the workflows record, the code where there is none."""

from __future__ import annotations

from flask_babel import gettext as _
from flask_babel import lazy_gettext

from workflows import WORKFLOWS

from .templating import role_label

# Actions recorded outside the workflow engine (web/trail.py and the workflows' own audit calls). The engine's
# `{workflow}.{trigger}` actions take the label of their transition (workflows/*.py TRANSITIONS).
ACTION_LABELS = {
    "login.success": lazy_gettext("Logged in"),
    "login.failure": lazy_gettext("Login failed"),
    "login.code_sent": lazy_gettext("Login code sent by SMS"),
    "login.code_failed": lazy_gettext("Login code refused"),
    "login.code_refused": lazy_gettext("No login code sent"),
    "logout": lazy_gettext("Logged out"),
    "account.password_set": lazy_gettext("Own password chosen"),
    "account.password_changed": lazy_gettext("Password changed"),
    "account.password_change_failed": lazy_gettext("Password change refused"),
    "account.language": lazy_gettext("Language changed"),
    "totp.added": lazy_gettext("Authenticator app added"),
    "totp.confirmed": lazy_gettext("Authenticator app confirmed"),
    "totp.confirm_failed": lazy_gettext("Authenticator app not confirmed"),
    "totp.cancelled": lazy_gettext("Authenticator app set-up cancelled"),
    "totp.removed": lazy_gettext("Authenticator app removed"),
    "totp.remove_failed": lazy_gettext("Authenticator app removal refused"),
    "profile.changed": lazy_gettext("Profile changed"),
    "physician.email_confirmed": lazy_gettext("Notifications resumed"),
    "support.message_sent": lazy_gettext("Message sent to the support"),
    "document.receive": lazy_gettext("Received from the DPI"),
    "document.update": lazy_gettext("Updated by the DPI"),
    "document.recall": lazy_gettext("Recalled by the hospital"),
    "document.manual_send": lazy_gettext("Sent manually with the patient's agreement"),
    "document.opened": lazy_gettext("Document opened"),
    "document.viewed": lazy_gettext("PDF viewed"),
    "document.downloaded": lazy_gettext("PDF downloaded"),
    "document.access_denied": lazy_gettext("Access refused"),
    "document.integrity_failed": lazy_gettext("PDF not served: integrity check failed"),
    "document_type.add": lazy_gettext("Document type added"),
    "document_type.communicable": lazy_gettext("Document type made communicable or not"),
    "designation.record": lazy_gettext("Designation recorded"),
    "designation.revoke": lazy_gettext("Designation withdrawn"),
    "dpi.client_created": lazy_gettext("DPI client created"),
    "dpi.client_revoked": lazy_gettext("DPI client revoked"),
    "fhir.foreign_document": lazy_gettext("DPI client asked for another client's document"),
    "fhir.foreign_audit_event": lazy_gettext("DPI client asked for an event it may not read"),
    "outbox.resend": lazy_gettext("Message resent"),
    "appointments.published": lazy_gettext("Appointment times published"),
    "appointments.withdrawn": lazy_gettext("Appointment time withdrawn"),
    "enrolment.id_copy_viewed": lazy_gettext("ID copy downloaded"),
    "enrolment.appointment_booked": lazy_gettext("Appointment booked"),
    "enrolment.appointment_cancelled": lazy_gettext("Appointment cancelled"),
    "enrolment.control_sms_failed": lazy_gettext("The control SMS could not be sent"),
    "audit.export": lazy_gettext("Audit trail exported"),
}

OUTCOME_LABELS = {
    "success": lazy_gettext("Success"),
    "failure": lazy_gettext("Failure"),
    "denied": lazy_gettext("Refused"),
}


def action_label(action: str) -> str | None:
    """The translated label of `action`, or None when it has none (the page then shows the code alone)."""
    label = ACTION_LABELS.get(action)
    if label is not None:
        return str(label)
    name, _dot, trigger = action.partition(".")
    workflow = WORKFLOWS.get(name)
    spec = next((s for s in workflow.transitions if s.trigger == trigger), None) if workflow else None
    return _(spec.label) if spec is not None else None  # N_() message ids from workflows/


def actor_role_label(role: str) -> str:
    """The role the event was recorded with; "anonymous" is a visitor who was not logged in (a failed login)."""
    return _("Not logged in") if role == "anonymous" else role_label(role)


def outcome_label(outcome: str) -> str:
    label = OUTCOME_LABELS.get(outcome)
    return str(label) if label is not None else outcome
