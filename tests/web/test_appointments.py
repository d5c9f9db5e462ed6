"""The desks' opening slots (validators only), the day's bookings for the desk queue, and the day-before reminder."""

from __future__ import annotations

import datetime as dt

import pytest

from jobs.appointments import send_appointment_reminders
from models import Appointment, AppointmentSlot, AuditEvent, Desk, OutboxMessage, Role, gln_with_check_digit, utcnow
from web.appointments import slot_times, to_utc
from workflows import ENROLLMENT, Actor, engine
from workflows.enrollment import book_appointment, cancel_appointment

from .conftest import csrf_token_in

PAGE = "/guichet/creneaux"
EN = {"Accept-Language": "en"}
WINTER_TUESDAY = dt.date(2030, 1, 8)
SUMMER_TUESDAY = dt.date(2030, 7, 2)


def publish(client, **fields):
    data = {"desk": Desk.AMG, "day": WINTER_TUESDAY.isoformat(), "start": "09:00", "end": "12:00"}
    data.update({"length": "20", "capacity": "1", "weeks": "1", **fields})
    token = csrf_token_in(client.get(PAGE).data)
    return client.post(PAGE, data={"csrf_token": token, **data}, headers=EN)


def confirmed_application(submit_application, n: int = 1):
    application = submit_application(gln=gln_with_check_digit(f"7601000555{n:02d}"), email=f"dr{n}@example.ch")
    application.email_confirmed_at = utcnow()
    application.save()
    return application


def applicant(application) -> Actor:
    return Actor(Role.APPLICANT, proof=application.reference)


def slot_in(hours: float, desk: str = Desk.AMG, capacity: int = 1) -> AppointmentSlot:
    starts_at = utcnow().replace(microsecond=0) + dt.timedelta(hours=hours)
    return AppointmentSlot.create(
        desk=desk, starts_at=starts_at, ends_at=starts_at + dt.timedelta(minutes=20), capacity=capacity
    )


# -- who may come in ---------------------------------------------------------------------------------------------
def test_validators_reach_the_page(client, login_as):
    login_as(Role.VALIDATOR)
    response = client.get(PAGE, headers=EN)
    assert response.status_code == 200 and "Appointment slots" in response.get_data(as_text=True)


@pytest.mark.parametrize("role", [Role.PHYSICIAN, Role.CLINICIAN, Role.ADMINISTRATOR])
def test_other_roles_are_refused(client, login_as, role):
    login_as(role)
    assert client.get(PAGE).status_code == 403
    assert client.post(PAGE, data={}).status_code in (400, 403)  # the CSRF check may answer first
    assert AppointmentSlot.select().count() == 0


def test_anonymous_visitors_are_sent_to_the_login(client, database):
    response = client.get(PAGE)
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


# -- publishing --------------------------------------------------------------------------------------------------
def test_times_are_typed_in_geneva_and_stored_in_utc():
    assert to_utc(WINTER_TUESDAY, dt.time(9)) == dt.datetime(2030, 1, 8, 8, 0)
    assert to_utc(SUMMER_TUESDAY, dt.time(9)) == dt.datetime(2030, 7, 2, 7, 0)
    times = slot_times(WINTER_TUESDAY, dt.time(9), dt.time(12), 20, 2)
    assert len(times) == 18
    assert times[0] == (dt.datetime(2030, 1, 8, 8, 0), dt.datetime(2030, 1, 8, 8, 20))
    assert times[-1] == (dt.datetime(2030, 1, 15, 10, 40), dt.datetime(2030, 1, 15, 11, 0))
    assert slot_times(WINTER_TUESDAY, dt.time(9), dt.time(12), None, 1) == [
        (dt.datetime(2030, 1, 8, 8, 0), dt.datetime(2030, 1, 8, 11, 0))
    ]


def test_a_series_every_tuesday_by_twenty_minute_slots(client, login_as):
    validator = login_as(Role.VALIDATOR)
    response = publish(client, weeks="3", capacity="2")
    assert (response.status_code, response.headers["Location"]) == (303, PAGE)
    slots = list(AppointmentSlot.select().order_by(AppointmentSlot.starts_at))
    assert len(slots) == 27
    assert {s.starts_at.date() for s in slots} == {WINTER_TUESDAY + dt.timedelta(weeks=w) for w in range(3)}
    assert {(s.desk, s.capacity, s.published_by_id) for s in slots} == {(Desk.AMG, 2, validator.id)}
    html = client.get(PAGE, headers=EN).get_data(as_text=True)
    assert "09:00" in html and "09:20" in html and "0/2" in html  # shown in Geneva time, with the seats
    # The same series again opens nothing new.
    publish(client, weeks="3", capacity="2")
    assert AppointmentSlot.select().count() == 27
    events = AuditEvent.select().where(AuditEvent.action == "appointments.published").count()
    assert events == 2


def test_one_single_slot(client, login_as):
    login_as(Role.VALIDATOR)
    assert publish(client, desk=Desk.EHEALTH, length="0", start="14:00", end="16:30", capacity="4").status_code == 303
    [slot] = AppointmentSlot.select()
    assert (slot.desk, slot.starts_at, slot.ends_at, slot.capacity) == (
        Desk.EHEALTH,
        dt.datetime(2030, 1, 8, 13, 0),
        dt.datetime(2030, 1, 8, 15, 30),
        4,
    )


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"desk": "pharmacy"}, "desk"),
        ({"day": ""}, "day"),
        ({"day": "2001-01-02"}, "day"),
        ({"start": "9h"}, "start"),
        ({"end": "08:00"}, "end"),
        ({"length": "-5"}, "length"),
        ({"length": "200", "end": "10:00"}, "length"),
        ({"capacity": "0"}, "capacity"),
        ({"weeks": "60"}, "weeks"),
        ({"length": "5", "start": "00:00", "end": "23:55", "weeks": "26"}, "weeks"),
    ],
)
def test_refused_publications_say_why_next_to_the_field(client, login_as, fields, field):
    login_as(Role.VALIDATOR)
    response = publish(client, **fields)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert f'id="{field}-error"' in html and f'aria-describedby="{field}-error"' in html.replace(
        f'{field}-hint {field}-error"', f'{field}-error"'
    )
    assert AppointmentSlot.select().count() == 0


def test_a_slot_without_bookings_can_be_withdrawn_a_booked_one_cannot(client, login_as, submit_application):
    login_as(Role.VALIDATOR)
    free, booked = slot_in(48), slot_in(72)
    application = confirmed_application(submit_application)
    book_appointment(application, booked.id, applicant(application))
    html = client.get(PAGE, headers=EN).get_data(as_text=True)
    assert application.reference in html and "Dupont" in html
    assert f"/guichet/creneaux/{free.id}/supprimer" in html and f"/guichet/creneaux/{booked.id}/supprimer" not in html

    token = csrf_token_in(client.get(PAGE).data)
    response = client.post(f"{PAGE}/{booked.id}/supprimer", data={"csrf_token": token}, headers=EN)
    assert response.status_code == 409 and "This slot is booked" in response.get_data(as_text=True)
    response = client.post(f"{PAGE}/{free.id}/supprimer", data={"csrf_token": token})
    assert response.status_code == 303
    assert [s.id for s in AppointmentSlot.select()] == [booked.id]
    assert client.post(f"{PAGE}/{free.id}/supprimer", data={"csrf_token": token}).status_code == 404
    # Once the booking is cancelled, the slot can go (the cancelled booking with it).
    cancel_appointment(application, applicant(application))
    assert client.post(f"{PAGE}/{booked.id}/supprimer", data={"csrf_token": token}).status_code == 303
    assert AppointmentSlot.select().count() == 0 and Appointment.select().count() == 0


# -- the desk's day ----------------------------------------------------------------------------------------------
def test_the_day_of_a_desk_lists_its_live_bookings_in_time_order(database, submit_application):
    late = AppointmentSlot.create(
        desk=Desk.AMG, starts_at=dt.datetime(2030, 7, 2, 14), ends_at=dt.datetime(2030, 7, 2, 14, 20), capacity=2
    )
    early = AppointmentSlot.create(  # 00:30 in Geneva on 2 July is 22:30 UTC on 1 July
        desk=Desk.AMG, starts_at=dt.datetime(2030, 7, 1, 22, 30), ends_at=dt.datetime(2030, 7, 1, 23), capacity=1
    )
    elsewhere = AppointmentSlot.create(
        desk=Desk.EHEALTH, starts_at=dt.datetime(2030, 7, 2, 9), ends_at=dt.datetime(2030, 7, 2, 9, 20)
    )
    apps = [confirmed_application(submit_application, n) for n in range(4)]
    for application, slot in zip(apps, (late, early, elsewhere, late), strict=True):
        book_appointment(application, slot.id, applicant(application))
    cancel_appointment(apps[3], applicant(apps[3]))
    day = list(Appointment.for_day(Desk.AMG, SUMMER_TUESDAY))
    assert [(a.application.reference, a.slot.id) for a in day] == [
        (apps[1].reference, early.id),
        (apps[0].reference, late.id),
    ]
    assert [a.application.reference for a in Appointment.for_day(Desk.EHEALTH, SUMMER_TUESDAY)] == [apps[2].reference]


# -- the reminder ------------------------------------------------------------------------------------------------
def test_the_reminder_is_sent_once_the_day_before(database, submit_application):
    tomorrow, later, cancelled_slot = slot_in(20), slot_in(60), slot_in(22)
    reminded, not_yet, cancelled, withdrawn = (confirmed_application(submit_application, n) for n in range(4))
    book_appointment(reminded, tomorrow.id, applicant(reminded))
    book_appointment(not_yet, later.id, applicant(not_yet))
    book_appointment(cancelled, cancelled_slot.id, applicant(cancelled))
    cancel_appointment(cancelled, applicant(cancelled))
    withdrawn_slot = slot_in(21)
    book_appointment(withdrawn, withdrawn_slot.id, applicant(withdrawn))
    engine.fire(ENROLLMENT, withdrawn, "withdraw", applicant(withdrawn))

    now = utcnow()
    assert send_appointment_reminders(now) == 1
    assert send_appointment_reminders(now) == 0
    assert send_appointment_reminders(now + dt.timedelta(minutes=5)) == 0
    [mail] = OutboxMessage.select().where(OutboxMessage.template == "appointment_reminder")
    assert mail.recipient == reminded.email and reminded.reference in mail.body
    assert "Rappel" in mail.body and "Reminder" in mail.body
    assert Appointment.current_for(reminded).reminder_sent_at is not None
    # A day later, the other booking's turn comes, once.
    assert send_appointment_reminders(now + dt.timedelta(hours=40)) == 1
    assert send_appointment_reminders(now + dt.timedelta(hours=40)) == 0


def test_the_reminder_stamp_is_a_compare_and_set(database, submit_application):
    application = confirmed_application(submit_application)
    appointment = book_appointment(application, slot_in(10).id, applicant(application))
    now = utcnow()
    assert Appointment.mark_reminded(appointment.id, now) is True
    assert Appointment.mark_reminded(appointment.id, now) is False
    assert send_appointment_reminders(now) == 0
