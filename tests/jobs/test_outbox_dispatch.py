"""The outbox dispatcher against a real SMTP server: sent once, retried while the server is down, dead on 5xx."""

from __future__ import annotations

import datetime as dt

import time_machine

from jobs.tasks import dispatch_outbox
from models import OutboxMessage, utcnow
from tests.web.conftest import settings
from web import create_app
from workflows import outbox as dispatcher
from workflows.notifications import queue_sms


def email(to="dr.dupont@example.ch", subject="myHUG – test", body="Bonjour"):
    return OutboxMessage.create(channel="email", template="test", recipient=to, subject=subject, body=body)


def make_app(database, tmp_path, server):
    return create_app(settings(database, INSTANCE_PATH=str(tmp_path / "instance"), **server.settings))


def test_due_messages_are_sent_once(database, tmp_path, smtp_server):
    app = make_app(database, tmp_path, smtp_server)
    first, second = email(), email(to="dr.favre@example.ch")
    queue_sms("login_code", "+41790000001", code="123456", minutes=5)
    with app.app_context():
        counts = dispatch_outbox(app.config)
        again = dispatch_outbox(app.config)
    assert counts["sent"] == 3 and sum(again.values()) == 0
    assert [m["To"] for m in smtp_server.mailbox.messages] == [first.recipient, second.recipient]
    assert smtp_server.mailbox.messages[0]["Subject"] == "myHUG – test"
    assert {m.status for m in OutboxMessage.select()} == {"sent"}


def test_server_down_means_a_later_try_and_nothing_lost(database, tmp_path, smtp_server):
    app = make_app(database, tmp_path, smtp_server)
    message = email()
    smtp_server.stop()
    start = dt.datetime.now(dt.UTC)
    with time_machine.travel(start, tick=False), app.app_context():
        assert dispatch_outbox(app.config)["retry"] == 1
        stored = OutboxMessage.get_by_id(message.id)
        assert (stored.status, stored.attempts) == ("pending", 1)
        assert stored.next_attempt_at > utcnow() and "unreachable" in stored.last_error
        assert sum(dispatch_outbox(app.config).values()) == 0  # not due yet
    smtp_server.start()
    with time_machine.travel(start + dt.timedelta(minutes=5), tick=False), app.app_context():
        assert dispatch_outbox(app.config)["sent"] == 1
    assert len(smtp_server.mailbox.messages) == 1
    assert OutboxMessage.get_by_id(message.id).status == "sent"


def test_a_hard_bounce_is_dead_at_once_with_its_error(database, tmp_path, smtp_server):
    app = make_app(database, tmp_path, smtp_server)
    smtp_server.mailbox.refuse.add("nobody@example.ch")
    message = email(to="nobody@example.ch")
    with app.app_context():
        assert dispatch_outbox(app.config)["dead"] == 1
    stored = OutboxMessage.get_by_id(message.id)
    assert stored.status == "dead" and "550" in stored.last_error


def test_retries_stop_after_the_last_attempt(database, tmp_path, smtp_server):
    app = make_app(database, tmp_path, smtp_server)
    message = email()
    smtp_server.stop()
    now = dt.datetime.now(dt.UTC)
    with app.app_context():
        for attempt in range(1, dispatcher.MAX_ATTEMPTS + 1):
            with time_machine.travel(now + dt.timedelta(days=attempt), tick=False):
                dispatch_outbox(app.config)
            assert OutboxMessage.get_by_id(message.id).attempts == attempt
    assert OutboxMessage.get_by_id(message.id).status == "dead"


def test_retry_delay_grows_with_jitter():
    delays = [dispatcher.retry_delay(n).total_seconds() for n in range(1, 12)]
    assert 24 <= delays[0] <= 36 and 48 <= delays[1] <= 72
    assert max(delays) <= 2 * 3600 * 1.2
