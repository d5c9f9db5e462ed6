"""Accounts in the admin area: find them, read their history, and lock, unlock, disable or re-issue through the
account workflow (DESIGN §4.3) — administrators only, every change one transition, one log row, one audit event."""

from __future__ import annotations

import json
import re

import pytest

from models import Account, AuditEvent, OutboxMessage, Role, Session, TransitionLog
from security import sessions
from tests.conftest import statements
from workflows import ACCOUNT, SYSTEM, engine

from .conftest import csrf_token_in

OWN_ACCOUNT = "Vous ne pouvez pas faire cela sur votre propre compte."
ADMIN_IP = "10.20.30.40"


# -- helpers ----------------------------------------------------------------------------------------------------
def page(client, path: str, **kwargs) -> str:
    response = client.get(path, **kwargs)
    assert response.status_code == 200, (path, response.status_code, response.headers.get("Location"))
    return response.get_data(as_text=True)


def detail_path(account: Account) -> str:
    return f"/admin/comptes/{account.public_id}"


def post_action(client, account: Account, trigger: str, *, token: str | None = None, **form):
    """POST a trigger the way the detail page's form does (the CSRF token of that page), from ADMIN_IP."""
    if token is None:
        token = csrf_token_in(client.get(detail_path(account)).data)
    return client.post(
        f"{detail_path(account)}/{trigger}",
        data={"csrf_token": token, **form},
        environ_base={"REMOTE_ADDR": ADMIN_IP},
    )


def written() -> tuple[int, int, int]:
    """What a firing writes: transition-log rows, audit events, outbox messages."""
    return TransitionLog.select().count(), AuditEvent.select().count(), OutboxMessage.select().count()


def listed_usernames(html: str) -> list[str]:
    return re.findall(r'<tr id="account-[^"]+">.*?<td>([^<]+)</td>', html, re.S)


def fresh(account: Account) -> Account:
    return Account.get_by_id(account.id)


@pytest.fixture
def target(make_account):
    """Another staff member's active account, the one the administrator acts on."""
    return make_account(Role.CLINICIAN, username="claire.clinician", email="claire@hcuge.ch")


# -- who may come in ------------------------------------------------------------------------------------------------
def test_administrator_reaches_the_list_the_page_and_the_actions(client, login_as, target):
    login_as(Role.ADMINISTRATOR)
    home = page(client, "/")
    assert 'href="/admin/comptes"' in home and "Comptes" in home
    assert "claire.clinician" in page(client, "/admin/comptes")
    assert "claire@hcuge.ch" in page(client, detail_path(target))
    response = post_action(client, target, "lock")
    assert (response.status_code, response.headers["Location"]) == (303, detail_path(target))
    assert fresh(target).state == "locked"


@pytest.mark.parametrize("role", [Role.PHYSICIAN, Role.VALIDATOR, Role.CLINICIAN])
def test_other_roles_are_refused_and_see_no_link(client, login_as, target, role):
    login_as(role)
    home = page(client, "/")
    assert "/admin/comptes" not in home and "Comptes" not in home
    assert client.get("/admin/comptes").status_code == 403
    assert client.get(detail_path(target)).status_code == 403
    before = written()
    response = post_action(client, target, "lock", token=csrf_token_in(home))
    assert response.status_code == 403
    assert "Accès refusé" in response.get_data(as_text=True)
    assert written() == before and fresh(target).state == "active"


def test_a_pending_administrator_has_no_rights_yet(client, login_as, target):
    login_as(Role.ADMINISTRATOR, state="pending")
    assert client.get("/admin/comptes").headers["Location"] == "/login/provisoire"


def test_anonymous_is_sent_to_login(client, target):
    for path in ("/admin/comptes", detail_path(target)):
        response = client.get(path)
        assert response.status_code == 302
        assert response.headers["Location"] == f"/login?next={path}"
    before = written()
    response = client.post(f"{detail_path(target)}/lock", data={"csrf_token": csrf_token_in(page(client, "/"))})
    assert response.status_code == 302 and response.headers["Location"].startswith("/login?next=")
    assert written() == before and fresh(target).state == "active"


# -- the list -------------------------------------------------------------------------------------------------------
def test_list_shows_each_account_with_role_state_last_login_and_way_in(client, login_as, make_account, make_physician):
    admin = login_as(Role.ADMINISTRATOR, username="zoe.admin", extra_roles="validator")
    physician = make_physician(first_name="Anne", last_name="Martin")
    doctor = make_account(Role.PHYSICIAN, username="amartin", physician=physician)
    make_account(Role.CLINICIAN, username="bob.locked", state="locked")
    make_account(Role.VALIDATOR, username="carl.pending", state="pending")
    Account.update(last_login_at=Account.created_at, full_name="Anne Martin").where(Account.id == doctor.id).execute()

    html = page(client, "/admin/comptes")
    # Sorted by name (full name, else username), case aside.
    assert listed_usernames(html) == ["amartin", "bob.locked", "carl.pending", "zoe.admin"]
    row = re.search(r'<tr id="account-' + doctor.public_id + r'">(.*?)</tr>', html, re.S).group(1)
    assert "Anne Martin" in row and physician.gln in row and "Médecin" in row
    assert "Mot de passe et code SMS" in row  # how they log in, translated
    assert re.search(r"\d{2}/\d{2}/\d{4} \d{2}:\d{2}", row)  # last login, local time
    admin_row = re.search(r'<tr id="account-' + admin.public_id + r'">(.*?)</tr>', html, re.S).group(1)
    assert "Administrateur, Validateur" in admin_row
    assert "4 accounts found." in html or "4 comptes" in html


def test_list_search_by_name_username_email_and_gln(client, login_as, make_account, make_physician):
    login_as(Role.ADMINISTRATOR, username="root")
    anne = make_physician(first_name="Anne", last_name="Keller", email="anne@cabinet.ch")
    make_account(Role.PHYSICIAN, username="akeller", physician=anne, email="anne.keller@cabinet.ch")
    make_account(Role.CLINICIAN, username="paul.durand", email="paul@hcuge.ch")
    make_account(Role.VALIDATOR, username="vero", email="secretariat.amg@hcuge.ch")

    def found(**query):
        return listed_usernames(page(client, "/admin/comptes", query_string=query))

    assert found(q="keller") == ["akeller"]  # the physician's name (and the account's e-mail)
    assert found(q="AKELLER") == ["akeller"]  # case aside
    assert found(q=anne.gln) == ["akeller"]
    assert found(q=anne.gln[:7] + " anne") == ["akeller"]  # every word, each in any column
    assert found(q="durand") == ["paul.durand"]
    assert found(q="amg@hcuge") == ["vero"]
    assert found(q="nobody") == []
    assert found(q="%") == []  # LIKE wildcards are searched for, not obeyed
    assert found(q="_") == []
    assert found(q="PAUL.") == ["paul.durand"]


def test_list_filters_by_role_and_state(client, login_as, make_account):
    login_as(Role.ADMINISTRATOR, username="root")
    make_account(Role.CLINICIAN, username="c.active")
    make_account(Role.CLINICIAN, username="c.locked", state="locked")
    make_account(Role.VALIDATOR, username="v.disabled", state="disabled")
    make_account(Role.CLINICIAN, username="hybrid", extra_roles="validator")

    def found(**query):
        return listed_usernames(page(client, "/admin/comptes", query_string=query))

    assert found(state="locked") == ["c.locked"]
    assert found(state="disabled") == ["v.disabled"]
    assert found(role="validator") == ["hybrid", "v.disabled"]  # extra roles count
    assert found(role="clinician", state="active") == ["c.active", "hybrid"]
    assert found(role="administrator") == ["root"]
    assert len(found(role="no-such-role", state="nonsense")) == 5  # unknown filters are ignored
    html = page(client, "/admin/comptes", query_string={"state": "locked"})
    assert '<option value="locked" selected>' in html


def test_list_is_paginated_by_fifty(client, login_as, make_account):
    login_as(Role.ADMINISTRATOR, username="aaa.admin")
    for n in range(54):
        make_account(Role.CLINICIAN, username=f"user{n:02d}")

    first = page(client, "/admin/comptes")
    assert len(listed_usernames(first)) == 50
    assert "55" in re.search(r'id="account-count">(.*?)</p>', first, re.S).group(1)
    assert 'href="/admin/comptes?page=2"' in first and 'rel="prev"' not in first
    second = page(client, "/admin/comptes", query_string={"page": 2})
    assert listed_usernames(second) == [f"user{n:02d}" for n in range(49, 54)]
    assert 'rel="next"' not in second
    # A page past the end shows the last one; filters survive in the page links.
    assert listed_usernames(page(client, "/admin/comptes?page=99")) == listed_usernames(second)
    filtered = page(client, "/admin/comptes", query_string={"role": "clinician", "q": "user"})
    assert "page=2" in filtered and "q=user" in filtered and "role=clinician" in filtered


def test_list_runs_the_same_number_of_queries_for_any_page_size(client, login_as, make_account, make_physician):
    login_as(Role.ADMINISTRATOR)

    def queries() -> int:
        with statements() as seen:
            page(client, "/admin/comptes")
        return len(seen)

    make_account(Role.PHYSICIAN, physician=make_physician())
    few = queries()
    for _ in range(12):
        make_account(Role.PHYSICIAN, physician=make_physician())
    assert queries() == few


# -- one account ----------------------------------------------------------------------------------------------------
def test_detail_shows_details_history_sessions_and_failures_but_never_a_password(client, login_as, target):
    admin = login_as(Role.ADMINISTRATOR, username="root")
    Account.update(failed_attempts=3).where(Account.id == target.id).execute()
    sessions.start(target, "10.0.0.1", "browser", "password+sms")
    sessions.start(target, "10.0.0.2", "phone", "password+sms")
    sessions.end(sessions.start(target, "10.0.0.3", "old", "password+sms"))
    engine.fire(ACCOUNT, fresh(target), "lock", SYSTEM)  # ends both sessions
    sessions.start(target, "10.0.0.4", "again", "password+sms")  # (a leftover row: locked accounts cannot use it)
    assert post_action(client, target, "reissue_password").status_code == 303

    html = page(client, detail_path(target))
    account = fresh(target)
    assert account.password_hash and account.password_hash not in html and "argon2" not in html
    assert "password_hash" not in html
    assert "claire@hcuge.ch" in html and "claire.clinician" in html
    assert re.search(r'id="failed-attempts">0\b', html)  # the re-issue cleared the failures
    assert re.search(r'id="live-sessions">0<', html)
    history = re.search(r'id="account-history">.*?<tbody>(.*?)</tbody>', html, re.S).group(1)
    rows = re.findall(r"<tr>(.*?)</tr>", history, re.S)
    assert len(rows) == 4  # issue_login, activate, lock, reissue_password
    assert "Créer le login" in rows[0] and "Système" in rows[0]
    assert "Verrouiller" in rows[2] and "Système" in rows[2]
    assert "Émettre un nouveau mot de passe provisoire" in rows[3]
    assert f'href="/admin/comptes/{admin.public_id}"' in rows[3] and "Administrateur" in rows[3]


def test_detail_counts_live_sessions_and_failures(client, login_as, target):
    login_as(Role.ADMINISTRATOR)
    sessions.start(target, "10.0.0.1", "browser", "password+sms")
    sessions.start(target, "10.0.0.2", "phone", "password+sms")
    sessions.end(sessions.start(target, "10.0.0.3", "old", "password+sms"))
    Account.update(failed_attempts=3).where(Account.id == target.id).execute()
    html = page(client, detail_path(target))
    assert re.search(r'id="live-sessions">2<', html)
    assert re.search(r'id="failed-attempts">3\b', html)


def test_detail_renders_the_allowed_actions_as_forms_and_the_others_with_their_reason(client, login_as, target):
    admin = login_as(Role.ADMINISTRATOR)
    html = page(client, detail_path(target))
    for trigger in ("lock", "reissue_password", "disable"):
        action = f"{detail_path(target)}/{trigger}"
        form = re.search(rf'<form class="workflow-action"[^>]*action="{action}">(.*?)</form>', html, re.S)
        assert form, trigger
        assert 'name="csrf_token"' in form.group(1)
    assert "/unlock" not in html  # not possible from "active": not offered at all
    assert 'type="checkbox" name="confirm" value="yes" required' in html  # disable asks for confirmation

    own = page(client, detail_path(admin))
    assert '<form class="workflow-action"' not in own
    assert own.count("disabled aria-describedby") == 3
    assert own.count(OWN_ACCOUNT) == 3


def test_a_pending_account_offers_no_activate_button_to_the_administrator(client, login_as, make_account):
    login_as(Role.ADMINISTRATOR)
    pending = make_account(Role.CLINICIAN, state="pending")
    html = page(client, detail_path(pending))
    assert "/activate" not in html and "Activer" not in html  # the holder's own step, whatever the state
    assert f"{detail_path(pending)}/reissue_password" in html


def test_unknown_public_id_is_404(client, login_as):
    login_as(Role.ADMINISTRATOR)
    token = csrf_token_in(page(client, "/admin/comptes"))
    assert client.get("/admin/comptes/nope").status_code == 404
    before = written()
    assert client.post("/admin/comptes/nope/lock", data={"csrf_token": token}).status_code == 404
    assert written() == before


# -- the actions ----------------------------------------------------------------------------------------------------
def _last_audit() -> tuple[str, int | None, str, str | None, dict]:
    event = AuditEvent.select().order_by(AuditEvent.id.desc()).get()
    return event.action, event.actor_id, event.actor_role, event.ip, json.loads(event.details)


@pytest.mark.parametrize(
    ("start", "trigger", "form", "end"),
    [
        ("active", "lock", {}, "locked"),
        ("pending", "lock", {}, "locked"),
        ("locked", "unlock", {}, "active"),
        ("active", "disable", {"confirm": "yes"}, "disabled"),
        ("locked", "disable", {"confirm": "yes"}, "disabled"),
        ("active", "reissue_password", {}, "pending"),
        ("locked", "reissue_password", {}, "pending"),
    ],
)
def test_each_action_is_one_transition_through_the_workflow(client, login_as, make_account, start, trigger, form, end):
    admin = login_as(Role.ADMINISTRATOR)
    account = make_account(Role.VALIDATOR, state=start)
    logs, events, _mails = written()

    response = post_action(client, account, trigger, **form)

    assert (response.status_code, response.headers["Location"]) == (303, detail_path(account))
    assert fresh(account).state == end
    assert TransitionLog.select().count() == logs + 1
    log = TransitionLog.select().order_by(TransitionLog.id.desc()).get()
    assert (log.workflow, log.object_id, log.trigger) == ("account", account.id, trigger)
    assert (log.source, log.dest) == (start, end)
    assert (log.actor_id, log.actor_role) == (admin.id, "administrator")
    assert AuditEvent.select().count() == events + 1  # the engine's, and no second one from the view
    action, actor_id, actor_role, ip, details = _last_audit()
    assert (action, actor_id, actor_role, ip) == (f"account.{trigger}", admin.id, "administrator", ADMIN_IP)
    assert (details["from"], details["to"]) == (start, end)
    shown = page(client, detail_path(account))
    assert 'class="notice notice--success"' in shown


def test_reissue_emails_the_holder_and_never_shows_the_password(client, login_as, target):
    login_as(Role.ADMINISTRATOR)
    before = OutboxMessage.select().count()
    response = post_action(client, target, "reissue_password")
    assert OutboxMessage.select().count() == before + 1
    mail = OutboxMessage.select().order_by(OutboxMessage.id.desc()).get()
    assert (mail.channel, mail.template, mail.recipient) == ("email", "temporary_password", "claire@hcuge.ch")
    password = re.search(r"Mot de passe provisoire : (\S+)", mail.body).group(1)
    assert password not in response.get_data(as_text=True)
    shown = client.get(response.headers["Location"]).get_data(as_text=True)
    notice = re.search(r'<p class="notice notice--success"[^>]*>(.*?)</p>', shown, re.S).group(1)
    assert "claire@hcuge.ch" in notice
    assert password not in shown
    assert fresh(target).password_is_temporary


def test_lock_ends_the_holders_sessions(app, client, login_as, make_account):
    login_as(Role.ADMINISTRATOR)
    colleague = make_account(Role.ADMINISTRATOR, username="colleague")
    their_browser = app.test_client()
    their_browser.set_cookie(sessions.COOKIE_NAME, sessions.start(colleague, "10.0.0.9", "theirs", "password+sms"))
    assert their_browser.get("/admin/comptes").status_code == 200

    assert post_action(client, colleague, "lock").status_code == 303

    assert Session.select().where((Session.account == colleague.id) & Session.revoked_at.is_null()).count() == 0
    response = their_browser.get("/admin/comptes")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_disable_needs_the_confirmation_box(client, login_as, target):
    login_as(Role.ADMINISTRATOR)
    before = written()
    response = post_action(client, target, "disable")
    assert (response.status_code, response.headers["Location"]) == (303, detail_path(target))
    assert written() == before and fresh(target).state == "active"
    assert 'class="notice notice--error"' in page(client, detail_path(target))
    assert post_action(client, target, "disable", confirm="yes").status_code == 303
    assert fresh(target).state == "disabled"


@pytest.mark.parametrize(
    ("start", "trigger", "status", "message"),
    [
        ("active", "unlock", 409, "Cette action n’est pas possible à cette étape."),
        ("disabled", "lock", 409, "Cette action n’est pas possible à cette étape."),
        ("disabled", "reissue_password", 409, "Cette action n’est pas possible à cette étape."),
        ("pending", "activate", 403, "Seul le titulaire du compte peut l’activer."),
        ("active", "provision_hin", 409, "Cette action n’est pas possible à cette étape."),
        ("active", "issue_login", 409, "Cette action n’est pas possible à cette étape."),
        ("active", "explode", 409, "Cette action n’existe pas."),
    ],
)
def test_what_the_state_or_the_role_does_not_allow_is_refused_and_nothing_written(
    client, login_as, make_account, start, trigger, status, message
):
    login_as(Role.ADMINISTRATOR)
    account = make_account(Role.CLINICIAN, state=start)
    before = written()
    response = post_action(client, account, trigger, confirm="yes")
    assert response.status_code == status
    assert message in response.get_data(as_text=True)
    assert written() == before and fresh(account).state == start


@pytest.mark.parametrize("trigger", ["lock", "disable", "reissue_password"])
def test_an_administrator_cannot_act_on_their_own_account(client, login_as, trigger):
    admin = login_as(Role.ADMINISTRATOR)
    before = written()
    response = post_action(client, admin, trigger, confirm="yes")
    assert response.status_code == 422
    assert OWN_ACCOUNT in response.get_data(as_text=True)
    assert written() == before and fresh(admin).state == "active"


def test_a_post_without_csrf_token_is_refused_and_nothing_written(client, login_as, target):
    login_as(Role.ADMINISTRATOR)
    before = written()
    for data in ({}, {"csrf_token": "forged"}):
        response = client.post(f"{detail_path(target)}/lock", data=data)
        assert response.status_code == 400
    assert written() == before and fresh(target).state == "active"


def test_a_get_on_the_action_address_changes_nothing(client, login_as, target):
    login_as(Role.ADMINISTRATOR)
    before = written()
    assert client.get(f"{detail_path(target)}/lock").status_code == 405
    assert written() == before


def test_a_hin_only_physician_logs_in_with_hin_and_has_no_password_to_reissue(client, login_as, make_physician):
    login_as(Role.ADMINISTRATOR)
    doctor = Account(username="hin.doctor", email="hin@example.ch", role=Role.PHYSICIAN, physician=make_physician())
    engine.create(
        ACCOUNT, doctor, "provision_hin", SYSTEM, identity_type="personal", issuer="https://oidc.hin.ch", subject="s-1"
    )
    row = re.search(r'<tr id="account-' + doctor.public_id + r'">(.*?)</tr>', page(client, "/admin/comptes"), re.S)
    assert re.search(r"<td>HIN</td>", row.group(1))
    html = page(client, detail_path(doctor))
    assert "Ce compte se connecte uniquement par HIN\u00a0: il n’a pas de mot de passe à réémettre." in html
    assert f"{detail_path(doctor)}/lock" in html
    before = written()
    response = post_action(client, doctor, "reissue_password")
    assert response.status_code == 422 and written() == before


# -- a physician's e-mail refused by the mail server (hard bounce) ----------------------------------------------------
def test_a_bounced_address_is_shown_and_an_administrator_resumes_notifications(
    client, login_as, make_account, make_physician
):
    from models import Physician, utcnow

    login_as()
    physician = make_physician()
    holder = make_account(Role.PHYSICIAN, physician=physician)
    assert "Distribuées normalement" in page(client, detail_path(holder))
    Physician.record_bounce(physician.id, "SMTP 550", utcnow())

    html = page(client, detail_path(holder))
    assert "Refusées par le serveur de messagerie" in html and "SMTP 550" in html
    response = post_action(client, holder, "adresse-confirmee")

    assert response.status_code == 303
    assert Physician.get_by_id(physician.id).email_bounced_at is None
    event = AuditEvent.select().where(AuditEvent.action == "physician.email_confirmed").get()
    assert (event.object_type, event.object_id, event.ip) == ("physician", str(physician.id), ADMIN_IP)
    assert "Distribuées normalement" in page(client, detail_path(holder))


def test_only_administrators_resume_notifications(client, login_as, make_account, make_physician):
    from models import Physician, utcnow

    physician = make_physician()
    holder = make_account(Role.PHYSICIAN, physician=physician)
    Physician.record_bounce(physician.id, "SMTP 550", utcnow())
    login_as(Role.CLINICIAN)
    response = client.post(f"{detail_path(holder)}/adresse-confirmee", data={"csrf_token": "x"})
    assert response.status_code in (400, 403, 404)
    assert Physician.get_by_id(physician.id).email_bounced_at is not None
