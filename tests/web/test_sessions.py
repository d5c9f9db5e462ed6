"""Server-side sessions (DESIGN §6): 30 min idle, 12 h absolute, revocable; and the permission predicates."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from models import Account, Role, Session
from security import permissions, sessions
from workflows import ACCOUNT, SYSTEM, engine

T0 = dt.datetime(2031, 3, 3, 8, 0, tzinfo=dt.UTC)


def logged_in(client) -> bool:
    return 'action="/logout"' in client.get("/").get_data(as_text=True)


def test_the_database_keeps_only_a_digest(make_account):
    account = make_account(Role.CLINICIAN)
    token = sessions.start(account, "192.0.2.1", "x" * 1000, "password+sms")
    row = Session.get()
    assert row.token_hash == sessions.token_digest(token) != token
    assert len(token) >= 43  # 32 random bytes
    assert len(row.user_agent) == 255
    assert sessions.start(account, None, None, "hin") != token


def test_idle_expiry_after_thirty_minutes(client, login_as):
    with time_machine.travel(T0, tick=False) as traveller:
        account = login_as(Role.CLINICIAN)
        assert logged_in(client)
        traveller.shift(dt.timedelta(minutes=29))
        assert logged_in(client)  # activity moves the idle deadline
        traveller.shift(dt.timedelta(minutes=29))
        assert logged_in(client)
        traveller.shift(dt.timedelta(minutes=30))
        assert not logged_in(client)
        assert client.get_cookie(sessions.COOKIE_NAME) is None  # the dead cookie is dropped
        assert Session.get(Session.account == account.id).revoked_at is not None
        client.set_cookie(sessions.COOKIE_NAME, account.session_token)
        assert not logged_in(client)


def test_absolute_expiry_after_twelve_hours_even_when_active(client, login_as):
    with time_machine.travel(T0, tick=False) as traveller:
        login_as(Role.CLINICIAN)
        for _ in range(12 * 3 - 1):
            traveller.shift(dt.timedelta(minutes=20))
            assert logged_in(client)
        traveller.shift(dt.timedelta(minutes=20))  # 12 h after the login
        assert not logged_in(client)


def test_last_seen_is_written_at_most_once_a_minute(make_account):
    account = make_account(Role.CLINICIAN)
    with time_machine.travel(T0, tick=False) as traveller:
        token = sessions.start(account, None, None, "password+sms")
        traveller.shift(dt.timedelta(seconds=30))
        assert sessions.load(token).last_seen_at == T0.replace(tzinfo=None)
        traveller.shift(dt.timedelta(seconds=31))
        assert sessions.load(token).last_seen_at == T0.replace(tzinfo=None) + dt.timedelta(seconds=61)
    assert Session.get().last_seen_at == T0.replace(tzinfo=None) + dt.timedelta(seconds=61)


def test_a_locked_account_loses_its_sessions(client, login_as):
    account = login_as(Role.CLINICIAN)
    assert logged_in(client)
    engine.fire(ACCOUNT, account, "lock", SYSTEM)
    assert not logged_in(client)
    assert sessions.load(account.session_token) is None


def test_end_all_keeps_only_the_session_asked_for(make_account):
    account = make_account(Role.CLINICIAN)
    other = make_account(Role.CLINICIAN)
    tokens = [sessions.start(account, None, None, "password+sms") for _ in range(3)]
    kept = sessions.load(tokens[0])
    foreign = sessions.start(other, None, None, "password+sms")
    assert sessions.end_all(account.id, except_session_id=kept.id) == 2
    assert [sessions.load(t) is not None for t in tokens] == [True, False, False]
    assert sessions.load(foreign) is not None
    assert sessions.end(tokens[0]) is True
    assert sessions.end(tokens[0]) is False
    assert sessions.load(None) is None and sessions.load("not-a-token") is None


@pytest.mark.parametrize(
    ("role", "state", "expected"),
    [
        (Role.ADMINISTRATOR, "active", {"is_administrator", "can_view_workflows", "can_use_validation_desk"}),
        (Role.ADMINISTRATOR, "pending", set()),
        (Role.VALIDATOR, "active", {"is_validator", "can_use_validation_desk"}),
        (Role.CLINICIAN, "active", {"is_clinician", "can_record_designations"}),
        (Role.PHYSICIAN, "active", {"is_physician", "can_read_own_documents"}),
        (Role.PHYSICIAN, "locked", set()),
    ],
)
def test_permissions_by_role_and_state(make_account, make_physician, role, state, expected):
    physician = make_physician() if role == Role.PHYSICIAN else None
    account = make_account(role, physician=physician, state=state)
    names = {
        "is_administrator",
        "is_validator",
        "is_clinician",
        "is_physician",
        "can_view_workflows",
        "can_use_validation_desk",
        "can_record_designations",
        "can_read_own_documents",
    }
    granted = {name for name in names if permissions.PREDICATES[name](account)}
    assert granted == expected
    assert not any(permissions.PREDICATES[name](None) for name in names)


def test_extra_roles_count_for_staff(make_account):
    desk = make_account(Role.VALIDATOR)
    assert not permissions.can_view_workflows(desk)
    Account.update(extra_roles="administrator").where(Account.id == desk.id).execute()
    desk = Account.get_by_id(desk.id)
    assert permissions.can_view_workflows(desk) and permissions.is_validator(desk)
