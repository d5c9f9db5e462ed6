"""The scheduled jobs, each thin: select the due rows with a named query, fire triggers or queue messages, commit.

`run_once(app)` runs every job once (`flask jobs run-once`); the long-running scheduler (`flask jobs run`, one
leader across workers and nodes) is the jobs issue's and will call the same functions.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections import Counter

from gateways import mail
from gateways.sms import backend_from_config
from models import Account, EnrollmentApplication, db, utcnow
from workflows import ENROLLMENT, SYSTEM, TransitionRefused, engine, notifications
from workflows.enrollment import OPEN
from workflows.outbox import dispatch_due

REMIND_BEFORE = dt.timedelta(hours=24)  # a temporary password's reminder, a day before it expires


def dispatch_outbox(config) -> Counter:
    return dispatch_due(send_email=mail.send, sms_backend=backend_from_config(config))


def expire_enrollments(now: dt.datetime, max_age: dt.timedelta) -> int:
    """Applications without progress for `max_age` expire through the machine (the guard re-checks each one;
    one at step 6 waits until its temporary password expired unused)."""
    cutoff = now - max_age
    expired = 0
    stale = EnrollmentApplication.select().where(
        EnrollmentApplication.state.in_([str(s) for s in OPEN]) & (EnrollmentApplication.state_changed_at <= cutoff)
    )
    for application in list(stale):
        with contextlib.suppress(TransitionRefused):  # moved meanwhile, or its temporary password is still valid
            engine.fire(ENROLLMENT, application, "expire", SYSTEM, cutoff=cutoff)
            expired += 1
    return expired


def remind_temporary_passwords(now: dt.datetime) -> int:
    """One e-mail per unused temporary password, a day before it expires (stamped by compare-and-set)."""
    reminded = 0
    for account in list(Account.temporary_passwords_to_remind(now, REMIND_BEFORE)):
        with db.atomic():
            stamped = (
                Account.update(temporary_password_reminded_at=now)
                .where((Account.id == account.id) & Account.temporary_password_reminded_at.is_null())
                .execute()
            )
            if stamped:
                notifications.notify_temporary_password_expiring(account)
                reminded += stamped
    return reminded


def run_once(app) -> dict[str, int]:
    """Every job once, in an order that lets messages queued by the others leave in the same run."""
    now = utcnow()
    results = {
        "enrollments_expired": expire_enrollments(now, dt.timedelta(days=app.config["ENROLLMENT_EXPIRY_DAYS"])),
        "temporary_password_reminders": remind_temporary_passwords(now),
    }
    try:
        from jobs.appointments import send_appointment_reminders
    except ImportError:  # the appointments module arrives with the enrolment pages
        send_appointment_reminders = None
    if send_appointment_reminders is not None:
        results["appointment_reminders"] = send_appointment_reminders(now)
    sent = dispatch_outbox(app.config)
    results.update({f"outbox_{key}": value for key, value in sent.items()})
    return results
