"""The outbox dispatcher against a real SMTP server: sent once, retried while the server is down, dead on 5xx,
one connection per run, leases, follow-ups, and no secret left in a row that has left the queue."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import pytest
import time_machine
from jinja2 import meta

from jobs.tasks import dispatch_outbox
from models import OutboxMessage, utcnow
from tests.smtp import Mailbox, SmtpServer
from tests.web.conftest import settings
from web import create_app
from workflows import outbox as dispatcher
from workflows.notifications import _env, queue_sms

TEMPLATES = Path(__file__).resolve().parents[2] / "web" / "templates"
# The template variables that carry a secret: a one-time code, a password, a link with a token in it.
SECRET_VARIABLES = {"code", "password", "confirm_url"}


def email(to="dr.dupont@example.ch", subject="myHUG – test", body="Bonjour", **fields):
    fields.setdefault("template", "test")
    return OutboxMessage.create(channel="email", recipient=to, subject=subject, body=body, **fields)


def make_app(database, tmp_path, server):
    return create_app(settings(database, INSTANCE_PATH=str(tmp_path / "instance"), **server.settings))


def stored(message) -> OutboxMessage:
    return OutboxMessage.get_by_id(message.id)


def subjects(server) -> Counter:
    return Counter(m["Subject"] for m in server.mailbox.messages)


class CountingMailbox(Mailbox):
    """Also notes the client end (address, port) of the connection each message came through."""

    def __init__(self):
        super().__init__()
        self.peers: list[tuple] = []

    async def handle_DATA(self, server, session, envelope):
        self.peers.append(session.peer)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def counting_smtp_server():
    server = SmtpServer()
    server.mailbox = CountingMailbox()
    yield server.start()
    server.stop()


@pytest.fixture
def follow_ups(monkeypatch):
    """follow_ups(**hooks) → what the hooks saw; registers them for related_type "test"."""

    def register(**hooks):
        seen: dict[str, list] = {"still_wanted": [], "sent": [], "refused": []}
        wrapped = {}
        for name, hook in hooks.items():

            def spy(*args, _name=name, _hook=hook):
                seen[_name].append(args)
                return _hook(*args)

            wrapped[name] = spy
        monkeypatch.setitem(dispatcher.FOLLOW_UPS, "test", dispatcher.FollowUp(**wrapped))
        return seen

    return register


# -- sent once; retried; dead -------------------------------------------------------------------------------------
def test_due_messages_are_sent_once(database, tmp_path, smtp_server):
    app = make_app(database, tmp_path, smtp_server)
    first, second = email(), email(to="dr.favre@example.ch")
    queue_sms("login_code", "+41790000001", code="123456", minutes=5)
    with app.app_context():
        counts = dispatch_outbox(app.config)
        again = dispatch_outbox(app.config)
    assert counts == {"sent": 3} and sum(again.values()) == 0
    assert [m["To"] for m in smtp_server.mailbox.messages] == [first.recipient, second.recipient]
    assert smtp_server.mailbox.messages[0]["Subject"] == "myHUG – test"
    assert {m.status for m in OutboxMessage.select()} == {"sent"}
    assert {m.claimed_by for m in OutboxMessage.select()} == {stored(first).claimed_by}  # one run claimed all


def test_server_down_means_a_later_try_and_nothing_lost(database, tmp_path, smtp_server):
    app = make_app(database, tmp_path, smtp_server)
    messages = [email(subject=f"down #{n}") for n in range(5)]
    smtp_server.stop()
    start = dt.datetime.now(dt.UTC)
    with time_machine.travel(start, tick=False), app.app_context():
        assert dispatch_outbox(app.config) == {"retry": 5}
        for message in map(stored, messages):
            assert (message.status, message.attempts, message.claimed_by) == ("pending", 1, None)
            assert message.next_attempt_at > utcnow() and "unreachable" in message.last_error
        assert sum(dispatch_outbox(app.config).values()) == 0  # not due yet
    smtp_server.start()
    with time_machine.travel(start + dt.timedelta(minutes=5), tick=False), app.app_context():
        assert dispatch_outbox(app.config) == {"sent": 5}
        assert sum(dispatch_outbox(app.config).values()) == 0
    assert subjects(smtp_server) == {f"down #{n}": 1 for n in range(5)}
    assert {stored(m).status for m in messages} == {"sent"}


def test_a_hard_bounce_is_dead_at_once_with_its_error(database, tmp_path, smtp_server, follow_ups):
    app = make_app(database, tmp_path, smtp_server)
    smtp_server.mailbox.refuse.add("nobody@example.ch")
    message = email(to="nobody@example.ch", related_type="test", related_id=7)
    seen = follow_ups(refused=lambda m, error: seen.setdefault("status inside", stored(m).status))
    with app.app_context():
        assert dispatch_outbox(app.config) == {"dead": 1}
    dead = stored(message)
    assert (dead.status, dead.attempts) == ("dead", 1) and "550" in dead.last_error
    [(refused, error)] = seen["refused"]
    assert refused.id == message.id and "550" in error
    assert seen["status inside"] == "dead"  # the hook ran in the transaction that parked the message


def test_a_message_that_breaks_the_sending_code_is_parked_and_the_run_goes_on(database, tmp_path, smtp_server):
    app = make_app(database, tmp_path, smtp_server)
    broken = email(subject="myHUG\r\nBcc: someone@example.org")  # Flask-Mail refuses a header with a line break
    fine = email(subject="fine")
    with app.app_context():
        assert dispatch_outbox(app.config) == {"dead": 1, "sent": 1}
    assert (stored(broken).status, stored(broken).last_error) == ("dead", "unexpected error: BadHeaderError")
    assert stored(fine).status == "sent" and subjects(smtp_server) == {"fine": 1}


def test_retries_stop_after_the_last_attempt(database, tmp_path, smtp_server):
    app = make_app(database, tmp_path, smtp_server)
    message = email()
    smtp_server.stop()
    now = dt.datetime.now(dt.UTC)
    with app.app_context():
        for attempt in range(1, dispatcher.MAX_ATTEMPTS + 1):
            with time_machine.travel(now + dt.timedelta(days=attempt), tick=False):
                dispatch_outbox(app.config)
            assert stored(message).attempts == attempt
    assert stored(message).status == "dead"


def test_retry_delay_grows_with_jitter():
    delays = [dispatcher.retry_delay(n).total_seconds() for n in range(1, 12)]
    assert 24 <= delays[0] <= 36 and 48 <= delays[1] <= 72
    assert max(delays) <= 2 * 3600 * 1.2


# -- one SMTP connection per run ----------------------------------------------------------------------------------
def test_one_run_sends_through_one_connection(database, tmp_path, counting_smtp_server):
    app = make_app(database, tmp_path, counting_smtp_server)
    for n in range(4):
        email(subject=f"batch #{n}")
    with app.app_context():
        assert dispatch_outbox(app.config) == {"sent": 4}
    assert len(counting_smtp_server.mailbox.peers) == 4 and len(set(counting_smtp_server.mailbox.peers)) == 1


def test_a_failure_drops_the_connection_and_the_next_message_reconnects(database, tmp_path, counting_smtp_server):
    app = make_app(database, tmp_path, counting_smtp_server)
    counting_smtp_server.mailbox.refuse.add("nobody@example.ch")
    before, _refused, after = email(subject="before"), email(to="nobody@example.ch"), email(subject="after")
    with app.app_context():
        assert dispatch_outbox(app.config) == {"sent": 2, "dead": 1}
    first, second = counting_smtp_server.mailbox.peers
    assert first != second  # "after" went through a new connection
    assert stored(before).status == stored(after).status == "sent"


# -- follow-ups -----------------------------------------------------------------------------------------------------
def test_a_message_no_longer_wanted_is_cancelled_not_sent(database, tmp_path, smtp_server, follow_ups):
    app = make_app(database, tmp_path, smtp_server)
    message = email(related_type="test", related_id=1)
    seen = follow_ups(still_wanted=lambda m: False)
    with app.app_context():
        assert dispatch_outbox(app.config) == {"cancelled": 1}
    assert stored(message).status == "cancelled" and stored(message).sent_at is None
    assert smtp_server.mailbox.messages == [] and len(seen["still_wanted"]) == 1 and seen["sent"] == []


def test_the_sent_hook_runs_in_the_transaction_that_marks_the_message_sent(database, tmp_path, smtp_server, follow_ups):
    app = make_app(database, tmp_path, smtp_server)
    message = email(related_type="test", related_id=1)
    seen = follow_ups(sent=lambda m, wanted: seen.setdefault("status inside", stored(m).status))
    with app.app_context():
        assert dispatch_outbox(app.config) == {"sent": 1}
    assert seen["status inside"] == "sent" and [m.id for (m, _) in seen["sent"]] == [message.id]


def test_a_failing_sent_hook_rolls_back_the_sent_mark_so_the_message_is_retried(
    database, tmp_path, smtp_server, follow_ups
):
    app = make_app(database, tmp_path, smtp_server)
    message = email(related_type="test", related_id=1)
    broken = {"yes": True}

    def sent(m, wanted):
        OutboxMessage.update(subject="written by the hook").where(OutboxMessage.id == m.id).execute()
        if broken["yes"]:
            raise RuntimeError("the follow-up failed")

    follow_ups(sent=sent)
    start = dt.datetime.now(dt.UTC)
    with time_machine.travel(start, tick=False), app.app_context():
        assert dispatch_outbox(app.config) == {"retry": 1}
    after_failure = stored(message)
    assert (after_failure.status, after_failure.sent_at, after_failure.subject) == ("pending", None, "myHUG – test")
    assert "follow-up" in after_failure.last_error and after_failure.next_attempt_at > start.replace(tzinfo=None)
    broken["yes"] = False
    with time_machine.travel(start + dt.timedelta(minutes=5), tick=False), app.app_context():
        assert dispatch_outbox(app.config) == {"sent": 1}
    assert (stored(message).status, stored(message).subject) == ("sent", "written by the hook")


# -- leases ---------------------------------------------------------------------------------------------------------
def test_an_expired_lease_returns_the_row_to_pending_and_a_live_one_is_left_alone(database):
    now = utcnow()
    crashed = email(status="sending", claimed_by="dead-host:1:aa", claimed_until=now - dt.timedelta(seconds=1))
    busy = email(status="sending", claimed_by="live-host:2:bb", claimed_until=now + dt.timedelta(minutes=4))
    last_try = email(
        status="sending", claimed_by="dead-host:1:aa", claimed_until=now - dt.timedelta(minutes=1),
        attempts=dispatcher.MAX_ATTEMPTS, template="temporary_password", body="Mot de passe provisoire : x",
    )  # fmt: skip
    assert dispatcher.release_expired_leases(now) == 2
    assert (stored(crashed).status, stored(crashed).claimed_by, stored(crashed).claimed_until) == (
        "pending",
        None,
        None,
    )
    assert "interrupted" in stored(crashed).last_error
    assert (stored(busy).status, stored(busy).claimed_by) == ("sending", "live-host:2:bb")
    assert (stored(last_try).status, stored(last_try).body) == ("dead", "")  # its last attempt: no more tries


def test_dispatch_resends_what_a_dead_dispatcher_left_and_not_what_a_live_one_holds(database, tmp_path, smtp_server):
    app = make_app(database, tmp_path, smtp_server)
    now = utcnow()
    email(subject="orphan", status="sending", claimed_by="dead-host:1:aa", claimed_until=now - dt.timedelta(minutes=1))
    email(subject="in hand", status="sending", claimed_by="live-host:2:bb", claimed_until=now + dt.timedelta(minutes=4))
    with app.app_context():
        assert dispatch_outbox(app.config) == {"sent": 1}
    assert subjects(smtp_server) == {"orphan": 1}


def test_a_message_is_given_back_unsent_when_too_little_of_its_lease_remains(database, tmp_path, smtp_server):
    """Sending stops short of the lease's end: past it, another dispatcher may take the row and send it too."""
    app = make_app(database, tmp_path, smtp_server)
    first, second = email(subject="first"), email(subject="second")
    sent = []
    with time_machine.travel(dt.datetime.now(dt.UTC), tick=False) as clock, app.app_context():

        def slow_send(to, subject, body):  # the first send takes almost the whole lease
            sent.append(subject)
            clock.shift(dispatcher.LEASE - dispatcher.SEND_MARGIN / 2)

        counts = dispatcher.dispatch_due(send_email=slow_send, sms_backend=None)
    assert counts == {"sent": 2, "skipped": 1}  # "second" was given back, then claimed afresh and sent
    assert sent == ["first", "second"]
    assert stored(first).attempts == stored(second).attempts == 1


def test_only_the_claimer_records_the_outcome(database):
    message = email()
    assert dispatcher.claim(message, "run-a")
    assert not dispatcher.claim(stored(message), "run-b")  # already claimed
    assert not dispatcher.mark_sent(message, "run-b")
    assert stored(message).status == "sending"
    assert dispatcher.mark_sent(message, "run-a") and stored(message).status == "sent"


# -- no secret left behind ------------------------------------------------------------------------------------------
def test_every_template_that_renders_a_secret_is_listed_as_one():
    """A new template with a code, a password or a token link fails here until SECRET_TEMPLATES names it."""
    found = set()
    for path in [*TEMPLATES.glob("email/*.txt"), *TEMPLATES.glob("sms/*.txt")]:
        source = _env.loader.get_source(_env, f"{path.parent.name}/{path.name}")[0]
        if meta.find_undeclared_variables(_env.parse(source)) & SECRET_VARIABLES:
            found.add(path.stem)
    assert found == dispatcher.SECRET_TEMPLATES


SECRET = "Mot de passe provisoire : Vx9-Kp2-temporary"


def test_secret_bodies_are_erased_once_sent_dead_or_cancelled(database, tmp_path, smtp_server, follow_ups):
    app = make_app(database, tmp_path, smtp_server)
    smtp_server.mailbox.refuse.add("nobody@example.ch")
    follow_ups(still_wanted=lambda m: m.related_id != 3)
    sent = email(template="temporary_password", body=SECRET)
    dead = email(template="temporary_password", body=SECRET, to="nobody@example.ch")
    cancelled = email(template="enrollment_received", body="/confirmer/X/token", related_type="test", related_id=3)
    plain = email(template="enrollment_validated", body="Votre demande a été validée")
    code = queue_sms("login_code", "+41790000001", code="482913", minutes=5)  # development SMS backend
    with app.app_context():
        assert dispatch_outbox(app.config) == {"sent": 3, "dead": 1, "cancelled": 1}
    assert SECRET in smtp_server.mailbox.text(smtp_server.mailbox.messages[0])  # the holder did get it
    assert [stored(m).body for m in (sent, dead, cancelled)] == ["", "", ""]
    assert stored(plain).body == "Votre demande a été validée"
    # With MYHUG_SMS_BACKEND=outbox nothing leaves the machine: the row is the SMS, read on /dev/sms.
    assert "482913" in stored(code).body


# -- an administrator's resend --------------------------------------------------------------------------------------
def test_resend_puts_a_dead_message_back_as_new_and_refuses_the_rest(database):
    dead = email(status="dead", attempts=8, last_error="SMTP 550")
    dispatcher.resend(dead)
    again = stored(dead)
    assert (again.status, again.attempts, again.last_error) == ("pending", 0, "SMTP 550")
    assert again.next_attempt_at <= utcnow()
    with pytest.raises(dispatcher.TransitionRefused) as refused:
        dispatcher.resend(again)
    assert refused.value.reason == dispatcher.NOT_DEAD
    secret = email(status="dead", template="login_code", body="")
    with pytest.raises(dispatcher.TransitionRefused) as refused:
        dispatcher.resend(secret)
    assert refused.value.reason == dispatcher.SECRET_ERASED and stored(secret).status == "dead"


# -- MYHUG_MAIL_BACKEND=outbox: development without a mail server ----------------------------------------------------
def test_the_outbox_mail_backend_sends_nothing_and_keeps_the_whole_email_for_dev_mail(database, tmp_path):
    from tests.smtp import free_port

    nobody_listens = free_port()
    app = create_app(
        settings(
            database,
            INSTANCE_PATH=str(tmp_path / "instance"),
            MAIL_BACKEND="outbox",
            MAIL_SERVER="127.0.0.1",
            MAIL_PORT=nobody_listens,
        )
    )
    secret = email(template="temporary_password", body="Mot de passe provisoire : Vx9-Kp2")
    with app.app_context():
        counts = dispatch_outbox(app.config)
    assert counts["sent"] == 1  # not "retry": no connection was attempted
    assert stored(secret).status == "sent"
    assert stored(secret).body == "Mot de passe provisoire : Vx9-Kp2"  # kept: the row is the e-mail


def test_an_unknown_mail_backend_is_refused(database, tmp_path):
    app = create_app(settings(database, INSTANCE_PATH=str(tmp_path / "instance"), MAIL_BACKEND="pigeon"))
    email()
    with app.app_context(), pytest.raises(ValueError, match="MYHUG_MAIL_BACKEND"):
        dispatch_outbox(app.config)
