"""The day-before reminder of an appointment at a desk (enrolment step 2): one e-mail per booking, never two."""

from __future__ import annotations

import datetime as dt

from models import Appointment, db
from workflows import notifications


def send_appointment_reminders(now: dt.datetime) -> int:
    """Queue a reminder for each held booking whose slot starts within a day; how many were queued.

    The stamp is a compare-and-set in the same transaction as the message: two runs at once (or a run that
    died half-way) never send a reminder twice, nor stamp one that was not queued.
    """
    reminded = 0
    for appointment in list(Appointment.reminders_due(now)):
        with db.atomic():
            if Appointment.mark_reminded(appointment.id, now):
                notifications.notify_appointment_reminder(appointment)
                reminded += 1
    return reminded
