"""The enrolment workflow (DESIGN §4.1): the seven steps of the paper procedure for password + SMS accounts."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from enum import StrEnum

from models import (
    Account,
    Appointment,
    CodeChallenge,
    Desk,
    EnrollmentApplication,
    IdDocumentType,
    Physician,
    PhysicianSpecialty,
    Role,
    Specialty,
    db,
    gln_is_valid,
    utcnow,
)
from security import audit, otp
from security.encryption import encrypt_field
from security.files import ID_COPY_TYPES

from . import engine, notifications
from .account import ACCOUNT, AccountState
from .engine import N_, SYSTEM, Reason, T, TransitionRefused, Workflow, input_guard


class EnrollmentState(StrEnum):
    NEW = "new"  # not yet saved
    SUBMITTED = "submitted"  # step 1: section 1 filled in
    PRESENTED = "presented"  # step 2: the applicant is at the desk
    IDENTITY_VERIFIED = "identity_verified"  # step 3
    PHONE_VERIFIED = "phone_verified"  # step 4, first half: control SMS or call
    SIGNED = "signed"  # step 4, second half: section 2 signed
    TRANSMITTED = "transmitted"  # step 5: handed to the e-health service
    ACCOUNT_CREATED = "account_created"  # step 6
    COMPLETED = "completed"  # step 7
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"
    EXPIRED = "expired"


S = EnrollmentState
APPLICANT, VALIDATOR, ADMIN, PHYSICIAN, SYS = (
    Role.APPLICANT,
    Role.VALIDATOR,
    Role.ADMINISTRATOR,
    Role.PHYSICIAN,
    Role.SYSTEM,
)
OPEN = [S.SUBMITTED, S.PRESENTED, S.IDENTITY_VERIFIED, S.PHONE_VERIFIED, S.SIGNED, S.TRANSMITTED, S.ACCOUNT_CREATED]
FINAL = [S.COMPLETED, S.REJECTED, S.WITHDRAWN, S.EXPIRED]

CONTROL_CODE_MINUTES = 10  # DESIGN §4.1 step 4: ≤ 10 min
CONTROL_CODES_PER_HOUR = 5  # DESIGN §6: at most 5 codes per hour
E164 = re.compile(r"^\+[1-9]\d{7,14}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
SECTION_ONE = (
    "last_name",
    "first_name",
    "date_of_birth",
    "gln",
    "specialty_codes",
    "practice_address",
    "mobile",
    "email",
)


def new_reference() -> str:
    """A tracking reference an applicant can read out at a desk: MH- and 8 characters without 0/O/1/I."""
    alphabet = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
    body = "".join(secrets.choice(alphabet) for _ in range(8))
    return f"MH-{body[:4]}-{body[4:]}"


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# -- guards ---------------------------------------------------------------------------------------------------
def section_one_complete(flow) -> Reason | None:
    app: EnrollmentApplication = flow.row
    for name in SECTION_ONE:
        value = getattr(app, name)
        if value is None or (isinstance(value, str) and not value.strip()):
            return Reason("incomplete", N_("Every field of section 1 is mandatory."))
    if not gln_is_valid(app.gln):
        return Reason("bad-gln", N_("The GLN must have 13 digits and a valid check digit."))
    if not E164.match(app.mobile):
        return Reason("bad-mobile", N_("The mobile number must be in international format (+41…)."))
    if not EMAIL.match(app.email):
        return Reason("bad-email", N_("The e-mail address is not valid."))
    codes = app.specialty_list
    if not codes or Specialty.select().where(Specialty.code.in_(codes)).count() != len(set(codes)):
        return Reason("bad-specialty", N_("Choose your specialties from the list."))
    if app.date_of_birth >= utcnow().date():
        return Reason("bad-birth-date", N_("The date of birth is not valid."))
    return None


def gln_not_already_enrolled(flow) -> Reason | None:
    app = flow.row
    if Account.select().join(Physician).where(Physician.gln == app.gln).exists():
        return Reason("gln-has-account", N_("This GLN already has a myHUG account."))
    others = EnrollmentApplication.select().where(
        (EnrollmentApplication.gln == app.gln) & EnrollmentApplication.state.in_([str(s) for s in OPEN])
    )
    if app.id is not None:
        others = others.where(EnrollmentApplication.id != app.id)
    if others.exists():
        return Reason("gln-has-application", N_("An application for this GLN is already in progress."))
    return None


def email_not_yet_confirmed(flow) -> Reason | None:
    if flow.row.email_confirmed_at is not None:
        return Reason("already-confirmed", N_("The e-mail address is already confirmed."))
    return None


@input_guard
def email_token_matches(flow) -> Reason | None:
    expected = flow.row.email_token_hash or ""
    if not hmac.compare_digest(token_digest(flow.get("token") or ""), expected):
        return Reason("bad-token", N_("This confirmation link is not valid."))
    return None


def email_confirmed(flow) -> Reason | None:
    if flow.row.email_confirmed_at is None:
        return Reason("email-unconfirmed", N_("The applicant has not confirmed their e-mail address yet."))
    return None


def not_own_application(flow) -> Reason | None:
    """Nobody processes their own application (validator or administrator)."""
    account = Account.get_or_none(Account.id == flow.actor.account_id) if flow.actor.account_id else None
    if account is None:
        return None
    own = account.email.lower() == flow.row.email.lower() or (
        account.physician_id is not None and account.physician.gln == flow.row.gln
    )
    if own:
        return Reason("own-application", N_("You cannot process your own application."))
    return None


@input_guard
def desk_is_known(flow) -> Reason | None:
    if flow.get("desk") not in Desk.CHOICES:
        return Reason("bad-desk", N_("Choose the desk where the applicant presented themselves."))
    return None


@input_guard
def identity_document_acceptable(flow) -> Reason | None:
    if flow.get("id_type") not in IdDocumentType.CHOICES:
        return Reason("bad-id-type", N_("Choose the type of identity document."))
    if not (flow.get("id_number") or "").strip():
        return Reason("no-id-number", N_("Enter the identity document number."))
    expiry = flow.get("id_expiry")
    if not isinstance(expiry, dt.date) or expiry < utcnow().date():
        return Reason("id-expired", N_("The identity document has expired: it cannot be accepted."))
    if not flow.get("id_copy_blob") or flow.get("id_copy_mime") not in ID_COPY_TYPES:
        return Reason("no-id-copy", N_("Upload a copy of the identity document (PDF, JPEG or PNG)."))
    return None


def control_codes_left(flow) -> Reason | None:
    since = utcnow() - dt.timedelta(hours=1)
    sent = (
        CodeChallenge.select()
        .where(
            (CodeChallenge.purpose == "enrolment-control")
            & (CodeChallenge.attempt_id == flow.row.reference)
            & (CodeChallenge.created_at >= since)
        )
        .count()
    )
    if sent >= CONTROL_CODES_PER_HOUR:
        return Reason("too-many-codes", N_("Too many control codes were sent in the last hour; make a control call."))
    return None


def _live_control_challenge(app):
    return (
        CodeChallenge.select()
        .where(
            (CodeChallenge.purpose == "enrolment-control")
            & (CodeChallenge.attempt_id == app.reference)
            & CodeChallenge.consumed_at.is_null()
            & (CodeChallenge.expires_at > utcnow())
        )
        .order_by(CodeChallenge.id.desc())
        .first()
    )


@input_guard
def phone_check_passed(flow) -> Reason | None:
    method = flow.get("method")
    if method == "call":
        if not flow.get("confirmed"):
            return Reason("call-unconfirmed", N_("Confirm that the applicant answered the control call."))
        return None
    if method != "sms":
        return Reason("bad-method", N_("Choose a control SMS or a control call."))
    challenge = _live_control_challenge(flow.row)
    if challenge is None:
        return Reason("no-code", N_("No valid control code: send a new one."))
    if not otp.code_matches(challenge.public_id, flow.get("code") or "", challenge.code_hash):
        return Reason("wrong-code", N_("The code read back does not match the control SMS."))
    return None


def id_copy_on_file(flow) -> Reason | None:
    if not flow.row.id_copy_blob or not flow.row.id_number_encrypted:
        return Reason("no-id-copy", N_("The identity document and its copy must be on file."))
    return None


def four_eyes(flow) -> Reason | None:
    """Step 6 is done by a different person from the validator who handled steps 2–5."""
    if flow.actor.account_id in flow.row.desk_staff_ids():
        return Reason(
            "four-eyes", N_("Another administrator must create the login: you handled this application at the desk.")
        )
    return None


def is_own_account(flow) -> Reason | None:
    if flow.actor.account_id is None or flow.actor.account_id != flow.row.account_id:
        return Reason("forbidden", N_("Only the applicant can complete their own registration."))
    return None


def _account_of(app) -> Account | None:
    """Read fresh: a related object cached on the row may be older than the account's last transition."""
    return Account.get_or_none(Account.id == app.account_id) if app.account_id else None


def account_is_active(flow) -> Reason | None:
    account = _account_of(flow.row)
    if account is None or account.state != AccountState.ACTIVE:
        return Reason("account-inactive", N_("Change the temporary password and complete “Mon profil” first."))
    return None


@input_guard
def reason_given(flow) -> Reason | None:
    if not (flow.get("reason") or "").strip():
        return Reason("no-reason", N_("Give the reason for the rejection."))
    return None


def is_the_applicant(flow) -> Reason | None:
    if flow.actor.proof != flow.row.reference:
        return Reason("forbidden", N_("Only the applicant can withdraw the application."))
    return None


@input_guard
def no_progress_for_too_long(flow) -> Reason | None:
    """The expiry job passes the cut-off; an application that moved since then is not expired."""
    cutoff = flow.get("cutoff")
    if cutoff is None or flow.row.state_changed_at > cutoff:
        return Reason("not-stale", N_("This application is still progressing."))
    if flow.row.state == S.ACCOUNT_CREATED:
        account = _account_of(flow.row)
        if account is None or account.state != AccountState.PENDING:
            return Reason("not-stale", N_("The temporary password was used."))
        if account.temporary_password_expires_at and account.temporary_password_expires_at > utcnow():
            return Reason("not-stale", N_("The temporary password has not expired yet."))
    return None


# -- effects --------------------------------------------------------------------------------------------------
def open_application(flow) -> None:
    app = flow.row
    app.reference = app.reference or new_reference()
    token = secrets.token_urlsafe(24)
    app.email_token_hash = token_digest(token)
    notifications.notify_enrollment_received(flow, token)


def confirm_email(flow) -> None:
    flow.row.email_confirmed_at = utcnow()
    flow.row.email_token_hash = None


def record_presence(flow) -> None:
    app = flow.row
    app.desk, app.presented_by, app.presented_at = flow.get("desk"), flow.actor.account_id, utcnow()
    flow.audit_details["desk"] = app.desk


def record_identity(flow) -> None:
    app = flow.row
    app.id_type = flow.get("id_type")
    app.id_number_encrypted = encrypt_field(flow.get("id_number").strip(), f"enrolment-id:{app.reference}")
    app.id_expiry = flow.get("id_expiry")
    app.id_copy_blob, app.id_copy_mime = flow.get("id_copy_blob"), flow.get("id_copy_mime")
    app.identity_verified_by, app.identity_verified_at = flow.actor.account_id, utcnow()
    flow.audit_details["id_type"] = app.id_type  # never the number


def send_control_sms(flow) -> None:
    app = flow.row
    code = otp.new_code()
    challenge = CodeChallenge(
        purpose="enrolment-control",
        attempt_id=app.reference,
        code_hash="",
        expires_at=utcnow() + dt.timedelta(minutes=CONTROL_CODE_MINUTES),
    )
    challenge.code_hash = otp.code_digest(challenge.public_id, code)
    challenge.save(force_insert=True)
    notifications.send_control_code(flow, app.mobile, code)


def record_phone_check(flow) -> None:
    app = flow.row
    if flow.get("method") == "sms":
        challenge = _live_control_challenge(app)
        # Compare-and-set: a code is used once, even if two validators submit it at the same instant (the other
        # request may have consumed it between the guard and here: then there is no live challenge any more).
        used = (
            0
            if challenge is None
            else CodeChallenge.update(consumed_at=utcnow())
            .where((CodeChallenge.id == challenge.id) & CodeChallenge.consumed_at.is_null())
            .execute()
        )
        if used != 1:
            raise TransitionRefused(Reason("code-used", N_("This control code was already used.")))
    app.phone_check_method = flow.get("method")
    app.phone_verified_by, app.phone_verified_at = flow.actor.account_id, utcnow()
    flow.audit_details["method"] = app.phone_check_method


def sign_section_two(flow) -> None:
    flow.row.signed_by, flow.row.signed_at = flow.actor.account_id, utcnow()


def record_transmission(flow) -> None:
    flow.row.transmitted_by, flow.row.transmitted_at = flow.actor.account_id, utcnow()
    notifications.notify_enrollment_validated(flow)


def create_login(flow) -> None:
    """Step 6: the physician (one GLN) and their pending account, with a temporary password by e-mail."""
    app = flow.row
    physician, _ = Physician.get_or_create(
        gln=app.gln,
        defaults={
            "last_name": app.last_name,
            "first_name": app.first_name,
            "date_of_birth": app.date_of_birth,
            "email": app.email,
            "mobile": app.mobile,
            "practice_address": app.practice_address,
        },
    )
    for specialty in Specialty.select().where(Specialty.code.in_(app.specialty_list)):
        PhysicianSpecialty.get_or_create(physician=physician, specialty=specialty)
    account = Account(
        username=Account.free_username(
            re.sub(r"[^a-z]", "", (app.first_name[:1] + app.last_name).lower()) or "medecin"
        ),
        email=app.email,
        full_name=f"{app.first_name} {app.last_name}",
        role=Role.PHYSICIAN,
        physician=physician,
        mobile=app.mobile,
    )
    engine.create(ACCOUNT, account, "issue_login", flow.actor)
    app.account, app.account_created_by, app.account_created_at = account.id, flow.actor.account_id, utcnow()


def record_completion(flow) -> None:
    flow.row.completed_at = utcnow()
    notifications.notify_enrollment_completed(flow)


def _close(outcome: str):
    def close(flow) -> None:
        app = flow.row
        app.closed_reason = (flow.get("reason") or outcome).strip()
        account = _account_of(app)
        if account is not None and account.state == AccountState.PENDING:
            engine.fire(ACCOUNT, account, "disable", SYSTEM)  # an unused login does not outlive its application
        notifications.notify_enrollment_closed(flow, outcome)

    close.__name__ = f"close_as_{outcome}"
    return close


# -- the procedure as a table ---------------------------------------------------------------------------------
# fmt: off
TRANSITIONS = [
    # 1. The applicant fills in section 1 (all fields mandatory) and confirms their e-mail address.
    T("submit",            S.NEW,               S.SUBMITTED,         roles={APPLICANT},
      guards=[section_one_complete, gln_not_already_enrolled], effects=[open_application],
      label=N_("Submit the application")),
    T("confirm_email",     S.SUBMITTED,         S.SUBMITTED,         roles={APPLICANT},
      guards=[email_not_yet_confirmed, email_token_matches], effects=[confirm_email],
      label=N_("Confirm the e-mail address")),
    # 2. The applicant presents themselves at a desk (AMG secretariat or e-health service).
    T("present",           S.SUBMITTED,         S.PRESENTED,         roles={VALIDATOR},
      guards=[email_confirmed, not_own_application, desk_is_known], effects=[record_presence],
      label=N_("Applicant present at the desk")),
    # 3. The validator checks the identity, notes the ID number and keeps a copy.
    T("verify_identity",   S.PRESENTED,         S.IDENTITY_VERIFIED, roles={VALIDATOR},
      guards=[not_own_application, identity_document_acceptable], effects=[record_identity],
      label=N_("Record the identity document")),
    # 4. A control SMS (or a call) to the applicant's mobile, then the validator signs section 2.
    T("send_control_code", S.IDENTITY_VERIFIED, S.IDENTITY_VERIFIED, roles={VALIDATOR},
      guards=[not_own_application, control_codes_left], effects=[send_control_sms],
      label=N_("Send the control SMS")),
    T("verify_phone",      S.IDENTITY_VERIFIED, S.PHONE_VERIFIED,    roles={VALIDATOR},
      guards=[not_own_application, phone_check_passed], effects=[record_phone_check],
      label=N_("Mobile number verified")),
    T("sign_section_two",  S.PHONE_VERIFIED,    S.SIGNED,            roles={VALIDATOR},
      guards=[not_own_application], effects=[sign_section_two], label=N_("Sign section 2")),
    # 5. The form and the ID copy go to the e-health service.
    T("transmit",          S.SIGNED,            S.TRANSMITTED,       roles={VALIDATOR},
      guards=[not_own_application, id_copy_on_file], effects=[record_transmission],
      label=N_("Transmit to the e-health service")),
    # 6. An administrator, not the validator, creates the login; a temporary password is e-mailed.
    T("create_account",    S.TRANSMITTED,       S.ACCOUNT_CREATED,   roles={ADMIN},
      guards=[not_own_application, four_eyes, gln_not_already_enrolled], effects=[create_login],
      label=N_("Create the login")),
    # 7. The applicant logs in, changes the password and completes the profile.
    T("complete",          S.ACCOUNT_CREATED,   S.COMPLETED,         roles={PHYSICIAN},
      guards=[is_own_account, account_is_active], effects=[record_completion],
      label=N_("Complete the registration")),
    # Side exits, from any open step.
    T("reject",            OPEN,                S.REJECTED,          roles={VALIDATOR, ADMIN},
      guards=[not_own_application, reason_given], effects=[_close("rejected")], label=N_("Reject")),
    T("withdraw",          OPEN,                S.WITHDRAWN,         roles={APPLICANT},
      guards=[is_the_applicant], effects=[_close("withdrawn")], label=N_("Withdraw my application")),
    T("expire",            OPEN,                S.EXPIRED,           roles={SYS},
      guards=[no_progress_for_too_long], effects=[_close("expired")], label=N_("Expire")),
]
# fmt: on

ENROLLMENT = Workflow("enrollment", EnrollmentApplication, EnrollmentState, TRANSITIONS, final=FINAL)


# -- appointments for step 2 (not transitions: the application stays `submitted` until the desk visit) ----------
def may_book_appointment(app: EnrollmentApplication) -> Reason | None:
    """Only an application waiting for its desk visit, whose e-mail address is confirmed, books a time."""
    if app.state != S.SUBMITTED:
        return Reason("wrong-state", N_("Appointments are only for applications waiting for the visit at a desk."))
    if app.email_confirmed_at is None:
        return Reason("email-unconfirmed", N_("Confirm your e-mail address first: follow the link we e-mailed you."))
    return None


def _appointment_audit(action: str, app: EnrollmentApplication, actor: engine.Actor, **details) -> None:
    # About the application (object "enrollment", its id): they appear in its history (EnrollmentApplication.history).
    audit.record(
        f"enrolment.{action}",
        actor_id=actor.account_id,
        actor_role=actor.role,
        ip=actor.ip,
        object_type="enrollment",
        object_id=app.id,
        details={"reference": app.reference, **details},
    )


def _applicant_only(app: EnrollmentApplication, actor: engine.Actor) -> None:
    if actor.role != APPLICANT or actor.proof != app.reference:
        raise TransitionRefused(Reason("forbidden", N_("Only the applicant can change their appointment.")))


def book_appointment(app: EnrollmentApplication, slot_id: int, actor: engine.Actor) -> Appointment:
    """Book a slot for the applicant, or move their booking to it; the confirmation is e-mailed. All or nothing."""
    _applicant_only(app, actor)
    reason = may_book_appointment(app)
    if reason is not None:
        raise TransitionRefused(reason)
    now = utcnow()
    with db.atomic():
        previous = Appointment.current_for(app)
        appointment = Appointment.book(app, slot_id, now)
        if appointment is None:
            raise TransitionRefused(Reason("slot-taken", N_("This time is no longer free: choose another one.")))
        moved_from = previous.slot_id if previous is not None else None
        notifications.notify_appointment_booked(appointment, moved=moved_from is not None)
        _appointment_audit("appointment_booked", app, actor, slot=slot_id, moved_from=moved_from)
    return appointment


def cancel_appointment(app: EnrollmentApplication, actor: engine.Actor) -> Appointment:
    """Cancel the applicant's booking (their application stays open); the cancellation is e-mailed."""
    _applicant_only(app, actor)
    with db.atomic():
        appointment = Appointment.current_for(app)
        if appointment is None or Appointment.cancel_for(app, utcnow()) != 1:
            raise TransitionRefused(Reason("no-appointment", N_("You have no appointment to cancel.")))
        notifications.notify_appointment_cancelled(appointment)
        _appointment_audit("appointment_cancelled", app, actor, slot=appointment.slot_id)
    return appointment
