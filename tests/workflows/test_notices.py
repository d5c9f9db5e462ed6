"""Notifications of new documents, end to end against a real SMTP server (aiosmtpd on 127.0.0.1).

Deliveries reach `available` through the workflow; the jobs queue notices per the physician's profile; the outbox
dispatcher sends them; deliveries move to `notified` only once the server accepted the e-mail.
"""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest
import time_machine

from jobs.tasks import dispatch_outbox
from models import Delivery, NotificationMode, OutboxMessage, Physician
from tests.web.conftest import settings
from web import create_app
from workflows import DELIVERY, SYSTEM, Actor, engine, may
from workflows.delivery import advance
from workflows.notices import digest_instant, queue_digests, queue_new_document_notices

WINDOW = dt.timedelta(minutes=2)
# 09:00 in Geneva on a winter day is 08:00 UTC; the digest hour below is 07:00 Geneva = 06:00 UTC.
MORNING = dt.datetime(2026, 12, 1, 8, 0)
DIGEST_HOUR = 7


@pytest.fixture
def portal(database, tmp_path, smtp_server):
    app = create_app(settings(database, INSTANCE_PATH=str(tmp_path / "instance"), **smtp_server.settings))
    with app.app_context():
        yield SimpleNamespace(app=app, mailbox=smtp_server.mailbox, server=smtp_server)


@pytest.fixture
def arrive(make_stay, make_document, designate, recipient, make_delivery):
    """arrive(physician=None, n=1, at=MORNING, mode='each') → (physician, deliveries made `available` at `at`)."""

    def make(physician=None, *, n=1, at=MORNING, mode=NotificationMode.EACH):
        if physician is None:
            physician, _account = recipient(notification_mode=mode)
            # Its temporary-password e-mail, queued when the account was made, is not what these tests count.
            OutboxMessage.delete().where(OutboxMessage.related_type == "account").execute()
        deliveries = []
        with time_machine.travel(at, tick=False):
            for _ in range(n):
                stay = make_stay()
                designate(stay, physician)
                deliveries.append(advance(make_delivery(make_document(stay), physician)))
        assert {d.state for d in deliveries} == {"available"}
        return physician, deliveries

    return make


def _states(deliveries) -> list[str]:
    return [Delivery.get_by_id(d.id).state for d in deliveries]


def _dispatch(portal, at):
    with time_machine.travel(at, tick=False):
        return dispatch_outbox(portal.app.config)


# -- "each": one e-mail per batch ---------------------------------------------------------------------------------
def test_documents_arriving_within_the_window_make_one_email_and_are_notified_on_acceptance(portal, arrive):
    physician, first = arrive(n=2)
    _, later = arrive(physician, n=1, at=MORNING + dt.timedelta(seconds=90))
    deliveries = first + later

    assert queue_new_document_notices(MORNING + dt.timedelta(seconds=60), WINDOW) == 0  # the oldest is too young
    assert queue_new_document_notices(MORNING + WINDOW, WINDOW) == 1
    assert _states(deliveries) == ["available"] * 3  # queued, not yet accepted by the server
    assert queue_new_document_notices(MORNING + WINDOW, WINDOW) == 0  # announced once

    assert _dispatch(portal, MORNING + WINDOW)["sent"] == 1
    [mail] = portal.mailbox.to(physician.email)
    assert "3 nouveaux documents" in mail["Subject"] and "3 new documents" in portal.mailbox.text(mail)
    assert _states(deliveries) == ["notified"] * 3
    stored = Delivery.get_by_id(deliveries[0].id)
    assert stored.notified_at == stored.state_changed_at  # the firing's clock

    assert queue_new_document_notices(MORNING + dt.timedelta(hours=1), WINDOW) == 0
    assert sum(_dispatch(portal, MORNING + dt.timedelta(hours=1)).values()) == 0
    assert len(portal.mailbox.messages) == 1


def test_a_document_after_the_notice_gets_its_own_notice(portal, arrive):
    physician, first = arrive()
    queue_new_document_notices(MORNING + WINDOW, WINDOW)
    _dispatch(portal, MORNING + WINDOW)
    _, second = arrive(physician, at=MORNING + dt.timedelta(minutes=10))

    assert queue_new_document_notices(MORNING + dt.timedelta(minutes=12), WINDOW) == 1
    _dispatch(portal, MORNING + dt.timedelta(minutes=12))
    assert [m["Subject"].startswith("myHUG – un nouveau document") for m in portal.mailbox.to(physician.email)] == [
        True,
        True,
    ]
    assert _states(first + second) == ["notified", "notified"]


def test_physicians_are_notified_separately(portal, arrive):
    a, a_deliveries = arrive(n=2)
    b, b_deliveries = arrive(n=1)
    assert queue_new_document_notices(MORNING + WINDOW, WINDOW) == 2
    _dispatch(portal, MORNING + WINDOW)
    assert len(portal.mailbox.to(a.email)) == len(portal.mailbox.to(b.email)) == 1
    assert "2 nouveaux documents" in portal.mailbox.to(a.email)[0]["Subject"]
    assert _states(a_deliveries + b_deliveries) == ["notified"] * 3


# -- "digest": once a day at the digest hour, Geneva time ---------------------------------------------------------
def test_digest_instant_follows_geneva_time_across_daylight_saving():
    assert digest_instant(dt.datetime(2026, 12, 1, 5, 59), 7) is None  # 06:59 in Geneva (UTC+1)
    assert digest_instant(dt.datetime(2026, 12, 1, 6, 0), 7) == dt.datetime(2026, 12, 1, 6, 0)
    assert digest_instant(dt.datetime(2026, 7, 1, 5, 0), 7) == dt.datetime(2026, 7, 1, 5, 0)  # summer: UTC+2


def test_digest_sends_once_a_day_after_the_hour(portal, arrive):
    evening = dt.datetime(2026, 11, 30, 17, 0)
    physician, yesterday = arrive(n=2, at=evening, mode=NotificationMode.DIGEST)

    assert queue_new_document_notices(MORNING, WINDOW) == 0  # not an "each" physician
    assert queue_digests(dt.datetime(2026, 12, 1, 5, 30), DIGEST_HOUR) == 0  # 06:30 in Geneva: too early
    assert queue_digests(MORNING, DIGEST_HOUR) == 1
    assert queue_digests(MORNING + dt.timedelta(hours=3), DIGEST_HOUR) == 0  # once a day
    _dispatch(portal, MORNING)
    [mail] = portal.mailbox.to(physician.email)
    assert "résumé du jour" in mail["Subject"] and "2 nouveaux documents" in mail["Subject"]
    assert _states(yesterday) == ["notified", "notified"]

    _, today = arrive(physician, at=MORNING + dt.timedelta(hours=2), mode=NotificationMode.DIGEST)
    assert queue_digests(MORNING + dt.timedelta(hours=4), DIGEST_HOUR) == 0
    next_morning = MORNING + dt.timedelta(days=1)
    assert queue_digests(next_morning, DIGEST_HOUR) == 1
    _dispatch(portal, next_morning)
    assert len(portal.mailbox.to(physician.email)) == 2
    assert _states(today) == ["notified"]


def test_a_digest_physician_without_new_documents_gets_nothing(portal, recipient):
    recipient(notification_mode=NotificationMode.DIGEST)
    assert queue_digests(MORNING, DIGEST_HOUR) == 0
    assert not OutboxMessage.select().where(OutboxMessage.related_type == "notification").exists()


# -- "none" ---------------------------------------------------------------------------------------------------------
def test_no_email_mode_leaves_deliveries_available_and_says_why(portal, arrive):
    _physician, deliveries = arrive(mode=NotificationMode.NONE)
    assert queue_new_document_notices(MORNING + dt.timedelta(days=1), WINDOW) == 0
    assert queue_digests(MORNING + dt.timedelta(days=1), DIGEST_HOUR) == 0
    assert not OutboxMessage.select().where(OutboxMessage.related_type == "notification").exists()
    assert _states(deliveries) == ["available"]
    assert may(DELIVERY, deliveries[0], "notify", SYSTEM).code == "notifications-off"


# -- nothing lost, nothing duplicated -------------------------------------------------------------------------------
def test_mail_server_down_while_documents_arrive_then_each_notice_exactly_once(portal, arrive):
    portal.server.stop()
    physicians = [arrive(n=n)[0] for n in (1, 2, 3)]
    queue_new_document_notices(MORNING + WINDOW, WINDOW)
    assert _dispatch(portal, MORNING + WINDOW)["retry"] == 3
    assert set(Delivery.select(Delivery.state).tuples()) == {("available",)}  # not notified while unsent

    portal.server.start()
    later = MORNING + dt.timedelta(hours=3)  # past every back-off
    queue_new_document_notices(later, WINDOW)  # nothing new to queue: no duplicate notice
    assert _dispatch(portal, later)["sent"] == 3
    assert sum(_dispatch(portal, later + dt.timedelta(hours=3)).values()) == 0
    assert [len(portal.mailbox.to(p.email)) for p in physicians] == [1, 1, 1]
    assert set(Delivery.select(Delivery.state).tuples()) == {("notified",)}


def test_a_hard_bounce_is_recorded_and_the_documents_wait_for_a_working_address(portal, arrive):
    physician, deliveries = arrive()
    portal.mailbox.refuse.add(physician.email)
    queue_new_document_notices(MORNING + WINDOW, WINDOW)

    assert _dispatch(portal, MORNING + WINDOW)["dead"] == 1
    message = OutboxMessage.get(OutboxMessage.related_type == "notification")
    assert message.status == "dead" and "550" in message.last_error
    stored = Physician.get_by_id(physician.id)
    assert stored.email_bounced_at is not None and "550" in stored.email_bounce_reason
    assert _states(deliveries) == ["available"]  # still in "Mes documents"
    assert may(DELIVERY, Delivery.get_by_id(deliveries[0].id), "notify", SYSTEM).code == "bounced"
    assert queue_new_document_notices(MORNING + dt.timedelta(hours=1), WINDOW) == 0  # not while bounced

    portal.mailbox.refuse.clear()
    assert Physician.clear_bounce(physician.id)
    assert queue_new_document_notices(MORNING + dt.timedelta(hours=1), WINDOW) == 1
    _dispatch(portal, MORNING + dt.timedelta(hours=1))
    assert len(portal.mailbox.to(physician.email)) == 1
    assert _states(deliveries) == ["notified"]


def test_a_notice_whose_documents_were_all_opened_is_not_sent(portal, arrive):
    physician, deliveries = arrive()
    account = physician.accounts.get()
    queue_new_document_notices(MORNING + WINDOW, WINDOW)
    engine.fire(DELIVERY, deliveries[0], "consult", Actor("physician", account_id=account.id))

    assert _dispatch(portal, MORNING + WINDOW)["cancelled"] == 1
    assert portal.mailbox.messages == []
    assert _states(deliveries) == ["consulted"]


def test_only_the_documents_still_waiting_are_marked_notified(portal, arrive):
    physician, deliveries = arrive(n=2)
    account = physician.accounts.get()
    queue_new_document_notices(MORNING + WINDOW, WINDOW)
    engine.fire(DELIVERY, deliveries[0], "consult", Actor("physician", account_id=account.id))
    assert _dispatch(portal, MORNING + WINDOW)["sent"] == 1
    assert _states(deliveries) == ["consulted", "notified"]
