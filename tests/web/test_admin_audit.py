"""The administrators' journal: who may read it, its filters, its pages, and the CSV and FHIR exports of the very
selection it shows (streamed, escaped for spreadsheets, valid FHIR, and recorded in the trail themselves)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re

import pytest
from fhir.resources.R4B.auditevent import AuditEvent as FhirAuditEvent
from fhir.resources.R4B.bundle import Bundle

from models import Account, AuditEvent, Role
from models import audit as audit_model
from security import audit
from tests.conftest import statements
from web import admin_audit
from workflows import ACCOUNT, Actor, engine

from . import test_access_history

# The fixtures of test_access_history.py: deliveries through the workflow, physicians logged in on clients of their own.
deliver, physician_client = test_access_history.deliver, test_access_history.physician_client

EN = {"Accept-Language": "en"}  # the new sentences, until the French catalogue gets them


def record(action: str, *, at: dt.datetime | None = None, account: Account | None = None, **fields) -> AuditEvent:
    """An event as web/trail.py records one (`account` acted), at a chosen time."""
    if account is not None:
        fields.setdefault("actor_id", account.id)
        fields.setdefault("actor_role", account.role)
    return audit.record(action, at=at, **fields)


def journal(client, query: str = "", headers=EN) -> str:
    response = client.get(f"/admin/journal{query}", headers=headers)
    assert response.status_code == 200, response.status_code
    assert response.headers["Cache-Control"] == "no-store"
    return response.get_data(as_text=True)


def listed_ids(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'<tr id="event-(\d+)">', html)]


def selection(**filters) -> list[int]:
    """What the journal must list for these filters, straight from the table."""
    return [e.id for e in AuditEvent.search(**filters)]


# -- who may read it ----------------------------------------------------------------------------------------------
PATHS = ("/admin/journal", "/admin/journal/export.csv", "/admin/journal/export.json")


@pytest.mark.parametrize("role", [Role.PHYSICIAN, Role.VALIDATOR, Role.CLINICIAN])
def test_only_administrators_read_and_export_the_journal(client, login_as, role):
    login_as(role)
    for path in PATHS:
        assert client.get(path).status_code == 403, path
    home = client.get("/").get_data(as_text=True)
    assert "/admin/journal" not in home
    assert not AuditEvent.select().where(AuditEvent.action == admin_audit.EXPORT_ACTION).exists()


def test_anonymous_is_sent_to_login(client):
    for path in PATHS:
        response = client.get(path)
        assert response.status_code == 302 and response.headers["Location"].startswith("/login?next=")


def test_administrator_sees_the_link_and_the_newest_events_first(client, login_as, make_account):
    admin = login_as(Role.ADMINISTRATOR, username="root")
    target = make_account(Role.CLINICIAN, username="claire")
    engine.fire(ACCOUNT, target, "lock", Actor(Role.ADMINISTRATOR, admin.id, ip="10.1.2.3"))
    record("login.failure", outcome="failure", actor_role="anonymous", ip="192.0.2.9", details={"reason": "x"})

    html = journal(client)
    assert 'href="/admin/journal"' in html  # the menu entry
    ids = listed_ids(html)
    assert ids == [e.id for e in AuditEvent.select().order_by(AuditEvent.at.desc(), AuditEvent.id.desc())]
    first, second = (re.search(rf'<tr id="event-{n}">(.*?)</tr>', html, re.S).group(1) for n in ids[:2])
    assert "Login failed" in first and "<code>login.failure</code>" in first and "192.0.2.9" in first
    assert "Failure" in first and "—" in first  # no account for an anonymous attempt
    assert "<code>account.lock</code>" in second and "10.1.2.3" in second
    assert f'href="/admin/comptes/{admin.public_id}"' in second  # who acted, linked
    assert f'href="/admin/comptes/{target.public_id}"' in second  # what it was about, linked
    assert "Lock" in second and "Administrator" in second
    # The French page uses the workflow's translated label where the catalogue has one.
    assert "Verrouiller" in journal(client, headers={"Accept-Language": "fr"})


# -- the filters ----------------------------------------------------------------------------------------------------
def test_user_filter_finds_what_they_did_and_what_was_done_to_them(client, login_as, make_account):
    admin = login_as(Role.ADMINISTRATOR, username="root")
    claire = make_account(Role.CLINICIAN, username="claire.martin")
    other = make_account(Role.CLINICIAN, username="paul")
    mine = record("login.success", account=claire)
    engine.fire(ACCOUNT, claire, "lock", Actor(Role.ADMINISTRATOR, admin.id))
    record("login.success", account=other)

    for text in ("claire.martin", "Claire.Martin", "claire mart"):
        ids = listed_ids(journal(client, f"?user={text}"))
        assert ids == selection(user=text)
        assert mine.id in ids
        events = AuditEvent.select().where(AuditEvent.id.in_(ids))
        assert {e.actor_id for e in events} <= {claire.id, admin.id, None}  # None: the system created it
        assert all(e.actor_id == claire.id or e.object_id == str(claire.id) for e in events)
        assert any(e.action == "account.lock" and e.actor_id == admin.id for e in events)
    assert listed_ids(journal(client, "?user=nobody-at-all")) == []


def test_action_outcome_and_dates_in_geneva_time(client, login_as):
    login_as(Role.ADMINISTRATOR)
    # 31 March 2024: Geneva moves from UTC+1 to UTC+2 at 02:00; the day runs from 23:00 UTC (30th) to 22:00 UTC.
    before = record("login.failure", at=dt.datetime(2024, 3, 30, 22, 59), outcome="failure")
    first = record("login.failure", at=dt.datetime(2024, 3, 30, 23, 0), outcome="failure")
    success = record("login.success", at=dt.datetime(2024, 3, 31, 12, 0))
    last = record("login.failure", at=dt.datetime(2024, 3, 31, 21, 59), outcome="failure")
    after = record("login.failure", at=dt.datetime(2024, 3, 31, 22, 0), outcome="failure")

    assert listed_ids(journal(client, "?from=2024-03-31&to=2024-03-31")) == [last.id, success.id, first.id]
    assert listed_ids(journal(client, "?to=2024-03-30")) == [before.id]
    assert after.id in listed_ids(journal(client, "?from=2024-04-01"))
    failures = journal(client, "?from=2024-03-31&to=2024-03-31&action=login.failure&outcome=failure")
    assert listed_ids(failures) == [last.id, first.id]
    assert listed_ids(journal(client, "?outcome=success&to=2024-04-30")) == [success.id]
    # The action list holds the actions present, labelled; anything else is no filter.
    html = journal(client, "?action=made.up")
    assert '<option value="login.failure">Login failed (login.failure)</option>' in html
    assert len(listed_ids(html)) == AuditEvent.select().count()
    warned = journal(client, "?from=31.03.2024")
    assert "is not a date" in warned and len(listed_ids(warned)) == AuditEvent.select().count()


def test_patient_and_document_filters_follow_documents_deliveries_and_designations(
    client, login_as, deliver, physician_client
):
    login_as(Role.ADMINISTRATOR)
    _client, physician = physician_client()
    _other_client, colleague = physician_client()
    mine = deliver(physician.physician, dpi_value="PID-4711")
    copy = deliver(colleague.physician, mine.document)  # a second recipient of the same document
    elsewhere = deliver(physician.physician)  # another patient
    document, patient = mine.document, mine.document.patient
    received = record("document.receive", object_type="document", object_id=document.id)
    designation = mine.document.stay.designations.first()
    designated = record("designation.record", object_type="designation", object_id=designation.id)
    unrelated = record("document.receive", object_type="document", object_id=elsewhere.document.id)

    by_dpi = listed_ids(journal(client, "?patient=PID-4711"))
    assert by_dpi == listed_ids(journal(client, f"?patient={patient.public_id}")) == selection(patient="PID-4711")
    assert {received.id, designated.id} <= set(by_dpi) and unrelated.id not in by_dpi
    about = {(e.object_type, e.object_id) for e in AuditEvent.select().where(AuditEvent.id.in_(by_dpi))}
    assert ("delivery", str(mine.id)) in about and ("delivery", str(copy.id)) in about
    assert ("delivery", str(elsewhere.id)) not in about

    by_document = listed_ids(journal(client, f"?document={document.public_id}"))
    assert by_document == selection(document=document.public_id)
    assert received.id in by_document and designated.id not in by_document and unrelated.id not in by_document
    assert listed_ids(journal(client, "?patient=unknown-patient")) == []  # names nothing: nothing, not everything
    # A delivery's row names the document and the recipient, and links to that document's events.
    html = journal(client, f"?document={document.public_id}")
    assert f'href="/admin/journal?document={document.public_id}"' in html
    assert colleague.physician.display_name in html
    assert patient.family_name not in html  # no patient name in the journal


def test_a_filter_naming_more_rows_than_it_lists_keeps_them_as_a_subquery_with_the_same_selection(
    login_as, make_account, deliver, physician_client, monkeypatch
):
    """A filter's ids are read into a list only up to LISTED_AT_MOST (SQLite caps a statement's parameters); past
    that the same rows are selected through a subquery."""
    admin = login_as(Role.ADMINISTRATOR, username="root")
    _client, physician = physician_client()
    mine = deliver(physician.physician, dpi_value="PID-4711")
    deliver(physician.physician)  # another patient's document
    for n in range(3):
        claire = make_account(Role.CLINICIAN, username=f"claire.{n}")
        record("login.success", account=claire)
        engine.fire(ACCOUNT, claire, "lock", Actor(Role.ADMINISTRATOR, admin.id))
    record("document.receive", object_type="document", object_id=mine.document.id)
    filters = ({"user": "claire"}, {"patient": "PID-4711"}, {"document": mine.document.public_id})
    listed = [selection(**f) for f in filters]
    assert all(listed), listed
    monkeypatch.setattr(audit_model, "LISTED_AT_MOST", 0)  # every non-empty filter
    assert [selection(**f) for f in filters] == listed


def test_pages_cost_the_same_queries_whatever_their_length(client, login_as, make_account, deliver, physician_client):
    login_as(Role.ADMINISTRATOR)
    _client, physician = physician_client()

    def queries(query: str = "") -> int:
        with statements() as seen:
            journal(client, query)
        return len(seen)

    deliver(physician.physician)
    make_account(Role.CLINICIAN)
    few = queries()
    for _ in range(20):
        deliver(physician.physician)
        make_account(Role.CLINICIAN)
    assert AuditEvent.select().count() > admin_audit.PAGE_SIZE
    assert queries() == few
    assert queries("?page=2") == few


def test_pages_follow_each_other_without_gap(client, login_as):
    login_as(Role.ADMINISTRATOR)
    with audit.batch():
        for n in range(admin_audit.PAGE_SIZE + 7):
            record("login.success", at=dt.datetime(2024, 5, 1, 8, 0) + dt.timedelta(minutes=n % 3))
    first, second = journal(client, "?action=login.success"), journal(client, "?action=login.success&page=2")
    assert 'rel="next" href="/admin/journal?page=2&amp;action=login.success"' in first
    assert listed_ids(first) + listed_ids(second) == selection(action="login.success")


# -- the exports ----------------------------------------------------------------------------------------------------
def exported_events(admin: Account) -> list[AuditEvent]:
    return list(
        AuditEvent.select()
        .where((AuditEvent.action == admin_audit.EXPORT_ACTION) & (AuditEvent.actor_id == admin.id))
        .order_by(AuditEvent.id)
    )


def read_csv(response) -> list[list[str]]:
    body = response.get_data()
    assert body.startswith("\ufeff".encode())  # the BOM: Excel reads UTF-8 then
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))


def test_csv_export_is_the_filtered_selection_streamed_with_a_bom(client, login_as, make_account):
    admin = login_as(Role.ADMINISTRATOR, username="root")
    claire = make_account(Role.CLINICIAN, username="claire")
    record("login.success", account=claire, ip="10.0.0.7", details={"method": "password+sms"})
    record("login.success", account=admin)
    record("logout", account=claire)

    response = client.get("/admin/journal/export.csv?user=claire&action=login.success", headers=EN)
    assert response.status_code == 200 and response.is_streamed
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert re.match(r'attachment; filename="journal-audit-\d{8}-\d{6}\.csv"', response.headers["Content-Disposition"])
    assert response.headers["Cache-Control"] == "no-store"
    header, *rows = read_csv(response)
    assert header[:5] == ["Time (Europe/Zurich)", "Username", "Name", "Role", "Action"]
    assert [row[-1] for row in rows] == [
        AuditEvent.get_by_id(n).hash for n in selection(user="claire", action="login.success", up_to_id=10**9)
    ]
    (row,) = rows
    assert row[1:6] == ["claire", "Claire", "clinician", "login.success", "Logged in"]
    assert row[9] == "10.0.0.7" and json.loads(row[10]) == {"method": "password+sms"}
    assert row[0].endswith(("+01:00", "+02:00"))  # Geneva time, with its offset


def test_csv_cells_never_start_a_formula(client, login_as, make_account):
    login_as(Role.ADMINISTRATOR)
    tricky = make_account(Role.CLINICIAN, username="=HYPERLINK(1)")
    Account.update(full_name="+SUM(A1)").where(Account.id == tricky.id).execute()
    record("login.success", account=tricky, ip="-1+2", details={"x": 1})
    record("@cmd", actor_role="system")
    (row,) = read_csv(client.get("/admin/journal/export.csv?action=login.success"))[1:]
    assert row[1:3] == ["'=HYPERLINK(1)", "'+SUM(A1)"] and row[9] == "'-1+2"
    (command,) = read_csv(client.get("/admin/journal/export.csv?action=@cmd"))[1:]
    assert command[4] == "'@cmd"
    assert [admin_audit.safe_cell(v) for v in ("=1", "+1", "-1", "@a", "\t=1", "a=1", "", None, 5)] == [
        "'=1",
        "'+1",
        "'-1",
        "'@a",
        "'\t=1",
        "a=1",
        "",
        "",
        "5",
    ]


def test_fhir_export_is_a_valid_bundle_of_the_same_selection(client, login_as, make_account, deliver, physician_client):
    admin = login_as(Role.ADMINISTRATOR, username="root")
    physician_browser, physician = physician_client()
    delivery = deliver(physician.physician)
    assert physician_browser.get(f"/documents/{delivery.public_id}").status_code == 200  # opened, consulted
    engine.fire(ACCOUNT, make_account(Role.CLINICIAN), "lock", Actor(Role.ADMINISTRATOR, admin.id, ip="10.9.8.7"))
    record("login.failure", outcome="failure", actor_role="anonymous", ip="192.0.2.1", details={"reason": "u"})
    record("document.receive", actor_role="dpi", object_type="document", object_id=delivery.document_id)

    response = client.get("/admin/journal/export.json")
    assert response.status_code == 200 and response.is_streamed
    assert response.mimetype == "application/fhir+json"
    bundle = json.loads(response.get_data())
    Bundle.model_validate(bundle)
    assert bundle["type"] == "searchset"
    (export,) = exported_events(admin)
    expected = selection(up_to_id=json.loads(export.details)["up_to_event"])
    assert bundle["total"] == len(expected) == len(bundle["entry"])
    resources = [entry["resource"] for entry in bundle["entry"]]
    for resource in resources:
        FhirAuditEvent.model_validate(resource)
    assert [r["id"] for r in resources] == [AuditEvent.get_by_id(n).hash for n in expected]
    by_action = {r["subtype"][0]["code"]: r for r in resources}
    # A document event reads as the DPI's trace writes it, the physician named by GLN.
    opened = by_action["opened"]
    assert opened["entity"][0]["what"]["reference"].startswith("DocumentReference/")
    assert opened["agent"][0]["who"]["identifier"]["value"] == physician.physician.gln
    received = by_action["received"]
    assert received["agent"][0]["who"]["display"].startswith("DPI client")
    # Any other event: DICOM type by family, the action as subtype, the account that acted and its address.
    lock = by_action["account.lock"]
    assert lock["type"]["code"] == "110137"
    assert lock["agent"][0]["who"]["identifier"] == {"system": admin_audit.ACCOUNT_SYSTEM, "value": "root"}
    assert lock["agent"][0]["network"] == {"address": "10.9.8.7", "type": "2"}
    failure = by_action["login.failure"]
    assert failure["type"]["code"] == "110114" and failure["outcome"] == "8"
    assert failure["entity"] == [{"detail": [{"type": "reason", "valueString": "u"}]}]


def test_an_empty_fhir_export_has_no_entry(client, login_as):
    login_as(Role.ADMINISTRATOR)
    bundle = json.loads(client.get("/admin/journal/export.json?user=nobody-at-all").get_data())
    Bundle.model_validate(bundle)
    assert bundle["total"] == 0 and "entry" not in bundle


def test_every_export_is_recorded_with_its_filter_and_row_count(client, login_as, make_account):
    admin = login_as(Role.ADMINISTRATOR, username="root")
    claire = make_account(Role.CLINICIAN, username="claire")
    record("login.success", account=claire)
    record("login.success", account=claire)

    client.get("/admin/journal/export.csv?user=claire&action=login.success&from=2020-01-01").get_data()
    client.get("/admin/journal/export.json?outcome=success").get_data()
    csv_export, fhir_export = exported_events(admin)
    assert (csv_export.actor_role, csv_export.ip, csv_export.object_type) == (
        "administrator",
        "127.0.0.1",
        "audit_trail",
    )
    assert json.loads(csv_export.details) == {
        "format": "csv",
        "filters": {"user": "claire", "action": "login.success", "from": "2020-01-01"},
        "rows": 2,
        "up_to_event": csv_export.id - 1,
    }
    fhir_details = json.loads(fhir_export.details)
    assert fhir_details["format"] == "fhir" and fhir_details["filters"] == {"outcome": "success"}
    # The second export counted the first one's event (it was written before), not its own.
    assert fhir_details["rows"] == AuditEvent.search(outcome="success", up_to_id=fhir_export.id - 1).count()
    assert audit.verify().ok


def test_a_large_export_is_read_page_by_page(client, login_as, monkeypatch):
    """Thousands of events leave in pages of EXPORT_PAGE_SIZE rows, each its own LIMITed query: the whole trail is
    never read at once (on PostgreSQL the driver would hold a whole result in memory)."""
    login_as(Role.ADMINISTRATOR)
    monkeypatch.setattr(admin_audit, "EXPORT_PAGE_SIZE", 500)
    with audit.batch():
        for n in range(3_000):
            record("login.success", at=dt.datetime(2024, 1, 1) + dt.timedelta(seconds=n // 2), actor_role="system")
    for path, count_rows in (
        ("/admin/journal/export.csv?action=login.success", lambda body: len(read_csv(body)) - 1),
        ("/admin/journal/export.json?action=login.success", lambda body: len(json.loads(body.get_data())["entry"])),
    ):
        with statements() as seen:
            assert count_rows(client.get(path)) == 3_000
        pages = [sql for sql in seen if '"at" DESC' in sql]  # the export's reads, newest first
        assert len(pages) == 7  # six full pages, then an empty one that says it is over
        assert all(re.search(r"LIMIT \S+$", sql) for sql in pages)
    assert [e.action for e in AuditEvent.select().order_by(AuditEvent.id.desc()).limit(2)] == ["audit.export"] * 2
