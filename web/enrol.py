"""The applicant's public pages (DESIGN §4.1, step 1): the application form, the e-mail link, and the tracking.

An applicant has no account: they prove an application by its reference and their e-mail address (or by the
e-mailed link), and the proof is kept for a short while in the signed session cookie (`session["enrolment"]`).
Every change goes through the enrolment workflow with `Actor(Role.APPLICANT, proof=reference)`.
"""

from __future__ import annotations

import datetime as dt
import time

import phonenumbers
from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import format_date, format_datetime, get_locale, lazy_gettext
from flask_babel import gettext as _

from models import Appointment, AppointmentSlot, Desk, EnrollmentApplication, Role, Specialty, gln_is_valid, utcnow
from workflows import ENROLLMENT, Actor, EnrollmentState, TransitionRefused, available_actions, create, fire
from workflows.enrollment import EMAIL, book_appointment, cancel_appointment, may_book_appointment

from .errors import status_for
from .form_pdf import application_form_pdf, display_mobile
from .limits import limiter

bp = Blueprint("enrol", __name__, url_prefix="/inscription")

SESSION_KEY = "enrolment"
PROOF_MINUTES = 30  # how long a proven reference opens the tracking page without asking again

S = EnrollmentState
FIELDS = ("last_name", "first_name", "date_of_birth", "gln", "specialties", "practice_address", "mobile", "email")
MAX_LENGTHS = {"last_name": 100, "first_name": 100, "gln": 20, "practice_address": 500, "mobile": 30, "email": 254}

# The workflow's reasons (workflows/enrollment.py guards) shown next to the field they are about.
REASON_FIELDS = {
    "bad-gln": "gln",
    "gln-has-account": "gln",
    "gln-has-application": "gln",
    "bad-mobile": "mobile",
    "bad-email": "email",
    "bad-specialty": "specialties",
    "bad-birth-date": "date_of_birth",
}

DESK_LABELS = {
    Desk.AMG: lazy_gettext("AMG secretariat"),
    Desk.EHEALTH: lazy_gettext("E-health & telemedicine service"),
}

# The seven steps of the procedure as the applicant reads them, each with the column that dates it.
STEPS = (
    (lazy_gettext("Application submitted and e-mail address confirmed"), "email_confirmed_at"),
    (lazy_gettext("Visit at a desk (AMG secretariat or e-health service)"), "presented_at"),
    (lazy_gettext("Identity checked"), "identity_verified_at"),
    (lazy_gettext("Mobile number checked and section 2 signed"), "signed_at"),
    (lazy_gettext("Application transmitted to the e-health service"), "transmitted_at"),
    (lazy_gettext("Login created; temporary password sent by e-mail"), "account_created_at"),
    (lazy_gettext("Password changed and profile completed"), "completed_at"),
)

APPLICANT_TRIGGERS = ("withdraw",)
CONFIRMATIONS = {
    "withdraw": lazy_gettext("Yes, withdraw my application: it will be closed and cannot be reopened."),
}


def enrolment_limit() -> str:
    return current_app.config.get("ENROLMENT_RATE_LIMIT", "10 per hour")


def tracking_limit() -> str:
    return current_app.config.get("ENROLMENT_TRACKING_RATE_LIMIT", "10 per 15 minutes")


def desk_label(desk: str | None) -> str:
    label = DESK_LABELS.get(desk)
    return str(label) if label is not None else (desk or "")


def appointment_time(value: dt.datetime) -> str:
    """A slot's start as people write it (stored naive UTC, shown in Geneva): "mardi 2 décembre 2026, 09:00"."""
    return format_datetime(value, "EEEE d MMMM y, HH:mm")


def _applicant(reference: str | None = None) -> Actor:
    return Actor(Role.APPLICANT, ip=request.remote_addr, proof=reference)


# -- the proof kept in the session ------------------------------------------------------------------------------
def _remember(reference: str) -> None:
    session[SESSION_KEY] = {"reference": reference, "until": int(time.time()) + PROOF_MINUTES * 60}


def _proven_reference() -> str | None:
    proof = session.get(SESSION_KEY)
    if not isinstance(proof, dict) or not isinstance(proof.get("until"), int) or proof["until"] < time.time():
        session.pop(SESSION_KEY, None)
        return None
    return proof.get("reference")


class ProofNeeded(Exception):
    """This browser has proved no application (or its proof expired): ask for the reference and e-mail again."""


def _proven_application_or_404(reference: str) -> EnrollmentApplication:
    """The application whose reference this browser proved; another reference is a 404 (no hint it exists)."""
    proven = _proven_reference()
    if proven is None:
        raise ProofNeeded()
    if proven != reference:
        abort(404)
    application = EnrollmentApplication.by_reference(reference)
    if application is None:
        abort(404)
    g.no_store = True  # personal data: never kept by a browser or a proxy
    return application


@bp.errorhandler(ProofNeeded)
def ask_for_proof(_error: ProofNeeded):
    if request.method == "GET":
        flash(_("For your privacy, enter your reference and your e-mail address again."), "info")
    return redirect(url_for(".track"), 303)


# -- section 1 ----------------------------------------------------------------------------------------------------
def _specialties() -> list[tuple[str, str]]:
    """(code, name in the page's language), sorted by that name."""
    english = str(get_locale() or "fr").startswith("en")
    rows = Specialty.select(Specialty.code, Specialty.name_en if english else Specialty.name_fr).tuples()
    return sorted(rows, key=lambda row: row[1].casefold())


def _parse_date(text: str) -> dt.date | None:
    for pattern in ("%Y-%m-%d", "%d.%m.%Y", "%d/%m/%Y"):
        try:
            return dt.datetime.strptime(text, pattern).date()
        except ValueError:
            continue
    return None


def _parse_mobile(text: str) -> tuple[str | None, str | None]:
    """(E.164 number, None) or (None, error): Swiss numbers may be typed without +41."""
    try:
        number = phonenumbers.parse(text, "CH")
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_valid_number(number):
        return None, _("This is not a valid phone number. Example: 079 123 45 67 or +41 79 123 45 67.")
    kind = phonenumbers.number_type(number)
    if kind not in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE):
        return None, _("This is not a mobile number: the control SMS and your login codes are sent to it.")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), None


def _read_section_one(form) -> tuple[dict, dict, dict]:
    """(what was typed, the values for the application, an error per field)."""
    typed = {name: form.get(name, "").strip() for name in FIELDS if name != "specialties"}
    typed["specialties"] = [code for code in form.getlist("specialties") if code]
    errors: dict[str, str] = {}
    for name in FIELDS:
        if not typed[name]:
            errors[name] = _("This field is mandatory.")
        elif name in MAX_LENGTHS and len(typed[name]) > MAX_LENGTHS[name]:
            errors[name] = _("This is too long (at most %(count)d characters).", count=MAX_LENGTHS[name])
    values = {
        "last_name": typed["last_name"],
        "first_name": typed["first_name"],
        "gln": typed["gln"].replace(" ", ""),
        "specialty_codes": ",".join(dict.fromkeys(typed["specialties"])),
        "practice_address": typed["practice_address"],
        "email": typed["email"],
    }
    if "date_of_birth" not in errors:
        born = _parse_date(typed["date_of_birth"])
        if born is None or born.year < 1900:
            errors["date_of_birth"] = _("Enter a date such as 17.05.1978.")
        values["date_of_birth"] = born
    if "mobile" not in errors:
        values["mobile"], error = _parse_mobile(typed["mobile"])
        if error:
            errors["mobile"] = error
    # The workflow checks these again and has the last word; asked here too, every mistake shows at once.
    if "gln" not in errors and not gln_is_valid(values["gln"]):
        errors["gln"] = _("The GLN must have 13 digits and a valid check digit.")
    if "email" not in errors and not EMAIL.match(values["email"]):
        errors["email"] = _("The e-mail address is not valid.")
    return typed, values, errors


def _section_one_page(typed: dict, errors: dict, status: int = 200):
    return (
        render_template("enrol/apply.html", typed=typed, errors=errors, specialties=_specialties(), fields=FIELDS),
        status,
    )


@bp.route("", methods=["GET", "POST"])
@limiter.limit(enrolment_limit, methods=["POST"])
def apply():
    if request.method == "GET":
        return _section_one_page({"specialties": []}, {})
    typed, values, errors = _read_section_one(request.form)
    if errors:
        return _section_one_page(typed, errors, 422)
    application = EnrollmentApplication(**values)
    try:
        create(ENROLLMENT, application, "submit", _applicant())
    except TransitionRefused as refused:
        field = REASON_FIELDS.get(refused.reason.code, "form")
        return _section_one_page(typed, {field: _(refused.reason.text)}, 422)
    _remember(application.reference)
    return redirect(url_for(".submitted"), 303)


@bp.get("/deposee")
def submitted():
    reference = _proven_reference()
    if reference is None:
        return redirect(url_for(".apply"))
    application = _proven_application_or_404(reference)
    return render_template("enrol/submitted.html", application=application)


# -- the e-mailed link (workflows/notifications.py writes this address) ----------------------------------------
@bp.get("/confirmer/<reference>/<token>")
def confirm(reference: str, token: str):
    application = EnrollmentApplication.by_reference(reference)
    if application is None:
        abort(404)
    g.no_store = True
    try:
        fire(ENROLLMENT, application, "confirm_email", _applicant(reference), token=token)
    except TransitionRefused as refused:
        return render_template(
            "enrol/confirm_refused.html", reason=_(refused.reason.text), code=refused.reason.code
        ), status_for(refused)
    _remember(reference)  # the link proves both the reference and the mailbox
    return render_template("enrol/confirmed.html", application=application)


# -- tracking -----------------------------------------------------------------------------------------------------
@bp.route("/suivi", methods=["GET", "POST"])
@limiter.limit(tracking_limit, methods=["POST"])
def track():
    g.no_store = True
    if request.method == "GET":
        return render_template("enrol/track.html", reference="", email="", error=None)
    reference = request.form.get("reference", "").strip().upper()[:20]
    email = request.form.get("email", "").strip()[:254]
    application = EnrollmentApplication.by_reference_and_email(reference, email)
    if application is None:
        # One answer whether the reference is unknown or the e-mail address is not its own.
        error = _("No application matches this reference and this e-mail address. Check both and try again.")
        return render_template("enrol/track.html", reference=reference, email=email, error=error), 422
    _remember(application.reference)
    return redirect(url_for(".status", reference=application.reference), 303)


@bp.post("/suivi/fin")
def forget():
    session.pop(SESSION_KEY, None)
    flash(_("You have left the tracking of your application."), "success")
    return redirect(url_for(".track"), 303)


def _steps(application: EnrollmentApplication) -> list[dict]:
    """Each of the seven steps: its label, its date if done, and whether it is the one the application is at."""
    is_open = application.state not in ENROLLMENT.final
    steps, current_found = [], False
    for number, (label, column) in enumerate(STEPS, start=1):
        done_at = getattr(application, column)
        status = "done" if done_at is not None else "todo"
        if status == "todo" and is_open and not current_found:
            status, current_found = "current", True
        steps.append({"number": number, "label": str(label), "done_at": done_at, "status": status})
    return steps


def _next_steps(application: EnrollmentApplication, appointment: Appointment | None) -> list[str]:
    """What the applicant must do now, in plain words."""
    state = application.state
    if state == S.SUBMITTED and application.email_confirmed_at is None:
        return [
            _("Open the link we sent to %(email)s: it confirms your e-mail address.", email=application.email),
            _("Then book an appointment here."),
        ]
    if state == S.SUBMITTED and appointment is None:
        return [
            _(
                "Book an appointment at the AMG secretariat or at the e-health service, with your mobile phone "
                "and an identity document."
            )
        ]
    if state == S.SUBMITTED:
        return [
            _(
                "Come to your appointment on %(when)s (%(desk)s) with your mobile phone and an identity document.",
                when=appointment_time(appointment.slot.starts_at),
                desk=desk_label(appointment.slot.desk),
            ),
            _("You can print the form below and bring it; the desk can also print it."),
        ]
    if state in (S.PRESENTED, S.IDENTITY_VERIFIED, S.PHONE_VERIFIED, S.SIGNED):
        return [_("Your application is being validated at the desk. Keep your mobile phone at hand.")]
    if state == S.TRANSMITTED:
        return [_("The e-health service is creating your login: you will receive a temporary password by e-mail.")]
    if state == S.ACCOUNT_CREATED:
        return [
            _(
                "Log in with the username and the temporary password we e-mailed you, then choose your own "
                "password and complete your profile."
            )
        ]
    if state == S.COMPLETED:
        return [_("Your registration is complete: log in to myHUG.")]
    if state == S.WITHDRAWN:
        return [_("You withdrew this application. To apply again, fill in a new application form.")]
    if state == S.EXPIRED:
        return [_("This application expired without progress. To apply again, fill in a new application form.")]
    return [_("This application was not accepted. For any question, write to us.")]


STATE_TEXTS = {
    S.SUBMITTED: lazy_gettext("Submitted"),
    S.PRESENTED: lazy_gettext("Being validated at the desk"),
    S.IDENTITY_VERIFIED: lazy_gettext("Being validated at the desk"),
    S.PHONE_VERIFIED: lazy_gettext("Being validated at the desk"),
    S.SIGNED: lazy_gettext("Validated at the desk"),
    S.TRANSMITTED: lazy_gettext("With the e-health service"),
    S.ACCOUNT_CREATED: lazy_gettext("Login created"),
    S.COMPLETED: lazy_gettext("Completed"),
    S.REJECTED: lazy_gettext("Not accepted"),
    S.WITHDRAWN: lazy_gettext("Withdrawn"),
    S.EXPIRED: lazy_gettext("Expired"),
}


@bp.get("/suivi/<reference>")
def status(reference: str):
    application = _proven_application_or_404(reference)
    actor = _applicant(reference)
    actions = [a for a in available_actions(ENROLLMENT, application, actor) if a.trigger in APPLICANT_TRIGGERS]
    appointment = Appointment.current_for(application)
    booking_refused = may_book_appointment(application)
    slots = [] if booking_refused else AppointmentSlot.bookable(utcnow())
    names = dict(_specialties())
    return render_template(
        "enrol/status.html",
        application=application,
        state_text=str(STATE_TEXTS.get(application.state, application.state)),
        next_steps=_next_steps(application, appointment),
        steps=_steps(application),
        appointment=appointment,
        booking_refused=booking_refused,
        slots=[s for s in slots if appointment is None or s.id != appointment.slot_id],
        actions=actions,
        confirmations=CONFIRMATIONS,
        desk_label=desk_label,
        appointment_time=appointment_time,
        date_of_birth=format_date(application.date_of_birth, "long"),
        mobile=display_mobile(application.mobile),
        specialty_names=[names.get(code, code) for code in application.specialty_list],
        states=S,
        closed_states=ENROLLMENT.final,
    )


@bp.post("/suivi/<reference>/action/<trigger>")
def action(reference: str, trigger: str):
    application = _proven_application_or_404(reference)
    here = url_for(".status", reference=reference)
    if trigger not in APPLICANT_TRIGGERS:
        abort(404)
    if trigger in CONFIRMATIONS and request.form.get("confirm") != "yes":
        flash(_("Nothing was changed: tick the box to confirm."), "error")
        return redirect(here, 303)
    fire(ENROLLMENT, application, trigger, _applicant(reference))
    flash(_("Your application is withdrawn. An e-mail confirms it."), "success")
    return redirect(here, 303)


@bp.post("/suivi/<reference>/rendez-vous")
def book(reference: str):
    application = _proven_application_or_404(reference)
    slot_id = request.form.get("slot", type=int)
    if slot_id is None:
        flash(_("Choose a time for your appointment."), "error")
        return redirect(url_for(".status", reference=reference, _anchor="appointment"), 303)
    moving = Appointment.current_for(application) is not None
    appointment = book_appointment(application, slot_id, _applicant(reference))
    when = _(
        "%(when)s, %(desk)s", when=appointment_time(appointment.slot.starts_at), desk=desk_label(appointment.slot.desk)
    )
    if moving:
        flash(_("Your appointment is moved to %(when)s. An e-mail confirms it.", when=when), "success")
    else:
        flash(_("Your appointment is booked for %(when)s. An e-mail confirms it.", when=when), "success")
    return redirect(url_for(".status", reference=reference, _anchor="appointment"), 303)


@bp.post("/suivi/<reference>/rendez-vous/annuler")
def cancel(reference: str):
    application = _proven_application_or_404(reference)
    if request.form.get("confirm") != "yes":
        flash(_("Nothing was changed: tick the box to confirm."), "error")
        return redirect(url_for(".status", reference=reference, _anchor="appointment"), 303)
    cancel_appointment(application, _applicant(reference))
    flash(_("Your appointment is cancelled. Book another one when you can."), "success")
    return redirect(url_for(".status", reference=reference, _anchor="appointment"), 303)


@bp.get("/suivi/<reference>/formulaire.pdf")
def form_pdf(reference: str):
    application = _proven_application_or_404(reference)
    response = make_response(application_form_pdf(application))
    response.headers["Content-Type"] = "application/pdf"
    response.headers["Content-Disposition"] = f'attachment; filename="myhug-inscription-{application.reference}.pdf"'
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    return response
