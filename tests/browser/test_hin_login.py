"""In Chromium: a physician logs in through the HIN provider (a real OpenID Connect provider on loopback)."""

from __future__ import annotations

import re
import threading

import pytest
from werkzeug.serving import make_server

from models import Account, Role, gln_with_check_digit
from tests.browser.conftest import screenshot
from tests.oidc import hin_settings
from tests.web.conftest import settings
from web import create_app

GLN = gln_with_check_digit("760100012345")


@pytest.fixture
def hin_server(database, provider, tmp_path):
    """The portal on a random loopback port, configured for the provider; the callback is on its public address."""
    app = create_app(settings(database, INSTANCE_PATH=str(tmp_path / "instance"), **hin_settings(provider)))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    server.url = f"http://127.0.0.1:{server.server_port}"
    app.config["PUBLIC_URL"] = server.url  # what would be registered at HIN as {PUBLIC_URL}/login/hin/callback
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    thread.join(timeout=10)


def log_in_at_provider(page, sub: str) -> None:
    """The provider's own login page (the mock's: a subject and an Authorize button)."""
    page.locator("input[name=sub]").fill(sub)
    page.get_by_role("button", name="Authorize").click()


def test_physician_logs_in_with_hin_and_lands_logged_in(hin_server, provider, page):
    provider.set_user(
        "hin-claire",
        gln=GLN,
        hin_identity_type="personal",
        given_name="Claire",
        family_name="Dupont",
        email="claire.dupont@hin.example",
    )
    page.goto(f"{hin_server.url}/login")
    page.get_by_role("link", name=re.compile("HIN")).click()
    page.wait_for_url(re.compile(re.escape(provider.issuer) + "/oauth2/authorize"))
    log_in_at_provider(page, "hin-claire")
    page.wait_for_url(re.compile(re.escape(hin_server.url)))
    page.wait_for_load_state("networkidle")
    assert page.get_by_text("Claire Dupont").first.is_visible()
    assert page.get_by_role("button", name=re.compile("Se déconnecter|Log out")).is_visible()
    account = Account.get(Account.hin_subject == "hin-claire")
    assert (account.state, account.role, account.physician.gln) == ("active", Role.PHYSICIAN, GLN)
    screenshot(page, "login-hin")


def test_team_identity_is_refused_with_an_explanation(hin_server, provider, page):
    provider.set_user("hin-practice", gln=GLN, hin_identity_type="team", given_name="Cabinet", family_name="Rhône")
    page.goto(f"{hin_server.url}/login/hin")
    log_in_at_provider(page, "hin-practice")
    page.wait_for_url(re.compile(re.escape(hin_server.url) + "/login/hin/callback"))
    assert page.get_by_role("alert").first.is_visible()
    assert page.locator("[data-hin-outcome=team-identity]").count() == 1
    assert page.get_by_role("link", name=re.compile("HIN")).count() >= 1
    assert Account.select().count() == 0
    screenshot(page, "login-hin-refused")
