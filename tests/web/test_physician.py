"""The physician's space: Mes documents, a document (viewer, download, consult), Mes patients, Mon profil, Aide.

A physician sees only their own deliveries that reached their space; anything else is the same 404 and an audit event.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
from html import unescape

import pytest
import time_machine

from models import (
    Account,
    AuditEvent,
    Delivery,
    Designation,
    Document,
    DocumentType,
    OutboxMessage,
    Patient,
    PhysicianSpecialty,
    Role,
    Specialty,
    Stay,
    SupportMessage,
    TransitionLog,
    utcnow,
)
from security import sessions
from security.encryption import BlobStore, keyring
from web import demo
from workflows import DELIVERY, SYSTEM, Actor, engine
from workflows.delivery import advance

from .conftest import csrf_token_in, settings

EN = {"Accept-Language": "en"}
_CSRF_VALUE = re.compile(r'name="csrf_token" value="[^"]+"')


@pytest.fixture
def demo_physician(app, client):
    """Dr Claire Dupont of the demo data, logged in: two documents in her space, one waiting for the patient's
    authorization, one withheld (not communicable); Dr Marc Favre has one of his own."""
    demo.load(app.config["BLOB_DIR"])
    account = Account.get(Account.username == "cdupont")
    client.set_cookie(sessions.COOKIE_NAME, sessions.start(account, "127.0.0.1", "pytest", "password+sms"))
    return account


def _delivery(title: str) -> Delivery:
    return Delivery.select().join(Document).where(Document.title == title).get()


def _stored(delivery: Delivery) -> Delivery:
    return Delivery.get_by_id(delivery.id)


def _events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.select().where(AuditEvent.action == action).order_by(AuditEvent.id))


def _without_csrf(html: str) -> str:
    return _CSRF_VALUE.sub("", html)


@pytest.fixture
def deliver(app, demo_physician):
    """deliver(title, patient=None, family_name=…) → a delivery of a new discharge summary that reached Dr Dupont's
    space, through the delivery workflow, its PDF stored encrypted like the DPI's."""
    store = BlobStore(app.config["BLOB_DIR"], keyring.require())
    physician = demo_physician.physician
    counter = iter(range(1, 10_000))

    def make(title: str, *, patient: Patient | None = None, family_name: str = "Zeller") -> Delivery:
        n = next(counter)
        if patient is None:
            patient = Patient.create(
                dpi_system="urn:test", dpi_value=f"PT{n}", family_name=family_name, given_name="Eva"
            )
        stay = Stay.create(dpi_system="urn:test", dpi_value=f"ST{n}-{patient.id}", patient=patient)
        Designation.create(stay=stay, physician=physician, authorized=True)
        pdf = demo.minimal_pdf(title)
        document = Document.create(
            dpi_system="urn:test",
            dpi_value=f"DOC{n}-{patient.id}",
            patient=patient,
            stay=stay,
            type=DocumentType.get(DocumentType.loinc == "18842-5"),
            title=title,
            sha256=hashlib.sha256(pdf).hexdigest(),
            size_bytes=len(pdf),
        )
        document.blob_id = store.put(pdf, f"document:{document.public_id}")
        document.save()
        delivery = engine.create(DELIVERY, Delivery(document=document, physician=physician), "create", SYSTEM)
        return advance(delivery)

    return make


# -- Mes documents ----------------------------------------------------------------------------------------------------
def test_my_documents_lists_only_what_reached_me(client, demo_physician):
    page = client.get("/documents")
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    html = page.get_data(as_text=True)
    assert "Lettre de sortie – Cardiologie" in html and "Résultats de laboratoire" in html
    assert "Note interne" not in html  # withheld: not communicable
    assert "Compte rendu de consultation" not in html  # communicable, but sending not authorized
    assert "Pédiatrie" not in html  # another physician's


def test_unread_documents_come_first(client, demo_physician):
    first_listed = Delivery.inbox(demo_physician.physician_id)[0]
    engine.fire(DELIVERY, first_listed, "consult", Actor(Role.PHYSICIAN, demo_physician.id))
    rows = list(Delivery.inbox(demo_physician.physician_id))
    assert [r.consulted_at is None for r in rows] == [True, False]
    html = client.get("/documents").get_data(as_text=True)
    assert html.index(rows[0].document.title) < html.index(first_listed.document.title)
    unread_row = re.search(rf'<tr id="delivery-{rows[0].public_id}"[^>]*>', html).group(0)
    read_row = re.search(rf'<tr id="delivery-{first_listed.public_id}"[^>]*>', html).group(0)
    assert 'class="unread"' in unread_row and "unread" not in read_row


def test_the_filter_defaults_to_the_profile_and_can_be_changed(client, demo_physician):
    lab = _delivery("Résultats de laboratoire")
    engine.fire(DELIVERY, lab, "consult", Actor(Role.PHYSICIAN, demo_physician.id))
    physician = demo_physician.physician
    physician.documents_filter = "unread"
    physician.save()
    html = client.get("/documents").get_data(as_text=True)
    assert "Lettre de sortie – Cardiologie" in html and "Résultats de laboratoire</a>" not in html
    html = client.get("/documents?filtre=all").get_data(as_text=True)
    assert "Résultats de laboratoire</a>" in html
    assert client.get("/documents?filtre=nonsense").status_code == 200  # an unknown choice: the profile's


def test_last_90_days_leaves_older_documents_out(client, deliver):
    with time_machine.travel(utcnow() - dt.timedelta(days=120), tick=False):
        deliver("Old letter")
    deliver("Fresh letter")
    recent = client.get("/documents?filtre=last_90_days").get_data(as_text=True)
    assert "Fresh letter" in recent and "Old letter" not in recent
    assert "Old letter" in client.get("/documents?filtre=all").get_data(as_text=True)


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("patient", ["Letter to Aebi", "Lettre de sortie – Cardiologie", "Letter to Zeller"]),
        ("received", ["Letter to Zeller", "Letter to Aebi", "Lettre de sortie – Cardiologie"]),
    ],
)
def test_sorting(client, deliver, sort, expected):
    deliver("Letter to Aebi", family_name="Aebi")
    deliver("Letter to Zeller", family_name="Zeller")
    Delivery.update(available_at=utcnow() + dt.timedelta(minutes=1)).where(
        Delivery.document == Document.get(Document.title == "Letter to Zeller").id
    ).execute()
    html = client.get(f"/documents?tri={sort}").get_data(as_text=True)
    positions = [html.index(f"{title}</a>") for title in expected]
    assert positions == sorted(positions)


def test_pages_of_25_with_a_constant_number_of_queries(client, deliver, database, monkeypatch):
    count_queries = _query_counter(database, monkeypatch)
    with count_queries() as few:
        assert client.get("/documents").status_code == 200
    for n in range(30):
        deliver(f"Letter {n:02d}")
    with count_queries() as many:
        first = client.get("/documents").get_data(as_text=True)
    assert len(few) == len(many) <= 4, many  # session, physician, count, page
    assert first.count('<tr id="delivery-') == 25 and 'rel="next"' in first
    second = client.get("/documents?page=2").get_data(as_text=True)
    assert second.count('<tr id="delivery-') == 32 - 25 and 'rel="prev"' in second
    assert client.get("/documents?page=99").status_code == 200  # past the end: the last page


def _query_counter(database, monkeypatch):
    """count() → a context manager collecting the SQL statements run meanwhile (session bookkeeping left out)."""
    from contextlib import contextmanager

    real = database.execute_sql
    seen: list[str] | None = None

    def counting(sql, params=None, *args, **kwargs):
        if seen is not None and not sql.lstrip().upper().startswith(('UPDATE "SESSION"', "SAVEPOINT", "RELEASE")):
            seen.append(sql)
        return real(sql, params, *args, **kwargs)

    monkeypatch.setattr(database, "execute_sql", counting)

    @contextmanager
    def count():
        nonlocal seen
        seen = []
        try:
            yield seen
        finally:
            seen = None

    return count


def test_documents_of_one_patient(client, deliver):
    deliver("Letter to Aebi", family_name="Aebi")
    patient = Patient.get(Patient.family_name == "Aebi")
    html = client.get(f"/documents?patient={patient.public_id}&filtre=all").get_data(as_text=True)
    assert "Letter to Aebi" in html and "Lettre de sortie – Cardiologie" not in html


# -- who may enter ----------------------------------------------------------------------------------------------------
PAGES = ["/documents", "/patients", "/profil", "/documents/{id}", "/documents/{id}/voir", "/documents/{id}/telecharger"]


@pytest.mark.parametrize("path", PAGES)
def test_the_physician_enters(client, demo_physician, path):
    response = client.get(path.format(id=_delivery("Résultats de laboratoire").public_id))
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("path", PAGES)
@pytest.mark.parametrize("role", [Role.ADMINISTRATOR, Role.VALIDATOR, Role.CLINICIAN])
def test_other_roles_are_refused(app, client, login_as, role, path):
    demo.load(app.config["BLOB_DIR"])
    login_as(role)
    assert client.get(path.format(id=_delivery("Résultats de laboratoire").public_id)).status_code == 403


@pytest.mark.parametrize("path", PAGES)
def test_anonymous_goes_to_login(app, client, path):
    demo.load(app.config["BLOB_DIR"])
    path = path.format(id=_delivery("Résultats de laboratoire").public_id)
    response = client.get(path)
    assert response.status_code == 302 and response.headers["Location"] == f"/login?next={path}"


def test_physicians_land_on_my_documents(client, login_as):
    from web.auth import landing_url

    account = login_as(Role.PHYSICIAN)
    with client.application.test_request_context():
        assert landing_url(Account.get_by_id(account.id)) == "/documents"


def test_the_menu_shows_the_physician_pages(client, demo_physician):
    html = client.get("/documents").get_data(as_text=True)
    for href in ("/documents", "/patients", "/profil", "/aide"):
        assert f'href="{href}"' in html


# -- another physician's, revoked, withheld, made up: the same 404 ---------------------------------------------------
def _revoked() -> Delivery:
    delivery = _delivery("Lettre de sortie – Cardiologie")
    return engine.fire(DELIVERY, delivery, "revoke", SYSTEM, reason="revoked")


@pytest.mark.parametrize("suffix", ["", "/voir", "/telecharger"])
def test_what_is_not_mine_is_the_same_404_and_an_audit_event(client, demo_physician, suffix):
    others = _delivery("Lettre de sortie – Pédiatrie")  # Dr Favre's
    withheld = _delivery("Note interne")
    waiting = _delivery("Compte rendu de consultation")
    revoked = _revoked()
    cases = {
        "other-physician": others.public_id,
        "state-withheld": withheld.public_id,
        "state-communicable": waiting.public_id,
        "state-revoked": revoked.public_id,
        "unknown": "made-up-id-0123",
    }
    pages = []
    for reason, public_id in cases.items():
        response = client.get(f"/documents/{public_id}{suffix}")
        assert response.status_code == 404
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Content-Type"].startswith("text/html")
        # The same page but for the address asked for (the language switch sends the visitor back to it).
        pages.append(_without_csrf(response.get_data(as_text=True)).replace(public_id, "ID"))
        event = _events("document.access_denied")[-1]
        details = json.loads(event.details)
        assert (event.outcome, event.actor_id, details["reason"], details["requested"]) == (
            "failure",
            demo_physician.id,
            reason,
            public_id,
        )
    assert len(set(pages)) == 1  # nothing tells a guessed id from another physician's
    assert len(_events("document.access_denied")) == len(cases)
    assert not _events("document.viewed") and not _events("document.downloaded")
    assert _stored(others).consulted_at is None


def test_a_revoked_document_leaves_the_list_at_the_next_request(client, demo_physician):
    assert "Lettre de sortie – Cardiologie" in client.get("/documents").get_data(as_text=True)
    _revoked()
    assert "Lettre de sortie – Cardiologie" not in client.get("/documents").get_data(as_text=True)


# -- the document page, the viewer, the download ----------------------------------------------------------------------
def test_the_document_page_shows_its_facts_and_frames_the_viewer(client, demo_physician):
    delivery = _delivery("Lettre de sortie – Cardiologie")
    html = client.get(f"/documents/{delivery.public_id}", headers=EN).get_data(as_text=True)
    assert "Martin Jeanne" in html and "11.02.1948" in html
    assert "Discharge summary" in html and "Dr Denis Clinicien" in html and "Hospital stay" in html
    assert f'<iframe class="document-viewer" src="/documents/{delivery.public_id}/voir"' in html
    assert f'href="/documents/{delivery.public_id}/telecharger"' in html
    opened = _events("document.opened")
    assert [(e.object_type, e.object_id) for e in opened] == [("delivery", str(delivery.id))]


def test_the_viewer_serves_the_verified_pdf_inline(client, demo_physician):
    delivery = _delivery("Lettre de sortie – Cardiologie")
    response = client.get(f"/documents/{delivery.public_id}/voir")
    assert response.status_code == 200
    assert response.data.startswith(b"%PDF-")
    assert hashlib.sha256(response.data).hexdigest() == delivery.document.sha256
    headers = response.headers
    assert headers["Content-Type"] == "application/pdf"
    assert headers["Content-Disposition"].startswith("inline; filename=")
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-store"
    policy = headers["Content-Security-Policy"]
    assert "sandbox" in policy and "default-src 'none'" in policy and "frame-ancestors 'self'" in policy
    assert headers["X-Frame-Options"] == "SAMEORIGIN"
    assert "Martin" not in headers["Content-Disposition"]  # no patient name in file names
    assert [e.object_id for e in _events("document.viewed")] == [str(delivery.id)]


def test_the_download_is_an_attachment(client, demo_physician):
    delivery = _delivery("Lettre de sortie – Cardiologie")
    response = client.get(f"/documents/{delivery.public_id}/telecharger")
    assert response.status_code == 200 and response.data.startswith(b"%PDF-")
    assert response.headers["Content-Disposition"].startswith("attachment; filename=")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert [e.object_id for e in _events("document.downloaded")] == [str(delivery.id)]


@pytest.mark.parametrize("suffix", ["/voir", "/telecharger"])
def test_a_pdf_that_does_not_match_its_digest_is_never_served(client, demo_physician, suffix, caplog):
    delivery = _delivery("Lettre de sortie – Cardiologie")
    Document.update(sha256="0" * 64).where(Document.id == delivery.document_id).execute()
    with caplog.at_level(logging.CRITICAL):
        response = client.get(f"/documents/{delivery.public_id}{suffix}")
    assert response.status_code == 500
    assert b"%PDF" not in response.data
    assert any("ALERT document integrity" in r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL)
    assert len(_events("document.integrity_failed")) == 1
    assert not _events("document.viewed") and not _events("document.downloaded")


def test_a_missing_blob_is_an_alert_too(client, demo_physician, caplog):
    delivery = _delivery("Lettre de sortie – Cardiologie")
    Document.update(blob_id="0" * 32).where(Document.id == delivery.document_id).execute()
    with caplog.at_level(logging.CRITICAL):
        assert client.get(f"/documents/{delivery.public_id}/voir").status_code == 500
    assert any("ALERT document integrity" in r.getMessage() for r in caplog.records)


def test_opening_the_page_fires_consult_once_and_the_list_does_not(client, demo_physician):
    delivery = _delivery("Lettre de sortie – Cardiologie")
    assert delivery.state in ("available", "notified")
    client.get("/documents")
    assert _stored(delivery).consulted_at is None and _stored(delivery).state == delivery.state
    client.get(f"/documents/{delivery.public_id}/voir")  # the frame alone does not count as opening
    assert _stored(delivery).consulted_at is None
    client.get(f"/documents/{delivery.public_id}")
    stored = _stored(delivery)
    assert stored.state == "consulted" and stored.consulted_at is not None
    client.get(f"/documents/{delivery.public_id}")
    consults = TransitionLog.select().where(
        (TransitionLog.workflow == "delivery")
        & (TransitionLog.object_id == delivery.id)
        & (TransitionLog.trigger == "consult")
    )
    assert [(log.actor_id, log.actor_role) for log in consults] == [(demo_physician.id, "physician")]
    assert _stored(delivery).consulted_at == stored.consulted_at
    assert len(_events("delivery.consult")) == 1 and len(_events("document.opened")) == 2


# -- Mes patients -----------------------------------------------------------------------------------------------------
def test_my_patients_counts_documents_and_unread(client, deliver):
    deliver("Letter to Aebi", family_name="Aebi")
    html = client.get("/patients").get_data(as_text=True)
    martin = Patient.get(Patient.family_name == "Martin")
    row = re.search(rf'<tr id="patient-{martin.public_id}".*?</tr>', html, re.S).group(0)
    assert re.findall(r'<td class="num">(?:<strong[^>]*>)?(\d+)', row) == ["2", "2"]
    assert f'href="/documents?patient={martin.public_id}&amp;filtre=all"' in row
    assert "Rossi" not in html  # Dr Favre's patient
    assert html.index("Aebi") < html.index("Martin")


@pytest.mark.parametrize(
    ("choice", "shown"),
    [("all", {"Martin", "Aebi", "Old"}), ("with_unread", {"Aebi", "Old"}), ("last_90_days", {"Martin", "Aebi"})],
)
def test_my_patients_follows_the_profile_setting(client, deliver, demo_physician, choice, shown):
    with time_machine.travel(utcnow() - dt.timedelta(days=200), tick=False):
        deliver("Old letter", family_name="Old")
    deliver("Letter to Aebi", family_name="Aebi")
    for title in ("Lettre de sortie – Cardiologie", "Résultats de laboratoire"):
        engine.fire(DELIVERY, _delivery(title), "consult", Actor(Role.PHYSICIAN, demo_physician.id))
    physician = demo_physician.physician
    physician.patients_filter = choice
    physician.save()
    html = client.get("/patients").get_data(as_text=True)
    assert {name for name in ("Martin", "Aebi", "Old") if f"{name} " in html} == shown


# -- Mon profil -------------------------------------------------------------------------------------------------------
def _profile_form(client, **changes) -> dict:
    html = client.get("/profil").get_data(as_text=True)
    form = {
        "csrf_token": csrf_token_in(html),
        "notification_mode": "each",
        "specialties": ["cardiology", "general-internal-medicine"],
        "patients_filter": "all",
        "documents_filter": "all",
        "landing_page": "documents",
        "action": "confirm",
    }
    form.update(changes)
    return {k: v for k, v in form.items() if v is not None}


def _settings(account: Account) -> tuple:
    physician = Account.get_by_id(account.id).physician
    codes = sorted(s.code for s in physician.specialties())
    return (
        physician.notification_mode,
        physician.patients_filter,
        physician.documents_filter,
        physician.landing_page,
        codes,
    )


def test_the_profile_shows_the_six_settings(client, demo_physician):
    html = client.get("/profil", headers=EN).get_data(as_text=True)
    for name in ("notification_mode", "patients_filter", "documents_filter", "landing_page"):
        assert f'name="{name}"' in html
    assert html.count('name="specialties"') == Specialty.select().count()
    assert 'id="specialty-cardiology" name="specialties" value="cardiology" checked' in html
    assert 'href="/profil/mot-de-passe"' in html and 'href="/profil/authentificateur"' in html
    assert "claire@demo.myhug.ch" in html and "+41790000001" in html
    assert 'name="action" value="confirm"' in html
    assert 'id="landing_page-documents" name="landing_page" value="documents" checked' in html


def test_the_profile_is_saved_by_confirm_and_shows_the_chosen_page(client, demo_physician):
    before = _settings(demo_physician)
    form = _profile_form(
        client,
        notification_mode="digest",
        specialties=["cardiology", "nephrology"],
        patients_filter="with_unread",
        documents_filter="unread",
        landing_page="patients",
    )
    response = client.post("/profil", data=form)
    assert response.status_code == 302 and response.headers["Location"] == "/patients"
    assert _settings(demo_physician) == ("digest", "with_unread", "unread", "patients", ["cardiology", "nephrology"])
    assert before != _settings(demo_physician)
    event = _events("profile.changed")[-1]
    changed = json.loads(event.details)["changed"]
    assert changed["landing_page"] == {"from": "documents", "to": "patients"}
    assert changed["specialties"] == {"added": ["nephrology"], "removed": ["general-internal-medicine"]}
    assert "claire" not in event.details.lower()  # what changed, not who the physician is


def test_nothing_is_saved_without_confirm(client, demo_physician):
    before = _settings(demo_physician)
    client.get("/profil?landing_page=patients&notification_mode=none")
    response = client.post("/profil", data=_profile_form(client, landing_page="patients", action=None))
    assert response.status_code == 200
    assert "Nothing was saved" in client.post(
        "/profil", data=_profile_form(client, landing_page="profile", action=None), headers=EN
    ).get_data(as_text=True)
    assert _settings(demo_physician) == before
    assert not _events("profile.changed")


@pytest.mark.parametrize(
    "changes",
    [
        {"notification_mode": "sms"},
        {"landing_page": "/admin"},
        {"patients_filter": None},
        {"documents_filter": "everything"},
        {"specialties": []},
        {"specialties": ["cardiology", "astrology"]},
    ],
)
def test_invalid_settings_are_refused(client, demo_physician, changes):
    before = _settings(demo_physician)
    response = client.post("/profil", data=_profile_form(client, **changes), headers=EN)
    assert response.status_code == 422
    assert 'role="alert"' in response.get_data(as_text=True)
    assert _settings(demo_physician) == before


def test_the_profile_needs_the_csrf_token(client, demo_physician):
    before = _settings(demo_physician)
    form = _profile_form(client, landing_page="patients")
    del form["csrf_token"]
    assert client.post("/profil", data=form).status_code == 400
    assert _settings(demo_physician) == before


def test_an_unchanged_profile_writes_no_audit_event(client, demo_physician):
    response = client.post("/profil", data=_profile_form(client))
    assert response.status_code == 302 and response.headers["Location"] == "/documents"
    assert not _events("profile.changed")
    assert PhysicianSpecialty.select().where(PhysicianSpecialty.physician == demo_physician.physician_id).count() == 2


# -- Aide -------------------------------------------------------------------------------------------------------------
def test_the_help_page_gives_the_contact_details(client):
    html = client.get("/aide", headers=EN).get_data(as_text=True)
    assert "myhug@hcuge.ch" in html and "Log in to send a message" in html
    assert 'href="/aide/documents-manquants"' in html


def test_a_help_message_is_stored_and_e_mailed_to_support(client, demo_physician):
    html = client.get("/aide", headers=EN).get_data(as_text=True)
    assert "Do not write any patient data" in html
    response = client.post(
        "/aide",
        data={"csrf_token": csrf_token_in(html), "subject": "Notifications\r\nBcc: x@y", "body": "Plus d'e-mails."},
    )
    assert response.status_code == 302 and response.headers["Location"] == "/aide"
    message = SupportMessage.get()
    assert (message.account_id, message.subject, message.body) == (
        demo_physician.id,
        "Notifications Bcc: x@y",
        "Plus d'e-mails.",
    )
    mails = list(OutboxMessage.select().where(OutboxMessage.template == "support_message"))
    assert len(mails) == 1
    assert mails[0].recipient == "myhug@hcuge.ch" and "\n" not in mails[0].subject
    assert "Plus d'e-mails." in mails[0].body and "cdupont" in mails[0].body
    assert len(_events("support.message_sent")) == 1


@pytest.mark.parametrize(
    "form", [{"subject": "", "body": "x"}, {"subject": "x", "body": "  "}, {"subject": "x" * 201, "body": "x"}]
)
def test_an_incomplete_help_message_is_refused(client, demo_physician, form):
    token = csrf_token_in(client.get("/aide").data)
    assert client.post("/aide", data={"csrf_token": token, **form}).status_code == 422
    assert (
        SupportMessage.select().count() == 0
        and OutboxMessage.select().where(OutboxMessage.template == "support_message").count() == 0
    )


def test_anonymous_visitors_cannot_send_a_message(client):
    token = csrf_token_in(client.get("/aide").data)
    response = client.post("/aide", data={"csrf_token": token, "subject": "Hello", "body": "Hi"})
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    assert SupportMessage.select().count() == 0


def test_help_messages_are_rate_limited(database, tmp_path):
    from web import create_app

    app = create_app(settings(database, INSTANCE_PATH=str(tmp_path / "i"), HELP_MESSAGE_RATE_LIMIT="2 per hour"))
    demo.load(app.config["BLOB_DIR"])
    client = app.test_client()
    account = Account.get(Account.username == "cdupont")
    client.set_cookie(sessions.COOKIE_NAME, sessions.start(account, "127.0.0.1", "pytest", "password+sms"))
    token = csrf_token_in(client.get("/aide").data)
    statuses = [
        client.post("/aide", data={"csrf_token": token, "subject": f"S{n}", "body": "B"}).status_code for n in range(3)
    ]
    assert statuses == [302, 302, 429]
    assert SupportMessage.select().count() == 2


def test_the_checklist_is_public(client):
    html = client.get("/aide/documents-manquants", headers=EN).get_data(as_text=True)
    assert "Documents are never sent by e-mail" in html
    assert "designated you as the recipient physician" in html
    assert "Your account today" not in html


def test_the_checklist_tells_the_physician_their_own_situation(client, demo_physician):
    physician = demo_physician.physician
    physician.notification_mode = "none"
    physician.email_bounced_at = utcnow()
    physician.save()
    response = client.get("/aide/documents-manquants", headers=EN)
    assert response.headers["Cache-Control"] == "no-store"
    html = response.get_data(as_text=True)
    situation = html[html.index("Your account today") :]
    assert "You receive no e-mail when a document arrives." in situation
    assert "came back undelivered (since" in situation
    assert re.search(r'id="situation-account">\s*Active', situation)
    assert "2 documents, 2 unread" in situation
    # The consultation note waits for Jeanne Martin's authorization; nothing names her or the document.
    assert "1 document waiting for the patient's authorization" in unescape(situation)
    assert "Martin" not in situation and "Compte rendu" not in situation and "Note interne" not in situation


# -- a hard bounce: shown to the physician, who may resume notifications ----------------------------------------------
def test_a_bounced_address_is_shown_in_my_documents_and_my_profile_and_can_be_confirmed(client, demo_physician):
    from models import Physician, utcnow

    physician_id = demo_physician.physician_id
    assert 'id="email-bounce"' not in client.get("/documents").get_data(as_text=True)
    Physician.record_bounce(physician_id, "SMTP 552", utcnow())

    documents = client.get("/documents").get_data(as_text=True)
    assert 'id="email-bounce"' in documents and "SMTP 552" in documents
    profile = client.get("/profil").get_data(as_text=True)
    assert "refusées par votre serveur de messagerie" in profile
    response = client.post("/profil/adresse-confirmee", data={"csrf_token": csrf_token_in(profile)})

    assert response.status_code == 303 and response.headers["Location"].endswith("/profil")
    assert Physician.get_by_id(physician_id).email_bounced_at is None
    assert len(_events("physician.email_confirmed")) == 1
    assert 'id="email-bounce"' not in client.get("/profil").get_data(as_text=True)


def test_confirming_without_a_bounce_changes_nothing(client, demo_physician):
    profile = client.get("/profil").get_data(as_text=True)
    response = client.post("/profil/adresse-confirmee", data={"csrf_token": csrf_token_in(profile)})
    assert response.status_code == 303
    assert _events("physician.email_confirmed") == []
