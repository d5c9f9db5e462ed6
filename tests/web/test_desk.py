"""The validation desk (steps 2–5 of the enrolment, DESIGN §4.1) through HTTP: validators only; every step one
transition, one log row and one audit event with the validator, their role and address; every refusal says why and
writes nothing (row version, transition log, audit trail, outbox, blob store)."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import threading
from pathlib import Path

import pytest
import time_machine

import models
from models import (
    Appointment,
    AppointmentSlot,
    AuditEvent,
    CodeChallenge,
    EnrollmentApplication,
    OutboxMessage,
    Role,
    TransitionLog,
    db,
)
from models.enrollment import DESK_ZONE
from security import audit, sessions
from security.encryption import BlobStore, decrypt_field, keyring
from tests.conftest import statements
from workflows import ENROLLMENT, Actor, engine

from .conftest import csrf_token_in

DESK_IP = "10.20.30.41"
EN = {"Accept-Language": "en"}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 64
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
ID_NUMBER = "X9876543"


# -- helpers ----------------------------------------------------------------------------------------------------
def outbox(template: str) -> list[OutboxMessage]:
    return list(OutboxMessage.select().where(OutboxMessage.template == template).order_by(OutboxMessage.id))


def confirm_email(app: EnrollmentApplication) -> EnrollmentApplication:
    body = [m for m in outbox("enrollment_received") if m.recipient == app.email][-1].body
    token = re.search(rf"/inscription/confirmer/{app.reference}/(\S+)", body).group(1)
    engine.fire(ENROLLMENT, app, "confirm_email", Actor(Role.APPLICANT, proof=app.reference), token=token)
    return app


def control_code() -> str:
    return re.search(r"\b(\d{6})\b", outbox("control_code")[-1].body).group(1)


def path(app: EnrollmentApplication, tail: str = "") -> str:
    return f"/guichet/demandes/{app.reference}{tail}"


def blob_files(flask_app) -> list[Path]:
    root = Path(flask_app.config["BLOB_DIR"])
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def written(flask_app, app: EnrollmentApplication | None = None) -> tuple:
    """Everything a desk step may write: the row's version, log rows, audit events, outbox, codes, blob files."""
    version = EnrollmentApplication.get_by_id(app.id).version if app is not None else None
    return (
        version,
        TransitionLog.select().count(),
        AuditEvent.select().count(),
        OutboxMessage.select().count(),
        CodeChallenge.select().count(),
        len(blob_files(flask_app)),
    )


def fresh(app: EnrollmentApplication) -> EnrollmentApplication:
    return EnrollmentApplication.get_by_id(app.id)


def page(client, url: str, **kwargs) -> str:
    response = client.get(url, **kwargs)
    assert response.status_code == 200, (url, response.status_code, response.headers.get("Location"))
    return response.get_data(as_text=True)


@pytest.fixture
def desk_client(client):
    """post(app, trigger, **form): what the application page's form sends, from DESK_IP, English answers. A value
    given as (bytes, filename) is uploaded as a file."""

    class Desk:
        @staticmethod
        def post(app, trigger, *, via=None, **form):
            via = via or client
            token = csrf_token_in(via.get(path(app)).data)
            data = {k: (io.BytesIO(v[0]), v[1]) if isinstance(v, tuple) else v for k, v in form.items()}
            return via.post(
                path(app, f"/{trigger}"),
                data={"csrf_token": token, **data},
                headers=EN,
                environ_base={"REMOTE_ADDR": DESK_IP},
            )

    return Desk


def identity_form(**overrides) -> dict:
    form = {
        "id_type": "passport",
        "id_number": ID_NUMBER,
        "id_expiry": (dt.date.today() + dt.timedelta(days=400)).isoformat(),
        "id_copy": (PNG, "copy.pdf"),  # a PNG named .pdf: accepted as the PNG it is
    }
    form.update(overrides)
    return form


@pytest.fixture
def flask_app(app):
    """The Flask application (here `app` names an enrolment application)."""
    return app


@pytest.fixture
def validator(login_as):
    return login_as(Role.VALIDATOR, username="val.amg", email="val.amg@hcuge.ch")


@pytest.fixture
def arrived(submit_application):
    """An application whose e-mail is confirmed: the applicant may present themselves at the desk."""
    return confirm_email(submit_application())


STEPS = [
    ("presented", "present", {"desk": "amg"}),
    ("identity_verified", "verify_identity", None),
    ("phone_verified", "verify_phone", {"method": "call", "confirmed": "yes"}),
    ("signed", "sign_section_two", {}),
    ("transmitted", "transmit", {}),
]


def walk(desk_client, app, until: str):
    """Drive an application through the desk's steps by HTTP up to `until` (a state)."""
    for state, trigger, form in STEPS:
        response = desk_client.post(app, trigger, **(identity_form() if form is None else form))
        assert response.status_code == 303, (state, response.status_code, response.get_data(as_text=True)[:2000])
        if state == until:
            break
    return fresh(app)


# -- access ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("role", "extra_roles", "status"),
    [
        (Role.VALIDATOR, "", 200),
        (Role.VALIDATOR, "administrator", 200),
        (Role.ADMINISTRATOR, "validator", 200),
        (Role.ADMINISTRATOR, "", 403),
        (Role.PHYSICIAN, "", 403),
        (Role.CLINICIAN, "", 403),
    ],
)
def test_only_validators_use_the_desk(client, login_as, arrived, role, extra_roles, status):
    login_as(role, extra_roles=extra_roles)
    assert client.get("/guichet").status_code == status
    assert client.get(path(arrived)).status_code == status
    token = csrf_token_in(client.get("/").data)
    before = fresh(arrived).version
    response = client.post(path(arrived, "/present"), data={"csrf_token": token, "desk": "amg"})
    assert response.status_code == (303 if status == 200 else 403)
    assert (fresh(arrived).version > before) == (status == 200)


def test_anonymous_visitors_are_sent_to_the_login(client, arrived):
    for url in ("/guichet", path(arrived), path(arrived, "/piece-identite")):
        response = client.get(url)
        assert response.status_code == 302 and response.headers["Location"].startswith("/login?next=")
    token = csrf_token_in(client.get("/").data)
    response = client.post(path(arrived, "/present"), data={"csrf_token": token, "desk": "amg"})
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    assert fresh(arrived).state == "submitted"


def test_validators_land_on_the_desk_and_see_it_in_the_menu(client, validator):
    html = page(client, "/guichet")
    assert 'href="/guichet"' in html
    from web.auth import landing_url

    with client.application.test_request_context():
        assert landing_url(validator) == "/guichet"


def test_unknown_reference_is_404(client, validator):
    assert client.get("/guichet/demandes/MH-XXXX-XXXX").status_code == 404
    token = csrf_token_in(client.get("/guichet").data)
    assert client.post("/guichet/demandes/MH-XXXX-XXXX/present", data={"csrf_token": token}).status_code == 404


# -- the whole desk path -----------------------------------------------------------------------------------------
def test_the_desk_path_through_http(client, flask_app, desk_client, validator, arrived):
    """Present → identity (a PNG uploaded as copy.pdf) → control SMS → code read back → sign → transmit."""

    def fire(trigger, **form):
        before = written(flask_app, arrived)
        response = desk_client.post(arrived, trigger, **form)
        assert response.status_code == 303, response.get_data(as_text=True)[:3000]
        assert response.headers["Location"] == path(arrived)
        log = TransitionLog.select().order_by(TransitionLog.id.desc()).first()
        assert (log.workflow, log.object_id, log.trigger) == ("enrollment", arrived.id, trigger)
        assert (log.actor_id, log.actor_role) == (validator.id, "validator")
        event = AuditEvent.select().order_by(AuditEvent.id.desc()).first()
        assert (event.action, event.actor_id, event.actor_role, event.ip) == (
            f"enrollment.{trigger}",
            validator.id,
            "validator",
            DESK_IP,
        )
        after = written(flask_app, arrived)
        assert (after[0] - before[0], after[1] - before[1], after[2] - before[2]) == (1, 1, 1)
        return json.loads(event.details), page(client, path(arrived), headers=EN)

    details, html = fire("present", desk="ehealth")
    assert details == {"from": "submitted", "to": "presented", "desk": "ehealth"}
    assert fresh(arrived).desk == "ehealth" and "E-health &amp; telemedicine service" in html
    assert 'id="action-verify-identity"' in html and 'id="action-present"' not in html

    details, html = fire("verify_identity", **identity_form())
    stored = fresh(arrived)
    assert details["id_type"] == "passport" and ID_NUMBER not in json.dumps(details)
    assert stored.id_copy_mime == "image/png"  # by content, whatever the name said
    copy = BlobStore(flask_app.config["BLOB_DIR"], keyring.require()).get(
        stored.id_copy_blob, f"id-copy:{arrived.reference}"
    )
    assert copy == PNG and len(blob_files(flask_app)) == 1
    assert PNG not in blob_files(flask_app)[0].read_bytes()  # encrypted at rest
    assert decrypt_field(stored.id_number_encrypted, f"enrolment-id:{arrived.reference}") == ID_NUMBER
    assert ID_NUMBER not in html and "•••••543" in html  # masked but for the last 3 characters

    details, html = fire("send_control_code")
    sms = outbox("control_code")[-1]
    assert sms.recipient == arrived.mobile and sms.status == "sent"  # sent at once: the applicant is waiting
    assert details == {"from": "identity_verified", "to": "identity_verified"}
    assert "+41791234567" in html and 'id="action-verify-phone-sms"' in html

    details, html = fire("verify_phone", method="sms", code=control_code())
    assert details["method"] == "sms" and control_code() not in json.dumps(details)
    assert re.search(rf"I sign section 2 as {re.escape(validator.full_name)}, \d", html)

    fire("sign_section_two")
    details, html = fire("transmit")
    stored = fresh(arrived)
    assert stored.state == "transmitted" and stored.transmitted_by_id == validator.id
    assert outbox("enrollment_validated")
    assert "No action is possible now." in html
    assert [log.trigger for log in TransitionLog.select().where(TransitionLog.workflow == "enrollment")] == [
        "submit",
        "confirm_email",
        "present",
        "verify_identity",
        "send_control_code",
        "verify_phone",
        "sign_section_two",
        "transmit",
    ]
    # The history shows who, in which role, from → to, and the desk.
    assert html.count("Val.Amg (Validator)") >= 6 and "Desk : E-health" in html
    assert audit.verify().ok
    assert ID_NUMBER not in " ".join(e.details for e in AuditEvent.select())


def test_each_step_shows_only_what_the_machine_allows(client, desk_client, validator, arrived, submit_application):
    waiting = submit_application(gln=models.gln_with_check_digit("760100077777"), email="late@example.ch")
    html = page(client, path(waiting), headers=EN)
    assert '<form class="form workflow-action" id="action-present"' not in html
    assert "The applicant has not confirmed their e-mail address yet." in html  # why "present" is unavailable

    expected = {
        "submitted": {"action-present"},
        "presented": {"action-verify-identity"},
        "identity_verified": {"action-send-control-code", "action-verify-phone-sms", "action-verify-phone-call"},
        "phone_verified": {"action-sign-section-two"},
        "signed": {"action-transmit"},
    }
    for state, trigger, form in STEPS:
        html = page(client, path(arrived), headers=EN)
        assert set(re.findall(r'<form[^>]* id="(action-[a-z-]+)"', html)) == expected[fresh(arrived).state] | {
            "action-reject"
        }
        response = desk_client.post(arrived, trigger, **(identity_form() if form is None else form))
        assert response.status_code == 303 and fresh(arrived).state == state
    html = page(client, path(arrived), headers=EN)
    assert "<form" not in html.split('id="desk-steps"')[1].split("</section>")[0]


# -- refusals: a clear reason, and nothing written -------------------------------------------------------------------
def refused(flask_app, desk_client, app, trigger, status, message, **form):
    before = written(flask_app, app)
    response = desk_client.post(app, trigger, **form)
    html = response.get_data(as_text=True)
    assert response.status_code == status, html[:3000]
    assert message in html
    # On the application's own page: beside the form that was sent, or at the top for a step not offered now.
    assert html.count('class="notice notice--error" role="alert"') == 1
    assert written(flask_app, app) == before
    return html


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"id_expiry": (dt.date.today() - dt.timedelta(days=1)).isoformat()}, "The identity document has expired"),
        ({"id_expiry": ""}, "Enter the expiry date of the identity document."),
        ({"id_copy": (b"just some text, honestly a PDF\n", "copy.pdf")}, "must be a PDF, JPEG or PNG file"),
        ({"id_copy": (b"", "")}, "Upload a copy of the identity document"),
        ({"id_type": "library-card"}, "Choose the type of identity document."),
        ({"id_number": "   "}, "Enter the identity document number."),
    ],
)
def test_identity_refusals_keep_nothing(flask_app, client, desk_client, validator, arrived, overrides, message):
    walk(desk_client, arrived, "presented")
    html = refused(flask_app, desk_client, arrived, "verify_identity", 422, message, **identity_form(**overrides))
    assert blob_files(flask_app) == [] and fresh(arrived).state == "presented"
    assert 'aria-describedby="error-verify-identity"' in html and ID_NUMBER not in html


def test_an_oversized_copy_is_refused(flask_app, desk_client, validator, arrived):
    walk(desk_client, arrived, "presented")
    flask_app.config["MAX_UPLOAD_BYTES"] = 1024
    big = PNG + b"\x00" * 1024
    refused(
        flask_app,
        desk_client,
        arrived,
        "verify_identity",
        422,
        "larger than allowed",
        **identity_form(id_copy=(big, "id.png")),
    )
    assert blob_files(flask_app) == []
    response = desk_client.post(arrived, "verify_identity", **identity_form(id_copy=(PNG + b"\x00" * 900, "id.png")))
    assert response.status_code == 303 and len(blob_files(flask_app)) == 1


def test_a_jpeg_and_a_pdf_are_accepted_by_content(flask_app, desk_client, validator, arrived, submit_application):
    walk(desk_client, arrived, "presented")
    response = desk_client.post(arrived, "verify_identity", **identity_form(id_copy=(PDF, "scan.png")))
    assert response.status_code == 303 and fresh(arrived).id_copy_mime == "application/pdf"


def test_control_code_must_match(flask_app, desk_client, validator, arrived):
    walk(desk_client, arrived, "identity_verified")
    refused(
        flask_app,
        desk_client,
        arrived,
        "verify_phone",
        422,
        "No valid control code: send a new one.",
        method="sms",
        code="123456",
    )
    assert desk_client.post(arrived, "send_control_code").status_code == 303
    wrong = f"{(int(control_code()) + 1) % 1_000_000:06d}"
    refused(
        flask_app,
        desk_client,
        arrived,
        "verify_phone",
        422,
        "The code read back does not match the control SMS.",
        method="sms",
        code=wrong,
    )
    refused(
        flask_app,
        desk_client,
        arrived,
        "verify_phone",
        422,
        "Confirm that the applicant answered the control call.",
        method="call",
    )
    refused(flask_app, desk_client, arrived, "verify_phone", 422, "Choose a control SMS or a control call.")


def test_control_code_expires_after_ten_minutes(flask_app, desk_client, validator, arrived):
    walk(desk_client, arrived, "identity_verified")
    start = dt.datetime.now(dt.UTC)
    with time_machine.travel(start, tick=False):
        assert desk_client.post(arrived, "send_control_code").status_code == 303
    code = control_code()
    with time_machine.travel(start + dt.timedelta(minutes=10, seconds=1), tick=False):
        refused(flask_app, desk_client, arrived, "verify_phone", 422, "No valid control code", method="sms", code=code)
    with time_machine.travel(start + dt.timedelta(minutes=9, seconds=59), tick=False):
        assert desk_client.post(arrived, "verify_phone", method="sms", code=code).status_code == 303


def test_a_used_code_does_not_work_again(flask_app, desk_client, validator, arrived):
    walk(desk_client, arrived, "identity_verified")
    desk_client.post(arrived, "send_control_code")
    code = control_code()
    assert desk_client.post(arrived, "verify_phone", method="sms", code=code).status_code == 303
    refused(
        flask_app,
        desk_client,
        arrived,
        "verify_phone",
        409,
        "This action is not possible at this step.",
        method="sms",
        code=code,
    )


def test_two_validators_reading_back_the_same_code_at_once(flask_app, client, desk_client, validator, arrived):
    """Two desks submit the code at the same instant: one succeeds, the other is refused, one log row is written."""
    walk(desk_client, arrived, "identity_verified")
    desk_client.post(arrived, "send_control_code")
    code = control_code()
    before = written(flask_app, arrived)
    clients = [client, flask_app.test_client()]
    clients[1].set_cookie(sessions.COOKIE_NAME, validator.session_token)
    tokens = [csrf_token_in(c.get(path(arrived)).data) for c in clients]
    barrier, answers = threading.Barrier(2), [None, None]

    def submit(n):
        barrier.wait()
        response = clients[n].post(
            path(arrived, "/verify_phone"),
            data={"csrf_token": tokens[n], "method": "sms", "code": code},
            headers=EN,
        )
        answers[n] = response.status_code
        if not db.is_closed():
            db.close()

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # The later one finds the state moved on (409), or the code consumed under it (PostgreSQL: 422, "already used").
    assert sorted(answers)[0] == 303 and sorted(answers)[1] in (409, 422), answers
    after = written(flask_app, arrived)
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)
    assert CodeChallenge.get(CodeChallenge.attempt_id == arrived.reference).consumed_at is not None


def test_nobody_processes_their_own_application(flask_app, client, desk_client, login_as, arrived):
    login_as(Role.VALIDATOR, username="claire", email="Claire.Dupont@example.ch")  # the applicant's address
    html = page(client, path(arrived), headers=EN)
    assert "You cannot process your own application." in html and 'id="action-present" method' not in html
    refused(flask_app, desk_client, arrived, "present", 422, "You cannot process your own application.", desk="amg")


def test_steps_cannot_be_skipped(flask_app, desk_client, validator, arrived):
    walk(desk_client, arrived, "presented")
    refused(flask_app, desk_client, arrived, "sign_section_two", 409, "This action is not possible at this step.")
    refused(flask_app, desk_client, arrived, "transmit", 409, "This action is not possible at this step.")
    refused(
        flask_app,
        desk_client,
        arrived,
        "verify_phone",
        409,
        "not possible at this step",
        method="call",
        confirmed="yes",
    )
    refused(flask_app, desk_client, arrived, "no_such_step", 409, "This action does not exist.")
    assert fresh(arrived).state == "presented"


@pytest.mark.parametrize(
    ("trigger", "status"),
    [
        ("create_account", 409),
        ("complete", 409),
        ("submit", 409),
        ("confirm_email", 409),
        ("withdraw", 403),
        ("expire", 403),
    ],
)
def test_other_roles_triggers_are_refused(flask_app, desk_client, validator, arrived, trigger, status):
    walk(desk_client, arrived, "presented")
    refused(flask_app, desk_client, arrived, trigger, status, "")
    assert fresh(arrived).state == "presented"


def test_create_account_is_not_the_validators_even_when_transmitted(flask_app, desk_client, validator, arrived):
    walk(desk_client, arrived, "transmitted")
    refused(flask_app, desk_client, arrived, "create_account", 403, "Your role does not allow this action.")


def test_reject_needs_a_reason(flask_app, client, desk_client, validator, arrived):
    walk(desk_client, arrived, "presented")
    refused(flask_app, desk_client, arrived, "reject", 422, "Give the reason for the rejection.", reason="   ")
    response = desk_client.post(arrived, "reject", reason="Pièce d'identité illisible", desk="ehealth")
    assert response.status_code == 303
    stored = fresh(arrived)
    assert (stored.state, stored.closed_reason, stored.desk) == ("rejected", "Pièce d'identité illisible", "amg")
    assert outbox("enrollment_closed")
    html = page(client, path(arrived), headers=EN)
    assert "No action is possible now." in html and "Pièce d&#39;identité illisible" in html


# -- the queue ---------------------------------------------------------------------------------------------------
def geneva(day: dt.date, hour: int) -> dt.datetime:
    """A time of day at the desk, stored as naive UTC."""
    return dt.datetime.combine(day, dt.time(hour), DESK_ZONE).astimezone(dt.UTC).replace(tzinfo=None)


def book(app, desk: str, starts_at: dt.datetime, *, cancelled: bool = False) -> Appointment:
    slot = AppointmentSlot.create(desk=desk, starts_at=starts_at, ends_at=starts_at + dt.timedelta(minutes=20))
    return Appointment.create(slot=slot, application=app, cancelled_at=models.utcnow() if cancelled else None)


def queue_references(html: str) -> list[str]:
    return re.findall(r'<tr id="application-(MH-[A-Z0-9-]+)">', html)


def applicant(submit_application, n: int, last_name: str, *, confirm: bool = True):
    app = submit_application(
        last_name=last_name,
        gln=models.gln_with_check_digit(f"7601000{n:05d}"),
        email=f"applicant{n}@example.ch",
    )
    return confirm_email(app) if confirm else app


def test_queue_puts_todays_appointments_first(client, desk_client, validator, submit_application):
    today = dt.datetime.now(DESK_ZONE).date()
    with time_machine.travel(dt.datetime.now(dt.UTC) - dt.timedelta(days=3), tick=True):
        oldest = applicant(submit_application, 1, "Ancien")
    presented = applicant(submit_application, 2, "Présent")
    walk(desk_client, presented, "presented")
    afternoon = applicant(submit_application, 3, "Après-midi")
    book(afternoon, "ehealth", geneva(today, 14))
    morning = applicant(submit_application, 4, "Matin")
    book(morning, "amg", geneva(today, 9))
    tomorrow = applicant(submit_application, 5, "Demain")
    book(tomorrow, "amg", geneva(today + dt.timedelta(days=1), 9))
    cancelled = applicant(submit_application, 6, "Annulé")
    book(cancelled, "amg", geneva(today, 8), cancelled=True)
    unconfirmed = applicant(submit_application, 7, "Distrait", confirm=False)
    transmitted = applicant(submit_application, 8, "Transmis")
    walk(desk_client, transmitted, "transmitted")
    rejected = applicant(submit_application, 9, "Refusé")
    engine.fire(ENROLLMENT, rejected, "reject", Actor(Role.VALIDATOR, validator.id), reason="doublon")

    html = page(client, "/guichet", headers=EN)
    assert queue_references(html) == [
        morning.reference,
        afternoon.reference,
        oldest.reference,
        presented.reference,
        tomorrow.reference,
        cancelled.reference,
    ]
    row = html.split(f'id="application-{morning.reference}"')[1].split("</tr>")[0]
    assert "AMG secretariat" in row and "Submitted" in row and "Receive the applicant (step 2)" in row
    assert re.search(r"\d{1,2}:00", row)
    row = html.split(f'id="application-{presented.reference}"')[1].split("</tr>")[0]
    assert "Presented at the desk" in row and "Check the identity document (step 3)" in row
    assert not {unconfirmed.reference, transmitted.reference, rejected.reference} & set(queue_references(html))


@pytest.mark.parametrize("field", ["name", "reference", "gln", "lowercase"])
def test_queue_search(client, validator, submit_application, field):
    first = applicant(submit_application, 1, "Rochat")
    second = applicant(submit_application, 2, "Favre")
    words = {
        "name": "roch",
        "reference": first.reference,
        "gln": first.gln[-6:],
        "lowercase": f"rochat {first.reference.lower()}",
    }
    html = page(client, "/guichet", query_string={"q": words[field]}, headers=EN)
    assert queue_references(html) == [first.reference] and second.reference not in html


def test_search_finds_an_applicant_who_has_not_confirmed_the_email(client, validator, submit_application):
    late = applicant(submit_application, 1, "Distrait", confirm=False)
    assert late.reference not in page(client, "/guichet")
    html = page(client, "/guichet", query_string={"q": "distrait"}, headers=EN)
    assert queue_references(html) == [late.reference]
    assert "Waiting for the applicant to confirm their e-mail address" in html
    assert "No application at the desk matches this search." in page(
        client, "/guichet", query_string={"q": "nobody"}, headers=EN
    )


def test_queue_costs_the_same_number_of_queries_for_any_length(
    client, database, desk_client, validator, submit_application
):
    today = dt.datetime.now(DESK_ZONE).date()

    def add(start, n):
        for i in range(start, start + n):
            app = applicant(submit_application, i, f"Nom{i}")
            if i % 2:
                book(app, "amg", geneva(today, 8 + i % 10))
            if i % 3 == 0:
                walk(desk_client, app, "presented")

    add(1, 2)
    with statements() as few:
        page(client, "/guichet")
    add(10, 8)
    with statements() as many:
        html = page(client, "/guichet")
    assert len(queue_references(html)) == 10
    assert few and len(many) == len(few), (few, many)


# -- the ID copy and the printable form ------------------------------------------------------------------------------
def test_the_id_copy_is_a_download_and_each_one_is_audited(
    flask_app, client, desk_client, validator, arrived, login_as
):
    walk(desk_client, arrived, "identity_verified")
    html = page(client, path(arrived), headers=EN)
    assert f'href="{path(arrived, "/piece-identite")}"' in html
    before = AuditEvent.select().count()
    response = client.get(path(arrived, "/piece-identite"), environ_base={"REMOTE_ADDR": DESK_IP})
    assert response.status_code == 200 and response.data == PNG
    assert response.mimetype == "image/png"
    assert response.headers["Content-Disposition"] == f'attachment; filename="{arrived.reference}-piece-identite.png"'
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert AuditEvent.select().count() == before + 1
    event = AuditEvent.select().order_by(AuditEvent.id.desc()).first()
    assert (event.action, event.actor_id, event.actor_role, event.ip) == (
        "enrolment.id_copy_viewed",
        validator.id,
        "validator",
        DESK_IP,
    )
    assert json.loads(event.details)["reference"] == arrived.reference

    login_as(Role.PHYSICIAN)  # the same browser, now a physician's session
    before = AuditEvent.select().count()
    assert client.get(path(arrived, "/piece-identite")).status_code == 403
    assert AuditEvent.select().count() == before


def test_no_copy_no_download(client, validator, arrived):
    assert client.get(path(arrived, "/piece-identite")).status_code == 404


def test_the_printable_form(client, validator, arrived):
    import web.desk

    response = client.get(path(arrived, "/formulaire.pdf"))
    if web.desk.application_form_pdf is None:
        assert response.status_code == 404
        assert 'id="form-pdf"' not in page(client, path(arrived))
        return
    assert response.status_code == 200 and response.data.startswith(b"%PDF-")
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert response.headers["Cache-Control"] == "no-store"
    assert 'id="form-pdf"' in page(client, path(arrived))


def test_development_shows_the_sms_outbox_link(database, tmp_path, make_account, submit_application):
    from web import create_app

    from .conftest import settings

    flask_app = create_app(settings(database, MYHUG_ENV="development", INSTANCE_PATH=str(tmp_path / "instance")))
    browser = flask_app.test_client()
    account = make_account(Role.VALIDATOR, username="val.dev")
    browser.set_cookie(sessions.COOKIE_NAME, sessions.start(account, "127.0.0.1", "pytest", "password+sms"))
    app = confirm_email(submit_application())
    actor = Actor(Role.VALIDATOR, account.id)
    engine.fire(ENROLLMENT, app, "present", actor, desk="amg")
    engine.fire(
        ENROLLMENT,
        app,
        "verify_identity",
        actor,
        id_type="passport",
        id_number=ID_NUMBER,
        id_expiry=dt.date.today() + dt.timedelta(days=30),
        id_copy_blob="a1b2c3",
        id_copy_mime="image/png",
    )
    html = browser.get(path(app)).get_data(as_text=True)
    assert 'href="/dev/sms"' in html
