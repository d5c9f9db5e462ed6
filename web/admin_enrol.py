"""Step 6 of the enrolment, the administrator's side: the queue of transmitted applications and each application's file.

An administrator reads section 1 and the desk's evidence (section 2), downloads the ID copy (audited), reads the
application's whole history, then creates the login or rejects. Both go through the enrolment workflow
(workflows/enrollment.py): the one POST endpoint fires the trigger it is given and the engine re-checks state, role
and guards — the four-eyes rule among them —, writes the log and the audit event, and queues the e-mails. Nobody
ever sees the temporary password: the account workflow e-mails it to the applicant.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from flask import Response, abort, current_app, flash, g, redirect, render_template, request, url_for
from flask_babel import format_timedelta, lazy_gettext
from flask_babel import gettext as _

from models import Account, AuditEvent, Desk, EnrollmentApplication, IdDocumentType, Specialty, utcnow
from security.encryption import BlobStore, DecryptionError, decrypt_field, keyring
from security.files import ID_COPY_TYPES, sniff_type
from security.permissions import can_review_applications
from workflows import ENROLLMENT, EnrollmentState, available_actions, fire

from .admin import administrator, bp, list_page, query_choice
from .auth import permission_required
from .templating import role_label
from .trail import record_account_event

REASON_MAX = 1000  # characters of a rejection reason; the textarea says so too

S = EnrollmentState
STATE_LABELS = {
    S.SUBMITTED: lazy_gettext("Submitted"),
    S.PRESENTED: lazy_gettext("Presented at the desk"),
    S.IDENTITY_VERIFIED: lazy_gettext("Identity verified"),
    S.PHONE_VERIFIED: lazy_gettext("Mobile number verified"),
    S.SIGNED: lazy_gettext("Section 2 signed"),
    S.TRANSMITTED: lazy_gettext("Transmitted, waiting for the login"),
    S.ACCOUNT_CREATED: lazy_gettext("Login created"),
    S.COMPLETED: lazy_gettext("Completed"),
    S.REJECTED: lazy_gettext("Rejected"),
    S.WITHDRAWN: lazy_gettext("Withdrawn"),
    S.EXPIRED: lazy_gettext("Expired"),
}
LISTED_STATES = tuple(STATE_LABELS)

DESK_LABELS = {
    Desk.AMG: lazy_gettext("AMG secretariat"),
    Desk.EHEALTH: lazy_gettext("E-health & telemedicine service"),
}
ID_TYPE_LABELS = {
    IdDocumentType.PASSPORT: lazy_gettext("Passport"),
    IdDocumentType.IDENTITY_CARD: lazy_gettext("Identity card"),
    IdDocumentType.RESIDENCE_PERMIT: lazy_gettext("Residence permit"),
    IdDocumentType.DRIVING_LICENCE: lazy_gettext("Driving licence"),
}
METHOD_LABELS = {"sms": lazy_gettext("Control SMS read back"), "call": lazy_gettext("Control call")}
MESSAGE_LABELS = {
    "enrollment_received": lazy_gettext("Application received, link to confirm the e-mail address"),
    "enrollment_validated": lazy_gettext("Application transmitted to the e-health service"),
    "enrollment_closed": lazy_gettext("Application closed"),
    "enrollment_completed": lazy_gettext("Registration completed"),
    "temporary_password": lazy_gettext("Login and temporary password"),
    "control_code": lazy_gettext("Control SMS code"),
}
MESSAGE_STATUS_LABELS = {
    "pending": lazy_gettext("Waiting to be sent"),
    "sending": lazy_gettext("Being sent"),
    "sent": lazy_gettext("Sent"),
    "dead": lazy_gettext("Could not be sent"),
}
# Audited facts about an application that are not transitions (recorded by the web layer).
EVENT_LABELS = {
    "enrolment.id_copy_viewed": lazy_gettext("ID copy downloaded"),
    "enrolment.appointment_booked": lazy_gettext("Appointment booked"),
    "enrolment.appointment_cancelled": lazy_gettext("Appointment cancelled"),
    "enrolment.control_sms_failed": lazy_gettext("The control SMS could not be sent"),
}
ID_COPY_VIEWED = "enrolment.id_copy_viewed"


def state_label(state: str) -> str:
    if state == S.NEW:
        return _("(creation)")
    label = STATE_LABELS.get(state)
    return str(label) if label is not None else state


def trigger_label(trigger: str) -> str:
    label = next((spec.label for spec in ENROLLMENT.transitions if spec.trigger == trigger), trigger)
    return _(label)


def _label(labels: dict, value: str | None) -> str:
    if value is None:
        return "—"
    label = labels.get(value)
    return str(label) if label is not None else value


def masked(number: str) -> str:
    """An identity document number shown with all but its last 3 characters hidden."""
    if len(number) <= 3:
        return "•" * 3  # too short to show any of it
    return "•" * (len(number) - 3) + number[-3:]


# -- helpers of the views ---------------------------------------------------------------------------------------
def _application_or_404(reference: str) -> EnrollmentApplication:
    application = EnrollmentApplication.by_reference(reference)
    if application is None:
        abort(404)
    return application


def _forbidden(action) -> bool:
    """An action the actor could never take (the partial hides these too)."""
    return action.reason is not None and action.reason.code == "forbidden"


def waiting_since(when) -> str:
    return format_timedelta(utcnow() - when, granularity="minute", threshold=1)


# -- the queue and the list ---------------------------------------------------------------------------------------
@bp.get("/inscriptions")
@permission_required(can_review_applications)
def applications():
    text = request.args.get("q", "").strip()[:200]
    state = query_choice("state", LISTED_STATES)
    listing = list_page(
        EnrollmentApplication.admin_search(text, state=state), ".applications", {"q": text, "state": state}
    )
    return render_template(
        "admin/applications.html",
        queue=list(EnrollmentApplication.admin_queue()),
        applications=listing.pop("rows"),
        **listing,
        states=[(str(s), state_label(s)) for s in LISTED_STATES],
        state_counts=EnrollmentApplication.count_by_state(),
        state_label=state_label,
        waiting_since=waiting_since,
    )


# -- one application ------------------------------------------------------------------------------------------------
@dataclass
class HistoryEntry:
    """One line of an application's history: a transition (with its audit event) or another audited fact."""

    at: object
    label: str
    actor: Account | None
    role: str
    source: str | None = None
    dest: str | None = None
    ip: str | None = None
    outcome: str = "success"
    details: list[tuple[str, str]] = field(default_factory=list)
    note: str | None = None

    @property
    def failed(self) -> bool:
        return self.outcome != "success"


def _details(event: AuditEvent | None) -> list[tuple[str, str]]:
    """What an audit event adds to a step (the desk, the ID type, the control method), translated."""
    if event is None:
        return []
    data = json.loads(event.details or "{}")
    shown = []
    for key, labels, name in (
        ("desk", DESK_LABELS, _("Desk")),
        ("id_type", ID_TYPE_LABELS, _("Identity document")),
        ("method", METHOD_LABELS, _("Control")),
    ):
        if data.get(key):
            shown.append((name, _label(labels, data[key])))
    return shown


def history(application: EnrollmentApplication) -> list[HistoryEntry]:
    """Every transition, with the IP and details of the audit event the engine wrote with it, and every other
    audited fact about the application, in time order."""
    transitions, events = EnrollmentApplication.history(application)
    # The engine writes a transition's log row and its audit event with the same time and action name.
    engine_events = {(e.action, e.at): e for e in events if e.object_type == "enrollment"}
    entries, shown = [], set()
    for log in transitions:
        event = engine_events.get((f"enrollment.{log.trigger}", log.at))
        if event is not None:
            shown.add(event.id)
        entries.append(
            HistoryEntry(
                at=log.at,
                label=trigger_label(log.trigger),
                actor=log.actor if log.actor_id else None,
                role=log.actor_role,
                source=log.source,
                dest=log.dest,
                ip=event.ip if event else None,
                outcome=event.outcome if event else "success",
                details=_details(event),
                note=log.note,
            )
        )
    for event in events:
        if event.id in shown:
            continue
        entries.append(
            HistoryEntry(
                at=event.at,
                label=_label(EVENT_LABELS, event.action),
                actor=event.actor if event.actor_id else None,
                role=event.actor_role,
                ip=event.ip,
                outcome=event.outcome,
                details=_details(event),
            )
        )
    entries.sort(key=lambda entry: entry.at)  # stable: a transition stays before a fact of the same instant
    return entries


def _id_number(application: EnrollmentApplication) -> str | None:
    if not application.id_number_encrypted:
        return None
    try:
        return masked(decrypt_field(application.id_number_encrypted, f"enrolment-id:{application.reference}"))
    except DecryptionError:
        current_app.logger.error("identity number of %s does not decrypt", application.reference)
        return _("(unreadable)")


@bp.get("/inscriptions/<reference>")
@permission_required(can_review_applications)
def application(reference: str):
    application = _application_or_404(reference)
    actions = available_actions(ENROLLMENT, application, administrator())
    return render_template(
        "admin/applications_detail.html",
        application=application,
        specialties=list(Specialty.select().where(Specialty.code.in_(application.specialty_list))),
        people=EnrollmentApplication.accounts_involved(application),
        id_number=_id_number(application),
        history=history(application),
        messages=list(EnrollmentApplication.messages_to_applicant(application)),
        # Reject needs a reason: its own form below the buttons the shared partial renders.
        actions=[a for a in actions if a.trigger != "reject" and not _forbidden(a)],
        reject=next((a for a in actions if a.trigger == "reject" and not _forbidden(a)), None),
        reason_max=REASON_MAX,
        state_label=state_label,
        desk_label=lambda value: _label(DESK_LABELS, value),
        id_type_label=lambda value: _label(ID_TYPE_LABELS, value),
        method_label=lambda value: _label(METHOD_LABELS, value),
        message_label=lambda value: _label(MESSAGE_LABELS, value),
        message_status_label=lambda value: _label(MESSAGE_STATUS_LABELS, value),
        waiting_since=waiting_since,
        role_label=role_label,
    )


@bp.get("/inscriptions/<reference>/piece-identite")
@permission_required(can_review_applications)
def application_id_copy(reference: str):
    return id_copy_download(_application_or_404(reference))


def id_copy_download(application: EnrollmentApplication) -> Response:
    """The ID copy kept at step 3, decrypted, as a download: never rendered by the browser (DESIGN §6: files).
    Audited; the desk and the administrators' pages both serve it through here."""
    if not application.id_copy_blob:
        abort(404)
    store = BlobStore(current_app.config["BLOB_DIR"], keyring.require())
    try:
        data = store.get(application.id_copy_blob, f"id-copy:{application.reference}")
    except FileNotFoundError:
        current_app.logger.error("the ID copy of %s is missing from the blob store", application.reference)
        abort(404)
    mime = sniff_type(data)
    if mime not in ID_COPY_TYPES:
        mime = "application/octet-stream"
    extension = {"application/pdf": "pdf", "image/jpeg": "jpg", "image/png": "png"}.get(mime, "bin")
    record_account_event(
        ID_COPY_VIEWED, g.account, about=("enrollment", application.id), reference=application.reference
    )
    return Response(
        data,
        mimetype=mime,
        headers={
            "Content-Disposition": f'attachment; filename="{application.reference}-piece-identite.{extension}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


@bp.post("/inscriptions/<reference>/<trigger>")
@permission_required(can_review_applications)
def application_action(reference: str, trigger: str):
    application = _application_or_404(reference)
    inputs = {"reason": request.form.get("reason", "").strip()[:REASON_MAX]} if trigger == "reject" else {}
    # The engine checks state, role and guards again and refuses through web/errors.py (403/409/422 + reason).
    fire(ENROLLMENT, application, trigger, administrator(), **inputs)
    flash(_done(trigger, application), "success")
    return redirect(url_for(".application", reference=application.reference), 303)


def _done(trigger: str, application: EnrollmentApplication) -> str:
    if trigger == "create_account":
        login = Account.get_by_id(application.account_id)
        return _(
            "The login %(username)s was created; a temporary password was e-mailed to %(email)s.",
            username=login.username,
            email=login.email,
        )
    if trigger == "reject":
        return _(
            "The application %(reference)s was rejected; the applicant was told by e-mail.",
            reference=application.reference,
        )
    return _("Done: %(action)s.", action=trigger_label(trigger))
