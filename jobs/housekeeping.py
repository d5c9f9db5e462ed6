"""Housekeeping: delete the rows that no longer serve anyone, so the tables read at every login and dispatch stay
small — spent one-time codes, ended sessions, old job history, messages long sent or cancelled."""

from __future__ import annotations

import datetime as dt

from models import CodeChallenge, JobRun, OutboxMessage, Session

# Codes and sessions stay a day after they end: enough to answer a support call ("my code did not work",
# "I was logged out"), far less than anyone would want kept.
ENDED_KEPT = dt.timedelta(days=1)
JOB_RUNS_KEPT = dt.timedelta(days=30)


def sweep(
    now: dt.datetime, *, session_idle: dt.timedelta, session_absolute: dt.timedelta, outbox_kept: dt.timedelta
) -> dict[str, int]:
    """Delete what expired or aged out by `now`; how many rows of each kind."""
    return {
        "code_challenges_deleted": CodeChallenge.delete_expired_before(now - ENDED_KEPT),
        "sessions_deleted": Session.delete_ended_before(now - ENDED_KEPT, idle=session_idle, absolute=session_absolute),
        "job_runs_deleted": JobRun.delete_started_before(now - JOB_RUNS_KEPT),
        "outbox_messages_deleted": OutboxMessage.delete_finished_before(now - outbox_kept),
    }


def run(app, now: dt.datetime) -> dict[str, int]:
    """The scheduled job (jobs/tasks.py): the session limits and the outbox retention as configured."""
    return sweep(
        now,
        session_idle=dt.timedelta(minutes=app.config["SESSION_IDLE_MINUTES"]),
        session_absolute=dt.timedelta(hours=app.config["SESSION_ABSOLUTE_HOURS"]),
        outbox_kept=dt.timedelta(days=app.config["OUTBOX_RETENTION_DAYS"]),
    )
