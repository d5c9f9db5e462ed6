"""Housekeeping deletes exactly what expired or aged out: codes and sessions a day after they end, job history
after 30 days, sent and cancelled messages after the configured retention; nothing else."""

from __future__ import annotations

import datetime as dt

from config import load_config
from jobs import housekeeping, tasks
from models import CodeChallenge, JobRun, OutboxMessage, OutboxStatus, Role, Session, utcnow
from tests.web.conftest import settings
from web import create_app

NOW = utcnow().replace(microsecond=0)
IDLE, ABSOLUTE = dt.timedelta(minutes=30), dt.timedelta(hours=12)


def ago(**delta) -> dt.datetime:
    return NOW - dt.timedelta(**delta)


def challenge(label: str, expires_at: dt.datetime, consumed: bool = False) -> CodeChallenge:
    return CodeChallenge.create(
        purpose="login",
        attempt_id=label,
        code_hash="x",
        created_at=expires_at - dt.timedelta(minutes=5),
        expires_at=expires_at,
        consumed_at=expires_at - dt.timedelta(minutes=1) if consumed else None,
    )


def session(account, label: str, *, created: dt.datetime, seen: dt.datetime, revoked: dt.datetime | None = None):
    return Session.create(
        token_hash=label, account=account.id, created_at=created, last_seen_at=seen, revoked_at=revoked
    )


def message(label: str, status: str, *, created: dt.datetime, sent: dt.datetime | None = None) -> OutboxMessage:
    return OutboxMessage.create(
        channel="email", template="test", recipient="dr@example.ch", body=label, status=status, created_at=created,
        sent_at=sent,
    )  # fmt: skip


def remaining(model, field) -> set[str]:
    """What is left of the rows a test made (make_account queues its own e-mail, whose template is not "test")."""
    query = model.select()
    if model is OutboxMessage:
        query = query.where(OutboxMessage.template == "test")
    return {getattr(row, field) for row in query}


def sweep() -> dict[str, int]:
    return housekeeping.sweep(NOW, session_idle=IDLE, session_absolute=ABSOLUTE, outbox_kept=dt.timedelta(days=90))


def test_code_challenges_go_a_day_after_they_expire(database):
    challenge("expired-25h", ago(hours=25))
    challenge("used-then-expired-25h", ago(hours=25), consumed=True)
    challenge("expired-23h", ago(hours=23))
    challenge("still-valid", NOW + dt.timedelta(minutes=4))
    assert sweep()["code_challenges_deleted"] == 2
    assert remaining(CodeChallenge, "attempt_id") == {"expired-23h", "still-valid"}


def test_sessions_go_a_day_after_they_end(database, make_account):
    account = make_account(Role.CLINICIAN)
    session(account, "revoked-2d", created=ago(days=2, hours=1), seen=ago(days=2, hours=1), revoked=ago(days=2))
    session(account, "idle-2d", created=ago(days=2, hours=1), seen=ago(days=2))  # ended 30 min after, 2 days ago
    session(account, "too-old", created=ago(days=2), seen=ago(minutes=1))  # ended at 12 h, a day and a half ago
    session(account, "revoked-1h", created=ago(hours=2), seen=ago(hours=1), revoked=ago(hours=1))
    session(account, "idle-3h", created=ago(hours=4), seen=ago(hours=3))  # ended 2.5 hours ago: kept a day
    session(account, "live", created=ago(hours=11), seen=ago(minutes=29))
    assert sweep()["sessions_deleted"] == 3
    assert remaining(Session, "token_hash") == {"revoked-1h", "idle-3h", "live"}


def test_job_history_goes_after_30_days(database):
    JobRun.create(job="old", node="n", started_at=ago(days=31), outcome="ok")
    JobRun.create(job="crashed", node="n", started_at=ago(days=31))  # never finished: its process died
    JobRun.create(job="recent", node="n", started_at=ago(days=29), outcome="failed", error="E: x")
    assert sweep()["job_runs_deleted"] == 2
    assert remaining(JobRun, "job") == {"recent"}


def test_sent_and_cancelled_messages_go_after_the_retention_dead_ones_stay(database):
    message("sent-91d", OutboxStatus.SENT, created=ago(days=91), sent=ago(days=91))
    message("cancelled-91d", OutboxStatus.CANCELLED, created=ago(days=91))
    message("sent-89d", OutboxStatus.SENT, created=ago(days=89), sent=ago(days=89))
    message("sent-late", OutboxStatus.SENT, created=ago(days=100), sent=ago(days=10))  # retried for long: by sent_at
    message("cancelled-89d", OutboxStatus.CANCELLED, created=ago(days=89))
    message("dead-200d", OutboxStatus.DEAD, created=ago(days=200))  # waits for an administrator
    message("pending-200d", OutboxStatus.PENDING, created=ago(days=200))
    message("sending-200d", OutboxStatus.SENDING, created=ago(days=200))
    assert sweep()["outbox_messages_deleted"] == 2
    assert remaining(OutboxMessage, "body") == {
        "sent-89d", "sent-late", "cancelled-89d", "dead-200d", "pending-200d", "sending-200d"
    }  # fmt: skip


def test_the_scheduled_job_reads_its_limits_from_the_configuration(database, make_account, tmp_path):
    account = make_account(Role.CLINICIAN)
    # With 60 minutes of idle life and 48 hours at most (the defaults are 30 minutes and 12 hours):
    session(account, "idle-ended-24.5h-ago", created=ago(hours=26), seen=ago(hours=25, minutes=30))
    session(account, "idle-ended-23h40-ago", created=ago(hours=26), seen=ago(hours=24, minutes=40))
    session(account, "40h-old-still-live", created=ago(hours=40), seen=ago(minutes=30))
    message("sent-31d", OutboxStatus.SENT, created=ago(days=31), sent=ago(days=31))
    message("sent-29d", OutboxStatus.SENT, created=ago(days=29), sent=ago(days=29))
    app = create_app(
        settings(
            database,
            INSTANCE_PATH=str(tmp_path / "instance"),
            OUTBOX_RETENTION_DAYS=30,
            SESSION_IDLE_MINUTES=60,
            SESSION_ABSOLUTE_HOURS=48,
        )
    )
    [job] = [job for job in tasks.SCHEDULE if job.name == "housekeeping"]
    assert job.run(app, NOW) == {
        "code_challenges_deleted": 0,
        "sessions_deleted": 1,
        "job_runs_deleted": 0,
        "outbox_messages_deleted": 1,
    }
    assert remaining(OutboxMessage, "body") == {"sent-29d"}
    assert remaining(Session, "token_hash") == {"idle-ended-23h40-ago", "40h-old-still-live"}


def test_housekeeping_runs_hourly_before_the_dispatch():
    names = [job.name for job in tasks.SCHEDULE]
    assert names.index("housekeeping") < names.index("dispatch_outbox")
    assert next(job for job in tasks.SCHEDULE if job.name == "housekeeping").every == dt.timedelta(hours=1)


def test_outbox_retention_is_configurable_and_90_days_by_default(tmp_path):
    assert load_config({}, tmp_path)["OUTBOX_RETENTION_DAYS"] == 90
    assert load_config({"MYHUG_OUTBOX_RETENTION_DAYS": "30"}, tmp_path)["OUTBOX_RETENTION_DAYS"] == 30
    assert load_config({}, tmp_path)["JOBS_STANDBY_POLL_SECONDS"] == 5
    assert load_config({"MYHUG_JOBS_STANDBY_POLL_SECONDS": "0.5"}, tmp_path)["JOBS_STANDBY_POLL_SECONDS"] == 0.5
