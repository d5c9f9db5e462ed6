"""Step 6 in the browser: the administrators' queue of applications, each application's file and history, the ID
copy download, and creating the login or rejecting through the enrolment workflow (DESIGN §4.1) — administrators
only, the four-eyes rule enforced, the temporary password never shown."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
import time_machine

import models
from models import Account, AuditEvent, EnrollmentApplication, OutboxMessage, Role, TransitionLog
from security import audit
from security.encryption import BlobStore, keyring
from tests.conftest import statements
from tests.workflows.test_enrollment import applicant, email_token
from workflows import ENROLLMENT, Actor, engine

from .conftest import csrf_token_in

ADMIN_IP = "10.20.30.40"
EN = {"Accept-Language": "en"}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
ORDER = ["submitted", "presented", "identity_verified", "phone_verified", "signed", "transmitted"]


# -- helpers ------------------------------------------------------------------------------------------------------
def page(client, path: str, **kwargs) -> str:
    response = client.get(path, **kwargs)
    assert response.status_code == 200, (path, response.status_code, response.headers.get("Location"))
    return response.get_data(as_text=True)


def detail_path(application) -> str:
    return f"/admin/inscriptions/{application.reference}"


def post_action(client, application, trigger: str, *, token: str | None = None, **form):
    """POST a trigger the way the detail page's forms do (the CSRF token of that page), from ADMIN_IP, in English
    (the flash message is translated when the POST runs)."""
    if token is None:
        token = csrf_token_in(client.get(detail_path(application)).data)
    return client.post(
        f"{detail_path(application)}/{trigger}",
        data={"csrf_token": token, **form},
        headers=EN,
        environ_base={"REMOTE_ADDR": ADMIN_IP},
    )


def written() -> tuple[int, int, int, int]:
    """What a firing writes: transition-log rows, audit events, outbox messages, accounts."""
    return (
        TransitionLog.select().count(),
        AuditEvent.select().count(),
        OutboxMessage.select().count(),
        Account.select().count(),
    )


def fresh(application) -> EnrollmentApplication:
    return EnrollmentApplication.get_by_id(application.id)


def walk(application, state: str, validator, *, blob: str = "a1b2c3", desk: str = "amg"):
    """Drive an application through the desk's steps up to `state`, as `validator` (an Account)."""
    v = Actor(Role.VALIDATOR, validator.id)
    steps = {
        "presented": lambda: (
            engine.fire(
                ENROLLMENT, application, "confirm_email", applicant(application), token=email_token(application)
            ),
            engine.fire(ENROLLMENT, application, "present", v, desk=desk),
        ),
        "identity_verified": lambda: engine.fire(
            ENROLLMENT,
            application,
            "verify_identity",
            v,
            id_type="passport",
            id_number="X1234567",
            id_expiry=dt.date.today() + dt.timedelta(days=365),
            id_copy_blob=blob,
            id_copy_mime="image/png",
        ),
        "phone_verified": lambda: engine.fire(
            ENROLLMENT, application, "verify_phone", v, method="call", confirmed=True
        ),
        "signed": lambda: engine.fire(ENROLLMENT, application, "sign_section_two", v),
        "transmitted": lambda: engine.fire(ENROLLMENT, application, "transmit", v),
    }
    for name in ORDER[1 : ORDER.index(state) + 1]:
        steps[name]()
    return application


def gln(n: int) -> str:
    return models.gln_with_check_digit(f"7601000{n:05d}")


@pytest.fixture
def validator(make_account):
    return make_account(Role.VALIDATOR, username="val.amg", email="val.amg@hcuge.ch")


@pytest.fixture
def blob(app):
    """A real ID copy in this app's blob store; its id is bound to the application's reference when stored."""

    def put(reference: str) -> str:
        return BlobStore(app.config["BLOB_DIR"], keyring.require()).put(PNG, f"id-copy:{reference}")

    return put


@pytest.fixture
def transmitted(submit_application, validator, blob):
    """An application at step 6: transmitted by the AMG validator, with a real ID copy on file."""
    application = submit_application()
    return walk(application, "transmitted", validator, blob=blob(application.reference))


def history_rows(html: str) -> list[str]:
    body = re.search(r'id="application-history">.*?<tbody>(.*?)</tbody>', html, re.S).group(1)
    return re.findall(r"<tr>(.*?)</tr>", body, re.S)


def notice(html: str) -> str:
    return re.search(r'<p class="notice notice--success"[^>]*>(.*?)</p>', html, re.S).group(1)


# -- who may come in ----------------------------------------------------------------------------------------------
def test_administrator_reaches_the_queue_the_file_the_copy_and_the_actions(client, login_as, transmitted):
    login_as(Role.ADMINISTRATOR)
    home = page(client, "/", headers=EN)
    assert 'href="/admin/inscriptions"' in home and ">Applications<" in home
    assert transmitted.reference in page(client, "/admin/inscriptions")
    assert "claire.dupont@example.ch" in page(client, detail_path(transmitted))
    assert client.get(f"{detail_path(transmitted)}/piece-identite").status_code == 200
    response = post_action(client, transmitted, "create_account")
    assert (response.status_code, response.headers["Location"]) == (303, detail_path(transmitted))
    assert fresh(transmitted).state == "account_created"


@pytest.mark.parametrize(("role", "extra_roles"), [(Role.VALIDATOR, ""), (Role.PHYSICIAN, ""), (Role.CLINICIAN, "")])
def test_other_roles_are_refused_and_see_no_link(client, login_as, transmitted, role, extra_roles):
    login_as(role, extra_roles=extra_roles)
    home = page(client, "/")
    assert "/admin/inscriptions" not in home
    for path in ("/admin/inscriptions", detail_path(transmitted), f"{detail_path(transmitted)}/piece-identite"):
        assert client.get(path).status_code == 403, path
    before = written()
    for trigger, form in (("create_account", {}), ("reject", {"reason": "Doublon"})):
        response = post_action(client, transmitted, trigger, token=csrf_token_in(home), **form)
        assert response.status_code == 403
    assert written() == before and fresh(transmitted).state == "transmitted"
    assert not AuditEvent.select().where(AuditEvent.action == "enrolment.id_copy_viewed").exists()


def test_anonymous_is_sent_to_login(client, transmitted):
    for path in ("/admin/inscriptions", detail_path(transmitted), f"{detail_path(transmitted)}/piece-identite"):
        response = client.get(path)
        assert response.status_code == 302
        assert response.headers["Location"] == f"/login?next={path}"
    before = written()
    token = csrf_token_in(page(client, "/"))
    response = client.post(f"{detail_path(transmitted)}/create_account", data={"csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"].startswith("/login?next=")
    assert written() == before and fresh(transmitted).state == "transmitted"


def test_unknown_reference_is_404(client, login_as):
    login_as(Role.ADMINISTRATOR)
    token = csrf_token_in(page(client, "/admin/inscriptions"))
    for path in ("/admin/inscriptions/MH-NOPE-NOPE", "/admin/inscriptions/MH-NOPE-NOPE/piece-identite"):
        assert client.get(path).status_code == 404
    before = written()
    response = client.post("/admin/inscriptions/MH-NOPE-NOPE/reject", data={"csrf_token": token, "reason": "x"})
    assert response.status_code == 404
    assert written() == before


def test_a_post_without_csrf_token_or_a_get_on_an_action_changes_nothing(client, login_as, transmitted):
    login_as(Role.ADMINISTRATOR)
    before = written()
    assert client.post(f"{detail_path(transmitted)}/create_account").status_code == 400
    assert client.get(f"{detail_path(transmitted)}/create_account").status_code == 405
    assert written() == before


# -- the queue and the list -----------------------------------------------------------------------------------------
@pytest.fixture
def several(submit_application, validator, blob):
    """Five applications: three transmitted at different times, one at the desk, one rejected."""
    start = dt.datetime.now(dt.UTC)
    made = {}

    def make(key, n, last_name, state, days_ago):
        with time_machine.travel(start - dt.timedelta(days=days_ago), tick=False):
            application = submit_application(gln=gln(n), email=f"{key}@example.ch", last_name=last_name)
            if state != "submitted":
                walk(application, state, validator, blob=blob(application.reference))
        made[key] = application

    make("old", 1, "Aubert", "transmitted", 5)
    make("young", 2, "Berset", "transmitted", 1)
    make("middle", 3, "Chappuis", "transmitted", 3)
    make("desk", 4, "Dufour", "presented", 4)
    make("rejected", 5, "Aubry", "submitted", 2)
    engine.fire(ENROLLMENT, made["rejected"], "reject", Actor(Role.VALIDATOR, validator.id), reason="Doublon")
    return made


def queued(html: str) -> list[str]:
    return re.findall(r'<tr id="queue-([^"]+)">', html)


def listed(html: str) -> list[str]:
    return re.findall(r'<tr id="application-([^"]+)">', html)


def test_queue_shows_transmitted_applications_oldest_first_with_the_wait(client, login_as, several):
    login_as(Role.ADMINISTRATOR)
    html = page(client, "/admin/inscriptions", headers=EN)
    assert queued(html) == [several[k].reference for k in ("old", "middle", "young")]
    row = re.search(r'<tr id="queue-' + several["old"].reference + r'">(.*?)</tr>', html, re.S).group(1)
    assert "Aubert" in row and several["old"].gln in row and "5 days" in row
    # The full list, newest first, names every application with its state.
    assert listed(html) == [several[k].reference for k in ("young", "rejected", "middle", "desk", "old")]
    row = re.search(r'<tr id="application-' + several["rejected"].reference + r'">(.*?)</tr>', html, re.S).group(1)
    assert ">Rejected<" in row


def test_queue_says_when_nothing_waits(client, login_as):
    login_as(Role.ADMINISTRATOR)
    assert 'id="queue-empty"' in page(client, "/admin/inscriptions")


def test_list_is_searchable_by_name_reference_gln_and_filterable_by_state(client, login_as, several):
    login_as(Role.ADMINISTRATOR)

    def found(**query):
        return set(listed(page(client, "/admin/inscriptions", query_string=query)))

    ref = {k: a.reference for k, a in several.items()}
    assert found(q="aub") == {ref["old"], ref["rejected"]}  # name, any case
    assert found(q=ref["middle"].lower()) == {ref["middle"]}
    assert found(q=several["desk"].gln) == {ref["desk"]}
    assert found(q="young@example") == {ref["young"]}
    assert found(state="transmitted") == {ref["old"], ref["middle"], ref["young"]}
    assert found(state="rejected") == {ref["rejected"]}
    assert found(q="aub", state="transmitted") == {ref["old"]}
    assert found(state="bogus") == set(ref.values())  # an unknown state is no filter
    html = page(client, "/admin/inscriptions", headers=EN, query_string={"state": "transmitted"})
    assert '<option value="transmitted" selected>Transmitted, waiting for the login (3)</option>' in html
    assert '<option value="presented">Presented at the desk (1)</option>' in html
    assert '<option value="completed">Completed (0)</option>' in html
    assert "3 applications found." in html


def test_list_runs_the_same_number_of_queries_for_any_number_of_applications(
    client, login_as, submit_application, validator, blob
):
    login_as(Role.ADMINISTRATOR)

    def queries() -> int:
        with statements() as seen:
            page(client, "/admin/inscriptions")
        return len(seen)

    def add(n: int) -> None:
        application = submit_application(gln=gln(n), email=f"a{n}@example.ch")
        walk(application, "transmitted", validator, blob=blob(application.reference))

    add(1)
    few = queries()
    for n in range(2, 10):
        add(n)
    assert queries() == few


# -- one application ------------------------------------------------------------------------------------------------
def test_file_shows_section_one_and_the_desks_evidence_with_the_number_masked(client, login_as, transmitted, validator):
    login_as(Role.ADMINISTRATOR)
    html = page(client, detail_path(transmitted), headers=EN)
    for text in ("Dupont", "Claire", transmitted.gln, "Boulevard Carl-Vogt 2", "+41791234567", "Cardiology"):
        assert text in html, text
    evidence = re.search(r'<dl id="evidence">(.*?)</dl>', html, re.S).group(1)
    assert "AMG secretariat" in evidence and "Passport" in evidence and "Control call" in evidence
    assert evidence.count(f'href="/admin/comptes/{validator.public_id}"') == 5  # presented … transmitted
    assert "X1234567" not in html and re.search(r'id="id-number-shown">•+567<', html)
    assert f'href="{detail_path(transmitted)}/piece-identite"' in html


def test_history_lists_every_step_with_actor_role_ip_and_desk(client, login_as, transmitted, validator):
    admin = login_as(Role.ADMINISTRATOR, username="adm.cyber")
    assert post_action(client, transmitted, "create_account").status_code == 303
    rows = history_rows(page(client, detail_path(transmitted), headers=EN))
    labels = [re.search(r"<th scope=\"row\">(.*?)</th>", row, re.S).group(1).strip() for row in rows]
    assert labels == [
        "Submit the application",
        "Confirm the e-mail address",
        "Applicant present at the desk",
        "Record the identity document",
        "Mobile number verified",
        "Sign section 2",
        "Transmit to the e-health service",
        "Create the login",
    ]
    assert "Applicant" in rows[0] and "(creation)" in rows[0] and "Submitted" in rows[0]
    for row in rows[2:7]:
        assert f'href="/admin/comptes/{validator.public_id}">Val.Amg</a>' in row and "(Validator)" in row
    assert "Desk: AMG secretariat" in rows[2]
    assert "Identity document: Passport" in rows[3]
    assert "Control: Control call" in rows[4]
    assert f'href="/admin/comptes/{admin.public_id}">Adm.Cyber</a>' in rows[7] and "(Administrator)" in rows[7]
    assert ADMIN_IP in rows[7]
    assert "Transmitted, waiting for the login" in rows[7] and "Login created" in rows[7]


def test_messages_to_the_applicant_are_listed_without_their_content(client, login_as, transmitted):
    login_as(Role.ADMINISTRATOR)
    post_action(client, transmitted, "create_account")
    html = page(client, detail_path(transmitted), headers=EN)
    section = re.search(r'id="application-messages">(.*?)</section>', html, re.S).group(1)
    assert "Application received" in section and "Application transmitted" in section
    assert "Login and temporary password" in section and "Waiting to be sent" in section
    mail = OutboxMessage.get(
        (OutboxMessage.template == "temporary_password") & (OutboxMessage.recipient == transmitted.email)
    )
    password = re.search(r"Mot de passe provisoire : (\S+)", mail.body).group(1)
    assert password not in html and mail.body not in html


# -- step 6: the login ----------------------------------------------------------------------------------------------
def test_a_second_administrator_creates_the_login_and_never_sees_the_password(client, login_as, transmitted):
    admin = login_as(Role.ADMINISTRATOR, username="adm.cyber")
    html = page(client, detail_path(transmitted))
    assert re.search(
        rf'<form class="workflow-action" id="action-create-account" method="post" '
        rf'action="{detail_path(transmitted)}/create_account">',
        html,
    )
    logs, events, _mails, _accounts = written()

    response = post_action(client, transmitted, "create_account")

    assert (response.status_code, response.headers["Location"]) == (303, detail_path(transmitted))
    application = fresh(transmitted)
    assert (application.state, application.account_created_by_id) == ("account_created", admin.id)
    account = Account.get_by_id(application.account_id)
    assert (account.state, account.role, account.physician.gln) == ("pending", "physician", application.gln)
    assert {s.code for s in account.physician.specialties()} == {"general-internal-medicine", "cardiology"}
    mails = list(
        OutboxMessage.select().where(
            (OutboxMessage.template == "temporary_password") & (OutboxMessage.recipient == "claire.dupont@example.ch")
        )
    )
    assert len(mails) == 1 and mails[0].channel == "email"
    password = re.search(r"Mot de passe provisoire : (\S+)", mails[0].body).group(1)
    # One enrolment transition and the account's issue_login, each with its audit event.
    assert TransitionLog.select().count() == logs + 2
    assert AuditEvent.select().count() == events + 2
    event = AuditEvent.get(AuditEvent.action == "enrollment.create_account")
    assert (event.actor_id, event.actor_role, event.ip) == (admin.id, "administrator", ADMIN_IP)

    assert password not in response.get_data(as_text=True)
    shown = page(client, response.headers["Location"], headers=EN)
    assert password not in shown
    assert notice(shown) == (
        f"The login {account.username} was created; a temporary password was e-mailed to claire.dupont@example.ch."
    )
    assert re.search(rf'id="login">\s*<a href="/admin/comptes/{account.public_id}">{account.username}</a>', shown)
    assert "/create_account" not in shown  # done: no second button


def test_four_eyes_the_validator_who_handled_the_desk_cannot_create_the_login(
    client, login_as, submit_application, blob
):
    both = login_as(Role.VALIDATOR, username="val.cyber", extra_roles="administrator")
    application = submit_application()
    walk(application, "transmitted", both, blob=blob(application.reference))
    html = page(client, detail_path(application), headers=EN)
    unavailable = re.search(
        r'<div class="workflow-action workflow-action--unavailable" id="action-create-account">(.*?)</div>', html, re.S
    )
    assert unavailable and "disabled" in unavailable.group(1)
    assert "Another administrator must create the login" in unavailable.group(1)
    before = written()

    response = post_action(client, application, "create_account")

    assert response.status_code == 422
    assert "Another administrator must create the login" in response.get_data(as_text=True)
    assert written() == before
    assert (fresh(application).state, fresh(application).account_id) == ("transmitted", None)


# -- rejecting ------------------------------------------------------------------------------------------------------
def test_reject_before_step_six_keeps_the_reason_and_disables_nothing(client, login_as, submit_application, validator):
    login_as(Role.ADMINISTRATOR)
    application = walk(submit_application(), "identity_verified", validator)
    html = page(client, detail_path(application))
    assert re.search(r'<textarea id="reject-reason" name="reason"[^>]*required', html)
    assert "/create_account" not in html  # not the step for it
    logs, events, mails, accounts = written()

    response = post_action(client, application, "reject", reason="  Pièce d'identité illisible ")

    assert response.status_code == 303
    rejected = fresh(application)
    assert (rejected.state, rejected.closed_reason) == ("rejected", "Pièce d'identité illisible")
    assert written() == (logs + 1, events + 1, mails + 1, accounts)
    assert not Account.select().where(Account.state == "disabled").exists()
    mail = OutboxMessage.select().order_by(OutboxMessage.id.desc()).get()
    assert (mail.template, mail.recipient) == ("enrollment_closed", application.email)
    shown = page(client, detail_path(application), headers=EN)
    assert f"The application {application.reference} was rejected" in notice(shown)
    assert "Pièce d&#39;identité illisible" in shown
    assert 'id="reject-reason"' not in shown  # closed: nothing left to do


def test_reject_after_step_six_disables_the_unused_login(client, login_as, transmitted):
    login_as(Role.ADMINISTRATOR)
    assert post_action(client, transmitted, "create_account").status_code == 303
    account = Account.get_by_id(fresh(transmitted).account_id)
    assert account.state == "pending"

    assert post_action(client, transmitted, "reject", reason="Doublon").status_code == 303

    assert fresh(transmitted).state == "rejected"
    assert Account.get_by_id(account.id).state == "disabled"
    log = TransitionLog.select().where(TransitionLog.workflow == "account").order_by(TransitionLog.id.desc()).get()
    assert (log.object_id, log.trigger, log.dest) == (account.id, "disable", "disabled")


@pytest.mark.parametrize("form", [{}, {"reason": ""}, {"reason": "   "}])
def test_reject_without_a_reason_is_refused_and_nothing_written(client, login_as, transmitted, form):
    login_as(Role.ADMINISTRATOR)
    before = written()
    response = post_action(client, transmitted, "reject", **form)
    assert response.status_code == 422
    assert "Give the reason for the rejection." in response.get_data(as_text=True)
    assert written() == before and fresh(transmitted).state == "transmitted"


@pytest.mark.parametrize(
    ("state", "trigger", "form", "status"),
    [
        ("submitted", "present", {"desk": "amg"}, 403),
        ("presented", "verify_identity", {"id_type": "passport"}, 403),
        ("identity_verified", "verify_phone", {"method": "call", "confirmed": "1"}, 403),
        ("transmitted", "transmit", {}, 409),
        ("transmitted", "complete", {}, 409),
        ("transmitted", "withdraw", {}, 403),
        ("transmitted", "expire", {}, 403),
        ("transmitted", "explode", {}, 409),
    ],
)
def test_a_trigger_that_is_not_an_administrators_is_refused_and_nothing_written(
    client, login_as, submit_application, validator, state, trigger, form, status
):
    login_as(Role.ADMINISTRATOR)
    application = walk(submit_application(), state, validator)
    before = written()
    response = post_action(client, application, trigger, **form)
    assert response.status_code == status
    assert written() == before and fresh(application).state == state


# -- the ID copy ----------------------------------------------------------------------------------------------------
def test_id_copy_is_downloaded_as_an_attachment_and_audited(client, login_as, transmitted):
    admin = login_as(Role.ADMINISTRATOR)
    before = AuditEvent.select().count()

    response = client.get(f"{detail_path(transmitted)}/piece-identite", environ_base={"REMOTE_ADDR": ADMIN_IP})

    assert response.status_code == 200 and response.data == PNG
    assert response.mimetype == "image/png"
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="{transmitted.reference}-piece-identite.png"'
    )
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "no-store" in response.headers["Cache-Control"]
    assert AuditEvent.select().count() == before + 1
    event = AuditEvent.select().order_by(AuditEvent.id.desc()).get()
    assert (event.action, event.actor_id, event.actor_role, event.ip) == (
        "enrolment.id_copy_viewed",
        admin.id,
        "administrator",
        ADMIN_IP,
    )
    assert json.loads(event.details)["reference"] == transmitted.reference
    # The file's history shows who downloaded it, and when.
    rows = history_rows(page(client, detail_path(transmitted), headers=EN))
    assert "ID copy downloaded" in rows[-1] and ADMIN_IP in rows[-1] and "(Administrator)" in rows[-1]


def test_no_id_copy_yet_or_a_missing_file_is_404(client, login_as, app, submit_application, validator):
    login_as(Role.ADMINISTRATOR)
    early = walk(submit_application(), "presented", validator)
    assert client.get(f"{detail_path(early)}/piece-identite").status_code == 404
    lost = walk(
        submit_application(gln=gln(7), email="lost@example.ch"), "identity_verified", validator, blob="deadbeef"
    )
    assert client.get(f"{detail_path(lost)}/piece-identite").status_code == 404
    assert not AuditEvent.select().where(AuditEvent.action == "enrolment.id_copy_viewed").exists()


def test_history_shows_other_audited_facts_about_the_application_and_no_one_elses(client, login_as, transmitted):
    login_as(Role.ADMINISTRATOR)
    # As the appointment functions and the desk (web.trail, about=the application) write them.
    audit.record(
        "enrolment.appointment_booked",
        actor_role="applicant",
        object_type="enrollment",
        object_id=transmitted.id,
        details={"reference": transmitted.reference, "slot": 1},
    )
    audit.record(
        "enrolment.control_sms_failed",
        actor_role="validator",
        outcome="failure",
        object_type="enrollment",
        object_id=transmitted.id,
        details={"reference": transmitted.reference},
    )
    # Another application's event, and one that only names this reference without being about it: not shown.
    audit.record("enrolment.control_sms_failed", actor_role="validator", details={"reference": "MH-ZZZZ-ZZZZ"})
    audit.record(
        "enrolment.note",
        actor_role="validator",
        object_type="account",
        object_id=1,
        details={"reference": transmitted.reference},
    )
    rows = history_rows(page(client, detail_path(transmitted), headers=EN))
    assert len(rows) == 7 + 2
    assert "Appointment booked" in rows[-2] and "Applicant" in rows[-2]
    assert "The control SMS could not be sent (failed)" in rows[-1]


def test_the_evidence_says_how_long_a_transmitted_application_waits(client, login_as, transmitted):
    """Section 2 is shared with the desk; only the administrators' page shows the wait."""
    login_as(Role.ADMINISTRATOR)
    html = page(client, detail_path(transmitted), headers=EN)
    assert 'id="id-copy-link"' in html and "(waiting for " in html
