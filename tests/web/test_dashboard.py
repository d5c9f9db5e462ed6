"""The operations dashboard: administrators only, their landing page, and every number on it equal to what the
database holds (workflows, backlog, failed logins per hour, locks, DPI clients, jobs) for a constant query count."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import time_machine

from models import Account, AuditEvent, Delivery, DpiClient, JobRun, OutboxMessage, Role, db, utcnow
from security import audit
from tests.conftest import statements
from web.auth import landing_url
from web.fhir import create_client, revoke_client
from workflows import ACCOUNT, WORKFLOWS, Actor, engine

from . import test_access_history
from .conftest import csrf_token_in

deliver, physician_client = test_access_history.deliver, test_access_history.physician_client
EN = {"Accept-Language": "en"}  # the new sentences, until the French catalogue gets them
NOW = dt.datetime(2024, 6, 10, 12, 30, tzinfo=dt.UTC)


def page(client, headers=EN) -> str:
    response = client.get("/admin/", headers=headers)
    assert response.status_code == 200, response.status_code
    assert response.headers["Cache-Control"] == "no-store"
    return response.get_data(as_text=True)


def number(html: str, element_id: str) -> int:
    match = re.search(rf'id="{element_id}"[^>]*>(?:<a [^>]*>)?(\d+)', html)
    assert match, f"no number for {element_id}"
    return int(match.group(1))


def row_number(html: str, row_id: str) -> int:
    match = re.search(rf'<tr id="{row_id}">.*?<td class="num">(\d+)</td>', html, re.S)
    assert match, f"no row {row_id}"
    return int(match.group(1))


def table(html: str, table_id: str) -> list[str]:
    body = re.search(rf'<table class="table" id="{table_id}">.*?<tbody>(.*?)</tbody>', html, re.S)
    return re.findall(r"<tr[^>]*>(.*?)</tr>", body.group(1), re.S) if body else []


def sql_count(sql: str, *params) -> int:
    return db.execute_sql(sql, params).fetchone()[0]


# -- who ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("role", [Role.PHYSICIAN, Role.VALIDATOR, Role.CLINICIAN])
def test_only_administrators_see_the_dashboard(client, login_as, role):
    login_as(role)
    assert client.get("/admin/").status_code == 403
    assert 'href="/admin/"' not in client.get("/", headers=EN).get_data(as_text=True)


def test_anonymous_is_sent_to_login(client):
    response = client.get("/admin/")
    assert response.status_code == 302 and response.headers["Location"] == "/login?next=/admin/"


def test_administrators_land_on_it_and_the_workflows_page_stays(app, client, login_as):
    admin = login_as(Role.ADMINISTRATOR)
    with app.test_request_context():
        assert landing_url(Account.get_by_id(admin.id)) == "/admin/"
    assert client.get("/admin").status_code == 308  # to /admin/
    html = page(client, headers={"Accept-Language": "fr"})
    assert 'href="/admin/"' in html  # the menu entry
    assert client.get("/admin/workflows").status_code == 200


# -- the numbers --------------------------------------------------------------------------------------------------
def test_workflow_counts_and_backlog_equal_the_database(client, login_as, make_account, make_physician, deliver):
    login_as(Role.ADMINISTRATOR)
    make_account(Role.CLINICIAN, state="locked")
    make_account(Role.VALIDATOR, state="pending")
    waiting = deliver(make_physician())  # no account: it waits, "consented"
    Delivery.update(state_changed_at=utcnow() - dt.timedelta(hours=30)).where(Delivery.id == waiting.id).execute()
    deliver(make_physician())  # waiting too, but not for long
    for status in ("pending", "pending", "sending", "dead", "sent"):
        OutboxMessage.create(channel="email", template="t", recipient="a@example.ch", body="b", status=status)

    html = page(client)
    assert html.count("<svg") == len(WORKFLOWS)
    for workflow in WORKFLOWS.values():
        table_name = workflow.model._meta.table_name
        for state in workflow.states:
            if str(state) == workflow.initial:
                continue
            expected = sql_count(f"SELECT COUNT(*) FROM {table_name} WHERE state = {db.obj.param}", str(state))
            assert row_number(html, f"{workflow.name}-state-{state}") == expected, (workflow.name, state)
    assert number(html, "outbox-queued") == sql_count(
        "SELECT COUNT(*) FROM outbox_message WHERE status IN ('pending', 'sending')"
    )
    assert number(html, "outbox-dead") == sql_count("SELECT COUNT(*) FROM outbox_message WHERE status = 'dead'") == 1
    stuck = sql_count(
        "SELECT COUNT(*) FROM delivery WHERE state IN ('finalized', 'communicable', 'consented', 'withheld') "
        f"AND state_changed_at <= {db.obj.param}",
        utcnow() - dt.timedelta(hours=24),
    )
    assert number(html, "stuck-total") == stuck == 1


def test_failed_logins_per_hour_over_24_hours_equal_the_trail(client, login_as, make_account):
    claire = make_account(Role.CLINICIAN, username="claire")

    def fail(at: dt.datetime, action: str = "login.failure", account: Account | None = None, **fields):
        audit.record(
            action,
            at=at,
            actor_id=account.id if account else None,
            actor_role=account.role if account else "anonymous",
            ip="198.51.100.4",
            outcome=fields.pop("outcome", "failure"),
            details={"reason": "wrong-password", "step": "password"},
        )

    base = NOW.replace(tzinfo=None)
    fail(dt.datetime(2024, 6, 9, 12, 10))  # 24 h 20 min ago: outside the window
    fail(dt.datetime(2024, 6, 9, 13, 5))  # the first hour of the window
    for minute in (1, 2, 3):
        fail(dt.datetime(2024, 6, 10, 11, minute), account=claire)
    fail(dt.datetime(2024, 6, 10, 12, 20), action="login.code_failed", account=claire)
    fail(dt.datetime(2024, 6, 10, 12, 21), action="login.success", outcome="success", account=claire)
    fail(dt.datetime(2024, 6, 10, 12, 22), action="login.code_refused", account=claire)

    with time_machine.travel(NOW, tick=False):
        login_as(Role.ADMINISTRATOR)
        html = page(client)
    since = base.replace(minute=0) - dt.timedelta(hours=23)
    in_window = sql_count(
        "SELECT COUNT(*) FROM audit_event WHERE action IN ('login.failure', 'login.code_failed') "
        f"AND outcome = 'failure' AND at >= {db.obj.param}",
        since,
    )
    assert in_window == 5
    assert f"{in_window} failed logins in the last 24 hours" in html
    for n in range(24):
        hour = since + dt.timedelta(hours=n)
        expected = sql_count(
            "SELECT COUNT(*) FROM audit_event WHERE action IN ('login.failure', 'login.code_failed') "
            f"AND outcome = 'failure' AND at >= {db.obj.param} AND at < {db.obj.param}",
            hour,
            hour + dt.timedelta(hours=1),
        )
        assert row_number(html, f"hour-{hour:%Y%m%d%H}") == expected, hour
    assert row_number(html, "hour-2024061011") == 3 and row_number(html, "hour-2024061012") == 1
    rows = table(html, "failures")
    assert len(rows) == 6  # the newest first, whatever the window; neither the success nor the refused code
    assert "/admin/comptes/" in rows[0] and "198.51.100.4" in rows[0] and "wrong-password" in rows[0]
    assert "—" in rows[-1]  # no account for an unknown username


def test_only_the_last_twenty_failures_are_listed(client, login_as):
    login_as(Role.ADMINISTRATOR)
    with audit.batch():
        for n in range(25):
            audit.record("login.failure", actor_role="anonymous", outcome="failure", details={"reason": f"r{n}"})
    rows = table(page(client), "failures")
    assert len(rows) == 20 and "r24" in rows[0] and "r5" in rows[-1]


def test_a_real_failed_login_shows_the_account_but_no_typed_username_or_password(app, client, login_as, make_account):
    make_account(Role.CLINICIAN, username="claire")
    visitor = app.test_client()
    for username in ("ghost-user-xyz", "claire"):
        token = csrf_token_in(visitor.get("/login").data)
        visitor.post("/login", data={"csrf_token": token, "username": username, "password": "Typed-Secret-42"})
    login_as(Role.ADMINISTRATOR)
    html = page(client)
    rows = table(html, "failures")
    assert len(rows) == 2
    assert "Claire" in rows[0] and "wrong-password" in rows[0]
    assert "—" in rows[1] and "unknown-user" in rows[1]
    assert "ghost-user-xyz" not in html and "Typed-Secret-42" not in html


def test_recent_locks_name_the_account_and_who_locked_it(client, login_as, make_account):
    admin = login_as(Role.ADMINISTRATOR, username="root")
    by_system = make_account(Role.CLINICIAN, username="claire", state="locked")
    by_admin = make_account(Role.VALIDATOR, username="paul")
    engine.fire(ACCOUNT, by_admin, "lock", Actor(Role.ADMINISTRATOR, admin.id))
    rows = table(page(client), "locks")
    assert len(rows) == AuditEvent.select().where(AuditEvent.action == "account.lock").count() == 2
    assert f"/admin/comptes/{by_admin.public_id}" in rows[0] and "Root" in rows[0] and "Locked" in rows[0]
    assert f"/admin/comptes/{by_system.public_id}" in rows[1] and "System" in rows[1]


def test_dpi_clients_and_jobs(client, login_as):
    create_client("dpi-a")
    create_client("dpi-b")
    revoke_client("dpi-b")
    called = dt.datetime(2024, 6, 10, 12, 0)
    DpiClient.update(last_call_at=called).where(DpiClient.name == "dpi-a").execute()
    finished = NOW.replace(tzinfo=None) - dt.timedelta(seconds=20)
    JobRun.create(job="dispatch_outbox", node="host-a:1", started_at=finished, finished_at=finished, outcome="ok")
    JobRun.create(job="housekeeping", node="host-a:1", started_at=finished, finished_at=finished, outcome="failed")
    JobRun.create(job="dispatch_outbox", node="host-b:2", started_at=finished, outcome="running")

    with time_machine.travel(NOW, tick=False):
        login_as(Role.ADMINISTRATOR)
        html = page(client)
    clients = table(html, "dpi-clients")
    assert [re.search(r"<th[^>]*>(.*?)</th>", row).group(1) for row in clients] == ["dpi-a", "dpi-b"]
    assert "Valid" in clients[0] and "Never" not in clients[0]
    assert "Revoked on" in clients[1] and "Never" in clients[1]
    jobs = {re.search(r"<code>(.*?)</code>", row).group(1): row for row in table(html, "jobs")}
    assert "late" not in jobs["dispatch_outbox"] and "Never" not in jobs["dispatch_outbox"]
    assert "Never" in jobs["housekeeping"] and "late" in jobs["housekeeping"]  # its only run failed
    assert "host-b:2" in re.search(r'<p id="leader">(.*?)</p>', html, re.S).group(1)


def test_the_page_costs_the_same_queries_whatever_the_volume(client, login_as, make_account, make_physician, deliver):
    login_as(Role.ADMINISTRATOR)

    def queries() -> int:
        with statements() as seen:
            page(client)
        return len(seen)

    def more():
        account = make_account(Role.CLINICIAN, state="locked")
        audit.record("login.failure", actor_id=account.id, actor_role="clinician", outcome="failure")
        deliver(make_physician())
        create_client(f"dpi-{account.id}")
        JobRun.create(job="dispatch_outbox", node="n:1", finished_at=utcnow(), outcome="ok")

    more()
    few = queries()
    for _ in range(10):
        more()
    assert queries() == few
