"""The one place that fires a trigger: role, state and guards checked, then compare-and-set, log, audit, outbox.

Each workflow declares its states and a TRANSITIONS table of `Transition` rows. `Workflow` builds one shared
`transitions.Machine` from it (model=None: the machine never holds a row, DESIGN §3); a `Flow` wraps the row for
one firing. Guards are pure and return a `Reason` when they fail, so the same functions explain why a button is
disabled and refuse the POST that tries anyway.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from transitions import Machine, MachineError

from models import OutboxMessage, Role, TransitionLog, db, insert_rows, utcnow
from security import audit


def N_(text: str) -> str:
    """Mark a message for translation; the web layer translates it when it shows it (no Flask here)."""
    return text


@dataclass(frozen=True)
class Reason:
    """Why something cannot happen: a stable code (DESIGN §5 reason codes where one applies) and a message id."""

    code: str
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Actor:
    """Who fires a trigger: an account (by id) in a role, or the system, the DPI, an applicant."""

    role: str
    account_id: int | None = None
    ip: str | None = None
    # What the actor proved about a record without an account role (an applicant's application reference).
    proof: str | None = None


SYSTEM = Actor(Role.SYSTEM)


class TransitionRefused(Exception):
    """The one domain exception: wrong state, wrong role, a failed guard, or a concurrent change."""

    def __init__(self, reason: Reason):
        super().__init__(reason.text)
        self.reason = reason


WRONG_STATE = "wrong-state"
FORBIDDEN = "forbidden"
CONFLICT = "conflict"

CHANGED_MEANWHILE = Reason(CONFLICT, N_("Someone else changed this record in the meantime; reload and try again."))

Guard = Callable[["Flow"], Reason | None]
Effect = Callable[["Flow"], None]


def input_guard(guard: Guard) -> Guard:
    """A guard that checks what the actor submits (a code, a reason): skipped when only listing actions."""
    guard.needs_input = True  # type: ignore[attr-defined]
    return guard


@dataclass(frozen=True)
class Transition:
    """One row of a TRANSITIONS table."""

    trigger: str
    source: tuple[str, ...]
    dest: str
    roles: frozenset[str]
    guards: tuple[Guard, ...] = ()
    effects: tuple[Effect, ...] = ()
    label: str = ""


def T(trigger, source, dest, *, roles, guards=(), effects=(), label="") -> Transition:
    """Table-friendly constructor: `source` may be one state or several; states may be enum members."""
    sources = (source,) if isinstance(source, str) else tuple(source)
    return Transition(
        trigger=trigger,
        source=tuple(str(s) for s in sources),
        dest=str(dest),
        roles=frozenset(str(r) for r in roles),
        guards=tuple(guards),
        effects=tuple(effects),
        label=label or trigger.replace("_", " "),
    )


@dataclass
class Flow:
    """One firing: the row, who acts, what they submitted, and what the transition leaves behind."""

    workflow: Workflow
    row: object
    actor: Actor
    data: dict | None
    state: str = ""
    refusal: Reason | None = None
    outbox: list[OutboxMessage] = field(default_factory=list)
    audit_details: dict = field(default_factory=dict)
    note: str | None = None
    after_commit: list[Callable[[], None]] = field(default_factory=list)
    # The firing's clock: every step of a chain and every row of a bulk firing share it, so that effects stamping
    # a time (available_at, notified_at) agree with the state_changed_at written with them.
    now: dt.datetime = field(default_factory=utcnow)

    def get(self, key, default=None):
        return (self.data or {}).get(key, default)


@dataclass(frozen=True)
class Action:
    """What a button needs: the trigger, its label, whether it may be fired now, and if not, why."""

    trigger: str
    label: str
    allowed: bool
    reason: Reason | None


class Workflow:
    """A state machine declared as data; one `transitions.Machine` shared by every row."""

    def __init__(
        self,
        name: str,
        model,
        states: type[StrEnum],
        transitions: Iterable[Transition],
        *,
        initial: str = "new",
        final: Iterable[str] = (),
    ):
        self.name = name
        self.model = model
        self.states = states
        self.initial = str(initial)
        self.final = frozenset(str(s) for s in final)
        self.transitions = list(transitions)
        self._specs: dict[tuple[str, str], Transition] = {}
        for spec in self.transitions:
            for source in spec.source:
                key = (spec.trigger, source)
                if key in self._specs:
                    raise ValueError(f"{name}: trigger {spec.trigger!r} declared twice from {source!r}")
                self._specs[key] = spec
        self.machine = Machine(
            model=None,
            states=[str(s) for s in states],
            transitions=[
                {
                    "trigger": spec.trigger,
                    "source": list(spec.source),
                    "dest": spec.dest,
                    "conditions": [self._condition],
                    "after": [self._after],
                }
                for spec in self.transitions
            ],
            model_attribute="state",
            auto_transitions=False,
            send_event=True,
            initial=None,
        )

    # -- lookups -------------------------------------------------------------------------------------------
    @property
    def triggers(self) -> list[str]:
        return list(dict.fromkeys(spec.trigger for spec in self.transitions))

    def spec(self, trigger: str, source: str) -> Transition | None:
        return self._specs.get((trigger, str(source)))

    def outgoing(self, state: str) -> list[Transition]:
        return [spec for spec in self.transitions if str(state) in spec.source]

    # -- machine callbacks (the machine calls them with an EventData because send_event=True) --------------
    def _condition(self, event) -> bool:
        flow: Flow = event.model
        flow.refusal = self.first_failure(self._specs[(event.event.name, event.transition.source)], flow)
        return flow.refusal is None

    def _after(self, event) -> None:
        flow: Flow = event.model
        for effect in self._specs[(event.event.name, event.transition.source)].effects:
            effect(flow)

    # -- checks --------------------------------------------------------------------------------------------
    @staticmethod
    def first_failure(spec: Transition, flow: Flow, *, with_input: bool = True) -> Reason | None:
        for guard in spec.guards:
            if not with_input and getattr(guard, "needs_input", False):
                continue
            reason = guard(flow)
            if reason is not None:
                return reason
        return None

    def check(self, flow: Flow, trigger: str) -> Transition:
        """Role and state: raise TransitionRefused, else return the row of the table that applies."""
        if trigger not in self.machine.events:
            raise TransitionRefused(Reason(WRONG_STATE, N_("This action does not exist.")))
        spec = self.spec(trigger, flow.state)
        if spec is None:
            raise TransitionRefused(Reason(WRONG_STATE, N_("This action is not possible at this step.")))
        if str(flow.actor.role) not in spec.roles:
            raise TransitionRefused(Reason(FORBIDDEN, N_("Your role does not allow this action.")))
        return spec


# -- firing ---------------------------------------------------------------------------------------------------
def _flow(workflow: Workflow, row, actor: Actor, data: dict | None, state: str, now: dt.datetime | None = None) -> Flow:
    return Flow(workflow=workflow, row=row, actor=actor, data=data, state=state, now=now or utcnow())


def fire(workflow: Workflow, row, trigger: str, actor: Actor, **data):
    """Fire `trigger` on a saved row. All or nothing: state, log, audit event and outbox in one transaction."""
    return _run(workflow, row, (trigger, actor, data), (), actor)


def create(workflow: Workflow, row, trigger: str, actor: Actor, **data):
    """Insert a new row through the trigger that leaves the workflow's initial ("new") pseudo-state."""
    if row.id is not None:
        raise ValueError("create() takes an unsaved row")
    return _run(workflow, row, (trigger, actor, data), (), actor)


def settle(
    workflow: Workflow,
    row,
    automatic: Collection[str],
    actor: Actor = SYSTEM,
    *,
    start: tuple[str, Actor] | None = None,
):
    """Fire `start` (a trigger and who fires it; for an unsaved row, the trigger that creates it) if given, then,
    from each state reached, the first trigger of `automatic` that `actor` may fire and whose guards hold, until
    none does. Every step keeps its own log row and audit event, but the row is written once (one INSERT, or one
    compare-and-set UPDATE from the state it was read in): a delivery going new → available costs one write, not
    four. Returns the row, unchanged when nothing could fire."""
    first = None if start is None else (start[0], start[1], None)
    return _run(workflow, row, first, frozenset(automatic), actor)


def fire_many(workflow: Workflow, rows: Iterable, trigger: str, actor: Actor, **data) -> tuple[list, list]:
    """Fire one trigger on many rows at once (a notification accepted for twenty documents): guards and effects
    per row in memory, then one compare-and-set UPDATE on every (id, version) read, one INSERT of the log rows, one
    audit append. Returns (fired, refused as (row, Reason) pairs); refused rows are left alone.

    All or nothing: if any row changed since it was read, nothing is written and TransitionRefused(conflict) is
    raised, so that the caller can fall back to firing the rows one by one. Rows whose effects leave different
    column values are written by one UPDATE per distinct set of values.
    """
    now = utcnow()
    fired, refused, steps = [], [], []
    try:
        with db.atomic():
            for row in rows:
                flow = _flow(workflow, row, actor, data, row.state, now)
                try:
                    _step(flow, workflow.check(flow, trigger), trigger, steps, refused_is_error=True)
                except TransitionRefused as refusal:
                    refused.append((row, refusal.reason))
                    continue
                fired.append(row)
            if steps:
                _update_many(workflow, steps, now)
                _log_and_audit(workflow, steps, now)
    except BaseException:
        for step in steps:
            step.flow.row.state = step.source  # nothing was written: the rows in memory say so too
        raise
    for step in steps:
        row = step.flow.row
        row.version, row.state_changed_at = row.version + 1, now
        row._dirty.clear()
        for callback in step.flow.after_commit:
            callback()
    return fired, refused


def _update_many(workflow: Workflow, steps: list[_Step], now: dt.datetime) -> None:
    """One compare-and-set UPDATE per distinct (state, version read; state reached; column values) among the
    steps: `id IN (…) AND state = ? AND version = ?` keeps to the primary key (a row-value `(id, version) IN` made
    SQLite scan the table)."""
    model = workflow.model
    groups: dict[tuple, list[_Step]] = {}
    for step in steps:
        row = step.flow.row
        changes = tuple(
            sorted((f.name, row.__data__.get(f.name)) for f in row.dirty_fields if f.name not in ("state", "version"))
        )
        groups.setdefault((step.source, row.version, step.flow.state, changes), []).append(step)
    for (source, version, dest, changes), group in groups.items():
        columns = {model._meta.fields[name]: value for name, value in changes}
        columns.update({model.state: dest, model.version: version + 1, model.state_changed_at: now})
        read = [step.flow.row.id for step in group]
        where = model.id.in_(read) & (model.state == source) & (model.version == version)
        updated = model.update(columns).where(where).execute()
        if updated != len(group):
            raise TransitionRefused(CHANGED_MEANWHILE)


@dataclass
class _Step:
    flow: Flow
    spec: Transition
    trigger: str
    source: str


def _run(workflow: Workflow, row, first, automatic: frozenset[str], actor: Actor):
    source = row.state if row.id is not None else workflow.initial
    state_in_memory = row.state
    now = utcnow()
    steps: list[_Step] = []
    try:
        with db.atomic():
            state = source
            if first is not None:
                trigger, first_actor, data = first
                flow = _flow(workflow, row, first_actor, data, state, now)
                spec = workflow.check(flow, trigger)
                state = _step(flow, spec, trigger, steps, refused_is_error=True)
            while automatic:
                for spec in workflow.outgoing(state):
                    if spec.trigger in automatic and str(actor.role) in spec.roles:
                        flow = _flow(workflow, row, actor, None, state, now)
                        if _step(flow, spec, spec.trigger, steps, refused_is_error=False) is not None:
                            state = flow.state
                            break
                else:
                    break
            if steps:
                _persist(workflow, row, source, steps, now)
    except BaseException:
        row.state = state_in_memory  # nothing was written: the row in memory says so too
        raise
    for step in steps:
        for callback in step.flow.after_commit:
            callback()
    return row


def _step(flow: Flow, spec: Transition, trigger: str, steps: list[_Step], *, refused_is_error: bool) -> str | None:
    """Run one transition in memory (guards, then effects); the state reached, or None when a guard refused."""
    source = flow.state
    try:
        fired = flow.workflow.machine.events[trigger].trigger(flow)
    except MachineError as exc:  # only reachable if the table and the machine disagree
        raise TransitionRefused(Reason(WRONG_STATE, N_("This action is not possible at this step."))) from exc
    if not fired:
        if refused_is_error:
            raise TransitionRefused(flow.refusal or Reason(FORBIDDEN, N_("This action is not allowed.")))
        return None
    steps.append(_Step(flow, spec, trigger, source))
    flow.row.state = flow.state  # later guards of the same chain see the state reached
    return flow.state


def _persist(workflow: Workflow, row, source: str, steps: list[_Step], now: dt.datetime) -> None:
    model = workflow.model
    state = steps[-1].flow.state
    if row.id is None:
        row.state, row.version, row.state_changed_at = state, len(steps), now
        row.save(force_insert=True)
    else:
        # Raw column values (row.__data__), so that a foreign key never triggers a query.
        changes = {f: row.__data__.get(f.name) for f in row.dirty_fields}
        changes.pop(model.state, None)
        changes.pop(model.version, None)
        changes.update({model.state: state, model.version: model.version + len(steps), model.state_changed_at: now})
        updated = (
            model.update(changes)
            .where((model.id == row.id) & (model.state == source) & (model.version == row.version))
            .execute()
        )
        if updated != 1:
            # Someone else changed the row since it was read: refuse, and let the transaction roll back.
            raise TransitionRefused(CHANGED_MEANWHILE)
        row.state, row.version, row.state_changed_at = state, row.version + len(steps), now
        row._dirty.clear()
    _log_and_audit(workflow, steps, now)


def _log_and_audit(workflow: Workflow, steps: list[_Step], now: dt.datetime) -> None:
    """One INSERT for the steps' log rows, one audit append for their events, then their outbox messages."""
    insert_rows(
        TransitionLog,
        ("workflow", "object_id", "trigger", "source", "dest", "actor_id", "actor_role", "at", "note"),
        [
            (
                workflow.name,
                step.flow.row.id,
                step.trigger,
                step.source,
                step.flow.state,
                step.flow.actor.account_id,
                str(step.flow.actor.role),
                now,
                step.flow.note,
            )
            for step in steps
        ],
    )
    with audit.batch():
        for step in steps:
            actor = step.flow.actor
            audit.record(
                f"{workflow.name}.{step.trigger}",
                actor_id=actor.account_id,
                actor_role=actor.role,
                ip=actor.ip,
                object_type=workflow.name,
                object_id=step.flow.row.id,
                details={"from": step.source, "to": step.flow.state, **step.flow.audit_details},
                at=now,
            )
    for step in steps:
        for message in step.flow.outbox:
            if message.related_type == workflow.name and message.related_id is None:
                message.related_id = step.flow.row.id  # unknown while a `create` runs its effects
            message.save(force_insert=True)


def available_actions(workflow: Workflow, row, actor: Actor) -> list[Action]:
    """The buttons for this actor on this row: every trigger their role may fire from the current state."""
    flow = _flow(workflow, row, actor, None, row.state)
    actions = []
    for spec in workflow.outgoing(row.state):
        if str(actor.role) not in spec.roles:
            continue
        reason = workflow.first_failure(spec, flow, with_input=False)
        actions.append(Action(spec.trigger, spec.label, reason is None, reason))
    return actions


def may(workflow: Workflow, row, trigger: str, actor: Actor) -> Reason | None:
    """None when `actor` may fire `trigger` now (inputs aside), else the reason it may not."""
    flow = _flow(workflow, row, actor, None, row.state)
    try:
        spec = workflow.check(flow, trigger)
    except TransitionRefused as refused:
        return refused.reason
    return workflow.first_failure(spec, flow, with_input=False)
