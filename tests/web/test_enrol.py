"""The applicant's pages (DESIGN §4.1 step 1): section 1, the e-mailed link, tracking, withdrawal, appointments."""

from __future__ import annotations

import datetime as dt
import io
import re
import threading

import pytest
import time_machine
from pypdf import PdfReader

from models import (
    Appointment,
    AppointmentSlot,
    AuditEvent,
    Desk,
    EnrollmentApplication,
    OutboxMessage,
    Role,
    TransitionLog,
    db,
    gln_with_check_digit,
    utcnow,
)
from workflows import Actor, TransitionRefused
from workflows.enrollment import book_appointment

from .conftest import csrf_token_in, settings

GLN = gln_with_check_digit("760100099999")
EN = {"Accept-Language": "en"}
FIELDS = ("last_name", "first_name", "date_of_birth", "gln", "specialties", "practice_address", "mobile", "email")


@pytest.fixture
def app(database, tmp_path):
    """The limits are tested on their own (test_applications_are_rate_limited): here they never get in the way."""
    from web import create_app

    return create_app(
        settings(
            database,
            INSTANCE_PATH=str(tmp_path / "instance"),
            ENROLMENT_RATE_LIMIT="1000 per hour",
            ENROLMENT_TRACKING_RATE_LIMIT="1000 per hour",
        )
    )


# -- helpers ----------------------------------------------------------------------------------------------------
def form(**overrides) -> dict:
    data = {
        "last_name": "Dupont",
        "first_name": "Claire",
        "date_of_birth": "1978-05-17",
        "gln": GLN,
        "specialties": ["general-internal-medicine", "cardiology"],
        "practice_address": "Boulevard Carl-Vogt 2\n1205 Genève",
        "mobile": "079 123 45 67",
        "email": "claire.dupont@example.ch",
    }
    data.update(overrides)
    return data


def apply(client, headers=None, **overrides):
    token = csrf_token_in(client.get("/inscription", headers=headers).data)
    return client.post("/inscription", data={"csrf_token": token, **form(**overrides)}, headers=headers)


def written() -> tuple[int, int, int]:
    return EnrollmentApplication.select().count(), OutboxMessage.select().count(), TransitionLog.select().count()


def outbox(template: str) -> list[OutboxMessage]:
    return list(OutboxMessage.select().where(OutboxMessage.template == template).order_by(OutboxMessage.id))


def confirm_path(application: EnrollmentApplication) -> str:
    body = outbox("enrollment_received")[-1].body
    return re.search(rf"http://[^/]+(/inscription/confirmer/{application.reference}/\S+)", body).group(1)


def fresh(application: EnrollmentApplication) -> EnrollmentApplication:
    return EnrollmentApplication.get_by_id(application.id)


def track(client, reference: str, email: str, headers=None):
    token = csrf_token_in(client.get("/inscription/suivi", headers=headers).data)
    return client.post(
        "/inscription/suivi", data={"csrf_token": token, "reference": reference, "email": email}, headers=headers
    )


def status_path(application: EnrollmentApplication) -> str:
    return f"/inscription/suivi/{application.reference}"


def post_on_status(client, application, path: str, **data):
    token = csrf_token_in(client.get(status_path(application)).data)
    return client.post(f"{status_path(application)}{path}", data={"csrf_token": token, **data})


@pytest.fixture
def applied(client):
    """An application submitted through the form (this client holds its proof)."""
    response = apply(client)
    assert response.status_code == 303, response.get_data(as_text=True)
    return EnrollmentApplication.get()


@pytest.fixture
def confirmed(client, applied):
    assert client.get(confirm_path(applied)).status_code == 200
    return fresh(applied)


def make_slot(hours: float = 48, capacity: int = 1, desk: str = Desk.AMG) -> AppointmentSlot:
    starts_at = utcnow().replace(microsecond=0) + dt.timedelta(hours=hours)
    return AppointmentSlot.create(
        desk=desk, starts_at=starts_at, ends_at=starts_at + dt.timedelta(minutes=20), capacity=capacity
    )


# -- section 1 ---------------------------------------------------------------------------------------------------
def test_home_page_links_to_the_form_and_the_form_lists_specialties_in_the_page_language(client, database):
    home = client.get("/").get_data(as_text=True)
    assert 'href="/inscription"' in home and 'href="/inscription/suivi"' in home
    french = client.get("/inscription", headers={"Accept-Language": "fr"}).get_data(as_text=True)
    english = client.get("/inscription", headers=EN).get_data(as_text=True)
    assert "Cardiologie" in french and 'value="cardiology"' in french
    assert "Cardiology" in english and "Cardiologie" not in english
    for name in ("last_name", "first_name", "date_of_birth", "gln", "practice_address", "mobile", "email"):
        assert f'<label for="{name}">' in english
    assert "<legend>Specialties</legend>" in english


def test_a_complete_application_is_written_once_and_shows_its_reference(client, database):
    response = apply(client, headers=EN)
    assert (response.status_code, response.headers["Location"]) == (303, "/inscription/deposee")
    application = EnrollmentApplication.get()
    assert application.state == "submitted"
    assert application.mobile == "+41791234567"  # typed "079 123 45 67", stored E.164
    assert application.specialty_list == ["general-internal-medicine", "cardiology"]
    assert application.date_of_birth == dt.date(1978, 5, 17)
    assert application.practice_address == "Boulevard Carl-Vogt 2\n1205 Genève"
    received = outbox("enrollment_received")
    assert [m.recipient for m in received] == ["claire.dupont@example.ch"]
    assert written() == (1, 1, 1)
    page = client.get("/inscription/deposee", headers=EN).get_data(as_text=True)
    assert application.reference in page
    assert "claire.dupont@example.ch" in page  # "open the link we sent to …"
    assert "AMG secretariat" in page and "identity document" in page
    event = AuditEvent.select().where(AuditEvent.action == "enrollment.submit").get()
    assert event.ip == "127.0.0.1"


def test_the_confirmation_page_needs_an_application_of_this_browser(client, database):
    response = client.get("/inscription/deposee")
    assert (response.status_code, response.headers["Location"]) == (302, "/inscription")


@pytest.mark.parametrize("field", FIELDS)
def test_each_missing_field_is_refused_next_to_that_field_and_nothing_is_written(client, database, field):
    response = apply(client, headers=EN, **{field: [] if field == "specialties" else "  "})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert f'<p class="notice notice--error" id="{field}-error">This field is mandatory.</p>' in html
    assert re.search(rf'aria-describedby="[^"]*\b{field}-error\b', html)
    assert html.count("This field is mandatory.") == 2  # next to the field, and in the summary at the top
    assert written() == (0, 0, 0)
    # What was typed comes back, so that only the missing field needs typing.
    if field != "last_name":
        assert 'value="Dupont"' in html
    if field != "specialties":
        assert re.search(r'value="cardiology"\s+checked', html)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("mobile", "12345", "This is not a valid phone number."),
        ("mobile", "022 372 33 11", "This is not a mobile number"),  # a Geneva landline
        ("mobile", "+41 79 123 45 6x", "This is not a valid phone number."),
        ("email", "claire.dupont@", "The e-mail address is not valid."),
        ("email", "claire dupont@example.ch", "The e-mail address is not valid."),
        ("gln", GLN[:-1] + str((int(GLN[-1]) + 1) % 10), "The GLN must have 13 digits and a valid check digit."),
        ("gln", "76010009999", "The GLN must have 13 digits and a valid check digit."),
        ("date_of_birth", (dt.date.today() + dt.timedelta(days=1)).isoformat(), "The date of birth is not valid."),
        ("date_of_birth", "17 mai 1978", "Enter a date such as 17.05.1978."),
        ("specialties", ["cardiology", "astrology"], "Choose your specialties from the list."),
    ],
)
def test_malformed_values_are_refused_next_to_their_field(client, database, field, value, message):
    response = apply(client, headers=EN, **{field: value})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    error = re.search(rf'<p class="notice notice--error" id="{field}-error">([^<]*)</p>', html)
    assert error and message in error.group(1).replace("&#39;", "'"), html
    assert written() == (0, 0, 0)


def test_every_mistake_shows_at_once(client, database):
    bad_gln = GLN[:-1] + str((int(GLN[-1]) + 1) % 10)
    response = apply(client, headers=EN, first_name="", gln=bad_gln, mobile="022 372 33 11", email="x@")
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    for field in ("first_name", "gln", "mobile", "email"):
        assert f'id="{field}-error"' in html
    assert "Correct the 4 fields below:" in html
    assert written() == (0, 0, 0)


def test_other_ways_of_typing_a_mobile_and_a_date_are_normalised(client, database):
    assert apply(client, mobile="+33 6 12 34 56 78", date_of_birth="17.05.1978").status_code == 303
    application = EnrollmentApplication.get()
    assert (application.mobile, application.date_of_birth) == ("+33612345678", dt.date(1978, 5, 17))


def test_a_gln_that_already_has_an_account_is_refused(client, make_account, make_physician):
    make_account(Role.PHYSICIAN, physician=make_physician(gln=GLN))
    before = written()
    response = apply(client, headers=EN)
    assert response.status_code == 422
    assert '<p class="notice notice--error" id="gln-error">This GLN already has a myHUG account.</p>' in (
        response.get_data(as_text=True)
    )
    assert written() == before


def test_a_gln_with_an_open_application_is_refused(client, applied):
    response = apply(client, headers=EN, email="someone.else@example.ch")
    assert response.status_code == 422
    assert "An application for this GLN is already in progress." in response.get_data(as_text=True)
    assert written()[0] == 1


def test_applications_are_rate_limited_per_address(database, tmp_path):
    from web import create_app

    client = create_app(
        settings(database, INSTANCE_PATH=str(tmp_path / "i"), ENROLMENT_RATE_LIMIT="2 per hour")
    ).test_client()
    statuses = [apply(client, last_name="").status_code for _ in range(3)]
    assert statuses == [422, 422, 429]
    assert client.get("/inscription").status_code == 200  # only the POSTs count


# -- the e-mailed link -------------------------------------------------------------------------------------------
def test_the_link_confirms_the_address_once(client, applied):
    path = confirm_path(applied)
    response = client.get(path, headers=EN)
    assert response.status_code == 200
    assert "E-mail address confirmed" in response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-store"
    confirmed_at = fresh(applied).email_confirmed_at
    assert confirmed_at is not None
    before = written()
    again = client.get(path, headers=EN)
    assert again.status_code == 422
    assert "The e-mail address is already confirmed." in again.get_data(as_text=True)
    assert fresh(applied).email_confirmed_at == confirmed_at and written() == before


def test_a_wrong_token_or_reference_changes_nothing(client, applied):
    before = written()
    response = client.get(f"/inscription/confirmer/{applied.reference}/not-the-token", headers=EN)
    assert response.status_code == 422
    assert "This confirmation link is not valid." in response.get_data(as_text=True)
    token = confirm_path(applied).rsplit("/", 1)[1]
    assert client.get(f"/inscription/confirmer/MH-ZZZZ-ZZZZ/{token}").status_code == 404
    assert fresh(applied).email_confirmed_at is None and written() == before


def test_the_link_of_a_closed_application_is_refused(client, applied):
    path = confirm_path(applied)
    assert post_on_status(client, applied, "/action/withdraw", confirm="yes").status_code == 303
    assert client.get(path).status_code == 409
    assert fresh(applied).email_confirmed_at is None


# -- tracking ----------------------------------------------------------------------------------------------------
def test_tracking_needs_the_reference_and_the_email_and_answers_alike_when_either_is_wrong(app, applied):
    client = app.test_client()  # another browser: no proof
    response = client.get(status_path(applied))
    assert (response.status_code, response.headers["Location"]) == (303, "/inscription/suivi")
    wrong_email = track(client, applied.reference, "someone@example.ch", headers=EN)
    unknown = track(client, "MH-ZZZZ-ZZZZ", applied.email, headers=EN)
    assert wrong_email.status_code == unknown.status_code == 422
    message = "No application matches this reference and this e-mail address."
    assert message in wrong_email.get_data(as_text=True) and message in unknown.get_data(as_text=True)
    assert client.get(status_path(applied)).status_code == 303
    # The reference as read out (lower case) and the address in capitals both prove it.
    response = track(client, applied.reference.lower(), applied.email.upper())
    assert (response.status_code, response.headers["Location"]) == (303, status_path(applied))
    page = client.get(status_path(applied), headers=EN)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert applied.reference in page.get_data(as_text=True)


def test_another_reference_than_the_proven_one_is_not_found(client, applied, submit_application):
    other = submit_application(gln=gln_with_check_digit("760100088888"), email="other@example.ch")
    assert client.get(status_path(applied)).status_code == 200
    assert client.get(status_path(other)).status_code == 404
    assert client.get(f"{status_path(other)}/formulaire.pdf").status_code == 404
    response = client.post(
        f"{status_path(other)}/action/withdraw",
        data={"csrf_token": csrf_token_in(client.get(status_path(applied)).data), "confirm": "yes"},
    )
    assert response.status_code == 404 and fresh(other).state == "submitted"


def test_the_proof_lasts_half_an_hour(client, applied):
    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=31)):
        assert client.get(status_path(applied)).status_code == 303


def test_leaving_the_tracking_forgets_the_proof(client, applied):
    token = csrf_token_in(client.get(status_path(applied)).data)
    client.post("/inscription/suivi/fin", data={"csrf_token": token})
    assert client.get(status_path(applied)).status_code == 303


def test_the_tracking_page_lists_the_seven_steps_and_what_to_do(client, applied):
    html = client.get(status_path(applied), headers=EN).get_data(as_text=True)
    steps = re.findall(r'<li id="step-(\d)" class="step step--(\w+)"', html)
    assert steps == [("1", "current")] + [(str(n), "todo") for n in range(2, 8)]
    assert "Open the link we sent to claire.dupont@example.ch" in html
    assert "Confirm your e-mail address first" in html  # booking waits for it
    assert f'href="/inscription/suivi/{applied.reference}/formulaire.pdf"' in html

    client.get(confirm_path(applied))
    html = client.get(status_path(applied), headers=EN).get_data(as_text=True)
    steps = re.findall(r'<li id="step-(\d)" class="step step--(\w+)"', html)
    assert steps[:2] == [("1", "done"), ("2", "current")]
    assert "Book an appointment at the AMG secretariat or at the e-health service" in html
    assert 'id="no-slot"' in html


def test_the_tracking_page_in_french_says_what_to_do_in_french(client, confirmed):
    html = client.get(status_path(confirmed), headers={"Accept-Language": "fr"}).get_data(as_text=True)
    assert 'lang="fr"' in html and confirmed.reference in html


# -- withdrawal --------------------------------------------------------------------------------------------------
def test_withdrawal_needs_the_ticked_box_then_closes_the_application(client, applied):
    response = post_on_status(client, applied, "/action/withdraw")
    assert response.status_code == 303 and fresh(applied).state == "submitted"
    response = post_on_status(client, applied, "/action/withdraw", confirm="yes")
    assert (response.status_code, response.headers["Location"]) == (303, status_path(applied))
    assert fresh(applied).state == "withdrawn"
    assert [m.recipient for m in outbox("enrollment_closed")] == [applied.email]
    log = TransitionLog.get(TransitionLog.trigger == "withdraw")
    assert (log.actor_role, log.actor_id) == ("applicant", None)
    html = client.get(status_path(applied), headers=EN).get_data(as_text=True)
    assert "You withdrew this application." in html and 'id="action-withdraw"' not in html


def test_only_the_applicant_triggers_are_reachable(client, applied):
    response = post_on_status(client, applied, "/action/present", desk="amg")
    assert response.status_code == 404 and fresh(applied).state == "submitted"


# -- appointments ------------------------------------------------------------------------------------------------
def test_an_unconfirmed_application_cannot_book(client, applied):
    slot = make_slot()
    html = client.get(status_path(applied), headers=EN).get_data(as_text=True)
    assert 'id="book-appointment"' not in html
    response = post_on_status(client, applied, "/rendez-vous", slot=slot.id)
    assert response.status_code == 422
    assert Appointment.select().count() == 0 and not outbox("appointment_booked")


def test_book_move_and_cancel(client, confirmed):
    first, second = make_slot(48), make_slot(72, desk=Desk.EHEALTH)
    past = make_slot(-2)
    html = client.get(status_path(confirmed), headers=EN).get_data(as_text=True)
    assert f'<option value="{first.id}">' in html and f'<option value="{second.id}">' in html
    assert f'<option value="{past.id}">' not in html

    response = post_on_status(client, confirmed, "/rendez-vous", slot=first.id)
    assert (response.status_code, response.headers["Location"]) == (303, status_path(confirmed) + "#appointment")
    booked = Appointment.current_for(confirmed)
    assert booked.slot_id == first.id
    [mail] = outbox("appointment_booked")
    assert mail.recipient == confirmed.email and confirmed.reference in mail.subject
    assert "AMG" in mail.body and "pièce d'identité" in mail.body
    assert (mail.related_type, mail.related_id) == ("enrollment", confirmed.id)

    response = post_on_status(client, confirmed, "/rendez-vous", slot=second.id)
    assert response.status_code == 303
    moved = Appointment.current_for(confirmed)
    assert moved.slot_id == second.id and Appointment.get_by_id(booked.id).cancelled_at is not None
    assert "déplacé" in outbox("appointment_booked")[-1].subject
    html = client.get(status_path(confirmed), headers=EN).get_data(as_text=True)
    assert 'id="current-appointment"' in html and f'<option value="{first.id}">' in html

    assert post_on_status(client, confirmed, "/rendez-vous/annuler").status_code == 303  # box not ticked
    assert Appointment.current_for(confirmed) is not None
    response = post_on_status(client, confirmed, "/rendez-vous/annuler", confirm="yes")
    assert response.status_code == 303 and Appointment.current_for(confirmed) is None
    assert len(outbox("appointment_cancelled")) == 1
    assert post_on_status(client, confirmed, "/rendez-vous/annuler", confirm="yes").status_code == 422
    actions = [e.action for e in AuditEvent.select().where(AuditEvent.action.startswith("enrolment.appointment"))]
    assert actions == ["enrolment.appointment_booked"] * 2 + ["enrolment.appointment_cancelled"]


def test_a_full_or_past_slot_is_refused(client, confirmed, submit_application):
    full, past = make_slot(capacity=1), make_slot(-1)
    other = submit_application(gln=gln_with_check_digit("760100077777"), email="o@example.ch")
    other.email_confirmed_at = utcnow()
    other.save()
    book_appointment(other, full.id, Actor(Role.APPLICANT, proof=other.reference))
    for slot in (full, past):
        response = post_on_status(client, confirmed, "/rendez-vous", slot=slot.id)
        assert response.status_code == 422
    assert Appointment.current_for(confirmed) is None
    assert full.id not in [s.id for s in AppointmentSlot.bookable(utcnow())]


def test_a_withdrawn_application_frees_its_seat(client, confirmed):
    slot = make_slot(capacity=1)
    post_on_status(client, confirmed, "/rendez-vous", slot=slot.id)
    assert [s.id for s in AppointmentSlot.bookable(utcnow())] == []
    post_on_status(client, confirmed, "/action/withdraw", confirm="yes")
    assert [s.id for s in AppointmentSlot.bookable(utcnow())] == [slot.id]


def test_two_applicants_booking_the_last_seat_at_once_never_overbook(database, submit_application):
    slot = make_slot(capacity=1)
    applications = []
    for n in range(2):
        application = submit_application(gln=gln_with_check_digit(f"76010006666{n}"), email=f"a{n}@example.ch")
        application.email_confirmed_at = utcnow()
        application.save()
        applications.append(application)
    barrier, results = threading.Barrier(2), []

    def book(application):
        db.connect(reuse_if_open=True)
        try:
            barrier.wait(timeout=10)
            book_appointment(application, slot.id, Actor(Role.APPLICANT, proof=application.reference))
            results.append("booked")
        except TransitionRefused as refused:
            results.append(refused.reason.code)
        finally:
            db.close()

    threads = [threading.Thread(target=book, args=(a,)) for a in applications]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) == ["booked", "slot-taken"]
    assert Appointment.select().where(Appointment.slot == slot.id).count() == 1
    assert len(outbox("appointment_booked")) == 1


# -- the printable form ------------------------------------------------------------------------------------------
def test_the_printable_form_is_an_attachment_with_section_one(client, applied):
    response = client.get(f"{status_path(applied)}/formulaire.pdf")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/pdf"
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.data.startswith(b"%PDF")
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(response.data)).pages)
    assert applied.reference in text and "Dupont" in text and "Claire" in text and "Cardiologie" in text
