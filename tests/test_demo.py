"""`flask demo` data: every workflow in a telling state, built through the engine, idempotent."""

from __future__ import annotations

from models import Account, Delivery, EnrollmentApplication, TransitionLog
from security import audit
from security.passwords import verify_password
from web import demo


def test_demo_data_is_built_through_the_workflows_and_loads_once(database, tmp_path):
    logins = demo.load(str(tmp_path))
    assert demo.load(str(tmp_path)) == logins
    assert Account.select().count() == len(logins) == 6
    for username, password, _role, _what in logins:
        account = Account.get(Account.username == username)
        assert account.state == "active" and verify_password(account.password_hash, password)
    states = sorted(d.state for d in Delivery.select())
    assert states == ["available", "available", "available", "communicable", "withheld"]
    assert sorted(a.state for a in EnrollmentApplication.select()) == ["submitted", "transmitted"]
    assert TransitionLog.select().count() > 20
    assert audit.verify().ok
