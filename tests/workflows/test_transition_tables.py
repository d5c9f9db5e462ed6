"""Every (state × trigger × role) of the three workflows is allowed or refused exactly as DESIGN.md §4 says.

The expected tables below are written from DESIGN.md and the seed procedure, not read from the code: a change to
a workflow's TRANSITIONS that is not also a change of the procedure makes this test fail.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest

from models import Role
from workflows import ACCOUNT, DELIVERY, ENROLLMENT, Actor, TransitionRefused
from workflows.engine import Flow

ALL_ROLES = [r.value for r in Role]
APPLICANT, VALIDATOR, ADMIN, PHYSICIAN, CLINICIAN, SYSTEM, DPI = (
    "applicant",
    "validator",
    "administrator",
    "physician",
    "clinician",
    "system",
    "dpi",
)

ENROLLMENT_OPEN = {
    "submitted",
    "presented",
    "identity_verified",
    "phone_verified",
    "signed",
    "transmitted",
    "account_created",
}
# trigger: (from states, to state, roles) — DESIGN §4.1, the seven steps and the side exits.
ENROLLMENT_TABLE = {
    "submit": ({"new"}, "submitted", {APPLICANT}),  # 1
    "confirm_email": ({"submitted"}, "submitted", {APPLICANT}),  # 1: e-mail ownership before step 2
    "present": ({"submitted"}, "presented", {VALIDATOR}),  # 2
    "verify_identity": ({"presented"}, "identity_verified", {VALIDATOR}),  # 3
    "send_control_code": ({"identity_verified"}, "identity_verified", {VALIDATOR}),  # 4
    "verify_phone": ({"identity_verified"}, "phone_verified", {VALIDATOR}),  # 4
    "sign_section_two": ({"phone_verified"}, "signed", {VALIDATOR}),  # 4
    "transmit": ({"signed"}, "transmitted", {VALIDATOR}),  # 5
    "create_account": ({"transmitted"}, "account_created", {ADMIN}),  # 6
    "complete": ({"account_created"}, "completed", {PHYSICIAN}),  # 7: the applicant, now logged in
    "reject": (ENROLLMENT_OPEN, "rejected", {VALIDATOR, ADMIN}),
    "withdraw": (ENROLLMENT_OPEN, "withdrawn", {APPLICANT}),
    "expire": (ENROLLMENT_OPEN, "expired", {SYSTEM}),
}

# DESIGN §4.3: pending → active ⇄ locked → disabled; HIN accounts start active.
ACCOUNT_TABLE = {
    "issue_login": ({"new"}, "pending", {ADMIN, SYSTEM}),
    "provision_hin": ({"new"}, "active", {SYSTEM}),
    "activate": ({"pending"}, "active", {PHYSICIAN, VALIDATOR, ADMIN, CLINICIAN}),
    "lock": ({"pending", "active"}, "locked", {ADMIN, SYSTEM}),
    "unlock": ({"locked"}, "active", {ADMIN}),
    "reissue_password": ({"pending", "active", "locked"}, "pending", {ADMIN}),
    "disable": ({"pending", "active", "locked"}, "disabled", {ADMIN, SYSTEM}),
}

DELIVERY_LIVE = {"finalized", "communicable", "consented", "available", "notified", "consulted", "withheld"}
# DESIGN §4.2: advanced by system triggers; only the recipient consults; recall/supersession/withdrawal revoke.
DELIVERY_TABLE = {
    "create": ({"new"}, "finalized", {SYSTEM, DPI, CLINICIAN}),
    "classify": ({"finalized"}, "communicable", {SYSTEM}),
    "withhold": ({"finalized"}, "withheld", {SYSTEM}),
    "release": ({"withheld"}, "communicable", {SYSTEM}),
    "consent": ({"communicable"}, "consented", {SYSTEM}),
    "make_available": ({"consented"}, "available", {SYSTEM}),
    "notify": ({"available"}, "notified", {SYSTEM}),
    "consult": ({"available", "notified"}, "consulted", {PHYSICIAN}),
    "revoke": (DELIVERY_LIVE, "revoked", {SYSTEM, DPI, CLINICIAN, ADMIN}),
    "reinstate": ({"revoked"}, "finalized", {SYSTEM}),
}

CASES = [(ENROLLMENT, ENROLLMENT_TABLE), (ACCOUNT, ACCOUNT_TABLE), (DELIVERY, DELIVERY_TABLE)]


def _cells():
    for workflow, table in CASES:
        states = [str(s) for s in workflow.states]
        for state, trigger, role in itertools.product(states, sorted(table), ALL_ROLES):
            yield pytest.param(workflow, table, state, trigger, role, id=f"{workflow.name}-{state}-{trigger}-{role}")


@pytest.mark.parametrize(("workflow", "table", "state", "trigger", "role"), list(_cells()))
def test_state_trigger_role(workflow, table, state, trigger, role):
    sources, dest, roles = table[trigger]
    flow = Flow(workflow=workflow, row=SimpleNamespace(state=state), actor=Actor(role, 1), data=None, state=state)
    if state in sources and role in roles:
        spec = workflow.check(flow, trigger)
        assert spec.dest == dest
        assert trigger in workflow.machine.get_triggers(state)  # the transitions.Machine agrees with the table
    else:
        with pytest.raises(TransitionRefused) as refused:
            workflow.check(flow, trigger)
        assert refused.value.reason.code == ("forbidden" if state in sources else "wrong-state")
        if state not in sources:
            assert trigger not in workflow.machine.get_triggers(state)


@pytest.mark.parametrize(("workflow", "table"), CASES, ids=[w.name for w, _ in CASES])
def test_no_undocumented_trigger(workflow, table):
    assert set(workflow.triggers) == set(table)


@pytest.mark.parametrize(("workflow", "table"), CASES, ids=[w.name for w, _ in CASES])
def test_final_states_have_no_way_out(workflow, table):
    for final in workflow.final:
        assert workflow.outgoing(final) == []
        assert workflow.machine.get_triggers(final) == []


def test_every_state_is_reachable_from_new():
    for workflow, _table in CASES:
        reached, frontier = {"new"}, ["new"]
        while frontier:
            state = frontier.pop()
            for spec in workflow.outgoing(state):
                if spec.dest not in reached:
                    reached.add(spec.dest)
                    frontier.append(spec.dest)
        assert reached == {str(s) for s in workflow.states}, workflow.name


def test_only_system_fires_automatic_delivery_steps():
    """Nothing waits for a human except the human facts: every step up to `notified` is the system's."""
    for trigger in ("classify", "withhold", "release", "consent", "make_available", "notify", "reinstate"):
        assert DELIVERY_TABLE[trigger][2] == {SYSTEM}
