"""In Chromium: a clinician logs in with password and SMS code, finds the demo patient, records the designation of
a physician for an ambulatory episode (found through the physician directory) and sees the document that waited
reach that physician; then sends another document manually, with the patient's agreement, to another physician."""

from __future__ import annotations

import re

from models import Account, Delivery, Document, ManualAuthorization, Patient, Physician, Role, Stay
from security.passwords import hash_password
from tests.browser.conftest import screenshot
from tests.browser.test_pages import last_code, log_in
from web import demo

MOBILE = "+41790000321"


def _delivery(document: Document, physician: Physician) -> Delivery | None:
    return Delivery.get_or_none((Delivery.document == document.id) & (Delivery.physician == physician.id))


def _choose_physician(page, name: str, physician: Physician) -> None:
    """Search the directory from the stay's or document's page, then choose that physician in the results."""
    page.locator("#physician-search-q").fill(name)
    page.locator("form.physician-search button[type=submit]").click()
    page.wait_for_url(re.compile(r"/clinique/medecins\?"))
    row = page.locator(f"#physician-{physician.public_id}")
    assert row.locator(".account-state--active").count() == 1  # the directory says their account is active
    row.get_by_role("link").click()


def test_clinician_records_a_designation_and_sends_a_document_manually(live_server, page, make_account):
    demo.load(live_server.app.config["BLOB_DIR"])
    account = make_account(Role.CLINICIAN, username="soignante")
    Account.update(password_hash=hash_password(demo.DEMO_PASSWORD), mobile=MOBILE).where(
        Account.id == account.id
    ).execute()
    martin = Patient.get(Patient.family_name == "Martin")
    episode = Stay.get(Stay.dpi_value == "S-2026-1002")  # ambulatory: Dr Dupont designated, not authorized
    consultation = Document.get(Document.title == "Compte rendu de consultation")
    letter = Document.get(Document.title == "Lettre de sortie – Cardiologie")
    dupont = Physician.get(Physician.last_name == "Dupont")
    favre = Physician.get(Physician.last_name == "Favre")
    assert _delivery(consultation, favre) is None and _delivery(letter, favre) is None

    # Password, then the code sent by SMS; a clinician lands on the clinic.
    log_in(page, live_server.url, "soignante")
    page.get_by_label(re.compile("Code reçu|Code received", re.I)).fill(last_code(MOBILE))
    page.get_by_role("button", name=re.compile("Se connecter|Log in")).click()
    page.wait_for_url(re.compile(r"/clinique$"))

    # Find the patient, open her page: her stays, who is designated for each, their documents.
    page.locator("#patient-q").fill("martin")
    page.locator("form.patient-search button[type=submit]").click()
    page.locator(f"#patient-{martin.public_id}").get_by_role("link").click()
    page.wait_for_url(re.compile(rf"/clinique/patients/{martin.public_id}$"))
    assert page.locator("section.stay").count() == 2
    screenshot(page, "clinic-patient")

    # The ambulatory episode: the patient designated Dr Favre and authorized electronic sending.
    page.locator(f"#stay-section-{episode.public_id} a[href$='/sejours/{episode.public_id}']").click()
    page.wait_for_url(re.compile(rf"/clinique/sejours/{episode.public_id}$"))
    _choose_physician(page, "Favre", favre)
    page.wait_for_url(re.compile(rf"/clinique/sejours/{episode.public_id}\?medecin={favre.public_id}"))
    form = page.locator("#record-form")
    form.locator("input[name=confirm]").check()
    form.locator("input[name=authorized]").check()
    form.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(rf"/clinique/sejours/{episode.public_id}$"))
    assert page.get_by_role("status").first.is_visible()
    row = page.locator(f"#designation-{favre.public_id}")
    assert row.count() == 1 and row.locator(".designation-status").count() == 1
    screenshot(page, "clinic-designation")

    # The consultation report that waited reached Dr Favre; for Dr Dupont it still waits for the authorization.
    assert _delivery(consultation, favre).state == "available"
    assert _delivery(consultation, dupont).state == "communicable"
    page.locator(f"#document-{consultation.public_id}").get_by_role("link").click()
    page.wait_for_url(re.compile(rf"/clinique/documents/{consultation.public_id}$"))
    recipients = page.locator("#recipients-table")
    assert recipients.locator(f"#recipient-{favre.gln}.delivery-state--available").count() == 1
    assert recipients.locator(f"#recipient-{dupont.gln}.delivery-state--communicable").count() == 1

    # Another document, the cardiology discharge letter: sent manually to Dr Favre with the patient's agreement.
    page.locator(f"a[href$='/clinique/patients/{martin.public_id}']").first.click()
    page.wait_for_url(re.compile(rf"/clinique/patients/{martin.public_id}$"))
    page.locator(f"#document-{letter.public_id}").get_by_role("link").click()
    page.wait_for_url(re.compile(rf"/clinique/documents/{letter.public_id}$"))
    _choose_physician(page, "Favre", favre)
    page.wait_for_url(re.compile(rf"/clinique/documents/{letter.public_id}\?medecin={favre.public_id}"))
    assert page.locator("#explanation [data-reason]").get_attribute("data-reason") == "not-designated"
    send = page.locator("#manual-send")
    send.locator("input[name=agreed]").check()
    send.locator("#manual-note").fill("Accord oral de la patiente lors de la consultation de contrôle.")
    screenshot(page, "clinic-document")  # recipients, the explainer's first unmet rule, the manual send filled in
    send.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(rf"/clinique/documents/{letter.public_id}\?medecin={favre.public_id}"))
    page.locator("#explanation [data-reason=reached]").wait_for()

    assert _delivery(letter, favre).state == "available"
    authorization = ManualAuthorization.get(
        (ManualAuthorization.document == letter.id) & (ManualAuthorization.physician == favre.id)
    )
    assert authorization.recorded_by_id == account.id and authorization.note.startswith("Accord oral")
    recipients = page.locator("#recipients-table")
    assert recipients.locator(f"#recipient-{favre.gln}.delivery-state--available").count() == 1
    assert recipients.locator(f"#recipient-{dupont.gln}.delivery-state--available").count() == 1
    assert page.locator(".delivery-history").count() == 2
