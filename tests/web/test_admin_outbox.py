"""The administrators' outgoing messages (/admin/messages: dead letters first, "Renvoyer") and the backlog on the
workflows page (outbox depth, dead messages, deliveries stuck on their way)."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
import time_machine

from jobs.tasks import dispatch_outbox
from models import (
    Account,
    AuditEvent,
    Delivery,
    Designation,
    Document,
    DocumentType,
    OutboxMessage,
    Patient,
    Role,
    Stay,
    utcnow,
)
from security import sessions
from tests.web.conftest import csrf_token_in, settings
from tests.web.test_auth import MOBILE, last_code, submit_code, submit_password
from web import create_app
from workflows import DELIVERY, SYSTEM, engine
from workflows.notifications import queue_email

SECRET = "Mot de passe provisoire : Vx9-Kp2-temporary"


def message(status="dead", template="enrollment_validated", body="Votre demande est validée.", **fields):
    fields.setdefault("recipient", "dr.dupont@example.ch")
    fields.setdefault("last_error", "SMTP 550" if status == "dead" else None)
    return OutboxMessage.create(
        channel=fields.pop("channel", "email"), template=template, subject="myHUG", body=body, status=status, **fields
    )


def listed_ids(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'<tr id="message-(\d+)"', html)]


def resend(client, row):
    page = client.get(f"/admin/messages/{row.id}")
    return client.post(f"/admin/messages/{row.id}/renvoyer", data={"csrf_token": csrf_token_in(page.data)})


# -- access ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("role", [Role.PHYSICIAN, Role.VALIDATOR, Role.CLINICIAN])
def test_other_roles_can_neither_see_nor_resend(client, login_as, role):
    dead = message()
    login_as(role)
    for path in ("/admin/messages", f"/admin/messages/{dead.id}"):
        response = client.get(path)
        assert response.status_code == 403 and "Accès refusé" in response.get_data(as_text=True)
    token = csrf_token_in(client.get("/").data)
    assert client.post(f"/admin/messages/{dead.id}/renvoyer", data={"csrf_token": token}).status_code == 403
    assert OutboxMessage.get_by_id(dead.id).status == "dead"
    assert "/admin/messages" not in client.get("/").get_data(as_text=True)


def test_anonymous_is_sent_to_login(client):
    dead = message()
    for path in ("/admin/messages", f"/admin/messages/{dead.id}"):
        response = client.get(path)
        assert response.status_code == 302 and response.headers["Location"] == f"/login?next={path}"


# -- the list -------------------------------------------------------------------------------------------------------
def test_the_list_shows_dead_messages_by_default_and_filters(client, login_as):
    login_as(Role.ADMINISTRATOR)
    OutboxMessage.delete().execute()  # the administrator's own temporary-password e-mail: not what is tested here
    dead_mail = message(template="appointment_booked")
    dead_sms = message(channel="sms", template="control_code", body="", recipient=MOBILE)
    sent = message(status="sent", sent_at=utcnow())
    pending = message(status="pending", attempts=2, last_error="SMTP server unreachable: ConnectionRefusedError")

    html = client.get("/admin/messages").get_data(as_text=True)
    assert listed_ids(html) == [dead_sms.id, dead_mail.id]  # dead ones, the newest first
    assert 'href="/admin/messages"' in html  # the nav link
    row = re.search(rf'<tr id="message-{dead_mail.id}">.*?</tr>', html, re.S).group(0)
    assert "appointment_booked" in row and "dr.dupont@example.ch" in row and "SMTP 550" in row
    assert '<html lang="fr">' in html  # French first

    def found(**query):
        return listed_ids(client.get("/admin/messages", query_string=query).get_data(as_text=True))

    assert found(status="all") == [pending.id, sent.id, dead_sms.id, dead_mail.id]
    assert found(status="pending") == [pending.id]
    assert found(status="all", channel="sms") == [dead_sms.id]
    assert found(status="all", template="enrollment_validated") == [pending.id, sent.id]
    assert found(status="nonsense", channel="pigeon") == [dead_sms.id, dead_mail.id]  # unknown: the default


def test_the_list_is_paginated_by_fifty(client, login_as):
    login_as(Role.ADMINISTRATOR)
    rows = [message() for _ in range(51)]
    first = client.get("/admin/messages").get_data(as_text=True)
    assert len(listed_ids(first)) == 50 and 'rel="next" href="/admin/messages?page=2&amp;status=dead"' in first
    second = client.get("/admin/messages?page=2&status=dead").get_data(as_text=True)
    assert listed_ids(second) == [rows[0].id]


# -- secrets --------------------------------------------------------------------------------------------------------
def test_a_secret_body_is_never_shown_and_a_plain_one_is(client, login_as):
    login_as(Role.ADMINISTRATOR)
    waiting = message(status="pending", template="temporary_password", body=SECRET)  # not erased yet
    plain = message(body="Votre demande INS-2026-000123 est validée.")
    for path in ("/admin/messages?status=all", f"/admin/messages/{waiting.id}"):
        assert "Vx9-Kp2-temporary" not in client.get(path).get_data(as_text=True)
    detail = client.get(f"/admin/messages/{waiting.id}").get_data(as_text=True)
    assert 'id="secret-withheld"' in detail and 'id="message-body"' not in detail
    assert "INS-2026-000123 est validée" in client.get(f"/admin/messages/{plain.id}").get_data(as_text=True)


def test_a_dead_secret_message_cannot_be_resent_and_the_page_says_what_to_do(client, login_as):
    login_as(Role.ADMINISTRATOR)
    dead = message(template="temporary_password", body="")
    detail = client.get(f"/admin/messages/{dead.id}").get_data(as_text=True)
    assert "disabled" in re.search(r'id="action-resend".*?</div>', detail, re.S).group(0)
    assert re.search(r'id="action-resend-reason">[^<]+</span>', detail)  # why, and what the recipient does instead
    response = resend(client, dead)
    assert response.status_code == 422
    assert OutboxMessage.get_by_id(dead.id).status == "dead"
    assert AuditEvent.select().where(AuditEvent.action == "outbox.resend").count() == 0


def test_only_a_dead_message_can_be_resent(client, login_as):
    login_as(Role.ADMINISTRATOR)
    sent = message(status="sent", sent_at=utcnow())
    assert 'id="action-resend"' not in client.get(f"/admin/messages/{sent.id}").get_data(as_text=True)
    token = csrf_token_in(client.get("/admin/messages").data)
    assert client.post(f"/admin/messages/{sent.id}/renvoyer", data={"csrf_token": token}).status_code == 409
    assert client.get("/admin/messages/999999").status_code == 404


# -- a hard bounce, fixed, resent from the page ---------------------------------------------------------------------
def log_in_for_real(client, username: str, password: str) -> None:
    """The administrator's own way in: password, then the SMS code."""
    assert submit_password(client, username, password).headers["Location"] == "/login/code"
    assert submit_code(client, last_code()).status_code == 302


def test_a_bounced_message_resent_after_the_fix_is_delivered_once_and_audited(
    database, tmp_path, smtp_server, make_account
):
    app = create_app(settings(database, INSTANCE_PATH=str(tmp_path / "instance"), **smtp_server.settings))
    client = app.test_client()
    admin = make_account(Role.ADMINISTRATOR, username="root")  # (its temporary-password e-mail leaves too)
    Account.update(mobile=MOBILE).where(Account.id == admin.id).execute()
    smtp_server.mailbox.refuse.add("dr.favre@example.ch")
    bounced = queue_email("enrollment_validated", "dr.favre@example.ch", reference="INS-2026-000777")
    with app.app_context():
        assert dispatch_outbox(app.config) == {"dead": 1, "sent": 1}
    assert OutboxMessage.get_by_id(bounced.id).status == "dead" and smtp_server.mailbox.to("dr.favre@") == []

    log_in_for_real(client, admin.username, admin.issued_password)
    detail = client.get(f"/admin/messages/{bounced.id}").get_data(as_text=True)
    assert "SMTP 550" in detail and f'action="/admin/messages/{bounced.id}/renvoyer"' in detail

    smtp_server.mailbox.refuse.clear()  # the address was fixed at the recipient's end
    response = resend(client, bounced)
    assert response.status_code == 303 and response.headers["Location"] == f"/admin/messages/{bounced.id}"
    queued = OutboxMessage.get_by_id(bounced.id)
    assert (queued.status, queued.attempts) == ("pending", 0) and queued.next_attempt_at <= utcnow()
    with app.app_context():
        assert dispatch_outbox(app.config) == {"sent": 1}
        assert sum(dispatch_outbox(app.config).values()) == 0
    assert [m["To"] for m in smtp_server.mailbox.to("dr.favre@")] == ["dr.favre@example.ch"]
    assert OutboxMessage.get_by_id(bounced.id).status == "sent"

    [event] = AuditEvent.select().where(AuditEvent.action == "outbox.resend")
    assert (event.actor_id, event.actor_role, event.object_type, event.object_id) == (
        admin.id,
        "administrator",
        "outbox_message",
        str(bounced.id),
    )
    assert json.loads(event.details) == {"template": "enrollment_validated", "channel": "email"}
    assert "INS-2026-000777" not in event.details  # who and which message; never the content


def test_a_second_resend_of_the_same_message_is_refused(client, login_as):
    login_as(Role.ADMINISTRATOR)
    dead = message()
    page = client.get(f"/admin/messages/{dead.id}")
    token = csrf_token_in(page.data)
    assert client.post(f"/admin/messages/{dead.id}/renvoyer", data={"csrf_token": token}).status_code == 303
    assert client.post(f"/admin/messages/{dead.id}/renvoyer", data={"csrf_token": token}).status_code == 409
    assert AuditEvent.select().where(AuditEvent.action == "outbox.resend").count() == 1


# -- the backlog on the workflows page --------------------------------------------------------------------------------
def number(html: str, element_id: str) -> int:
    """The first number in the element with this id."""
    match = re.search(rf'id="{element_id}"[^>]*>[^0-9<]*(?:<a [^>]*>)?(\d+)', html)
    assert match, f"no {element_id}"
    return int(match.group(1))


def stuck_count(html: str, state: str) -> int:
    return int(re.search(rf'id="stuck-state-{state}">.*?<td class="num">(\d+)</td>', html, re.S).group(1))


DISCHARGE_SUMMARY, PROGRESS_NOTE = "18842-5", "11506-3"  # seeded communicable, not communicable


@pytest.fixture
def deliveries(make_physician, make_account):
    """One delivery per state worth watching, all made 30 hours ago, plus a fresh one and a visible one; each is
    created and advanced through the delivery workflow, as the document pipeline does."""
    patient = Patient.create(dpi_system="urn:test", dpi_value="P1", family_name="Test", given_name="Jean")
    stay = Stay.create(patient=patient, dpi_system="urn:test", dpi_value="S1", started_at=dt.datetime(2026, 1, 5))
    numbers = iter(range(1, 100))

    def deliver(physician, *triggers, loinc=DISCHARGE_SUMMARY):
        document = Document.create(
            patient=patient, stay=stay, type=DocumentType.get(loinc=loinc), dpi_system="urn:test",
            dpi_value=f"D{next(numbers)}", title="Document",
        )  # fmt: skip
        delivery = engine.create(DELIVERY, Delivery(document=document, physician=physician), "create", SYSTEM)
        for trigger in triggers:
            engine.fire(DELIVERY, Delivery.get_by_id(delivery.id), trigger, SYSTEM)
        return Delivery.get_by_id(delivery.id)

    made = {}
    with time_machine.travel(dt.datetime.now(dt.UTC) - dt.timedelta(hours=30), tick=False):
        waiting, unauthorized, active = make_physician(), make_physician(), make_physician()
        make_account(Role.PHYSICIAN, physician=active)
        for physician, authorized in ((waiting, True), (unauthorized, False), (active, True)):
            Designation.create(stay=stay, physician=physician, authorized=authorized)
        made["finalized"] = deliver(waiting)
        made["communicable"] = deliver(unauthorized, "classify")
        made["consented"] = deliver(waiting, "classify", "consent")
        made["withheld"] = deliver(waiting, "withhold", loinc=PROGRESS_NOTE)
        made["available"] = deliver(active, "classify", "consent", "make_available")
    with time_machine.travel(dt.datetime.now(dt.UTC) - dt.timedelta(hours=1), tick=False):
        made["fresh"] = deliver(waiting)
    assert {key: d.state for key, d in made.items()} == {
        "finalized": "finalized",
        "communicable": "communicable",
        "consented": "consented",
        "withheld": "withheld",
        "available": "available",
        "fresh": "finalized",
    }
    return made


def test_the_workflows_page_counts_the_backlog_and_links_each_stuck_document(client, login_as, deliveries):
    login_as(Role.ADMINISTRATOR)
    OutboxMessage.delete().execute()  # the accounts' temporary-password e-mails: not what is counted here
    message(status="pending")
    message(status="sending", claimed_by="host:1:aa", claimed_until=utcnow())
    message(status="dead")
    message(status="sent", sent_at=utcnow())
    html = client.get("/admin/workflows").get_data(as_text=True)
    assert (number(html, "outbox-queued"), number(html, "outbox-dead")) == (2, 1)
    assert 'href="/admin/messages?status=dead"' in html
    assert number(html, "stuck-total") == 4
    assert [stuck_count(html, s) for s in ("finalized", "communicable", "consented", "withheld")] == [1, 1, 1, 1]
    assert number(html, "stuck-after") == 24  # MYHUG_STUCK_AFTER_HOURS, 24 by default
    for key in ("finalized", "communicable", "consented", "withheld"):
        delivery = deliveries[key]
        row = re.search(rf'<tr id="stuck-{delivery.public_id}">.*?</tr>', html, re.S).group(0)
        link = f"/clinique/documents/{delivery.document.public_id}?medecin={delivery.physician.public_id}"
        assert f'href="{link}"' in row
    for key in ("available", "fresh"):  # visible, or not waiting long yet
        assert f'id="stuck-{deliveries[key].public_id}"' not in html


def test_the_stuck_threshold_is_a_setting(database, tmp_path, deliveries, make_account):
    app = create_app(settings(database, INSTANCE_PATH=str(tmp_path / "instance"), STUCK_AFTER_HOURS=48))
    assert Delivery.stuck_counts(utcnow() - dt.timedelta(hours=48)) == {}
    assert Delivery.stuck_counts(utcnow() - dt.timedelta(hours=24)) == {
        "finalized": 1,
        "communicable": 1,
        "consented": 1,
        "withheld": 1,
    }
    client = app.test_client()
    admin = make_account(Role.ADMINISTRATOR)
    client.set_cookie(sessions.COOKIE_NAME, sessions.start(admin, "127.0.0.1", "pytest", "password+sms"))
    html = client.get("/admin/workflows").get_data(as_text=True)
    assert number(html, "stuck-total") == 0 and number(html, "stuck-after") == 48
