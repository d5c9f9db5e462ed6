"""The skeleton: security headers, CSRF, health check, error pages in both languages, the refusal handler."""

from __future__ import annotations

import pytest
from flask import abort

import models
from models import AuditEvent, CodeChallenge, OutboxMessage, Role
from web import create_app
from web.headers import CONTENT_SECURITY_POLICY
from workflows import Reason, TransitionRefused

from .conftest import csrf_token_in, settings

EXPECTED_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)


def assert_security_headers(response):
    assert response.headers["Content-Security-Policy"] == EXPECTED_CSP
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"


@pytest.mark.parametrize(
    ("path", "status"),
    [("/", 200), ("/login", 200), ("/healthz", 200), ("/no-such-page", 404), ("/static/css/myhug.css", 200)],
)
def test_security_headers_on_every_kind_of_response(client, path, status):
    response = client.get(path)
    assert response.status_code == status
    assert_security_headers(response)
    assert CONTENT_SECURITY_POLICY == EXPECTED_CSP


def test_no_store_only_for_a_logged_in_user(client, login_as):
    assert "no-store" not in client.get("/").headers.get("Cache-Control", "")
    login_as(Role.CLINICIAN)
    for path in ("/", "/no-such-page"):
        response = client.get(path)
        assert response.headers["Cache-Control"] == "no-store"
        assert_security_headers(response)


def test_templates_have_no_inline_script_or_style(client, login_as):
    login_as(Role.ADMINISTRATOR)
    for path in ("/", "/admin/workflows", "/no-such-page", "/dev/sms"):
        html = client.get(path).get_data(as_text=True)
        assert "<script" not in html
        assert "<style" not in html
        assert " style=" not in html
        assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in html


def test_post_without_csrf_token_is_refused_and_writes_nothing(client, make_account):
    account = make_account(Role.CLINICIAN)
    before = (AuditEvent.select().count(), CodeChallenge.select().count(), OutboxMessage.select().count())
    response = client.post("/login", data={"username": account.username, "password": account.issued_password})
    assert response.status_code == 400
    assert "Le formulaire a expiré" in response.get_data(as_text=True)
    assert_security_headers(response)
    assert (AuditEvent.select().count(), CodeChallenge.select().count(), OutboxMessage.select().count()) == before
    # A token from another session does not do either.
    other = client.application.test_client()
    token = csrf_token_in(other.get("/login").data)
    response = client.post("/login", data={"csrf_token": token, "username": "x", "password": "y"})
    assert response.status_code == 400


def test_logout_and_language_switch_need_the_token_too(client, login_as):
    account = login_as(Role.CLINICIAN)
    assert client.post("/logout").status_code == 400
    assert client.post("/langue", data={"language": "en"}).status_code == 400
    assert models.Account.get_by_id(account.id).language is None
    assert 'action="/logout"' in client.get("/").get_data(as_text=True)  # still logged in


def test_healthz_answers_without_session(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok"}
    assert "Set-Cookie" not in response.headers


def test_healthz_503_when_the_database_fails(client, monkeypatch, tmp_path):
    broken = models.open_database(f"sqlite:///{tmp_path / 'missing-dir' / 'db.sqlite3'}")
    monkeypatch.setattr(models.db, "obj", broken)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["database"] == "unavailable"


def test_not_found_in_french_by_default_and_in_english_when_asked(client):
    french = client.get("/no-such-page")
    assert french.status_code == 404
    html = french.get_data(as_text=True)
    assert '<html lang="fr">' in html
    assert "Page introuvable" in html
    assert "Hôpitaux universitaires de Genève" in html

    english = client.get("/no-such-page", headers={"Accept-Language": "en-GB,en;q=0.9"})
    assert english.status_code == 404
    html = english.get_data(as_text=True)
    assert '<html lang="en">' in html
    assert "Page not found" in html

    other = client.get("/no-such-page", headers={"Accept-Language": "de-CH,de;q=0.9"})
    assert "Page introuvable" in other.get_data(as_text=True)


def test_method_not_allowed_and_too_large(app, client):
    assert client.post("/", data={}).status_code in (400, 405)  # CSRF runs first on a POST
    response = client.delete("/")
    assert response.status_code == 405
    assert "Méthode non autorisée" in response.get_data(as_text=True)
    app.config["MAX_CONTENT_LENGTH"] = 10
    response = client.post("/login", data={"username": "x" * 100})
    assert response.status_code == 413
    assert "Trop volumineux" in response.get_data(as_text=True)


def test_language_switch_for_a_visitor_and_for_an_account(client, login_as, csrf_token):
    response = client.post("/langue", data={"csrf_token": csrf_token("/"), "language": "en", "next": "/login"})
    assert (response.status_code, response.headers["Location"]) == (302, "/login")
    assert "Log in" in client.get("/login").get_data(as_text=True)

    account = login_as(Role.CLINICIAN)
    token = csrf_token("/")
    client.post("/langue", data={"csrf_token": token, "language": "fr", "next": "//evil.example/"})
    assert models.Account.get_by_id(account.id).language == "fr"
    # The account's language wins over the browser's.
    assert '<html lang="fr">' in client.get("/", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert client.post("/langue", data={"csrf_token": token, "language": "de"}).status_code == 400


@pytest.mark.parametrize(
    ("code", "status"),
    [("conflict", 409), ("wrong-state", 409), ("forbidden", 403), ("not-designated", 422), ("id-expired", 422)],
)
def test_transition_refused_becomes_one_response(app, code, status):
    text = "The patient did not designate this physician for this stay."

    def refuse():
        raise TransitionRefused(Reason(code, text))

    app.add_url_rule("/test-refusal", "refusal", refuse)
    response = app.test_client().get("/test-refusal")
    assert response.status_code == status
    assert "Le patient n’a pas désigné ce médecin pour ce séjour." in response.get_data(as_text=True)
    english = app.test_client().get("/test-refusal", headers={"Accept-Language": "en"})
    assert text in english.get_data(as_text=True)


def test_internal_error_page(app):
    app.config["PROPAGATE_EXCEPTIONS"] = False

    def crash():
        raise RuntimeError("boom")

    app.add_url_rule("/test-crash", "crash", crash)
    response = app.test_client().get("/test-crash")
    assert response.status_code == 500
    html = response.get_data(as_text=True)
    assert "Erreur interne" in html and "boom" not in html
    assert_security_headers(response)


def test_home_page_links_only_to_pages_that_exist(client):
    html = client.get("/").get_data(as_text=True)
    assert 'href="/login"' in html
    assert "Se connecter" in html
    assert 'href="/login/hin"' not in html  # HIN arrives with a later issue


def test_development_sms_page_exists_only_outside_production(database, tmp_path):
    testing = create_app(settings(database, INSTANCE_PATH=str(tmp_path)))
    assert testing.test_client().get("/dev/sms").status_code == 200
    assert testing.config["SESSION_COOKIE_SECURE"] is False
    production = create_app(
        settings(
            database,
            TESTING=False,
            MYHUG_ENV="production",
            PUBLIC_URL="https://www.myhug.ch",
            INSTANCE_PATH=str(tmp_path),
        )
    )
    assert production.test_client().get("/dev/sms").status_code == 404
    assert production.config["SESSION_COOKIE_SECURE"] is True
    assert production.config["SESSION_COOKIE_HTTPONLY"] is True
    assert production.config["SESSION_COOKIE_SAMESITE"] == "Lax"


@pytest.mark.parametrize(
    ("status", "french", "english"),
    [
        (400, "Requête invalide", "Bad request"),
        (403, "Accès refusé", "Access refused"),
        (404, "Page introuvable", "Page not found"),
        (405, "Méthode non autorisée", "Method not allowed"),
        (413, "Trop volumineux", "Too large"),
        (429, "Trop de requêtes", "Too many requests"),
        (500, "Erreur interne", "Internal error"),
    ],
)
def test_error_pages_in_the_layout(app, status, french, english):
    app.add_url_rule("/test-abort", "abort", lambda: abort(status))
    client = app.test_client()
    html = client.get("/test-abort").get_data(as_text=True)
    assert f"<title>{french} – myHUG</title>" in html
    assert 'class="skip-link"' in html and "Hôpitaux universitaires de Genève" in html
    response = client.get("/test-abort", headers={"Accept-Language": "en"})
    assert response.status_code == status
    assert f'<h1 id="page-title">{english}</h1>' in response.get_data(as_text=True)


def test_development_mail_page_shows_the_outbox_emails(client, make_account):
    account = make_account(Role.CLINICIAN, state="pending")
    page = client.get("/dev/mail").get_data(as_text=True)
    assert account.email in page and "Mot de passe provisoire" in page
