"""In Chromium: every page of the portal, in French and in English, as the role that reaches it, scanned by axe-core,
at a desktop's width and at a phone's.

The scan fails on any violation axe rates serious or critical, listing each with its rule, targets and page, and on a
page that scrolls sideways as a whole (WCAG 1.4.10 Reflow, which axe does not check: a wide table may scroll inside
its own region, the page may not). The list of pages is checked against the application's own routes: a GET route
that is neither scanned nor excluded here with a reason fails the test, so a new page cannot escape the scan.

The phone (360 x 740) is scanned in French only, the portal's first language. Each tour takes about 70 s here and the
file ran 5 min 28 s with the two desktop tours on the two databases: a phone tour in both languages would have doubled
that (to about 11 min), while what a phone changes is the layout, which both languages share; French, whose texts are
the longer ones, is the one that breaks a narrow layout first. The desktop tours keep checking both languages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
from flask import Flask
from werkzeug.exceptions import NotFound

from models import (
    Account,
    Delivery,
    Document,
    EnrollmentApplication,
    OutboxMessage,
    Patient,
    Physician,
    Role,
    Stay,
    gln_with_check_digit,
)
from security import sessions
from tests.browser.conftest import serve
from tests.browser.test_pages import last_code
from tests.oidc import hin_settings
from tests.web.conftest import settings
from web import create_app, demo

# The browser's Accept-Language for each language the portal speaks.
LOCALES = {"fr": "fr-CH", "en": "en-GB"}
# The widths the portal is read at: a desktop screen, and a phone held upright (as Chromium emulates one: the page's
# <meta name="viewport"> honoured, touch events, a 2x screen).
VIEWPORTS = {
    "desktop": {"viewport": {"width": 1280, "height": 900}},
    "phone": {
        "viewport": {"width": 360, "height": 740},
        "is_mobile": True,
        "has_touch": True,
        "device_scale_factor": 2,
    },
}
# (language, width) of each tour: see the module's docstring for why the phone speaks French only.
SCANS = [("fr", "desktop"), ("en", "desktop"), ("fr", "phone")]
BLOCKING_IMPACTS = frozenset({"serious", "critical"})

# GET routes that are not HTML pages, each with the reason it needs no scan.
NOT_PAGES = {
    "static": "stylesheets",
    "main.healthz": "JSON for load balancers",
    "ops.readyz": "JSON for load balancers",
    "ops.metrics": "Prometheus text for monitoring",
    "admin.workflow_mermaid": "the workflow's mermaid source, as text",
    "admin.application_id_copy": "the applicant's ID copy, a file download",
    "desk.id_copy": "the applicant's ID copy, a file download",
    "desk.form_pdf": "the enrolment form, a PDF",
    "enrol.form_pdf": "the enrolment form, a PDF",
    "physician.download": "the document's PDF, a download",
    "physician.view_pdf": "the document's PDF, shown by the browser's own viewer",
    "admin.audit_csv": "the audit trail's export, a CSV download",
    "admin.audit_fhir": "the audit trail's export, a FHIR JSON download",
    "hin.start": "redirects to HIN's login page, which is not ours",
}
# The DPI's FHIR API answers JSON to a machine, never a page.
NOT_PAGES_BLUEPRINTS = {"fhir": "the DPI's FHIR R4 API: JSON for a machine client"}


def axe_engine():
    """axe-core 4.12 as axe-playwright-python bundles it (no network); imported late, as Playwright is in conftest:
    where it is missing, the `browser` fixture has already skipped (or failed under MYHUG_REQUIRE_SERVICES=1)."""
    from axe_playwright_python.sync_playwright import Axe

    return Axe()


@dataclass
class Finding:
    page: str
    rule: str
    impact: str
    targets: list[str]
    help: str

    def __str__(self) -> str:
        return f"{self.page}: {self.rule} ({self.impact}) {', '.join(self.targets)} — {self.help}"


@dataclass
class Tour:
    """One language's visit of the portal at one width: the pages scanned, the endpoints they answered from, what was
    found."""

    server: object
    language: str
    width: str = "desktop"
    axe: object = field(default_factory=axe_engine)
    findings: list[Finding] = field(default_factory=list)
    endpoints: set[str] = field(default_factory=set)

    def scan(self, page, label: str) -> None:
        """Run axe on what `page` shows now and keep its serious and critical violations, and a sideways scroll."""
        page.wait_for_load_state()  # after a form's submission, the page it led to
        assert page.locator("html").get_attribute("lang") == self.language, f"{label}: wrong <html lang>"
        label = f"[{self.language}, {self.width}] {label}"
        laid_out, scrolls = page.evaluate(
            "[document.documentElement.clientWidth, document.documentElement.scrollWidth]"
        )
        # A page without <meta name="viewport"> would be laid out 980 px wide on a phone, and shrunk.
        assert laid_out == page.viewport_size["width"], f"{label}: laid out {laid_out} px wide"
        if scrolls > laid_out:
            what = f"The page is {scrolls} px wide in a {laid_out} px window: it scrolls sideways"
            self.findings.append(Finding(label, "reflow (WCAG 1.4.10)", "serious", ["html"], what))
        endpoint = self.endpoint_of(page.url)
        if endpoint:
            self.endpoints.add(endpoint)
        results = self.axe.run(page)
        for violation in results.response["violations"]:
            if violation["impact"] in BLOCKING_IMPACTS:
                targets = [" ".join(map(str, node["target"])) for node in violation["nodes"]]
                self.findings.append(Finding(label, violation["id"], violation["impact"], targets, violation["help"]))

    def visit(self, page, path: str, label: str, status: int = 200) -> None:
        response = page.goto(self.server.url + path)
        assert response.status == status, f"{label}: {path} answered {response.status} at {page.url}"
        self.scan(page, label)

    def endpoint_of(self, url: str) -> str | None:
        """The endpoint that answered `url`; None for an address no route matches (the 404 page)."""
        try:
            endpoint, _values = self.server.app.url_map.bind("127.0.0.1").match(urlsplit(url).path, method="GET")
        except NotFound:
            return None
        return endpoint


@pytest.fixture
def portal(database, provider, tmp_path):
    """The portal with the demo data, HIN configured (its pages exist then), on a loopback port."""
    app = create_app(settings(database, INSTANCE_PATH=str(tmp_path / "instance"), **hin_settings(provider)))
    with serve(app) as server:
        app.config["PUBLIC_URL"] = server.url
        demo.load(app.config["BLOB_DIR"])
        yield server


def context_for(browser, server, language: str, width: str = "desktop", account: Account | None = None):
    """A fresh browser speaking `language` at `width` (VIEWPORTS); logged in as `account` (a server-side session, as
    after the SMS code)."""
    context = browser.new_context(locale=LOCALES[language], **VIEWPORTS[width])
    if account is not None:
        token = sessions.start(account, "127.0.0.1", "browser test", "password+sms")
        context.add_cookies([{"name": sessions.COOKIE_NAME, "value": token, "url": server.url}])
    page = context.new_page()
    page.set_default_timeout(10_000)
    return context, page


def account(username: str) -> Account:
    return Account.get(Account.username == username)


def public_pages(tour: Tour, page) -> None:
    tour.visit(page, "/", "home")
    tour.visit(page, "/aide", "help")
    tour.visit(page, "/aide/documents-manquants", "I receive no document")
    tour.visit(page, "/no-such-page", "404", status=404)
    tour.visit(page, "/login/hin/callback", "HIN login refused", status=400)
    tour.visit(page, "/dev/sms", "development SMS outbox")
    tour.visit(page, "/dev/mail", "development mail outbox")

    # The login: a refused password, then the code step (sent by SMS, read from the outbox) and a wrong code.
    tour.visit(page, "/login", "login")
    page.locator("#username").fill("admin")
    page.locator("#password").fill("not the password at all")
    page.locator("form.form button[type=submit]").click()
    tour.scan(page, "login refused")
    page.locator("#password").fill(demo.DEMO_PASSWORD)
    page.locator("form.form button[type=submit]").click()
    page.wait_for_url(re.compile(r"/login/code$"))
    tour.scan(page, "login code")
    page.locator("#code").fill("000000" if last_code("+41790000100") != "000000" else "111111")
    page.locator("form.form button[type=submit]").first.click()
    tour.scan(page, "login code refused")


def enrolment_pages(tour: Tour, page) -> None:
    """Section 1 refused then accepted, the e-mailed link (good and bad), the tracking pages."""
    tour.visit(page, "/inscription", "enrolment form")
    page.locator("form.form button[type=submit]").last.click()
    tour.scan(page, "enrolment form with errors")
    email = f"axe.{tour.language}@cabinet.example"
    page.locator("#last_name").fill("Accessible")
    page.locator("#first_name").fill("Anne")
    page.locator("#date_of_birth").fill("1980-01-31")
    page.locator("#gln").fill(gln_with_check_digit("760100000301" if tour.language == "fr" else "760100000302"))
    page.locator("#specialties-first").check()
    page.locator("#practice_address").fill("Rue de Lausanne 1\n1201 Genève")
    page.locator("#mobile").fill("079 555 44 33")
    page.locator("#email").fill(email)
    page.locator("form.form button[type=submit]").last.click()
    page.wait_for_url(re.compile(r"/inscription/deposee$"))
    tour.scan(page, "enrolment submitted")
    application = EnrollmentApplication.get(EnrollmentApplication.email == email)
    tour.visit(page, f"/inscription/confirmer/{application.reference}/not-the-token", "e-mail link refused", 422)
    mail = OutboxMessage.get((OutboxMessage.template == "enrollment_received") & (OutboxMessage.recipient == email))
    link = re.search(r"/inscription/confirmer/\S+", mail.body).group(0)
    tour.visit(page, link, "e-mail link followed")
    tour.visit(page, f"/inscription/suivi/{application.reference}", "tracking an application")
    tour.visit(page, "/inscription/suivi", "tracking form")
    page.locator("#reference").fill("NO-SUCH")
    page.locator("#email").fill(email)
    page.locator("form.form button[type=submit]").first.click()
    tour.scan(page, "tracking form refused")


def physician_pages(tour: Tour, page) -> None:
    letter = Document.get(Document.title == "Lettre de sortie – Cardiologie")
    delivery = Delivery.get(
        (Delivery.document == letter.id) & (Delivery.physician == Physician.get(Physician.last_name == "Dupont").id)
    )
    tour.visit(page, "/documents", "My documents")
    tour.visit(page, f"/documents/{delivery.public_id}", "a document")
    tour.visit(page, f"/documents/{delivery.public_id}/historique", "a document's access history")
    tour.visit(page, "/patients", "My patients")
    tour.visit(page, "/profil", "My profile")
    tour.visit(page, "/profil/authentificateur", "authenticator app")
    tour.visit(page, "/profil/mot-de-passe", "password change")
    tour.visit(page, "/aide", "help, logged in")
    tour.visit(page, "/aide/documents-manquants", "I receive no document, logged in")
    tour.visit(page, "/admin/comptes", "403", status=403)


def clinician_pages(tour: Tour, page) -> None:
    martin = Patient.get(Patient.family_name == "Martin")
    episode = Stay.get(Stay.dpi_value == "S-2026-1002")
    letter = Document.get(Document.title == "Lettre de sortie – Cardiologie")
    favre = Physician.get(Physician.last_name == "Favre")
    tour.visit(page, "/clinique", "clinic search")
    tour.visit(page, "/clinique?q=martin", "clinic search results")
    tour.visit(page, f"/clinique/patients/{martin.public_id}", "a patient")
    tour.visit(page, f"/clinique/sejours/{episode.public_id}", "a stay")
    tour.visit(page, f"/clinique/sejours/{episode.public_id}?medecin={favre.public_id}", "a stay, designation form")
    tour.visit(page, f"/clinique/medecins?q=Favre&sejour={episode.public_id}", "physician directory")
    tour.visit(page, f"/clinique/documents/{letter.public_id}", "a document's deliveries")
    tour.visit(page, f"/clinique/documents/{letter.public_id}?medecin={favre.public_id}", "explainer and manual send")


def validator_pages(tour: Tour, page) -> None:
    waiting = EnrollmentApplication.get(EnrollmentApplication.last_name == "Bernard")
    transmitted = EnrollmentApplication.get(EnrollmentApplication.last_name == "Girard")
    tour.visit(page, "/guichet", "validation desk")
    tour.visit(page, f"/guichet/demandes/{waiting.reference}", "desk: an application to receive")
    tour.visit(page, f"/guichet/demandes/{transmitted.reference}", "desk: a transmitted application")
    tour.visit(page, "/guichet/creneaux", "desk: appointment slots")


def administrator_pages(tour: Tour, page) -> None:
    transmitted = EnrollmentApplication.get(EnrollmentApplication.last_name == "Girard")
    message = OutboxMessage.select().order_by(OutboxMessage.id).first()
    tour.visit(page, "/admin/", "operations dashboard")
    tour.visit(page, "/admin/journal", "audit trail")
    tour.visit(page, "/admin/journal?action=login", "audit trail, searched")
    tour.visit(page, "/admin/comptes", "accounts")
    tour.visit(page, f"/admin/comptes/{account('cdupont').public_id}", "an account")
    tour.visit(page, "/admin/inscriptions", "applications")
    tour.visit(page, f"/admin/inscriptions/{transmitted.reference}", "an application")
    tour.visit(page, "/admin/types-de-documents", "document types")
    tour.visit(page, "/admin/workflows", "workflows")
    tour.visit(page, "/admin/messages", "outgoing messages")
    tour.visit(page, f"/admin/messages/{message.id}", "an outgoing message")


def first_password_page(tour: Tour, browser, make_account) -> None:
    """An account issued a temporary password: the only page it reaches."""
    pending = make_account(Role.CLINICIAN, username=f"provisoire-{tour.language}", state="pending")
    context, page = context_for(browser, tour.server, tour.language, tour.width, pending)
    try:
        tour.visit(page, "/login/provisoire", "first password")
    finally:
        context.close()


def uncovered(app, endpoints: set[str]) -> list[str]:
    """GET endpoints neither scanned nor excluded with a reason."""
    missing = []
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.endpoint in endpoints or rule.endpoint in NOT_PAGES:
            continue
        if rule.endpoint.partition(".")[0] in NOT_PAGES_BLUEPRINTS:
            continue
        missing.append(f"{rule.rule} ({rule.endpoint})")
    return sorted(set(missing))


@pytest.mark.parametrize(("language", "width"), SCANS)
def test_every_page_has_no_serious_accessibility_violation(browser, portal, make_account, language, width):
    tour = Tour(portal, language, width)
    visits = [
        (None, public_pages),
        (None, enrolment_pages),
        (account("cdupont"), physician_pages),
        (account("clinicien"), clinician_pages),
        (account("amg"), validator_pages),
        (account("admin"), administrator_pages),
    ]
    for who, pages in visits:
        context, page = context_for(browser, tour.server, tour.language, tour.width, who)
        try:
            pages(tour, page)
        finally:
            context.close()
    first_password_page(tour, browser, make_account)

    assert not tour.findings, "serious or critical accessibility violations:\n" + "\n".join(map(str, tour.findings))
    assert not uncovered(portal.app, tour.endpoints), "pages neither scanned nor excluded: " + ", ".join(
        uncovered(portal.app, tour.endpoints)
    )
    stale = {e for e in NOT_PAGES if e not in portal.app.view_functions}
    assert not stale, f"exclusions for endpoints that no longer exist: {sorted(stale)}"


def test_the_scan_reports_serious_violations_with_their_targets(browser):
    """The tour's own check: a page with an unlabelled field, an image without text, pale text and a block wider than
    the window fails it."""
    tour = Tour(SimpleNamespace(app=Flask(__name__), url=""), "fr")
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_content(
            '<html lang="fr"><head><title>t</title></head><body><main><h1>t</h1>'
            '<input id="q"><img src="data:,"><p style="color:#ddd">pâle</p><p style="width:2000px">large</p>'
            "</main></body></html>"
        )
        tour.scan(page, "a bad page")
    finally:
        context.close()
    found = {(f.rule, f.impact, tuple(f.targets)) for f in tour.findings}
    assert {("label", "critical", ("#q",)), ("image-alt", "critical", ("img",))} <= found
    assert any(f.rule == "color-contrast" and f.impact == "serious" for f in tour.findings)
    assert any(f.rule.startswith("reflow") and f.impact == "serious" for f in tour.findings)
