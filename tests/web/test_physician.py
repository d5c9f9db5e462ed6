"""Mes documents: a physician sees only their own deliveries that reached their space, unread first."""

from __future__ import annotations

import pytest

from models import Account, Delivery, Role
from security import sessions
from web import demo
from workflows import DELIVERY, Actor, engine


@pytest.fixture
def demo_physician(client, tmp_path):
    """Dr Claire Dupont of the demo data, logged in: three deliveries for her (two available, one waiting)."""
    demo.load(str(tmp_path / "blobs"))
    account = Account.get(Account.username == "cdupont")
    client.set_cookie(sessions.COOKIE_NAME, sessions.start(account, "127.0.0.1", "pytest", "password+sms"))
    return account


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


@pytest.mark.parametrize("role", [Role.ADMINISTRATOR, Role.VALIDATOR, Role.CLINICIAN])
def test_other_roles_have_no_documents_page(client, login_as, role):
    login_as(role)
    assert client.get("/documents").status_code == 403


def test_anonymous_goes_to_login(client):
    assert client.get("/documents").headers["Location"] == "/login?next=/documents"


def test_physicians_land_on_my_documents(client, login_as):
    from web.auth import landing_url

    account = login_as(Role.PHYSICIAN)
    with client.application.test_request_context():
        assert landing_url(Account.get_by_id(account.id)) == "/documents"
