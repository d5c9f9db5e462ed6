"""Which language a page speaks: the account's (set by the switch or "Mon profil"), then the one chosen on this
browser, then the browser's Accept-Language (French or English), then French."""

from __future__ import annotations

import json
import re

import pytest

from models import Account, AuditEvent, Role
from security import sessions

from .conftest import csrf_token_in

LANG = re.compile(r'<html lang="(\w+)">')


def language_of(client, path: str = "/", accept: str | None = None) -> str:
    headers = {"Accept-Language": accept} if accept else {}
    return LANG.search(client.get(path, headers=headers).get_data(as_text=True)).group(1)


def switch(client, language: str, accept: str | None = None):
    headers = {"Accept-Language": accept} if accept else {}
    token = csrf_token_in(client.get("/", headers=headers).data)
    return client.post("/langue", data={"csrf_token": token, "language": language, "next": "/"}, headers=headers)


def stored_language(account: Account) -> str | None:
    return Account.get_by_id(account.id).language


def language_events() -> list[AuditEvent]:
    return list(AuditEvent.select().where(AuditEvent.action == "account.language").order_by(AuditEvent.id))


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "fr"),
        ("fr-CH,fr;q=0.9", "fr"),
        ("en", "en"),
        ("en-US", "en"),  # a regional English is English
        ("de-CH,en;q=0.5", "en"),  # the first of its languages that the portal speaks
        ("en;q=0.5,fr;q=0.9", "fr"),  # by the browser's weights, not the header's order
        ("de-CH,it;q=0.5", "fr"),  # neither: French
    ],
)
def test_a_visitor_reads_the_browsers_language_and_french_otherwise(client, accept, expected):
    assert language_of(client, "/login", accept) == expected


def test_a_visitors_choice_on_the_switch_wins_over_the_browser(client):
    switch(client, "fr", accept="en")
    assert language_of(client, "/login", accept="en") == "fr"


def test_an_account_without_a_language_follows_the_browser(client, login_as):
    account = login_as(Role.CLINICIAN)
    assert stored_language(account) is None
    assert language_of(client, "/clinique", accept="en") == "en"
    assert language_of(client, "/clinique", accept="fr") == "fr"


def test_the_accounts_language_wins_over_the_browser_and_this_browsers_choice(client, login_as):
    switch(client, "fr")  # chosen before logging in, on this browser
    account = login_as(Role.CLINICIAN)
    Account.update(language="en").where(Account.id == account.id).execute()
    assert language_of(client, "/clinique", accept="fr-CH") == "en"


def test_the_switch_keeps_the_choice_on_the_account_which_follows_it_to_another_browser(app, client, login_as):
    account = login_as(Role.CLINICIAN)
    assert switch(client, "en", accept="fr").status_code == 302
    assert stored_language(account) == "en"
    [event] = language_events()
    assert (event.actor_id, event.outcome) == (account.id, "success")

    elsewhere = app.test_client()  # another browser, French by its settings
    elsewhere.set_cookie(sessions.COOKIE_NAME, sessions.start(account, "127.0.0.1", "pytest", "password+sms"))
    assert language_of(elsewhere, "/clinique", accept="fr") == "en"
    assert language_of(app.test_client(), "/login", accept="fr") == "fr"  # a visitor there: the browser's


# -- "Mon profil" -----------------------------------------------------------------------------------------------------
def profile_form(client, **changes) -> dict:
    form = {
        "csrf_token": csrf_token_in(client.get("/profil").data),
        "notification_mode": "each",
        "specialties": ["cardiology"],
        "patients_filter": "all",
        "documents_filter": "all",
        "landing_page": "documents",
        "action": "confirm",
    }
    form.update(changes)
    return form


def test_my_profile_offers_the_language_shown_and_each_in_its_own_name(client, login_as):
    login_as(Role.PHYSICIAN)
    html = client.get("/profil", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert 'id="language-en" name="language" value="en" checked' in html
    assert 'id="language-fr" name="language" value="fr">' in html
    assert '<label for="language-fr" lang="fr">Français</label>' in html


def test_my_profile_stores_a_new_language_and_the_next_page_speaks_it(client, login_as):
    account = login_as(Role.PHYSICIAN)
    response = client.post("/profil", data=profile_form(client, language="en"), headers={"Accept-Language": "fr"})
    assert (response.status_code, response.headers["Location"]) == (302, "/documents")
    assert stored_language(account) == "en"
    [event] = language_events()
    assert json.loads(event.details) == {"from": None, "to": "en"}
    html = client.get("/documents", headers={"Accept-Language": "fr"}).get_data(as_text=True)
    assert '<html lang="en">' in html and "Your profile is saved." in html


def test_confirming_my_profile_with_the_language_shown_leaves_the_browser_in_charge(client, login_as):
    account = login_as(Role.PHYSICIAN)
    client.post("/profil", data=profile_form(client, language="fr"))
    assert stored_language(account) is None and not language_events()
    assert language_of(client, "/documents", accept="en") == "en"


def test_my_profile_refuses_a_language_the_portal_does_not_speak(client, login_as):
    account = login_as(Role.PHYSICIAN)
    response = client.post("/profil", data=profile_form(client, language="de"))
    assert response.status_code == 422
    assert 'id="language" aria-describedby="language-error" aria-invalid="true"' in response.get_data(as_text=True)
    assert stored_language(account) is None
