"""In Chromium: the public page, the login with password and SMS code, the administrators' workflow pictures."""

from __future__ import annotations

import re

from models import OutboxMessage
from tests.browser.conftest import screenshot
from web import demo


def last_code(recipient: str) -> str:
    message = (
        OutboxMessage.select()
        .where((OutboxMessage.channel == "sms") & (OutboxMessage.recipient == recipient))
        .order_by(OutboxMessage.id.desc())
        .get()
    )
    return re.search(r"\b(\d{6})\b", message.body).group(1)


def log_in(page, base: str, username: str, password: str = demo.DEMO_PASSWORD):
    page.goto(f"{base}/login")
    page.get_by_label(re.compile("Identifiant|Nom d.utilisateur|Username", re.I)).fill(username)
    page.get_by_label(re.compile("Mot de passe|Password", re.I)).fill(password)
    page.get_by_role("button", name=re.compile("Continuer|Continue")).click()
    page.wait_for_url(re.compile(r"/login/code"))


def test_home_page_speaks_french_and_leads_to_login(live_server, page):
    page.goto(live_server.url + "/")
    assert page.locator("html").get_attribute("lang") == "fr"
    screenshot(page, "home")
    page.get_by_role("link", name=re.compile("Se connecter")).first.click()
    page.wait_for_url(re.compile(r"/login"))
    screenshot(page, "login")


def test_administrator_logs_in_with_sms_code_and_sees_the_workflows(live_server, page, tmp_path):
    demo.load(str(tmp_path / "blobs"))
    log_in(page, live_server.url, "admin")
    screenshot(page, "login-code")
    page.get_by_label(re.compile("Code reçu|Code received", re.I)).fill(last_code("+41790000100"))
    page.get_by_role("button", name=re.compile("Se connecter|Log in")).click()
    page.wait_for_load_state("networkidle")
    page.goto(live_server.url + "/admin/workflows")
    svgs = page.locator("svg[role=img]")
    assert svgs.count() == 3
    # Live counts: the demo has three deliveries in "available".
    assert page.locator('[data-state="available"]').first.get_attribute("data-count") == "3"
    screenshot(page, "admin-workflows")
    page.goto(live_server.url + "/admin/comptes")
    assert page.get_by_role("link", name=re.compile("Dupont")).count() >= 1
    screenshot(page, "admin-accounts")


def test_wrong_password_is_refused_without_saying_why(live_server, page, tmp_path):
    demo.load(str(tmp_path / "blobs"))
    page.goto(f"{live_server.url}/login")
    page.get_by_label(re.compile("Identifiant|Nom d.utilisateur|Username", re.I)).fill("admin")
    page.get_by_label(re.compile("Mot de passe|Password", re.I)).fill("not the password at all")
    page.get_by_role("button", name=re.compile("Continuer|Continue")).click()
    assert "/login/code" not in page.url
    assert page.get_by_role("alert").count() >= 1
