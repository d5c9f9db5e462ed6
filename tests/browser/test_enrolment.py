"""The seven steps of the enrolment in Chromium, with three people in three browsers: the applicant, a validator at
the AMG desk and an administrator of the e-health service. E-mails come from a real SMTP server (aiosmtpd), SMS codes
from the outbox. Every step is photographed for the README (docs/screenshots/enrol-*.png)."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from jobs.tasks import dispatch_outbox
from models import Account, EnrollmentApplication, OutboxMessage, Role
from tests.browser.conftest import screenshot, serve
from tests.smtp import Mailbox
from tests.web.conftest import settings
from web import create_app

APPLICANT_EMAIL = "sophie.bernard@cabinet-plainpalais.ch"
APPLICANT_MOBILE = "+41791112233"
NEW_PASSWORD = "le jet d'eau monte à 140 mètres"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64  # a scanned ID copy: PNG by its first bytes


@pytest.fixture
def portal(database, tmp_path, smtp_server):
    app = create_app(settings(database, INSTANCE_PATH=str(tmp_path / "instance"), **smtp_server.settings))
    with serve(app) as server:
        yield server


def deliver_mail(portal) -> None:
    """What the scheduler does every few seconds: send the outbox to the SMTP server."""
    with portal.app.app_context():
        dispatch_outbox(portal.app.config)


def last_sms(mobile: str) -> str:
    message = (
        OutboxMessage.select()
        .where((OutboxMessage.channel == "sms") & (OutboxMessage.recipient == mobile))
        .order_by(OutboxMessage.id.desc())
        .get()
    )
    return re.search(r"\b(\d{6})\b", message.body).group(1)


def log_in(page, base: str, username: str, password: str, mobile: str) -> None:
    page.goto(f"{base}/login")
    page.locator("#username").fill(username)
    page.locator("#password").fill(password)
    page.locator("form.form button[type=submit]").first.click()
    page.wait_for_url(re.compile(r"/login/code$"))
    page.locator("#code").fill(last_sms(mobile))
    page.locator("form.form button[type=submit]").first.click()
    page.wait_for_load_state("networkidle")


def staff(make_account, role, username, mobile, **kwargs):
    account = make_account(role, username=username, **kwargs)
    Account.update(mobile=mobile).where(Account.id == account.id).execute()
    return account


def test_the_seven_steps_with_three_people(browser, portal, smtp_server, make_account, tmp_path):
    validator = staff(make_account, Role.VALIDATOR, "chantal.amg", "+41790000501")
    admin = staff(make_account, Role.ADMINISTRATOR, "alice.cyber", "+41790000502")
    contexts = [browser.new_context(locale="fr-CH", viewport={"width": 1280, "height": 900}) for _ in range(3)]
    applicant_page, desk_page, admin_page = (context.new_page() for context in contexts)
    for page in (applicant_page, desk_page, admin_page):
        page.set_default_timeout(10_000)
    base = portal.url
    tomorrow = (dt.date.today() + dt.timedelta(days=1)).isoformat()

    # The desk opens appointment slots for tomorrow morning.
    log_in(desk_page, base, validator.username, validator.issued_password, "+41790000501")
    desk_page.goto(f"{base}/guichet/creneaux")
    desk_page.locator("#desk").select_option("amg")
    desk_page.locator("#day").fill(tomorrow)
    desk_page.locator("#start").fill("09:00")
    desk_page.locator("#end").fill("10:00")
    desk_page.locator("#length").fill("20")
    desk_page.locator("form[action$='/guichet/creneaux'] button[type=submit]").click()
    desk_page.wait_for_load_state("networkidle")

    # 1. The applicant fills in section 1 and follows the e-mailed link.
    page = applicant_page
    page.goto(f"{base}/inscription")
    page.locator("#last_name").fill("Bernard")
    page.locator("#first_name").fill("Sophie")
    page.locator("#date_of_birth").fill("1982-06-04")
    page.locator("#gln").fill("7601000002013")
    page.locator("#specialties-first").check()
    page.locator("#practice_address").fill("Rue de Carouge 12\n1205 Genève")
    page.locator("#mobile").fill("079 111 22 33")
    page.locator("#email").fill(APPLICANT_EMAIL)
    screenshot(page, "enrol-1-form")
    page.locator("form button[type=submit]").last.click()
    page.wait_for_url(re.compile(r"/inscription/deposee"))
    application = EnrollmentApplication.get(EnrollmentApplication.email == APPLICANT_EMAIL)
    assert application.reference in page.content()
    assert application.mobile == APPLICANT_MOBILE  # parsed and normalised to E.164
    deliver_mail(portal)
    [received] = smtp_server.mailbox.to(APPLICANT_EMAIL)
    link = re.search(r"http://\S+/inscription/confirmer/\S+", Mailbox.text(received)).group(0)
    page.goto(link.replace("http://127.0.0.1:5000", base))
    screenshot(page, "enrol-1-confirmed")

    # The applicant tracks the application and books an appointment.
    page.goto(f"{base}/inscription/suivi")
    page.locator("#reference").fill(application.reference)
    page.locator("#email").fill(APPLICANT_EMAIL)
    page.locator("form.form button[type=submit]").first.click()
    page.wait_for_url(re.compile(rf"/inscription/suivi/{application.reference}$"))
    page.locator("#slot").select_option(index=1)
    page.locator("#book-appointment button[type=submit]").click()
    page.wait_for_load_state("networkidle")
    screenshot(page, "enrol-1-tracking")

    # 2. At the AMG desk: the applicant is present.
    page = desk_page
    page.goto(f"{base}/guichet")
    page.get_by_role("link", name=re.compile("Bernard")).first.click()
    page.locator("#present-desk").select_option("amg")
    page.locator("#action-present button[type=submit]").click()
    page.wait_for_load_state("networkidle")
    # 3. The identity document, its number and a copy.
    page.locator("#id-type").select_option("identity_card")
    page.locator("#id-number").fill("C4X9K2L7")
    page.locator("#id-expiry").fill((dt.date.today() + dt.timedelta(days=800)).isoformat())
    copy = tmp_path / "carte-identite.png"
    copy.write_bytes(PNG)
    page.locator("#id-copy").set_input_files(str(copy))
    screenshot(page, "enrol-3-identity")
    page.locator("#action-verify-identity button[type=submit]").click()
    page.wait_for_load_state("networkidle")
    # 4. The control SMS, read back by the applicant, then section 2 signed.
    page.locator("#action-send-control-code button[type=submit]").click()
    page.wait_for_load_state("networkidle")
    page.locator("#control-code").fill(last_sms(APPLICANT_MOBILE))
    screenshot(page, "enrol-4-control-sms")
    page.locator("#action-verify-phone-sms button[type=submit]").click()
    page.wait_for_load_state("networkidle")
    page.locator("#action-sign-section-two button[type=submit]").click()
    page.wait_for_load_state("networkidle")
    # 5. Transmitted to the e-health service.
    page.locator("#action-transmit button[type=submit]").click()
    page.wait_for_load_state("networkidle")
    screenshot(page, "enrol-5-transmitted")
    assert EnrollmentApplication.get_by_id(application.id).state == "transmitted"

    # 6. Another person, an administrator, creates the login.
    page = admin_page
    log_in(page, base, admin.username, admin.issued_password, "+41790000502")
    page.goto(f"{base}/admin/inscriptions")
    page.get_by_role("link", name=application.reference).first.click()
    screenshot(page, "enrol-6-administrator")
    page.locator("#action-create-account button[type=submit]").click()
    page.wait_for_load_state("networkidle")
    assert "Rhône" not in page.content()
    deliver_mail(portal)
    mails = [Mailbox.text(m) for m in smtp_server.mailbox.to(APPLICANT_EMAIL)]
    credentials = next(text for text in mails if "Mot de passe provisoire" in text)
    username = re.search(r"Identifiant : (\S+)", credentials).group(1)
    temporary = re.search(r"Mot de passe provisoire : (\S+)", credentials).group(1)

    # 7. The applicant logs in (password, then the code on the verified mobile), chooses a password, and lands.
    page = applicant_page
    log_in(page, base, username, temporary, APPLICANT_MOBILE)
    assert page.url.endswith("/login/provisoire")
    page.locator("#new_password").fill(NEW_PASSWORD)
    page.locator("#confirmation").fill(NEW_PASSWORD)
    page.locator("form.form button[type=submit]").click()
    page.wait_for_url(re.compile(r"/documents$"))
    assert page.get_by_role("heading", name="Mes documents").count() == 1
    screenshot(page, "enrol-7-mes-documents")

    stored = EnrollmentApplication.get_by_id(application.id)
    assert stored.state == "completed"
    assert Account.get_by_id(stored.account_id).state == "active"
    deliver_mail(portal)
    subjects = [m["Subject"] for m in smtp_server.mailbox.to(APPLICANT_EMAIL)]
    assert len(subjects) >= 5  # received, appointment, validated, login, completed
    for context in contexts:
        context.close()
