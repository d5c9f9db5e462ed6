"""In Chromium: a physician's first login with the temporary password, the SMS code and a password of their own."""

from __future__ import annotations

import re

from models import Account, OutboxMessage, Role
from tests.browser.conftest import screenshot
from tests.browser.test_pages import last_code

NEW_PASSWORD = "trois cafés au bord du Rhône ☕"


def test_physician_first_login_sets_a_password_and_lands(live_server, page, make_account, make_physician):
    physician = make_physician(mobile="+41790001234")
    account = make_account(Role.PHYSICIAN, physician=physician, state="pending")
    mail = OutboxMessage.get(
        (OutboxMessage.template == "temporary_password") & (OutboxMessage.recipient == account.email)
    )
    temporary = re.search(r"Mot de passe provisoire : (\S+)", mail.body).group(1)

    page.goto(f"{live_server.url}/login")
    page.locator("#username").fill(account.username)
    page.locator("#password").fill(temporary)
    page.locator("form.form button[type=submit]").click()
    page.wait_for_url(re.compile(r"/login/code$"))
    page.locator("#code").fill(last_code("+41790001234"))
    page.locator("form.form button[type=submit]").first.click()
    page.wait_for_url(re.compile(r"/login/provisoire$"))
    screenshot(page, "first-password")

    page.locator("#new_password").fill(NEW_PASSWORD)
    page.locator("#confirmation").fill(NEW_PASSWORD)
    page.locator("form.form button[type=submit]").click()
    page.wait_for_load_state("networkidle")
    assert "/login" not in page.url
    assert Account.get_by_id(account.id).state == "active"
    assert page.get_by_role("button", name=re.compile("Se déconnecter")).count() == 1
