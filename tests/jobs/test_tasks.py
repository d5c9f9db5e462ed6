"""The jobs: enrolment expiry through the machine, temporary-password reminders sent once, `flask jobs run-once`."""

from __future__ import annotations

import datetime as dt

import time_machine

from jobs import tasks
from models import Account, EnrollmentApplication, OutboxMessage, Role, gln_with_check_digit, utcnow
from tests.web.conftest import settings
from tests.workflows.test_enrollment import walk_to
from web import create_app
from workflows import ENROLLMENT, Actor, engine

DAYS = dt.timedelta(days=60)


def test_only_applications_without_progress_expire(submit_application, make_account):
    stale = submit_application()
    fresh_start = dt.datetime.now(dt.UTC) + dt.timedelta(days=59)
    with time_machine.travel(fresh_start, tick=False):
        fresh = submit_application(gln=gln_with_check_digit("760100099990"), email="fresh@example.ch")
    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(days=61), tick=False):
        assert tasks.expire_enrollments(utcnow(), DAYS) == 1
    assert EnrollmentApplication.get_by_id(stale.id).state == "expired"
    assert EnrollmentApplication.get_by_id(fresh.id).state == "submitted"
    assert OutboxMessage.select().where(OutboxMessage.template == "enrollment_closed").count() == 1


def test_an_unused_login_expires_with_its_application(submit_application, make_account):
    validator = make_account(Role.VALIDATOR)
    admin = make_account(Role.ADMINISTRATOR)

    class Desk:  # what walk_to needs of the desk: the validator acting
        @staticmethod
        def v(account=None):
            return Actor(Role.VALIDATOR, validator.id)

    app = walk_to(submit_application(), "transmitted", Desk)
    engine.fire(ENROLLMENT, app, "create_account", Actor(Role.ADMINISTRATOR, admin.id))
    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(days=61), tick=False):
        assert tasks.expire_enrollments(utcnow(), DAYS) == 1
    assert EnrollmentApplication.get_by_id(app.id).state == "expired"
    assert Account.get_by_id(app.account_id).state == "disabled"


def test_temporary_password_reminder_is_sent_once_a_day_before(make_account):
    account = make_account(Role.CLINICIAN, state="pending")
    expires = Account.get_by_id(account.id).temporary_password_expires_at
    with time_machine.travel(expires.replace(tzinfo=dt.UTC) - dt.timedelta(hours=30), tick=False):
        assert tasks.remind_temporary_passwords(utcnow()) == 0  # not yet
    with time_machine.travel(expires.replace(tzinfo=dt.UTC) - dt.timedelta(hours=20), tick=False):
        assert tasks.remind_temporary_passwords(utcnow()) == 1
        assert tasks.remind_temporary_passwords(utcnow()) == 0  # once
    [reminder] = OutboxMessage.select().where(OutboxMessage.template == "temporary_password_expiring")
    assert reminder.recipient == account.email
    assert account.issued_password not in reminder.body  # a reminder never repeats the password


def test_run_once_cli_dispatches_what_the_jobs_queued(database, tmp_path, smtp_server, make_account):
    make_account(Role.CLINICIAN, state="pending")  # its temporary-password e-mail waits in the outbox
    app = create_app(settings(database, INSTANCE_PATH=str(tmp_path / "instance"), **smtp_server.settings))
    result = app.test_cli_runner().invoke(args=["jobs", "run-once"])
    assert result.exit_code == 0, result.output
    assert "outbox_sent: 1" in result.output
    assert len(smtp_server.mailbox.messages) == 1
