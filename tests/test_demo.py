"""`flask demo` data: every workflow in a telling state, built through the engine and the documents' service layer,
idempotent."""

from __future__ import annotations

from models import Account, AuditEvent, Delivery, Document, EnrollmentApplication, Physician, TransitionLog
from security import audit
from security.encryption import BlobStore, keyring
from security.passwords import verify_password
from tests.web.conftest import settings
from web import create_app, demo, fhir
from workflows import documents


def _state(title: str, username: str) -> str:
    physician = Account.get(Account.username == username).physician
    delivery = Delivery.get_or_none(
        (Delivery.document == Document.get(Document.title == title)) & (Delivery.physician == physician)
    )
    return delivery.state if delivery else "none"


def test_demo_data_is_built_through_the_workflows_and_loads_once(database, tmp_path):
    logins = demo.load(str(tmp_path))
    assert demo.load(str(tmp_path)) == logins
    assert Account.select().count() == len(logins) == 6
    for username, password, _role, _what in logins:
        account = Account.get(Account.username == username)
        assert account.state == "active" and verify_password(account.password_hash, password)
    states = sorted(d.state for d in Delivery.select())
    assert states == ["available", "available", "available", "communicable", "withheld"]
    assert sorted(a.state for a in EnrollmentApplication.select()) == ["submitted", "transmitted"]
    assert TransitionLog.select().count() > 20
    assert audit.verify().ok


def test_demo_documents_arrive_as_the_dpi_sends_them(database, tmp_path):
    demo.load(str(tmp_path))
    # Each one received and each designation recorded by the service layer, in the DPI's name, once.
    received = AuditEvent.select().where(AuditEvent.action == "document.receive")
    assert received.count() == Document.select().count() == 5
    assert {e.actor_role for e in received} == {"dpi"}
    assert AuditEvent.select().where(AuditEvent.action == "designation.record").count() == 3
    # Every delivery was created by the delivery machine, none written around it.
    created = TransitionLog.select().where((TransitionLog.workflow == "delivery") & (TransitionLog.trigger == "create"))
    assert created.count() == Delivery.select().count()

    # What the clinic's explainer has to show, and what each physician got.
    assert _state("Lettre de sortie – Cardiologie", "cdupont") == "available"
    assert _state("Résultats de laboratoire", "cdupont") == "available"
    assert _state("Lettre de sortie – Pédiatrie", "mfavre") == "available"
    assert _state("Lettre de sortie – Cardiologie", "mfavre") == "none"
    dupont = Physician.get(Physician.last_name == "Dupont")
    assert documents.explain(Document.get(Document.title == "Note interne"), dupont).code == "not-communicable"
    consultation = Document.get(Document.title == "Compte rendu de consultation")
    assert documents.explain(consultation, dupont).code == "not-authorized"

    # The PDFs are stored encrypted where the app reads them, match their digest, and show no "?" for a dash.
    letter = Document.get(Document.title == "Lettre de sortie – Cardiologie")
    pdf = BlobStore(str(tmp_path), keyring.require()).get(letter.blob_id, documents.blob_context(letter))
    assert pdf == demo.minimal_pdf(letter.title) and b"(Lettre de sortie - Cardiologie)" in pdf
    assert documents.Settings.blob_dir != str(tmp_path)  # the load left the app's store as it found it


def test_minimal_pdf_is_latin_1_with_its_own_font_encoding():
    pdf = demo.minimal_pdf("Lettre – « Pédiatrie » (suite) \\ fin")
    assert pdf.startswith(b"%PDF-1.4") and b"/WinAnsiEncoding" in pdf
    assert b"(Lettre - \xab P\xe9diatrie \xbb \\(suite\\) \\\\ fin)" in pdf
    assert b"?" not in pdf.split(b"stream")[1]


def test_the_readme_delivery_status_example_answers_for_the_demo_documents(database, tmp_path):
    """README: `flask dpi create-client demo`, then `$delivery-status` of a demo document with its bearer token."""
    app = create_app(settings(database, INSTANCE_PATH=str(tmp_path / "instance"), BLOB_DIR=str(tmp_path / "blobs")))
    with app.app_context():
        demo.load(app.config["BLOB_DIR"])
        token = fhir.create_client("demo")
    consultation = Document.get(Document.title == "Compte rendu de consultation")
    dupont = Physician.get(Physician.last_name == "Dupont")
    client, bearer = app.test_client(), {"Authorization": f"Bearer {token}"}
    found = client.get(f"/fhir/DocumentReference?identifier={demo.DPI_DOCUMENTS}|DOC-DEMO-0004", headers=bearer)
    assert [e["resource"]["id"] for e in found.get_json()["entry"]] == [consultation.public_id]
    answer = client.get(
        f"/fhir/DocumentReference/{consultation.public_id}/$delivery-status?practitioner={dupont.gln}", headers=bearer
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    [delivery] = answer.get_json()["parameter"]
    assert delivery["part"] == [
        {"name": "practitioner", "valueIdentifier": {"system": "urn:oid:2.51.1.3", "value": dupont.gln}},
        {"name": "state", "valueCode": "communicable"},
        {"name": "reason", "valueCode": "not-authorized"},
    ]
