"""In Chromium: a physician logs in with password and SMS code, finds the new document first in "Mes documents",
opens it (the PDF inline), comes back to find it read, then changes "Mon profil" and lands on the page chosen."""

from __future__ import annotations

import re

from models import Account, Delivery, Document, Physician, Role
from tests.browser.conftest import screenshot
from tests.browser.test_pages import last_code, log_in
from web import demo
from workflows import DELIVERY, Actor, engine


def _delivery(title: str) -> Delivery:
    return Delivery.select().join(Document).where(Document.title == title).get()


def test_physician_reads_a_new_document_and_sets_the_profile(live_server, page):
    demo.load(live_server.app.config["BLOB_DIR"])
    account = Account.get(Account.username == "cdupont")
    # Read yesterday: the laboratory results. New today: the discharge letter.
    engine.fire(DELIVERY, _delivery("Résultats de laboratoire"), "consult", Actor(Role.PHYSICIAN, account.id))
    letter = _delivery("Lettre de sortie – Cardiologie")

    log_in(page, live_server.url, "cdupont")
    page.get_by_label(re.compile("Code reçu|Code received", re.I)).fill(last_code(account.mobile))
    page.get_by_role("button", name=re.compile("Se connecter|Log in")).click()
    page.wait_for_url(re.compile(r"/documents$"))

    # Mes documents: the new document first, marked as new.
    rows = page.locator("table tbody tr")
    assert rows.count() == 2
    assert rows.first.get_attribute("id") == f"delivery-{letter.public_id}"
    assert rows.first.get_attribute("data-unread") == "true"
    assert rows.nth(1).get_attribute("data-unread") is None
    screenshot(page, "mes-documents")

    # The document page: its facts and the PDF in the frame, served inline from our own site.
    with page.expect_response(re.compile(r"/voir$")) as viewer:
        rows.first.get_by_role("link").click()
    page.wait_for_url(re.compile(rf"/documents/{letter.public_id}$"))
    pdf = viewer.value
    assert pdf.status == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.headers["content-disposition"].startswith("inline")
    assert page.get_by_role("heading", level=1).inner_text() == "Lettre de sortie – Cardiologie"
    assert page.locator("iframe.document-viewer").count() == 1
    page.wait_for_timeout(500)  # let the viewer paint before the picture
    screenshot(page, "document")
    assert Delivery.get_by_id(letter.id).state == "consulted"

    # Back to the list: no-store makes the browser ask again, and the letter is now read.
    page.go_back()
    page.wait_for_url(re.compile(r"/documents$"))
    row = page.locator(f"#delivery-{letter.public_id}")
    assert row.get_attribute("data-unread") is None
    assert page.locator("tr[data-unread]").count() == 0

    # Mes patients.
    page.get_by_role("navigation", name=re.compile("Menu principal|Main menu")).get_by_role(
        "link", name=re.compile("Mes patients|My patients")
    ).click()
    page.wait_for_url(re.compile(r"/patients$"))
    assert page.locator("table tbody tr").count() == 1 and "Martin" in page.locator("table tbody").inner_text()
    screenshot(page, "mes-patients")

    # Mon profil: daily digest, one more specialty, "Mes patients" after login; saved by « Confirmer ».
    page.get_by_role("link", name=re.compile("Mon profil|My profile")).first.click()
    page.wait_for_url(re.compile(r"/profil$"))
    page.check("#notification_mode-digest")
    page.check("#specialty-nephrology")
    page.check("#landing_page-patients")
    screenshot(page, "mon-profil")
    page.get_by_role("button", name="Confirmer").click()
    page.wait_for_url(re.compile(r"/patients$"))
    assert page.get_by_role("status").first.is_visible()
    physician = Physician.get_by_id(account.physician_id)
    assert (physician.notification_mode, physician.landing_page) == ("digest", "patients")
    assert "nephrology" in {s.code for s in physician.specialties()}
