"""Logging in with a password then an SMS code; the same answer for every wrong way in; logging out."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
import time_machine

from models import Account, AuditEvent, CodeChallenge, OutboxMessage, Role
from security import audit, otp, passwords, sessions
from web import auth

from .conftest import csrf_token_in

MOBILE = "+41790000001"
T0 = dt.datetime(2031, 3, 3, 8, 0, tzinfo=dt.UTC)


@pytest.fixture
def holder(make_account):
    """make the account that logs in: a mobile to receive the code, and its password on `.issued_password`."""

    def make(role=Role.CLINICIAN, **kwargs):
        account = make_account(role, **kwargs)
        Account.update(mobile=MOBILE).where(Account.id == account.id).execute()
        return account

    return make


def submit_password(client, username, password, next_url=None):
    token = csrf_token_in(client.get("/login").data)
    data = {"csrf_token": token, "username": username, "password": password}
    if next_url:
        data["next"] = next_url
    return client.post("/login", data=data)


def last_code() -> str:
    message = (
        OutboxMessage.select().where(OutboxMessage.template == "login_code").order_by(OutboxMessage.id.desc()).get()
    )
    return re.search(r"\b(\d{6})\b", message.body).group(1)


def submit_code(client, code):
    page = client.get("/login/code")
    assert page.status_code == 200, page.headers.get("Location")
    return client.post("/login/code", data={"csrf_token": csrf_token_in(page.data), "code": code})


def session_cookie(client) -> str | None:
    cookie = client.get_cookie(sessions.COOKIE_NAME)
    return cookie.value if cookie else None


def actions() -> list[tuple[str, str, dict]]:
    return [(e.action, e.outcome, json.loads(e.details)) for e in AuditEvent.select().order_by(AuditEvent.id)]


def test_happy_path_password_then_code_then_a_new_session(client, holder):
    account = holder(Role.CLINICIAN)
    token = csrf_token_in(client.get("/login").data)
    # A session token this browser already holds (planted, or from before) must not survive the login.
    old_token = sessions.start(account, "127.0.0.1", "earlier", "password+sms")
    client.set_cookie(sessions.COOKIE_NAME, old_token)

    response = client.post(
        "/login", data={"csrf_token": token, "username": account.username, "password": account.issued_password}
    )
    assert (response.status_code, response.headers["Location"]) == (302, "/login/code")
    message = OutboxMessage.select().where(OutboxMessage.template == "login_code").get()
    assert (message.channel, message.recipient, message.related_id) == ("sms", MOBILE, account.id)
    challenge = CodeChallenge.get()
    code = last_code()
    assert code not in challenge.code_hash and len(challenge.code_hash) == 64
    assert challenge.expires_at - challenge.created_at == dt.timedelta(minutes=5)

    response = submit_code(client, code)
    assert (response.status_code, response.headers["Location"]) == (302, "/clinique")  # a clinician's landing page
    new_token = session_cookie(client)
    assert new_token and new_token != old_token
    assert sessions.load(old_token) is None  # the session from before the login is gone
    assert sessions.load(new_token).account_id == account.id
    set_cookie = [h for h in response.headers.getlist("Set-Cookie") if h.startswith(sessions.COOKIE_NAME)]
    assert "HttpOnly" in set_cookie[0] and "SameSite=Lax" in set_cookie[0]
    assert CodeChallenge.get().consumed_at is not None
    assert Account.get_by_id(account.id).last_login_at is not None

    home = client.get("/")
    assert 'action="/logout"' in home.get_data(as_text=True)
    assert home.headers["Cache-Control"] == "no-store"
    logged = [(a, o) for a, o, _d in actions() if a.startswith("login")]
    assert logged == [("login.code_sent", "success"), ("login.success", "success")]
    assert all(code not in e.details and account.issued_password not in e.details for e in AuditEvent.select())
    assert audit.verify().ok


def test_administrator_lands_on_the_dashboard_and_next_is_honoured(client, holder):
    admin = holder(Role.ADMINISTRATOR)
    submit_password(client, admin.username, admin.issued_password)
    assert submit_code(client, last_code()).headers["Location"] == "/admin/"

    other = client.application.test_client()
    response = other.get("/admin/workflows")
    assert response.headers["Location"] == "/login?next=/admin/workflows"
    submit_password(other, admin.username, admin.issued_password, next_url="/admin/workflows#account")
    assert submit_code(other, last_code()).headers["Location"] == "/admin/workflows#account"

    third = client.application.test_client()
    submit_password(third, admin.username, admin.issued_password, next_url="//evil.example/")
    assert submit_code(third, last_code()).headers["Location"] == "/admin/"


def test_wrong_password_and_unknown_user_give_byte_identical_pages(client, holder):
    account = holder(Role.CLINICIAN)
    with time_machine.travel(T0, tick=False):
        wrong_password = submit_password(client, account.username, "not-the-password")
        # The same username, now unknown: the page must not tell the two cases apart.
        Account.update(username="renamed").where(Account.id == account.id).execute()
        unknown_user = submit_password(client, account.username, "not-the-password")
    assert wrong_password.status_code == unknown_user.status_code == 200
    assert wrong_password.data == unknown_user.data
    assert "Nom d’utilisateur ou mot de passe incorrect." in unknown_user.get_data(as_text=True)
    assert (
        CodeChallenge.select().count() == 0
        and OutboxMessage.select().where(OutboxMessage.channel == "sms").count() == 0
    )
    failures = [d["reason"] for a, o, d in actions() if a == "login.failure" and o == "failure"]
    assert failures == ["wrong-password", "unknown-user"]
    assert all("not-the-password" not in e.details for e in AuditEvent.select())


def test_unknown_user_costs_a_password_hash_too(client, holder, monkeypatch):
    account = holder(Role.CLINICIAN)
    calls = []
    real = passwords.verify_password
    monkeypatch.setattr(passwords, "verify_password", lambda h, p: calls.append(h is not None) or real(h, p))
    submit_password(client, account.username, "wrong")
    submit_password(client, "nobody-at-all", "wrong")
    assert calls == [True, False]  # verify_password(None, …) hashes anyway (security.passwords)


@pytest.mark.parametrize("state", ["locked", "disabled"])
def test_inactive_accounts_get_the_same_answer_even_with_the_right_password(client, holder, state):
    account = holder(Role.CLINICIAN, state=state)
    with time_machine.travel(T0, tick=False):
        inactive = submit_password(client, account.username, account.issued_password)
        wrong = submit_password(client, account.username, "not-the-password")
    assert inactive.data == wrong.data
    assert CodeChallenge.select().count() == 0


def test_a_code_works_once(client, holder):
    account = holder(Role.CLINICIAN)
    submit_password(client, account.username, account.issued_password)
    code = last_code()
    # A second browser holding the same attempt (a copied cookie, a replayed request) tries the same code.
    replay = client.application.test_client()
    replay.set_cookie("myhug_state", client.get_cookie("myhug_state").value)
    page = replay.get("/login/code")

    assert submit_code(client, code).status_code == 302
    response = replay.post("/login/code", data={"csrf_token": csrf_token_in(page.data), "code": code})
    assert response.status_code == 200
    assert "Le code est faux ou a expiré." in response.get_data(as_text=True)
    assert session_cookie(replay) is None
    assert [d["reason"] for a, _o, d in actions() if a == "login.code_failed"] == ["code-used"]


def test_an_expired_code_is_refused(client, holder):
    account = holder(Role.CLINICIAN)
    with time_machine.travel(T0, tick=False) as traveller:
        submit_password(client, account.username, account.issued_password)
        code = last_code()
        traveller.shift(dt.timedelta(minutes=5, seconds=1))
        response = submit_code(client, code)
    assert response.status_code == 200
    assert session_cookie(client) is None
    assert CodeChallenge.get().consumed_at is None
    assert [d["reason"] for a, _o, d in actions() if a == "login.code_failed"] == ["code-expired"]


def test_a_code_from_another_attempt_is_refused(client, holder, monkeypatch):
    account = holder(Role.CLINICIAN)
    codes = iter(["111111", "222222"])
    monkeypatch.setattr(otp, "new_code", lambda: next(codes))
    first = client.application.test_client()
    submit_password(first, account.username, account.issued_password)
    submit_password(client, account.username, account.issued_password)

    assert submit_code(client, "111111").status_code == 200  # the first attempt's code, in the second attempt
    assert session_cookie(client) is None
    assert submit_code(client, "222222").status_code == 302
    assert submit_code(first, "222222").status_code == 200
    assert session_cookie(first) is None


def test_the_code_step_must_follow_within_ten_minutes(client, holder):
    account = holder(Role.CLINICIAN)
    with time_machine.travel(T0, tick=False) as traveller:
        submit_password(client, account.username, account.issued_password)
        traveller.shift(dt.timedelta(minutes=11))
        response = client.get("/login/code")
        assert (response.status_code, response.headers["Location"]) == (302, "/login")
        assert "Votre tentative de connexion a expiré" in client.get("/login").get_data(as_text=True)


def test_code_page_without_an_attempt_goes_back_to_login(client):
    assert client.get("/login/code").headers["Location"] == "/login"


def test_an_account_without_mobile_cannot_receive_a_code(client, make_account):
    account = make_account(Role.CLINICIAN)
    response = submit_password(client, account.username, account.issued_password)
    assert response.status_code == 200
    assert "Aucun numéro de mobile" in response.get_data(as_text=True)
    assert CodeChallenge.select().count() == 0


def test_a_physician_receives_the_code_on_the_physician_mobile(client, make_account, make_physician):
    physician = make_physician(mobile="+41790000099")
    account = make_account(Role.PHYSICIAN, physician=physician)
    submit_password(client, account.username, account.issued_password)
    assert OutboxMessage.get(OutboxMessage.template == "login_code").recipient == "+41790000099"


def test_pending_account_reaches_only_the_temporary_password_page(client, holder):
    account = holder(Role.ADMINISTRATOR, state="pending")
    submit_password(client, account.username, account.issued_password)
    response = submit_code(client, last_code())
    assert response.headers["Location"] == "/login/provisoire"
    page = client.get("/login/provisoire").get_data(as_text=True)
    assert "Choisissez votre mot de passe" in page
    assert client.get("/admin/workflows").headers["Location"] == "/login/provisoire"
    assert "Workflows" not in page


def test_expired_temporary_password_is_refused(client, holder):
    account = holder(Role.CLINICIAN, state="pending")
    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(hours=73), tick=False):
        response = submit_password(client, account.username, account.issued_password)
    assert "Nom d’utilisateur ou mot de passe incorrect." in response.get_data(as_text=True)
    assert CodeChallenge.select().count() == 0


def test_logout_revokes_the_session_server_side(client, login_as, csrf_token):
    account = login_as(Role.CLINICIAN)
    token = account.session_token
    response = client.post("/logout", data={"csrf_token": csrf_token("/")})
    assert (response.status_code, response.headers["Location"]) == (302, "/")
    assert session_cookie(client) is None
    assert sessions.load(token) is None
    # The old cookie, replayed, no longer opens anything.
    client.set_cookie(sessions.COOKIE_NAME, token)
    assert client.get("/admin/workflows").status_code == 302
    assert 'action="/logout"' not in client.get("/").get_data(as_text=True)
    assert "logout" in [a for a, _o, _d in actions()]


def test_safe_next():
    assert auth.safe_next("/admin/workflows?x=1") == "/admin/workflows?x=1"
    for bad in (None, "", "//evil.example/", "/\\evil.example", "https://evil.example/", "javascript:alert(1)"):
        assert auth.safe_next(bad) is None
