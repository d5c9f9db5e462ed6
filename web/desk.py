"""The validation desk (steps 2–5 of the enrolment): the day's queue, one application, and its one POST endpoint.

A validator receives the applicant in person, records the desk, checks the identity document and keeps a copy,
checks the mobile number (control SMS read back, or a control call), signs section 2 and transmits the form to the
e-health service. Every step is a trigger of the enrolment workflow (workflows/enrollment.py): the page shows a form
only for what the machine allows now, and the one POST endpoint collects that trigger's inputs and fires it. The
engine re-checks state, role and guards (nobody processes their own application), writes the transition log and the
audit event, and queues the messages. A refusal re-renders the application with the reason (403/409/422).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from flask import Blueprint, Response, abort, current_app, flash, g, redirect, render_template, request, url_for
from flask_babel import format_time, lazy_gettext
from flask_babel import gettext as _

from gateways.sms import backend_from_config
from models import Appointment, Desk, EnrollmentApplication, IdDocumentType, Role, Specialty, utcnow
from models.enrollment import DESK_ZONE
from security.encryption import BlobStore, DecryptionError, decrypt_field, keyring
from security.files import ID_COPY_TYPES, sniff_type
from security.permissions import can_validate_applications
from workflows import ENROLLMENT, Actor, EnrollmentState, Reason, TransitionRefused, available_actions, fire, may
from workflows.engine import FORBIDDEN, N_
from workflows.outbox import send_sms_now

# One vocabulary with the administrators' file of the same application (same message ids, same history).
from .admin_enrol import (
    DESK_LABELS,
    ID_TYPE_LABELS,
    METHOD_LABELS,
    history,
    id_copy_download,
    masked,
    state_label,
    trigger_label,
)
from .auth import permission_required
from .errors import handle_transition_refused, status_for
from .templating import role_label, url_if_exists
from .trail import record_account_event

try:  # the printable form (section 1 filled in, section 2 blank) comes with the applicant's pages
    from .form_pdf import application_form_pdf
except ModuleNotFoundError as missing:
    if missing.name != f"{__package__}.form_pdf":
        raise
    application_form_pdf = None

bp = Blueprint("desk", __name__, url_prefix="/guichet")

QUEUE_LIMIT = 200  # rows shown; a search narrows it down
SEARCH_MAX = 200
ID_NUMBER_MAX = 64
REASON_MAX = 1000  # characters of a rejection reason; the textarea says so too
CODE_MAX = 12

S = EnrollmentState
# What the desk does next, by state (the queue's last column).
NEXT_STEP = {
    S.SUBMITTED: lazy_gettext("Receive the applicant (step 2)"),
    S.PRESENTED: lazy_gettext("Check the identity document (step 3)"),
    S.IDENTITY_VERIFIED: lazy_gettext("Control SMS or call (step 4)"),
    S.PHONE_VERIFIED: lazy_gettext("Sign section 2 (step 4)"),
    S.SIGNED: lazy_gettext("Transmit to the e-health service (step 5)"),
}
WAITING_FOR_EMAIL = lazy_gettext("Waiting for the applicant to confirm their e-mail address")

# What the validator is told once a trigger has fired.
DONE = {
    "present": lazy_gettext("%(name)s is recorded as present at the desk (%(desk)s)."),
    "verify_identity": lazy_gettext("The identity document of %(name)s is recorded."),
    "send_control_code": lazy_gettext(
        "A control SMS was sent to %(mobile)s: ask the applicant to read the code back to you."
    ),
    "verify_phone": lazy_gettext("The mobile number of %(name)s is verified."),
    "sign_section_two": lazy_gettext("You signed section 2 of the application of %(name)s."),
    "transmit": lazy_gettext("The application %(reference)s was transmitted to the e-health service."),
    "reject": lazy_gettext("The application %(reference)s was rejected; the applicant was told by e-mail."),
}

# Refusals of the upload itself, before the workflow sees it (the file is then never stored).
EXPIRY_MISSING = Reason("bad-id-expiry", N_("Enter the expiry date of the identity document."))
COPY_TOO_LARGE = Reason(
    "id-copy-too-large", N_("The copy of the identity document is larger than allowed: scan it at a lower resolution.")
)
COPY_NOT_ACCEPTED = Reason(
    "id-copy-type", N_("The copy of the identity document must be a PDF, JPEG or PNG file; this file is none of them.")
)


def _label(labels: dict, value: str | None) -> str:
    if value is None:
        return "—"
    label = labels.get(value)
    return str(label) if label is not None else value


def desk_label(value: str | None) -> str:
    return _label(DESK_LABELS, value)


def next_step(application: EnrollmentApplication) -> str:
    if application.state == S.SUBMITTED and application.email_confirmed_at is None:
        return str(WAITING_FOR_EMAIL)
    return _label(NEXT_STEP, application.state)


def local_time(value) -> str:
    """A stored time (naive UTC, a string where SQLite returns an aggregate) as a time of day in Geneva."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return format_time(value, "short") if value else ""


def id_number_shown(application: EnrollmentApplication) -> str | None:
    """The identity document number, masked but for its last 3 characters: never in clear on a page."""
    if not application.id_number_encrypted:
        return None
    try:
        return masked(decrypt_field(application.id_number_encrypted, f"enrolment-id:{application.reference}"))
    except DecryptionError:
        current_app.logger.error("identity number of %s does not decrypt", application.reference)
        return _("(unreadable)")


def _application_or_404(reference: str) -> EnrollmentApplication:
    application = EnrollmentApplication.by_reference(reference)
    if application is None:
        abort(404)
    return application


def _validator() -> Actor:
    return Actor(Role.VALIDATOR, g.account.id, ip=request.remote_addr)


# -- the queue ------------------------------------------------------------------------------------------------------
@bp.get("")
@permission_required(can_validate_applications)
def index():
    search = request.args.get("q", "").strip()[:SEARCH_MAX]
    rows = list(EnrollmentApplication.desk_queue(search).limit(QUEUE_LIMIT + 1))
    return render_template(
        "desk/index.html",
        rows=rows[:QUEUE_LIMIT],
        more=len(rows) > QUEUE_LIMIT,
        limit=QUEUE_LIMIT,
        search=search,
        today=dt.datetime.now(DESK_ZONE).date(),
        state_label=state_label,
        desk_label=desk_label,
        next_step=next_step,
        local_time=local_time,
    )


# -- one application ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Refusal:
    """A refused trigger, shown on the application page beside the form that was sent."""

    trigger: str
    message: str


def _render_application(application: EnrollmentApplication, refusal: Refusal | None = None, form=None):
    actions = {
        action.trigger: action
        for action in available_actions(ENROLLMENT, application, _validator())
        if not (action.reason and action.reason.code == FORBIDDEN)
    }
    appointment = Appointment.current_for(application)
    development = current_app.config["MYHUG_ENV"] == "development"
    return render_template(
        "desk/application.html",
        application=application,
        specialties=list(Specialty.select().where(Specialty.code.in_(application.specialty_list))),
        appointment=appointment,
        people=EnrollmentApplication.accounts_involved(application),
        id_number=id_number_shown(application),
        history=history(application),
        actions=actions,
        refusal=refusal,
        form=form or {},
        desks=[(value, desk_label(value)) for value in Desk.CHOICES],
        default_desk=(form or {}).get("desk") or (appointment.slot.desk if appointment else None),
        id_types=[(value, _label(ID_TYPE_LABELS, value)) for value in IdDocumentType.CHOICES],
        today=dt.datetime.now(DESK_ZONE).date(),
        now=utcnow(),
        max_upload_mb=max(1, current_app.config["MAX_UPLOAD_BYTES"] // (1024 * 1024)),
        reason_max=REASON_MAX,
        dev_sms_url=url_if_exists("dev.sms") if development else None,
        form_pdf=application_form_pdf is not None,
        state_label=state_label,
        desk_label=desk_label,
        id_type_label=lambda value: _label(ID_TYPE_LABELS, value),
        method_label=lambda value: _label(METHOD_LABELS, value),
        next_step=next_step,
        role_label=role_label,
    )


@bp.get("/demandes/<reference>")
@permission_required(can_validate_applications)
def application(reference: str):
    return _render_application(_application_or_404(reference))


@bp.get("/demandes/<reference>/piece-identite")
@permission_required(can_validate_applications)
def id_copy(reference: str):
    return id_copy_download(_application_or_404(reference))


@bp.get("/demandes/<reference>/formulaire.pdf")
@permission_required(can_validate_applications)
def form_pdf(reference: str):
    """The printable form: section 1 filled in, section 2 blank for the signature on paper."""
    application = _application_or_404(reference)
    if application_form_pdf is None:
        abort(404)
    return _download(application_form_pdf(application), "application/pdf", f"{application.reference}-formulaire.pdf")


def _download(data: bytes, mime: str, filename: str) -> Response:
    return Response(
        data,
        mimetype=mime,
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


# -- the one POST endpoint ------------------------------------------------------------------------------------------
def _present_inputs(form) -> dict:
    return {"desk": form.get("desk", "")}


def _identity_inputs(form) -> dict:
    try:
        expiry = dt.date.fromisoformat(form.get("id_expiry", "").strip())
    except ValueError:
        raise TransitionRefused(EXPIRY_MISSING) from None
    return {
        "id_type": form.get("id_type", ""),
        "id_number": form.get("id_number", "").strip()[:ID_NUMBER_MAX],
        "id_expiry": expiry,
    }


def _phone_inputs(form) -> dict:
    method = form.get("method", "")
    if method == "sms":
        return {"method": "sms", "code": "".join(form.get("code", "").split())[:CODE_MAX]}
    if method == "call":
        return {"method": "call", "confirmed": form.get("confirmed") == "yes"}
    return {"method": method}


def _reject_inputs(form) -> dict:
    return {"reason": form.get("reason", "").strip()[:REASON_MAX]}


# Each desk trigger reads only its own fields; the others (buttons) take none.
INPUTS = {
    "present": _present_inputs,
    "verify_identity": _identity_inputs,
    "verify_phone": _phone_inputs,
    "reject": _reject_inputs,
}


@bp.post("/demandes/<reference>/<trigger>")
@permission_required(can_validate_applications)
def action(reference: str, trigger: str):
    application = _application_or_404(reference)
    actor = _validator()
    # State, role and the guards that need no input first: a refused step stores no file and reads no field.
    refused = may(ENROLLMENT, application, trigger, actor)
    if refused is not None:
        raise TransitionRefused(refused)
    inputs = INPUTS.get(trigger, lambda _form: {})(request.form)
    if trigger == "verify_identity":
        _fire_with_id_copy(application, actor, inputs)
    else:
        fire(ENROLLMENT, application, trigger, actor, **inputs)
    if trigger == "send_control_code":
        _send_control_sms_now(application)
    else:
        flash(_done(trigger, application), "success")
    return redirect(url_for(".application", reference=application.reference), 303)


def _blob_store() -> BlobStore:
    return BlobStore(current_app.config["BLOB_DIR"], keyring.require())


def _fire_with_id_copy(application: EnrollmentApplication, actor: Actor, inputs: dict) -> None:
    """Step 3: the copy is checked by its content, stored encrypted, then the trigger fires; if the workflow
    refuses (an expired document, a missing number…), the stored copy is deleted so that nothing is left."""
    upload = request.files.get("id_copy")
    limit = current_app.config["MAX_UPLOAD_BYTES"]
    data = upload.stream.read(limit + 1) if upload else b""
    if len(data) > limit:
        raise TransitionRefused(COPY_TOO_LARGE)
    blob_id = mime = None
    store = _blob_store()
    if data:
        mime = sniff_type(data)  # by content: a PNG named .pdf is a PNG; a text file named .pdf is refused
        if mime not in ID_COPY_TYPES:
            raise TransitionRefused(COPY_NOT_ACCEPTED)
        blob_id = store.put(data, f"id-copy:{application.reference}")
    try:
        fire(ENROLLMENT, application, "verify_identity", actor, id_copy_blob=blob_id, id_copy_mime=mime, **inputs)
    except BaseException:
        if blob_id is not None:
            _discard(store, blob_id)
        raise


def _discard(store: BlobStore, blob_id: str) -> None:
    store.delete(blob_id)


def _send_control_sms_now(application: EnrollmentApplication) -> None:
    """The applicant is waiting at the desk: the SMS leaves now, not at the dispatcher's next round."""
    message = EnrollmentApplication.unsent_control_sms(application.id)
    if message is not None and not send_sms_now(message, backend_from_config(current_app.config)):
        record_account_event(
            "enrolment.control_sms_failed",
            g.account,
            outcome="failure",
            about=("enrollment", application.id),
            reference=application.reference,
        )
        flash(_("The control SMS could not be sent. Try again in a moment, or make a control call."), "error")
        return
    flash(_done("send_control_code", application), "success")


def _done(trigger: str, application: EnrollmentApplication) -> str:
    values = {
        "name": f"{application.first_name} {application.last_name}",
        "desk": desk_label(application.desk),
        "mobile": application.mobile,
        "reference": application.reference,
    }
    return str(DONE[trigger]) % values if trigger in DONE else _("Done: %(action)s.", action=trigger_label(trigger))


@bp.errorhandler(TransitionRefused)
def refused(refusal: TransitionRefused):
    """A refused desk step: the application again, with the reason beside the form that was sent (403/409/422).

    The row is read again: effects that ran before the refusal changed the object in memory, not the database.
    """
    values = request.view_args or {}
    application = EnrollmentApplication.by_reference(values.get("reference", ""))
    if application is None or g.get("account") is None:
        return handle_transition_refused(refusal)
    shown = Refusal(values.get("trigger", ""), _(refusal.reason.text))
    kept = {k: request.form.get(k, "") for k in ("desk", "id_type", "id_expiry", "method", "reason")}
    return _render_application(application, shown, kept), status_for(refusal)
