"""The scheduled jobs, each thin: select the due rows with a named query, fire triggers or queue messages, commit.

`SCHEDULE` lists every job with its period; `run_once(app)` runs each once (`flask jobs run-once`), and the
long-running scheduler (`flask jobs run`, one leader across workers and nodes: jobs/runner.py) runs them on time.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gateways import mail
from gateways.sms import backend_from_config
from jobs import housekeeping
from models import Account, EnrollmentApplication, db, utcnow
from workflows import ENROLLMENT, SYSTEM, TransitionRefused, engine, notices, notifications
from workflows.documents import sweep_orphan_blobs
from workflows.enrollment import OPEN
from workflows.outbox import dispatch_due

REMIND_BEFORE = dt.timedelta(hours=24)  # a temporary password's reminder, a day before it expires


def dispatch_outbox(config) -> Counter:
    return dispatch_due(send_email=mail.sender_from_config(config), sms_backend=backend_from_config(config))


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


def _dispatch(app, now: dt.datetime) -> dict[str, int]:
    return {f"outbox_{key}": value for key, value in dispatch_outbox(app.config).items()}


def _expire(app, now: dt.datetime) -> dict[str, int]:
    return {"enrollments_expired": expire_enrollments(now, dt.timedelta(days=app.config["ENROLLMENT_EXPIRY_DAYS"]))}


def _remind_passwords(app, now: dt.datetime) -> dict[str, int]:
    return {"temporary_password_reminders": remind_temporary_passwords(now)}


def _remind_appointments(app, now: dt.datetime) -> dict[str, int]:
    from jobs.appointments import send_appointment_reminders

    return {"appointment_reminders": send_appointment_reminders(now)}


def _notify_new_documents(app, now: dt.datetime) -> dict[str, int]:
    window = dt.timedelta(seconds=app.config["NOTIFY_BATCH_SECONDS"])
    return {"document_notices": notices.queue_new_document_notices(now, window)}


def _send_digests(app, now: dt.datetime) -> dict[str, int]:
    return {"digests": notices.queue_digests(now, app.config["DIGEST_HOUR"])}


@dataclass(frozen=True)
class Job:
    """One scheduled job: `run(app, now)` returns its counts; the leader runs it every `every` (jobs/runner.py)."""

    name: str
    every: dt.timedelta
    run: Callable[..., Mapping[str, int]]


# Every job, in the order `run-once` runs them: those that queue messages before the dispatch, so that what they
# queue leaves in the same run. Other modules add theirs with `register` (before the dispatch).
SCHEDULE: list[Job] = [
    Job("expire_enrollments", dt.timedelta(hours=1), _expire),
    Job("remind_temporary_passwords", dt.timedelta(minutes=15), _remind_passwords),
    Job("remind_appointments", dt.timedelta(minutes=15), _remind_appointments),
    Job("notify_new_documents", dt.timedelta(seconds=30), _notify_new_documents),
    Job("send_digests", dt.timedelta(minutes=5), _send_digests),
    Job("housekeeping", dt.timedelta(hours=1), housekeeping.run),
    Job(
        "sweep_blobs",
        dt.timedelta(hours=6),
        lambda app, now: sweep_orphan_blobs(blob_dir=app.config["BLOB_DIR"], now=now),
    ),
    Job("dispatch_outbox", dt.timedelta(seconds=10), _dispatch),
]


def register(job: Job) -> None:
    """Add a job before the dispatch (so that what it queues leaves in the same `run-once`); once per name."""
    if any(existing.name == job.name for existing in SCHEDULE):
        raise ValueError(f"job {job.name!r} registered twice")
    SCHEDULE.insert(next(i for i, j in enumerate(SCHEDULE) if j.name == "dispatch_outbox"), job)


def run_once(app, now: dt.datetime | None = None) -> dict[str, int]:
    """Every job once, in SCHEDULE order."""
    now = now or utcnow()
    results: dict[str, int] = {}
    for job in SCHEDULE:
        results.update(job.run(app, now))
    return results
