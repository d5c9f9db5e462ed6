"""The engine: all-or-nothing firing, compare-and-set, one log row and one audit event per transition."""

from __future__ import annotations

import datetime as dt

import pytest

from models import Account, AuditEvent, EnrollmentApplication, OutboxMessage, Role, TransitionLog
from security import audit
from workflows import ACCOUNT, ENROLLMENT, SYSTEM, Actor, TransitionRefused, available_actions, engine


def test_firing_writes_state_log_audit_and_outbox_together(make_account):
    admin = make_account(Role.ADMINISTRATOR)
    target = make_account(Role.CLINICIAN)
    logs, events = TransitionLog.select().count(), AuditEvent.select().count()

    engine.fire(ACCOUNT, target, "lock", Actor(Role.ADMINISTRATOR, admin.id, ip="192.0.2.7"))

    stored = Account.get_by_id(target.id)
    assert (stored.state, stored.version) == ("locked", target.version)
    assert TransitionLog.select().count() == logs + 1
    log = TransitionLog.select().order_by(TransitionLog.id.desc()).get()
    assert (log.workflow, log.trigger, log.source, log.dest, log.actor_id) == (
        "account",
        "lock",
        "active",
        "locked",
        admin.id,
    )
    assert AuditEvent.select().count() == events + 1
    event = AuditEvent.select().order_by(AuditEvent.id.desc()).get()
    assert (event.action, event.actor_role, event.ip, event.object_id) == (
        "account.lock",
        "administrator",
        "192.0.2.7",
        str(target.id),
    )
    assert audit.verify().ok


def test_stale_row_is_a_conflict_and_writes_nothing(make_account):
    admin = make_account(Role.ADMINISTRATOR)
    target = make_account(Role.CLINICIAN)
    stale = Account.get_by_id(target.id)
    engine.fire(ACCOUNT, target, "lock", Actor(Role.ADMINISTRATOR, admin.id))
    logs, events = TransitionLog.select().count(), AuditEvent.select().count()

    stale_state_unchanged = Account.get_by_id(target.id)
    with pytest.raises(TransitionRefused) as refused:
        engine.fire(ACCOUNT, stale, "disable", Actor(Role.ADMINISTRATOR, admin.id))
    assert refused.value.reason.code == "conflict"
    assert Account.get_by_id(target.id).state == stale_state_unchanged.state == "locked"
    assert TransitionLog.select().count() == logs
    assert AuditEvent.select().count() == events


def test_same_state_different_version_is_still_a_conflict(make_account):
    """Compare-and-set is on (state, version): a row that left and came back is not the row that was read."""
    admin = make_account(Role.ADMINISTRATOR)
    target = make_account(Role.CLINICIAN)
    stale = Account.get_by_id(target.id)
    engine.fire(ACCOUNT, target, "lock", Actor(Role.ADMINISTRATOR, admin.id))
    engine.fire(ACCOUNT, target, "unlock", Actor(Role.ADMINISTRATOR, admin.id))
    assert stale.state == Account.get_by_id(target.id).state == "active"
    with pytest.raises(TransitionRefused) as refused:
        engine.fire(ACCOUNT, stale, "lock", Actor(Role.ADMINISTRATOR, admin.id))
    assert refused.value.reason.code == "conflict"


def test_failed_guard_raises_with_reason_and_writes_nothing(submit_application, make_account):
    app = submit_application()
    validator = make_account(Role.VALIDATOR)
    before = (TransitionLog.select().count(), AuditEvent.select().count(), OutboxMessage.select().count())
    with pytest.raises(TransitionRefused) as refused:
        engine.fire(ENROLLMENT, app, "present", Actor(Role.VALIDATOR, validator.id), desk="amg")
    assert refused.value.reason.code == "email-unconfirmed"
    assert EnrollmentApplication.get_by_id(app.id).state == "submitted"
    assert before == (TransitionLog.select().count(), AuditEvent.select().count(), OutboxMessage.select().count())


def test_effect_failure_rolls_back_everything(submit_application, make_account, monkeypatch):
    """An exception inside an effect (after the machine moved) leaves no trace: one transaction."""
    app = submit_application()
    admin = make_account(Role.ADMINISTRATOR)
    before = (TransitionLog.select().count(), AuditEvent.select().count(), OutboxMessage.select().count())

    def boom(flow, outcome):
        raise RuntimeError("mail template broken")

    monkeypatch.setattr("workflows.notifications.notify_enrollment_closed", boom)
    with pytest.raises(RuntimeError):
        engine.fire(ENROLLMENT, app, "reject", Actor(Role.ADMINISTRATOR, admin.id), reason="incomplete")
    assert EnrollmentApplication.get_by_id(app.id).state == "submitted"
    assert before == (TransitionLog.select().count(), AuditEvent.select().count(), OutboxMessage.select().count())


def test_wrong_role_and_wrong_state_are_refused(make_account):
    target = make_account(Role.CLINICIAN)
    with pytest.raises(TransitionRefused) as refused:
        engine.fire(ACCOUNT, target, "lock", Actor(Role.PHYSICIAN, 999))
    assert refused.value.reason.code == "forbidden"
    with pytest.raises(TransitionRefused) as refused:
        engine.fire(ACCOUNT, target, "unlock", SYSTEM)
    assert refused.value.reason.code == "wrong-state"
    with pytest.raises(TransitionRefused) as refused:
        engine.fire(ACCOUNT, target, "no_such_trigger", SYSTEM)
    assert refused.value.reason.code == "wrong-state"


def test_available_actions_lists_role_actions_with_reasons(submit_application, make_account):
    app = submit_application()
    validator = make_account(Role.VALIDATOR)
    actions = {a.trigger: a for a in available_actions(ENROLLMENT, app, Actor(Role.VALIDATOR, validator.id))}
    assert set(actions) == {"present", "reject"}
    assert not actions["present"].allowed and actions["present"].reason.code == "email-unconfirmed"
    # Input guards (the rejection reason) are not judged before the input exists.
    assert actions["reject"].allowed
    assert available_actions(ENROLLMENT, app, Actor(Role.CLINICIAN, 1)) == []


def test_create_inserts_through_the_initial_transition(database):
    app = EnrollmentApplication(
        last_name="",
        first_name="X",
        date_of_birth=dt.date(1980, 1, 1),
        gln="1",
        specialty_codes="",
        practice_address="",
        mobile="",
        email="",
    )
    with pytest.raises(TransitionRefused) as refused:
        engine.create(ENROLLMENT, app, "submit", Actor(Role.APPLICANT))
    assert refused.value.reason.code == "incomplete"
    assert EnrollmentApplication.select().count() == 0
    assert TransitionLog.select().count() == 0


def test_one_machine_per_workflow_and_no_machine_on_rows():
    """DESIGN §3: the machine is built once; it never holds a row (model=None)."""
    from workflows import WORKFLOWS

    for workflow in WORKFLOWS.values():
        assert workflow.machine.models == []
        assert "new" in workflow.machine.states


def test_outbox_rows_name_the_record_that_caused_them(submit_application):
    app = submit_application()
    message = OutboxMessage.get(OutboxMessage.template == "enrollment_received")
    assert (message.related_type, message.related_id) == ("enrollment", app.id)
