"""HIN login against a real OpenID Connect provider on loopback: first login, returning login, and every refusal."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from models import Account, AuditEvent, Physician, Role, Session, gln_with_check_digit
from security import sessions
from tests.oidc import CLIENT_ID, foreign_key, hin_settings, path_of, query_of, s256
from tests.web.conftest import settings
from web import create_app

GLN = gln_with_check_digit("760100012345")
OTHER_GLN = gln_with_check_digit("760100054321")
SUB = "hin-claire-dupont"


def personal(gln=GLN, **extra) -> dict:
    claims = {
        "gln": gln,
        "hin_identity_type": "personal",
        "given_name": "Claire",
        "family_name": "Dupont",
        "email": "claire.dupont@hin.example",
    }
    claims.update(extra)
    return {key: value for key, value in claims.items() if value is not None}


@pytest.fixture
def hin_app(database, provider, tmp_path):
    return create_app(settings(database, INSTANCE_PATH=str(tmp_path / "instance"), **hin_settings(provider)))


@pytest.fixture
def hin_client(hin_app):
    return hin_app.test_client()


def start(client, next_url: str | None = None) -> str:
    """GET /login/hin: the portal sends the browser to the provider; returns that address."""
    response = client.get("/login/hin" + (f"?next={next_url}" if next_url else ""))
    assert response.status_code == 302, response.get_data(as_text=True)
    return response.headers["Location"]


def hin_login(client, provider, sub: str = SUB, next_url: str | None = None):
    """The whole round trip; returns the portal's answer to the callback."""
    back = provider.log_in(start(client, next_url), sub)
    return client.get(path_of(back))


def session_cookie(client) -> str | None:
    cookie = client.get_cookie(sessions.COOKIE_NAME)
    return cookie.value if cookie else None


def live_sessions() -> int:
    return Session.select().where(Session.revoked_at.is_null()).count()


def failures(reason: str) -> list[AuditEvent]:
    return list(
        AuditEvent.select().where(
            (AuditEvent.action == "login.failure") & AuditEvent.details.contains(f'"reason":"{reason}"')
        )
    )


def assert_refused(response, reason: str, status: int = 403) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert f'data-hin-outcome="{reason}"' in response.get_data(as_text=True)
    assert failures(reason), f"no audit event for {reason}"


# -- first login, returning login -------------------------------------------------------------------------------
def test_first_login_creates_an_active_physician_account_keyed_on_issuer_and_subject(hin_client, provider):
    provider.set_user(SUB, **personal())
    response = hin_login(hin_client, provider)
    assert response.status_code == 302
    assert session_cookie(hin_client)

    account = Account.get(Account.hin_subject == SUB)
    assert (account.hin_issuer, account.state, account.role, account.extra_roles) == (
        provider.issuer,
        "active",
        Role.PHYSICIAN,
        "",
    )
    assert account.physician.gln == GLN
    assert (account.physician.first_name, account.physician.last_name) == ("Claire", "Dupont")
    assert account.password_hash is None
    assert Session.get(Session.account == account).auth_method == "hin"
    assert AuditEvent.select().where(AuditEvent.action == "account.provision_hin").count() == 1
    home = hin_client.get("/").get_data(as_text=True)
    assert "Claire Dupont" in home
    assert "notice--success" in home  # the welcome message says how the account was made


def test_second_login_reuses_the_account(hin_app, provider):
    provider.set_user(SUB, **personal())
    first = hin_app.test_client()
    hin_login(first, provider)
    second = hin_app.test_client()
    response = hin_login(second, provider, next_url="/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    assert Account.select().count() == 1
    assert live_sessions() == 2


def test_first_login_ties_the_account_to_the_physician_the_hospital_already_knows(hin_client, provider, make_physician):
    known = make_physician(gln=GLN, first_name="Claire", last_name="Dupont-Martin", email="cd@cabinet.example")
    provider.set_user(SUB, **personal())
    assert hin_login(hin_client, provider).status_code == 302
    account = Account.get(Account.hin_subject == SUB)
    assert account.physician_id == known.id
    assert Physician.select().count() == 1
    assert Physician.get_by_id(known.id).last_name == "Dupont-Martin"  # the hospital's record is not overwritten


def test_claims_missing_from_the_id_token_are_read_from_userinfo(hin_client, provider):
    provider.set_user(SUB, **personal())
    provider.rewrite = lambda claims: {k: v for k, v in claims.items() if k not in ("gln", "hin_identity_type")}
    assert hin_login(hin_client, provider).status_code == 302
    assert Account.get(Account.hin_subject == SUB).physician.gln == GLN
    assert provider.requests_to("/userinfo")


def test_the_authorization_request_carries_pkce_state_and_nonce(hin_client, provider):
    provider.set_user(SUB, **personal())
    authorize_url = start(hin_client)
    sent = query_of(authorize_url)
    assert sent["code_challenge_method"] == "S256"
    assert sent["client_id"] == CLIENT_ID
    assert len(sent["state"]) >= 32 and len(sent["nonce"]) >= 32
    assert "openid" in sent["scope"].split()
    hin_client.get(path_of(provider.log_in(authorize_url, SUB)))
    # What the provider received: the challenge at the authorization endpoint, its verifier at the token endpoint.
    (received,) = [r for r in provider.requests_to("/oauth2/authorize") if r.get("state") == sent["state"]][:1]
    assert received["code_challenge"] == sent["code_challenge"]
    (exchange,) = provider.requests_to("/oauth2/token")
    assert s256(exchange["code_verifier"]) == sent["code_challenge"]
    assert session_cookie(hin_client)


def test_each_attempt_has_its_own_state_and_nonce(hin_client, provider):
    first, second = query_of(start(hin_client)), query_of(start(hin_client))
    assert first["state"] != second["state"]
    assert first["nonce"] != second["nonce"]
    assert first["code_challenge"] != second["code_challenge"]


def test_a_claim_naming_another_role_grants_nothing_above_physician(hin_client, provider):
    provider.set_user(
        SUB, **personal(role="administrator", roles=["administrator"], groups=["administrator"], myhug_role="admin")
    )
    assert hin_login(hin_client, provider).status_code == 302
    account = Account.get(Account.hin_subject == SUB)
    assert account.roles == frozenset({Role.PHYSICIAN})
    assert hin_client.get("/admin/workflows").status_code == 403


# -- refusals on the claims: nothing created ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        (personal(hin_identity_type="team"), "team-identity"),
        (personal(hin_identity_type=None), "no-identity-type"),
        (personal(gln=None), "no-gln"),
        (personal(gln=GLN[:-1] + str((int(GLN[-1]) + 1) % 10)), "bad-gln"),
        (personal(gln="7601"), "bad-gln"),
    ],
    ids=["team", "no-type", "no-gln", "bad-check-digit", "too-short"],
)
def test_identities_that_cannot_have_an_account_are_refused_and_nothing_is_created(
    hin_client, provider, claims, reason
):
    provider.set_user(SUB, **claims)
    assert_refused(hin_login(hin_client, provider), reason)
    assert Account.select().count() == 0
    assert Physician.select().count() == 0
    assert session_cookie(hin_client) is None
    assert live_sessions() == 0


def test_a_physician_who_has_a_password_account_is_refused_not_linked(
    hin_client, provider, make_physician, make_account
):
    physician = make_physician(gln=GLN)
    existing = make_account(Role.PHYSICIAN, physician=physician)
    provider.set_user(SUB, **personal())
    response = hin_login(hin_client, provider)
    assert_refused(response, "physician-has-account")
    assert "service de cybersanté" in response.get_data(as_text=True)  # whom to ask to link the identity
    existing = Account.get_by_id(existing.id)
    assert existing.hin_subject is None and existing.hin_issuer is None
    assert Account.select().count() == 1
    assert session_cookie(hin_client) is None


def test_an_account_with_the_same_email_is_never_linked(hin_client, provider, make_account):
    staff = make_account(Role.CLINICIAN, email="Claire.Dupont@hin.example")
    provider.set_user(SUB, **personal())
    assert_refused(hin_login(hin_client, provider), "email-has-account")
    assert Account.get_by_id(staff.id).hin_subject is None
    assert Account.select().count() == 1
    assert Physician.select().count() == 0


@pytest.mark.parametrize("state", ["locked", "disabled"])
def test_a_locked_or_disabled_hin_account_is_refused(hin_app, provider, state):
    provider.set_user(SUB, **personal())
    hin_login(hin_app.test_client(), provider)
    account = Account.get(Account.hin_subject == SUB)
    from workflows import ACCOUNT, SYSTEM, engine

    engine.fire(ACCOUNT, account, "lock" if state == "locked" else "disable", SYSTEM)
    client = hin_app.test_client()
    response = hin_login(client, provider)
    assert_refused(response, f"account-{state}")
    assert session_cookie(client) is None
    assert live_sessions() == 0


def test_a_returning_identity_whose_gln_changed_is_refused(hin_app, provider):
    provider.set_user(SUB, **personal())
    hin_login(hin_app.test_client(), provider)
    provider.set_user(SUB, **personal(gln=OTHER_GLN))
    client = hin_app.test_client()
    assert_refused(hin_login(client, provider), "gln-mismatch")
    assert session_cookie(client) is None


def test_a_returning_identity_that_became_a_team_identity_is_refused(hin_app, provider):
    provider.set_user(SUB, **personal())
    hin_login(hin_app.test_client(), provider)
    provider.set_user(SUB, **personal(hin_identity_type="team"))
    assert_refused(hin_login(hin_app.test_client(), provider), "team-identity")


def test_a_refusal_by_the_account_workflow_is_explained_and_writes_nothing(hin_app, provider, monkeypatch):
    """Two first logins of one identity racing: the workflow's guard (one account per HIN identity) has the last
    word, and the physician row made for the losing attempt is rolled back with it."""
    provider.set_user(SUB, **personal())
    hin_login(hin_app.test_client(), provider)
    provider.set_user(SUB, **personal(gln=OTHER_GLN, email="other@hin.example"))
    monkeypatch.setattr("web.hin.account_for", lambda identity: None)  # the other tab had not committed yet
    client = hin_app.test_client()
    assert_refused(hin_login(client, provider), "hin-identity-taken")
    assert Account.select().count() == 1
    assert not Physician.select().where(Physician.gln == OTHER_GLN).exists()
    assert session_cookie(client) is None


# -- refusals on the token: no session, no account ------------------------------------------------------------
def _later(seconds: int):
    return lambda claims: {**claims, "iat": int(time.time()) - 2 * seconds, "exp": int(time.time()) - seconds}


@pytest.mark.parametrize(
    ("rewrite", "foreign"),
    [
        (None, True),  # good claims, signed by someone else
        (lambda c: {**c, "aud": ["someone-else"], "azp": CLIENT_ID}, False),
        (lambda c: {**c, "aud": [CLIENT_ID, "someone-else"]}, False),
        (lambda c: {**c, "iss": "https://idp.example"}, False),
        (lambda c: {**c, "nonce": "not-the-nonce-we-sent"}, False),
        (lambda c: {k: v for k, v in c.items() if k != "nonce"}, False),
        (_later(300), False),
        (lambda c: {**c, "iat": int(time.time()) + 3600}, False),
    ],
    ids=[
        "bad-signature",
        "wrong-audience",
        "extra-audience",
        "wrong-issuer",
        "wrong-nonce",
        "no-nonce",
        "expired",
        "issued-in-the-future",
    ],
)
def test_an_id_token_that_does_not_verify_is_refused(hin_client, provider, rewrite, foreign):
    provider.set_user(SUB, **personal())
    provider.rewrite = rewrite or (lambda claims: claims)
    provider.signing_key = foreign_key() if foreign else None
    assert_refused(hin_login(hin_client, provider), "token-invalid", status=400)
    assert Account.select().count() == 0
    assert Physician.select().count() == 0
    assert session_cookie(hin_client) is None
    assert live_sessions() == 0


def test_an_expired_token_from_the_provider_itself_is_refused(database, make_provider, tmp_path):
    provider = make_provider(access_token_max_age=dt.timedelta(seconds=-300))
    app = create_app(settings(database, INSTANCE_PATH=str(tmp_path / "instance"), **hin_settings(provider)))
    client = app.test_client()
    provider.set_user(SUB, **personal())
    assert_refused(hin_login(client, provider), "token-invalid", status=400)
    assert Account.select().count() == 0
    assert session_cookie(client) is None


def test_a_replayed_callback_is_refused(hin_app, provider):
    provider.set_user(SUB, **personal())
    client = hin_app.test_client()
    back = provider.log_in(start(client), SUB)
    assert client.get(path_of(back)).status_code == 302
    hin_client_cookie = session_cookie(client)
    # The same browser, logged out, and a stranger's browser: neither may use that answer again.
    client.post("/logout", data={"csrf_token": _csrf(client)})
    assert_refused(client.get(path_of(back)), "attempt-invalid", status=400)
    stranger = hin_app.test_client()
    assert_refused(stranger.get(path_of(back)), "attempt-invalid", status=400)
    assert session_cookie(stranger) is None
    assert hin_client_cookie and live_sessions() == 0


def test_a_replayed_state_with_the_old_browser_cookie_is_refused_by_the_single_use_code(hin_app, provider):
    """Even with a copy of the signed cookie from before the callback, the code was redeemed once at HIN."""
    provider.set_user(SUB, **personal())
    client = hin_app.test_client()
    authorize_url = start(client)
    state_cookie = client.get_cookie("myhug_state").value
    back = provider.log_in(authorize_url, SUB)
    assert client.get(path_of(back)).status_code == 302
    replay = hin_app.test_client()
    replay.set_cookie("myhug_state", state_cookie)
    assert_refused(replay.get(path_of(back)), "provider-refused", status=400)
    assert session_cookie(replay) is None
    assert live_sessions() == 1


@pytest.mark.parametrize("state", [None, "", "forged-state-value"], ids=["missing", "empty", "forged"])
def test_a_missing_or_forged_state_is_refused(hin_client, provider, state):
    provider.set_user(SUB, **personal())
    back = query_of(provider.log_in(start(hin_client), SUB))
    query = f"code={back['code']}" + (f"&state={state}" if state is not None else "")
    assert_refused(hin_client.get(f"/login/hin/callback?{query}"), "attempt-invalid", status=400)
    assert not provider.requests_to("/oauth2/token")  # the code is not even redeemed
    assert Account.select().count() == 0
    assert session_cookie(hin_client) is None


def test_a_state_from_another_browser_is_refused(hin_app, provider):
    """Login CSRF: an attacker's own HIN answer, planted in the victim's browser, does not log the victim in."""
    provider.set_user(SUB, **personal())
    attacker = hin_app.test_client()
    back = provider.log_in(start(attacker), SUB)
    victim = hin_app.test_client()
    start(victim)
    assert_refused(victim.get(path_of(back)), "attempt-invalid", status=400)
    assert session_cookie(victim) is None


def test_an_attempt_older_than_ten_minutes_is_refused(hin_client, provider, monkeypatch):
    provider.set_user(SUB, **personal())
    back = provider.log_in(start(hin_client), SUB)
    later = time.time() + 11 * 60
    monkeypatch.setattr("gateways.hin.time.time", lambda: later)
    assert_refused(hin_client.get(path_of(back)), "attempt-invalid", status=400)
    assert Account.select().count() == 0


def test_a_login_cancelled_at_hin_is_explained(hin_client, provider):
    state = query_of(start(hin_client))["state"]
    response = hin_client.get(f"/login/hin/callback?error=access_denied&state={state}")
    assert_refused(response, "denied", status=400)


def test_an_unreachable_provider_is_explained_not_a_500(database, tmp_path):
    app = create_app(
        settings(
            database,
            INSTANCE_PATH=str(tmp_path / "instance"),
            HIN_ISSUER="http://127.0.0.1:9",  # discard port: nothing listens
            HIN_CLIENT_ID=CLIENT_ID,
            HIN_CLIENT_SECRET="x",
        )
    )
    response = app.test_client().get("/login/hin")
    assert_refused(response, "provider-unreachable", status=502)


def test_the_callback_is_rate_limited_per_address(database, provider, tmp_path):
    config = {**hin_settings(provider), "LOGIN_RATE_LIMIT": "3 per minute"}
    client = create_app(settings(database, INSTANCE_PATH=str(tmp_path / "instance"), **config)).test_client()
    answers = [client.get("/login/hin/callback?code=x&state=forged").status_code for _ in range(4)]
    assert answers == [400, 400, 400, 429]
    assert len(failures("attempt-invalid")) == 3


# -- not configured -------------------------------------------------------------------------------------------
def test_without_configuration_the_addresses_explain_that_hin_is_not_available(client):
    for path in ("/login/hin", "/login/hin/callback?code=x&state=y"):
        response = client.get(path)
        assert response.status_code == 404
        assert 'data-hin-outcome="not-configured"' in response.get_data(as_text=True)
    for page in ("/", "/login"):
        assert 'href="/login/hin"' not in client.get(page).get_data(as_text=True)  # no link to a dead end


@pytest.mark.parametrize("missing", ["HIN_CLIENT_ID", "HIN_CLIENT_SECRET"])
def test_half_a_configuration_offers_no_hin_login(database, provider, tmp_path, missing):
    config = {**hin_settings(provider), missing: None}
    client = create_app(settings(database, INSTANCE_PATH=str(tmp_path / "instance"), **config)).test_client()
    assert 'data-hin-outcome="not-configured"' in client.get("/login/hin").get_data(as_text=True)


def test_the_home_and_login_pages_offer_hin_once_configured(hin_client):
    for page in ("/", "/login"):
        assert 'href="/login/hin"' in hin_client.get(page).get_data(as_text=True)


def test_no_token_or_claim_value_reaches_the_audit_trail(hin_client, provider):
    provider.set_user(SUB, **personal(hin_identity_type="team"))
    hin_login(hin_client, provider)
    provider.set_user(SUB, **personal())
    hin_login(hin_client, provider)
    trail = " ".join(f"{e.action} {e.details}" for e in AuditEvent.select())
    for secret in (SUB, GLN, "Claire", "Dupont", "claire.dupont@hin.example", "eyJ"):
        assert secret not in trail
    assert GLN[-4:] in trail  # only the last digits, to help the service desk


def _csrf(client) -> str:
    from tests.web.conftest import csrf_token_in

    return csrf_token_in(client.get("/").data)
