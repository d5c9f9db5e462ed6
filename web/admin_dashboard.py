"""The administrators' landing page: the state of operations on one screen — the workflows with their live counts,
what waits too long (outbox, stuck deliveries), failed logins and locked accounts, the DPI clients and the jobs.

A constant number of queries whatever the volume (a few GROUP BYs, a few short lists, one look-up per job); the
details live on their own pages (workflows, messages, journal, accounts), linked from here.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from flask import render_template
from flask_babel import format_timedelta

from jobs.tasks import SCHEDULE
from models import Account, AuditEvent, DpiClient, JobRun, utcnow
from security.permissions import is_administrator
from workflows import WORKFLOWS

from .admin import backlog, bp, picture
from .admin_accounts import state_label as account_state_label
from .admin_audit import actor_of
from .auth import permission_required
from .clinic import state_label as delivery_state_label

# A login that failed at the password (web/auth.py, web/hin.py) or at the code. Neither records the username typed
# for an unknown account, nor any password or code: an unknown account shows as "—".
FAILED_LOGINS = ("login.failure", "login.code_failed")
LOCK = "account.lock"  # the account workflow's `lock`, by an administrator or after ten failures (the system)
FAILURES_HOURS = 24
LISTED = 20
LATE_AFTER_PERIODS = 3  # a job is late when it has not succeeded for this many of its periods


@dataclass(frozen=True)
class FailedLogin:
    at: dt.datetime
    account: Account | None
    ip: str | None
    reason: str
    step: str


@dataclass(frozen=True)
class Lock:
    at: dt.datetime
    account: Account | None
    by: Account | None
    role: str


@dataclass(frozen=True)
class JobStatus:
    name: str
    period: dt.timedelta
    last_success: dt.datetime | None
    late: bool


def failures_per_hour(now: dt.datetime) -> list[tuple[dt.datetime, int]]:
    """The last 24 hours, oldest first, each (start of the hour in UTC, failed logins), empty hours included."""
    this_hour = now.replace(minute=0, second=0, microsecond=0)
    hours = [this_hour - dt.timedelta(hours=n) for n in range(FAILURES_HOURS - 1, -1, -1)]
    counts = AuditEvent.per_hour(FAILED_LOGINS, since=hours[0], outcome="failure")
    return [(hour, counts.get(hour, 0)) for hour in hours]


def recent_failures() -> list[FailedLogin]:
    rows = []
    for event in AuditEvent.recent(FAILED_LOGINS, limit=LISTED, outcome="failure"):
        details = json.loads(event.details or "{}")
        rows.append(
            FailedLogin(
                event.at, actor_of(event), event.ip, str(details.get("reason", "")), str(details.get("step", ""))
            )
        )
    return rows


def recent_locks() -> list[Lock]:
    events = list(AuditEvent.recent([LOCK], limit=LISTED))
    found = AuditEvent.objects_of(events)
    return [Lock(e.at, found.get(("account", e.object_id)), actor_of(e), e.actor_role) for e in events]


def job_statuses(now: dt.datetime) -> list[JobStatus]:
    successes = JobRun.last_successes(job.name for job in SCHEDULE)
    statuses = []
    for job in SCHEDULE:
        last = successes.get(job.name)
        late = last is None or now - last > LATE_AFTER_PERIODS * job.every
        statuses.append(JobStatus(job.name, job.every, last, late))
    return statuses


@bp.get("/")
@permission_required(is_administrator)
def dashboard():
    now = utcnow()
    hours = failures_per_hour(now)
    return render_template(
        "admin/dashboard.html",
        pictures=[picture(w) for w in WORKFLOWS.values()],
        backlog=backlog(now),
        hours=hours,
        failures_total=sum(count for _hour, count in hours),
        failures_peak=max([count for _hour, count in hours] + [1]),
        failures=recent_failures(),
        locks=recent_locks(),
        dpi_clients=list(DpiClient.listing()),
        jobs=job_statuses(now),
        newest_run=JobRun.newest(),
        delivery_state_label=delivery_state_label,
        account_state_label=account_state_label,
        format_timedelta=format_timedelta,
    )
