"""The seven steps of the enrolment procedure and every guard on the way (DESIGN §4.1, seed's last section)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import time_machine

import models
from models import (
    Account,
    AuditEvent,
    CodeChallenge,
    EnrollmentApplication,
    OutboxMessage,
    Physician,
    Role,
    TransitionLog,
    utcnow,
)
from security import audit
from security.encryption import decrypt_field
from security.passwords import verify_password
from tests.conftest import section_one
from workflows import ACCOUNT, ENROLLMENT, SYSTEM, Actor, TransitionRefused, engine


def outbox(template: str) -> list[OutboxMessage]:
    return list(OutboxMessage.select().where(OutboxMessage.template == template).order_by(OutboxMessage.id))


def email_token(app) -> str:
    body = outbox("enrollment_received")[-1].body
    return re.search(rf"/inscription/confirmer/{app.reference}/(\S+)", body).group(1)


def control_code() -> str:
    return re.search(r"\b(\d{6})\b", outbox("control_code")[-1].body).group(1)


def applicant(app) -> Actor:
    return Actor(Role.APPLICANT, proof=app.reference)


def counts():
    return (
        TransitionLog.select().count(),
        AuditEvent.select().count(),
        OutboxMessage.select().count(),
        CodeChallenge.select().count(),
    )


def refused(app, trigger, actor, expected, /, **data):
    """Fire and expect a refusal whose reason code is `expected`; check that nothing was written."""
    before = counts()
    version = EnrollmentApplication.get_by_id(app.id).version if app.id else None
    with pytest.raises(TransitionRefused) as caught:
        if app.id is None:
            engine.create(ENROLLMENT, app, trigger, actor, **data)
        else:
            engine.fire(ENROLLMENT, app, trigger, actor, **data)
    assert caught.value.reason.code == expected
    assert counts() == before
    if version is not None:
        assert EnrollmentApplication.get_by_id(app.id).version == version


@pytest.fixture
def desk(make_account):
    """The people of the procedure: two validators, two administrators (one also a validator)."""

    class Desk:
        validator = make_account(Role.VALIDATOR, username="val.amg")
        validator_admin = make_account(Role.VALIDATOR, username="val.cyber", extra_roles="administrator")
        admin = make_account(Role.ADMINISTRATOR, username="adm.cyber")

        @staticmethod
        def v(account=None):
            return Actor(Role.VALIDATOR, (account or Desk.validator).id)

        @staticmethod
        def a(account=None):
            return Actor(Role.ADMINISTRATOR, (account or Desk.admin).id)

    return Desk


def id_evidence(**overrides):
    evidence = dict(
        id_type="passport",
        id_number="X1234567",
        id_expiry=dt.date.today() + dt.timedelta(days=365),
        id_copy_blob="a1b2c3",
        id_copy_mime="image/jpeg",
    )
    evidence.update(overrides)
    return evidence


def walk_to(app, state, desk, validator=None):
    """Drive an application through the procedure up to `state` as the desk would."""
    v = desk.v(validator)
    order = ["submitted", "presented", "identity_verified", "phone_verified", "signed", "transmitted"]
    steps = {
        "presented": lambda: (
            engine.fire(ENROLLMENT, app, "confirm_email", applicant(app), token=email_token(app)),
            engine.fire(ENROLLMENT, app, "present", v, desk="amg"),
        ),
        "identity_verified": lambda: engine.fire(ENROLLMENT, app, "verify_identity", v, **id_evidence()),
        "phone_verified": lambda: engine.fire(ENROLLMENT, app, "verify_phone", v, method="call", confirmed=True),
        "signed": lambda: engine.fire(ENROLLMENT, app, "sign_section_two", v),
        "transmitted": lambda: engine.fire(ENROLLMENT, app, "transmit", v),
    }
    for name in order[1 : order.index(state) + 1]:
        steps[name]()
    return app


# -- the whole procedure -----------------------------------------------------------------------------------------
def test_the_seven_steps(submit_application, desk):
    # 1. Section 1, every field mandatory; a tracking reference; e-mail confirmed by a link.
    app = submit_application()
    assert app.state == "submitted" and re.fullmatch(r"MH-[2-9A-Z]{4}-[2-9A-Z]{4}", app.reference)
    engine.fire(ENROLLMENT, app, "confirm_email", applicant(app), token=email_token(app))
    assert app.email_confirmed_at is not None and app.email_token_hash is None
    # 2. At the desk.
    engine.fire(ENROLLMENT, app, "present", desk.v(), desk="amg")
    # 3. Identity: the number is stored encrypted, never in clear.
    engine.fire(ENROLLMENT, app, "verify_identity", desk.v(), **id_evidence())
    stored = EnrollmentApplication.get_by_id(app.id)
    assert b"X1234567" not in bytes(stored.id_number_encrypted)
    assert decrypt_field(stored.id_number_encrypted, f"enrolment-id:{app.reference}") == "X1234567"
    # 4. Control SMS read back, then section 2 signed.
    engine.fire(ENROLLMENT, app, "send_control_code", desk.v())
    sms = outbox("control_code")[-1]
    assert sms.channel == "sms" and sms.recipient == "+41791234567"
    engine.fire(ENROLLMENT, app, "verify_phone", desk.v(), method="sms", code=control_code())
    engine.fire(ENROLLMENT, app, "sign_section_two", desk.v())
    assert app.signed_by_id == desk.validator.id and app.signed_at is not None
    # 5. Transmitted to the e-health service.
    engine.fire(ENROLLMENT, app, "transmit", desk.v())
    assert outbox("enrollment_validated")
    # 6. Another person creates the login: a physician, a pending account, a temporary password by e-mail.
    engine.fire(ENROLLMENT, app, "create_account", desk.a())
    account = Account.get_by_id(app.account_id)
    assert (account.state, account.role, account.physician.gln) == ("pending", "physician", app.gln)
    assert {s.code for s in account.physician.specialties()} == {"general-internal-medicine", "cardiology"}
    mail = outbox("temporary_password")[-1]
    assert mail.recipient == app.email and account.username in mail.body
    password = re.search(r"Mot de passe provisoire : (\S+)", mail.body).group(1)
    assert verify_password(account.password_hash, password)
    assert account.temporary_password_expires_at <= utcnow() + dt.timedelta(hours=72)
    # 7. First login: the applicant replaces the password, the account becomes active, the application completes.
    holder = Actor(Role.PHYSICIAN, account.id)
    refused(app, "complete", holder, "account-inactive")
    account.password_is_temporary = False
    engine.fire(ACCOUNT, account, "activate", holder)
    engine.fire(ENROLLMENT, app, "complete", holder)
    assert app.state == "completed" and outbox("enrollment_completed")

    steps = [log.trigger for log in TransitionLog.select().where(TransitionLog.workflow == "enrollment")]
    assert steps == [
        "submit",
        "confirm_email",
        "present",
        "verify_identity",
        "send_control_code",
        "verify_phone",
        "sign_section_two",
        "transmit",
        "create_account",
        "complete",
    ]
    assert audit.verify().ok
    # No identity number, no code, no password in the audit trail.
    details = " ".join(e.details for e in AuditEvent.select())
    assert "X1234567" not in details and password not in details


# -- step 1 ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "field",
    ["last_name", "first_name", "gln", "specialty_codes", "practice_address", "mobile", "email"],
)
def test_every_field_of_section_one_is_mandatory(database, field):
    app = EnrollmentApplication(**section_one(**{field: "  "}))
    refused(app, "submit", Actor(Role.APPLICANT), "incomplete")
    assert EnrollmentApplication.select().count() == 0


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"gln": "7601000000001"}, "bad-gln"),  # wrong check digit
        ({"gln": "760100000000"}, "bad-gln"),  # 12 digits
        ({"mobile": "079 123 45 67"}, "bad-mobile"),  # not E.164
        ({"email": "claire.dupont"}, "bad-email"),
        ({"specialty_codes": "cardiology,astrology"}, "bad-specialty"),
        ({"date_of_birth": dt.date.today() + dt.timedelta(days=1)}, "bad-birth-date"),
    ],
)
def test_section_one_is_validated(database, overrides, code):
    refused(EnrollmentApplication(**section_one(**overrides)), "submit", Actor(Role.APPLICANT), code)


def test_one_open_application_and_one_account_per_gln(submit_application, make_account, make_physician):
    submit_application()
    refused(EnrollmentApplication(**section_one()), "submit", Actor(Role.APPLICANT), "gln-has-application")
    physician = make_physician()
    make_account(Role.PHYSICIAN, physician=physician)
    again = EnrollmentApplication(**section_one(gln=physician.gln))
    refused(again, "submit", Actor(Role.APPLICANT), "gln-has-account")


def test_email_link_confirms_once(submit_application):
    app = submit_application()
    refused(app, "confirm_email", applicant(app), "bad-token", token="not-the-token")
    token = email_token(app)
    engine.fire(ENROLLMENT, app, "confirm_email", applicant(app), token=token)
    refused(app, "confirm_email", applicant(app), "already-confirmed", token=token)


# -- steps 2 to 5 ------------------------------------------------------------------------------------------------
def test_desk_waits_for_the_confirmed_email_and_a_known_desk(submit_application, desk):
    app = submit_application()
    refused(app, "present", desk.v(), "email-unconfirmed", desk="amg")
    engine.fire(ENROLLMENT, app, "confirm_email", applicant(app), token=email_token(app))
    refused(app, "present", desk.v(), "bad-desk", desk="pharmacy")
    engine.fire(ENROLLMENT, app, "present", desk.v(), desk="ehealth")
    assert (app.desk, app.presented_by_id) == ("ehealth", desk.validator.id)


def test_nobody_processes_their_own_application(submit_application, make_account):
    own = make_account(Role.VALIDATOR, email="claire.dupont@example.ch")
    app = submit_application()
    engine.fire(ENROLLMENT, app, "confirm_email", applicant(app), token=email_token(app))
    refused(app, "present", Actor(Role.VALIDATOR, own.id), "own-application", desk="amg")


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"id_expiry": dt.date.today() - dt.timedelta(days=1)}, "id-expired"),
        ({"id_type": "library-card"}, "bad-id-type"),
        ({"id_number": " "}, "no-id-number"),
        ({"id_copy_blob": None}, "no-id-copy"),
        ({"id_copy_mime": "image/gif"}, "no-id-copy"),
    ],
)
def test_identity_document_is_checked(submit_application, desk, overrides, code):
    app = walk_to(submit_application(), "presented", desk)
    refused(app, "verify_identity", desk.v(), code, **id_evidence(**overrides))


def test_control_code_must_match_and_is_single_use(submit_application, desk):
    app = walk_to(submit_application(), "identity_verified", desk)
    refused(app, "verify_phone", desk.v(), "no-code", method="sms", code="123456")
    engine.fire(ENROLLMENT, app, "send_control_code", desk.v())
    code = control_code()
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    refused(app, "verify_phone", desk.v(), "wrong-code", method="sms", code=wrong)
    engine.fire(ENROLLMENT, app, "verify_phone", desk.v(), method="sms", code=code)
    challenge = CodeChallenge.get(CodeChallenge.attempt_id == app.reference)
    assert challenge.consumed_at is not None
    assert code not in challenge.code_hash


def test_control_code_expires_after_ten_minutes(submit_application, desk):
    app = walk_to(submit_application(), "identity_verified", desk)
    start = dt.datetime.now(dt.UTC)
    with time_machine.travel(start, tick=False):
        engine.fire(ENROLLMENT, app, "send_control_code", desk.v())
    code = control_code()
    with time_machine.travel(start + dt.timedelta(minutes=10, seconds=1), tick=False):
        refused(app, "verify_phone", desk.v(), "no-code", method="sms", code=code)
    with time_machine.travel(start + dt.timedelta(minutes=9, seconds=59), tick=False):
        engine.fire(ENROLLMENT, app, "verify_phone", desk.v(), method="sms", code=code)


def test_code_of_another_application_is_refused(submit_application, desk):
    first = walk_to(submit_application(), "identity_verified", desk)
    second = walk_to(
        submit_application(gln=models.gln_with_check_digit("760100088888"), email="b@example.ch"),
        "identity_verified",
        desk,
    )
    engine.fire(ENROLLMENT, first, "send_control_code", desk.v())
    refused(second, "verify_phone", desk.v(), "no-code", method="sms", code=control_code())


def test_at_most_five_control_codes_an_hour(submit_application, desk):
    app = walk_to(submit_application(), "identity_verified", desk)
    start = dt.datetime.now(dt.UTC)
    with time_machine.travel(start, tick=False):
        for _ in range(5):
            engine.fire(ENROLLMENT, app, "send_control_code", desk.v())
        refused(app, "send_control_code", desk.v(), "too-many-codes")
    with time_machine.travel(start + dt.timedelta(minutes=61), tick=False):
        engine.fire(ENROLLMENT, app, "send_control_code", desk.v())


def test_control_call_needs_confirmation(submit_application, desk):
    app = walk_to(submit_application(), "identity_verified", desk)
    refused(app, "verify_phone", desk.v(), "call-unconfirmed", method="call", confirmed=False)
    refused(app, "verify_phone", desk.v(), "bad-method", method="pigeon")
    engine.fire(ENROLLMENT, app, "verify_phone", desk.v(), method="call", confirmed=True)
    assert app.phone_check_method == "call"


# -- step 6: four eyes -------------------------------------------------------------------------------------------
def test_the_validator_cannot_create_the_login(submit_application, desk):
    app = walk_to(submit_application(), "transmitted", desk, validator=desk.validator_admin)
    refused(app, "create_account", desk.a(desk.validator_admin), "four-eyes")
    engine.fire(ENROLLMENT, app, "create_account", desk.a())
    assert app.account_created_by_id == desk.admin.id


def test_login_is_refused_when_the_gln_got_an_account_meanwhile(submit_application, desk, make_account):
    app = walk_to(submit_application(), "transmitted", desk)
    physician = Physician.create(gln=app.gln, last_name="Dupont", first_name="Claire", email="c@example.ch")
    make_account(Role.PHYSICIAN, physician=physician, state="pending")
    refused(app, "create_account", desk.a(), "gln-has-account")


# -- step 7 ------------------------------------------------------------------------------------------------------
def test_only_the_applicant_completes(submit_application, desk, make_account, make_physician):
    app = walk_to(submit_application(), "transmitted", desk)
    engine.fire(ENROLLMENT, app, "create_account", desk.a())
    other = make_account(Role.PHYSICIAN, physician=make_physician())
    refused(app, "complete", Actor(Role.PHYSICIAN, other.id), "forbidden")


# -- side exits --------------------------------------------------------------------------------------------------
def test_reject_needs_a_reason_and_tells_the_applicant(submit_application, desk):
    app = walk_to(submit_application(), "identity_verified", desk)
    refused(app, "reject", desk.v(), "no-reason", reason="  ")
    engine.fire(ENROLLMENT, app, "reject", desk.v(), reason="Pièce d'identité illisible")
    assert (app.state, app.closed_reason) == ("rejected", "Pièce d'identité illisible")
    mail = outbox("enrollment_closed")[-1]
    assert mail.recipient == app.email and "refusée" in mail.body
    assert "illisible" not in mail.body  # the reason is for the file; the e-mail says only the outcome


def test_rejecting_after_step_six_disables_the_unused_login(submit_application, desk):
    app = walk_to(submit_application(), "transmitted", desk)
    engine.fire(ENROLLMENT, app, "create_account", desk.a())
    engine.fire(ENROLLMENT, app, "reject", desk.a(), reason="Doublon")
    assert Account.get_by_id(app.account_id).state == "disabled"


def test_only_the_applicant_withdraws(submit_application):
    app = submit_application()
    refused(app, "withdraw", Actor(Role.APPLICANT, proof="MH-XXXX-XXXX"), "forbidden")
    engine.fire(ENROLLMENT, app, "withdraw", applicant(app))
    assert app.state == "withdrawn"
    assert ENROLLMENT.outgoing(app.state) == []


def test_expiry_only_without_progress(submit_application, desk):
    app = submit_application()
    long_ago = utcnow() - dt.timedelta(days=1)
    refused(app, "expire", SYSTEM, "not-stale", cutoff=long_ago)
    refused(app, "expire", SYSTEM, "not-stale")
    engine.fire(ENROLLMENT, app, "expire", SYSTEM, cutoff=utcnow())
    assert app.state == "expired" and "expirée" in outbox("enrollment_closed")[-1].body


def test_expiry_after_step_six_waits_for_the_temporary_password_to_expire(submit_application, desk):
    app = walk_to(submit_application(), "transmitted", desk)
    engine.fire(ENROLLMENT, app, "create_account", desk.a())
    refused(app, "expire", SYSTEM, "not-stale", cutoff=utcnow())
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=73)
    with time_machine.travel(later, tick=False):
        engine.fire(ENROLLMENT, app, "expire", SYSTEM, cutoff=utcnow())
    assert app.state == "expired"
    assert Account.get_by_id(app.account_id).state == "disabled"
