"""The account workflow's guards and effects (DESIGN §4.3, §6): each rule refused with its reason, and honoured.

Which role may fire what from which state is tested once for all workflows in test_transition_tables.py; these
tests are about what the guards check and what a firing leaves behind.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets

import pytest

from models import Account, AuditEvent, OutboxMessage, Role, Session, TransitionLog, gln_with_check_digit
from security import audit
from security.passwords import hash_password, verify_password
from workflows import ACCOUNT, SYSTEM, Actor, available_actions, engine, may
from workflows.account import TEMPORARY_PASSWORD_HOURS

HIN_ISSUER = "https://oidc.hin.ch"


# -- helpers ---------------------------------------------------------------------------------------------------
def _new_account(role=Role.PHYSICIAN, physician=None, **fields) -> Account:
    username = fields.pop("username", f"{role}-{secrets.token_hex(3)}")
    return Account(username=username, email=f"{username}@example.ch", role=role, physician=physician, **fields)


def _wrong_check_digit(first_twelve: str) -> str:
    gln = gln_with_check_digit(first_twelve)
    return gln[:12] + str((int(gln[12]) + 1) % 10)


def _mailed_password(message: OutboxMessage) -> str:
    french = re.search(r"Mot de passe provisoire : (\S+)", message.body).group(1)
    english = re.search(r"Temporary password: (\S+)", message.body).group(1)
    assert french == english
    return french


def _replace_temporary_password(account: Account) -> Account:
    """What the holder's first login does before activating: a permanent password of their own."""
    Account.update(
        password_hash=hash_password("correct horse battery staple"),
        password_is_temporary=False,
        temporary_password_expires_at=None,
    ).where(Account.id == account.id).execute()
    return Account.get_by_id(account.id)


def _open_sessions(account: Account, n: int = 2) -> list[Session]:
    return [Session.create(token_hash=secrets.token_hex(32), account=account) for _ in range(n)]


def _hin_only(make_physician) -> Account:
    account = _new_account(physician=make_physician())
    return engine.create(
        ACCOUNT, account, "provision_hin", SYSTEM, identity_type="personal", issuer=HIN_ISSUER, subject="hin-4711"
    )


@pytest.fixture
def admin(make_account):
    account = make_account(Role.ADMINISTRATOR)
    return Actor(Role.ADMINISTRATOR, account.id, ip="192.0.2.10")


# -- issue_login / provision_hin: one physician, one GLN, no other role ---------------------------------------
def no_physician(make_physician):
    return {"physician": None}


def wrong_gln_check_digit(make_physician):
    return {"physician": make_physician(gln=_wrong_check_digit("760100012345"))}


def also_administrator(make_physician):
    return {"physician": make_physician(), "extra_roles": "administrator"}


def also_validator_and_clinician(make_physician):
    return {"physician": make_physician(), "extra_roles": "validator,clinician"}


NOT_ONE_PHYSICIAN = [
    pytest.param(no_physician, "no-physician", id="no-physician"),
    pytest.param(wrong_gln_check_digit, "bad-gln", id="wrong-gln-check-digit"),
    pytest.param(also_administrator, "physician-only", id="also-administrator"),
    pytest.param(also_validator_and_clinician, "physician-only", id="also-validator-and-clinician"),
]
HIN_PERSONAL = {"identity_type": "personal", "issuer": HIN_ISSUER, "subject": "hin-0001"}


@pytest.mark.parametrize(("arrange", "code"), NOT_ONE_PHYSICIAN)
@pytest.mark.parametrize(
    ("trigger", "data"), [("issue_login", {}), ("provision_hin", HIN_PERSONAL)], ids=["issue_login", "provision_hin"]
)
def test_a_physician_account_is_one_physician_with_a_valid_gln_and_no_other_role(
    make_physician, refused, trigger, data, arrange, code
):
    account = _new_account(**arrange(make_physician))
    with refused(account, code):
        engine.create(ACCOUNT, account, trigger, SYSTEM, **data)
    assert account.id is None


@pytest.mark.parametrize("role", [Role.PHYSICIAN, Role.CLINICIAN])
def test_issue_login_mails_a_single_use_temporary_password_that_is_stored_only_hashed(
    make_physician, admin, frozen_now, role
):
    account = _new_account(role, physician=make_physician() if role == Role.PHYSICIAN else None)
    outbox = OutboxMessage.select().count()

    engine.create(ACCOUNT, account, "issue_login", admin)

    stored = Account.get_by_id(account.id)
    assert (stored.state, stored.version) == ("pending", 1)
    assert stored.password_hash.startswith("$argon2id$")
    assert stored.password_is_temporary
    assert frozen_now < stored.temporary_password_expires_at <= frozen_now + dt.timedelta(hours=72)
    assert stored.temporary_password_expires_at == frozen_now + dt.timedelta(hours=TEMPORARY_PASSWORD_HOURS)

    assert OutboxMessage.select().count() == outbox + 1
    mail = OutboxMessage.get(OutboxMessage.recipient == account.email)
    assert (mail.channel, mail.template) == ("email", "temporary_password")
    password = _mailed_password(mail)
    assert verify_password(stored.password_hash, password)
    assert password not in stored.password_hash

    event = AuditEvent.get(AuditEvent.action == "account.issue_login", AuditEvent.object_id == str(account.id))
    assert event.actor_id == admin.account_id
    for row in AuditEvent.select():
        assert password not in row.details
    for log in TransitionLog.select():
        assert password not in (log.note or "")
    assert audit.verify().ok


def test_two_logins_get_two_different_temporary_passwords(make_physician, admin):
    first = engine.create(ACCOUNT, _new_account(physician=make_physician()), "issue_login", admin)
    second = engine.create(ACCOUNT, _new_account(physician=make_physician()), "issue_login", admin)
    mails = [OutboxMessage.get(OutboxMessage.recipient == a.email) for a in (first, second)]
    assert _mailed_password(mails[0]) != _mailed_password(mails[1])


@pytest.mark.parametrize(
    ("data", "code"),
    [
        pytest.param({**HIN_PERSONAL, "identity_type": "team"}, "team-identity", id="team"),
        pytest.param({"issuer": HIN_ISSUER, "subject": "hin-0001"}, "team-identity", id="no-identity-type"),
        pytest.param({**HIN_PERSONAL, "subject": ""}, "no-subject", id="no-subject"),
        pytest.param({**HIN_PERSONAL, "subject": None}, "no-subject", id="subject-none"),
        pytest.param({**HIN_PERSONAL, "issuer": ""}, "no-subject", id="no-issuer"),
    ],
)
def test_provision_hin_refuses_a_team_or_anonymous_identity(make_physician, refused, data, code):
    account = _new_account(physician=make_physician())
    with refused(account, code):
        engine.create(ACCOUNT, account, "provision_hin", SYSTEM, **data)


def test_provision_hin_creates_an_active_account_keyed_on_issuer_and_subject(make_physician):
    outbox = OutboxMessage.select().count()
    account = _new_account(physician=make_physician())

    engine.create(ACCOUNT, account, "provision_hin", SYSTEM, **HIN_PERSONAL)

    stored = Account.get_by_id(account.id)
    assert (stored.state, stored.hin_issuer, stored.hin_subject) == ("active", HIN_ISSUER, "hin-0001")
    assert stored.password_hash is None  # no password is mailed to a HIN account
    assert OutboxMessage.select().count() == outbox
    log = TransitionLog.get(TransitionLog.workflow == "account", TransitionLog.object_id == account.id)
    assert (log.trigger, log.source, log.dest) == ("provision_hin", "new", "active")


def test_one_account_per_username_physician_and_hin_identity(make_physician, refused):
    """One account per person: refused with a reason before the database's unique indexes would fail."""
    physician = make_physician()
    engine.create(ACCOUNT, _new_account(physician=physician, username="cdupont"), "issue_login", SYSTEM)
    taken_username = _new_account(role=Role.CLINICIAN, username="cdupont")
    with refused(taken_username, "username-taken"):
        engine.create(ACCOUNT, taken_username, "issue_login", SYSTEM)
    second_for_physician = _new_account(physician=physician)
    with refused(second_for_physician, "physician-has-account"):
        engine.create(ACCOUNT, second_for_physician, "provision_hin", SYSTEM, **HIN_PERSONAL)

    engine.create(ACCOUNT, _new_account(physician=make_physician()), "provision_hin", SYSTEM, **HIN_PERSONAL)
    same_hin_identity = _new_account(physician=make_physician())
    with refused(same_hin_identity, "hin-identity-taken"):
        engine.create(ACCOUNT, same_hin_identity, "provision_hin", SYSTEM, **HIN_PERSONAL)


def test_a_staff_account_is_never_tied_to_a_physician(make_physician, refused):
    account = _new_account(role=Role.CLINICIAN, physician=make_physician())
    with refused(account, "staff-with-physician"):
        engine.create(ACCOUNT, account, "issue_login", SYSTEM)


# -- activate: the holder, with a password of their own and a complete profile ---------------------------------
@pytest.fixture
def pending_physician(make_physician, make_account):
    """A physician whose login was issued and who replaced the temporary password: ready to activate."""
    physician = make_physician()
    account = make_account(Role.PHYSICIAN, physician=physician, state="pending")
    return _replace_temporary_password(account)


def test_activate_by_the_holder_with_a_permanent_password_and_complete_profile(pending_physician):
    Account.update(failed_attempts=3).where(Account.id == pending_physician.id).execute()
    account = Account.get_by_id(pending_physician.id)

    engine.fire(ACCOUNT, account, "activate", Actor(Role.PHYSICIAN, account.id))

    stored = Account.get_by_id(account.id)
    assert (stored.state, stored.version, stored.failed_attempts) == ("active", account.version, 0)


def test_a_staff_account_has_no_physician_profile_to_complete(make_account):
    account = _replace_temporary_password(make_account(Role.CLINICIAN, state="pending"))
    engine.fire(ACCOUNT, account, "activate", Actor(Role.CLINICIAN, account.id))
    assert Account.get_by_id(account.id).state == "active"


def test_only_the_holder_activates(pending_physician, make_physician, make_account, admin, refused):
    other = make_account(Role.PHYSICIAN, physician=make_physician())
    for actor in (admin, Actor(Role.PHYSICIAN, other.id), Actor(Role.PHYSICIAN, None)):
        with refused(pending_physician, "forbidden"):
            engine.fire(ACCOUNT, pending_physician, "activate", actor)


def test_activate_refused_while_the_password_is_temporary(make_physician, make_account, refused):
    account = make_account(Role.PHYSICIAN, physician=make_physician(), state="pending")
    assert account.password_is_temporary
    with refused(account, "temporary-password"):
        engine.fire(ACCOUNT, account, "activate", Actor(Role.PHYSICIAN, account.id))
    assert may(ACCOUNT, account, "activate", Actor(Role.PHYSICIAN, account.id)).code == "temporary-password"


def no_specialty(physician):
    physician.specialty_links[0].delete_instance()


def empty_practice_address(physician):
    physician.practice_address = ""
    physician.save()


def blank_practice_address(physician):
    physician.practice_address = "  \n "
    physician.save()


def no_email(physician):
    physician.email = ""
    physician.save()


@pytest.mark.parametrize("incomplete", [no_specialty, empty_practice_address, blank_practice_address, no_email])
def test_activate_refused_while_the_profile_is_incomplete(pending_physician, refused, incomplete):
    incomplete(pending_physician.physician)
    account = Account.get_by_id(pending_physician.id)
    holder = Actor(Role.PHYSICIAN, account.id)
    with refused(account, "profile-incomplete"):
        engine.fire(ACCOUNT, account, "activate", holder)
    assert may(ACCOUNT, account, "activate", holder).code == "profile-incomplete"


# -- lock / disable: never oneself; every session ends ---------------------------------------------------------
@pytest.mark.parametrize("trigger", ["lock", "disable", "reissue_password"])
def test_an_administrator_cannot_act_on_their_own_account(admin, refused, trigger):
    own = Account.get_by_id(admin.account_id)
    _open_sessions(own)
    with refused(own, "self"):
        engine.fire(ACCOUNT, own, trigger, admin)
    action = {a.trigger: a for a in available_actions(ACCOUNT, own, admin)}[trigger]
    assert not action.allowed and action.reason.code == "self"


@pytest.mark.parametrize(
    ("trigger", "state", "by_system"),
    [
        ("lock", "pending", False),
        ("lock", "active", False),
        ("lock", "active", True),
        ("disable", "pending", False),
        ("disable", "active", True),
        ("disable", "locked", False),
    ],
)
def test_lock_and_disable_end_every_session_of_the_account(
    make_account, make_physician, admin, frozen_now, trigger, state, by_system
):
    target = make_account(Role.PHYSICIAN, physician=make_physician(), state=state)
    bystander = make_account(Role.CLINICIAN)
    sessions, others = _open_sessions(target), _open_sessions(bystander)
    earlier = frozen_now - dt.timedelta(days=1)
    ended = Session.create(token_hash=secrets.token_hex(32), account=target, revoked_at=earlier)

    engine.fire(ACCOUNT, target, trigger, SYSTEM if by_system else admin)

    assert Account.get_by_id(target.id).state == {"lock": "locked", "disable": "disabled"}[trigger]
    assert all(Session.get_by_id(s.id).revoked_at == frozen_now for s in sessions)
    assert all(Session.get_by_id(s.id).revoked_at is None for s in others)
    assert Session.get_by_id(ended.id).revoked_at == earlier


# -- unlock ----------------------------------------------------------------------------------------------------
def test_unlock_refused_while_the_password_is_temporary(make_account, admin, refused):
    account = make_account(Role.VALIDATOR, state="pending")
    engine.fire(ACCOUNT, account, "lock", admin)
    with refused(account, "temporary-password"):
        engine.fire(ACCOUNT, account, "unlock", admin)


def test_unlock_reactivates_and_clears_the_failures(make_account, admin, frozen_now):
    account = make_account(Role.VALIDATOR, state="locked")
    Account.update(failed_attempts=10, next_attempt_at=frozen_now + dt.timedelta(minutes=15)).where(
        Account.id == account.id
    ).execute()
    account = Account.get_by_id(account.id)

    engine.fire(ACCOUNT, account, "unlock", admin)

    stored = Account.get_by_id(account.id)
    assert (stored.state, stored.failed_attempts, stored.next_attempt_at) == ("active", 0, None)


def test_a_hin_only_account_can_be_unlocked(make_physician, admin):
    account = _hin_only(make_physician)
    engine.fire(ACCOUNT, account, "lock", admin)
    engine.fire(ACCOUNT, account, "unlock", admin)
    assert Account.get_by_id(account.id).state == "active"


# -- reissue_password ------------------------------------------------------------------------------------------
def test_reissue_password_refused_for_a_hin_only_physician(make_physician, admin, refused):
    account = _hin_only(make_physician)
    with refused(account, "hin-only"):
        engine.fire(ACCOUNT, account, "reissue_password", admin)
    assert may(ACCOUNT, account, "reissue_password", admin).code == "hin-only"


@pytest.mark.parametrize("state", ["pending", "active", "locked"])
def test_reissue_password_mails_a_new_temporary_password_and_ends_sessions(
    make_account, make_physician, admin, frozen_now, state
):
    account = make_account(Role.PHYSICIAN, physician=make_physician(), state=state)
    old_password, old_hash = account.issued_password, account.password_hash
    sessions = _open_sessions(account)
    mails = OutboxMessage.select().where(OutboxMessage.recipient == account.email).count()

    engine.fire(ACCOUNT, account, "reissue_password", admin)

    stored = Account.get_by_id(account.id)
    assert stored.state == "pending"
    assert stored.password_is_temporary
    assert stored.password_hash != old_hash
    assert frozen_now < stored.temporary_password_expires_at <= frozen_now + dt.timedelta(hours=72)
    new_mails = OutboxMessage.select().where(OutboxMessage.recipient == account.email).order_by(OutboxMessage.id)
    assert new_mails.count() == mails + 1
    password = _mailed_password(new_mails[-1])
    assert verify_password(stored.password_hash, password)
    assert not verify_password(stored.password_hash, old_password)
    assert all(Session.get_by_id(s.id).revoked_at == frozen_now for s in sessions)
    assert all(password not in e.details for e in AuditEvent.select())


# -- disabled is final -----------------------------------------------------------------------------------------
def test_a_disabled_account_stays_disabled(make_account, make_physician, admin, refused):
    account = make_account(Role.PHYSICIAN, physician=make_physician(), state="disabled")
    assert available_actions(ACCOUNT, account, admin) == []
    for trigger in ACCOUNT.triggers:
        for actor in (admin, SYSTEM, Actor(Role.PHYSICIAN, account.id)):
            with refused(account, "wrong-state"):
                engine.fire(ACCOUNT, account, trigger, actor, **HIN_PERSONAL)


def test_a_reissued_password_mail_says_it_is_a_new_password(make_account, admin):
    account = make_account(Role.CLINICIAN)
    engine.fire(ACCOUNT, Account.get_by_id(account.id), "reissue_password", admin)
    first, second = OutboxMessage.select().where(OutboxMessage.recipient == account.email).order_by(OutboxMessage.id)
    assert "a été créé" in first.body and "nouveau mot de passe provisoire" not in first.subject
    assert "nouveau mot de passe provisoire" in second.subject and "a été créé" not in second.body
    assert _mailed_password(first) != _mailed_password(second)
