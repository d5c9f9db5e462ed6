"""The physician's access history of a document: the events about their own delivery only, anyone else shown."""

from __future__ import annotations

import hashlib
import re

import pytest

from models import AuditEvent, Delivery, Designation, Document, DocumentType, Patient, Role, Stay
from security import audit, sessions
from security.encryption import BlobStore, keyring
from tests.conftest import statements
from web import demo
from workflows import DELIVERY, SYSTEM, engine
from workflows.delivery import advance

# The pages' new sentences are asked for in English: the French catalogue gets them when the translations are merged.
EN = {"Accept-Language": "en"}


@pytest.fixture
def deliver(app, make_physician, make_account):
    """deliver(physician, document=None) → a delivery of a discharge summary (a new one unless `document` is
    given) that reached the physician's space through the delivery workflow, its PDF stored like the DPI's."""
    store = BlobStore(app.config["BLOB_DIR"], keyring.require())
    counter = iter(range(1, 10_000))

    def make(physician, document: Document | None = None, *, dpi_value: str | None = None) -> Delivery:
        n = next(counter)
        if document is None:
            patient = Patient.create(
                dpi_system="urn:test", dpi_value=dpi_value or f"PT{n}", family_name="Zeller", given_name="Eva"
            )
            stay = Stay.create(dpi_system="urn:test", dpi_value=f"ST{n}", patient=patient)
            pdf = demo.minimal_pdf(f"Lettre {n}")
            document = Document.create(
                dpi_system="urn:test",
                dpi_value=f"DOC{n}",
                patient=patient,
                stay=stay,
                type=DocumentType.get(DocumentType.loinc == "18842-5"),
                title=f"Lettre de sortie {n}",
                sha256=hashlib.sha256(pdf).hexdigest(),
                size_bytes=len(pdf),
            )
            document.blob_id = store.put(pdf, f"document:{document.public_id}")
            document.save()
        Designation.create(stay=document.stay, physician=physician, authorized=True)
        delivery = engine.create(DELIVERY, Delivery(document=document, physician=physician), "create", SYSTEM)
        return advance(delivery)

    return make


@pytest.fixture
def physician_client(app, make_physician, make_account):
    """physician_client() → (client, account): a physician with an active account, logged in on a client of
    their own (two physicians act side by side in these tests)."""

    def make():
        physician = make_physician()
        account = make_account(Role.PHYSICIAN, physician=physician)
        client = app.test_client()
        client.set_cookie(sessions.COOKIE_NAME, sessions.start(account, "127.0.0.1", "pytest", "password+sms"))
        return client, account

    return make


def history_rows(client, delivery: Delivery) -> list[str]:
    response = client.get(f"/documents/{delivery.public_id}/historique", headers=EN)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    html = response.get_data(as_text=True)
    return re.findall(r'<tr class="history-[^"]*">(.*?)</tr>', html, re.S)


def test_history_shows_my_delivery_from_arrival_to_download(client, physician_client, deliver):
    client, account = physician_client()
    delivery = deliver(account.physician)
    page = client.get(f"/documents/{delivery.public_id}").get_data(as_text=True)
    assert f'href="/documents/{delivery.public_id}/historique"' in page  # linked from the document page
    assert client.get(f"/documents/{delivery.public_id}/telecharger").status_code == 200

    rows = history_rows(client, delivery)
    text = " ".join(rows)
    # The newest first: the download, the opening and the first consultation (both by me), then the arrival.
    assert "PDF downloaded" in rows[0] and "You" in rows[0]
    assert "Put in “Mes documents”" in text and "System" in text  # the portal put it in my space
    assert "Document opened" in text and "Opened by the physician" in text
    expected = AuditEvent.about_delivery(delivery.id).count()
    assert len(rows) == expected
    assert "history--someone-else" not in client.get(f"/documents/{delivery.public_id}/historique").get_data(
        as_text=True
    )


def test_another_physicians_copy_of_the_same_document_never_shows(physician_client, deliver):
    mine_client, me = physician_client()
    other_client, other = physician_client()
    mine = deliver(me.physician)
    theirs = deliver(other.physician, mine.document)  # the same document, another recipient
    assert other_client.get(f"/documents/{theirs.public_id}/telecharger").status_code == 200
    downloads = AuditEvent.select().where(AuditEvent.action == "document.downloaded").count()
    assert downloads == 1

    rows = history_rows(mine_client, mine)
    assert not any("PDF downloaded" in row for row in rows)  # their download is about their delivery
    assert len(rows) == AuditEvent.about_delivery(mine.id).count()
    # …and they cannot read my history: the same 404 as for any delivery that is not theirs, and it is audited.
    response = other_client.get(f"/documents/{mine.public_id}/historique")
    assert response.status_code == 404
    refused = AuditEvent.select().where(AuditEvent.action == "document.access_denied").get()
    assert (refused.actor_id, refused.object_id, refused.outcome) == (other.id, str(mine.id), "failure")


def test_anyone_else_near_my_delivery_shows_by_role(physician_client, deliver, make_account):
    mine_client, me = physician_client()
    other_client, _other = physician_client()
    mine = deliver(me.physician)
    # Another physician tries my document (refused, recorded about my delivery); an administrator's access.
    assert other_client.get(f"/documents/{mine.public_id}").status_code == 404
    admin = make_account(Role.ADMINISTRATOR)
    audit.record("document.viewed", actor_id=admin.id, actor_role=admin.role, object_type="delivery", object_id=mine.id)

    html = mine_client.get(f"/documents/{mine.public_id}/historique", headers=EN).get_data(as_text=True)
    others = re.findall(r'<tr class="[^"]*history--someone-else">(.*?)</tr>', html, re.S)
    assert len(others) == 2
    assert "Administrator" in others[0] and "PDF viewed" in others[0]
    assert "Physician" in others[1] and "Access refused" in others[1] and "Failure" in others[1]
    assert admin.username not in html and admin.full_name not in html  # staff by role, never by name


def test_a_revocation_shows_once_the_delivery_is_back(physician_client, deliver):
    client, account = physician_client()
    delivery = deliver(account.physician)
    engine.fire(DELIVERY, Delivery.get_by_id(delivery.id), "revoke", SYSTEM, reason="not-authorized")
    # Revoked: out of the space, its history too (the same 404 as the document page).
    assert client.get(f"/documents/{delivery.public_id}/historique").status_code == 404
    advance(Delivery.get_by_id(delivery.id))  # the authorization still holds: reinstated, back in the space
    assert Delivery.get_by_id(delivery.id).state in Delivery.VISIBLE_STATES
    text = " ".join(history_rows(client, delivery))
    assert "Revoke" in text and "Reinstate" in text


def test_unknown_or_foreign_ids_are_404(physician_client, deliver):
    client, _account = physician_client()
    _other_client, other = physician_client()
    theirs = deliver(other.physician)
    assert client.get(f"/documents/{theirs.public_id}/historique").status_code == 404
    assert client.get("/documents/nothing-here/historique").status_code == 404


@pytest.mark.parametrize("role", [Role.ADMINISTRATOR, Role.CLINICIAN, Role.VALIDATOR])
def test_only_physicians_have_a_history_page(client, login_as, physician_client, deliver, role):
    _physician_client, physician = physician_client()
    delivery = deliver(physician.physician)
    login_as(role)
    assert client.get(f"/documents/{delivery.public_id}/historique").status_code == 403


def test_the_page_costs_the_same_queries_for_a_long_history(physician_client, deliver):

    client, account = physician_client()
    delivery = deliver(account.physician)

    def queries() -> int:
        with statements() as seen:
            assert client.get(f"/documents/{delivery.public_id}/historique").status_code == 200
        return len(seen)

    few = queries()
    for _ in range(30):
        client.get(f"/documents/{delivery.public_id}")
    assert queries() == few
