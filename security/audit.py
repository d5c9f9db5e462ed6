"""Append to and verify the audit trail: a SHA-256 hash chain over a canonical serialization of each event."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass

from models import AuditEvent, AuditHead, db, insert_rows, is_postgres, utcnow

GENESIS = "0" * 64
# Any constant works; it only has to be the same in every process that appends (pg_advisory_xact_lock key).
_PG_LOCK_KEY = 0x6D79485547  # "myHUG"
_HASHED_FIELDS = ("at", "actor_id", "actor_role", "ip", "action", "outcome", "object_type", "object_id", "details")
_COLUMNS = (*_HASHED_FIELDS, "prev_hash", "hash")
_pending: ContextVar[list | None] = ContextVar("audit_batch", default=None)


def canonical(value) -> str:
    """Stable JSON: sorted keys, no spaces, UTF-8 kept, datetimes in ISO 8601 with microseconds."""

    def default(obj):
        if isinstance(obj, dt.datetime):
            return obj.isoformat(timespec="microseconds")
        if isinstance(obj, dt.date):
            return obj.isoformat()
        raise TypeError(f"not serializable in the audit trail: {type(obj).__name__}")

    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=default)


def link_hash(prev_hash: str, event: AuditEvent) -> str:
    body = {name: getattr(event, name) for name in _HASHED_FIELDS}
    body["actor_id"] = None if body["actor_id"] is None else int(body["actor_id"])
    return hashlib.sha256((prev_hash + canonical(body)).encode()).hexdigest()


def record(
    action: str,
    *,
    actor_id: int | None = None,
    actor_role: str = "system",
    ip: str | None = None,
    outcome: str = "success",
    object_type: str | None = None,
    object_id: object = None,
    details: dict | None = None,
    at: dt.datetime | None = None,
) -> AuditEvent:
    """Append one event. Serialised across processes: PostgreSQL advisory lock, SQLite's immediate write lock.

    Inside a caller's transaction (every workflow transition) it joins that transaction instead of opening a
    savepoint: the event commits or rolls back with the change it records. Inside `batch()` the event is kept and
    written with the others when the block ends (its `id` and `hash` are set then).
    """
    event = AuditEvent(
        at=at or utcnow(),
        actor_id=actor_id,
        actor_role=str(actor_role),
        ip=ip,
        action=action,
        outcome=outcome,
        object_type=object_type,
        object_id=None if object_id is None else str(object_id),
        details=canonical(details or {}),
    )
    pending = _pending.get()
    if pending is not None:
        pending.append(event)
    else:
        _append([event])
    return event


@contextmanager
def batch() -> Iterator[None]:
    """Chain and write every event recorded in the block at its end, in one go: one head read, one insert, one
    head update, and the append lock held only then. Nested blocks join the outermost one. Nothing is written if
    the block raises (its transaction rolls back anyway).

    Use it around a service call that records several events in one transaction (a document and its deliveries).
    """
    if _pending.get() is not None:
        yield
        return
    events: list[AuditEvent] = []
    token = _pending.set(events)
    try:
        yield
    finally:
        _pending.reset(token)
    if events:
        _append(events)


def _append(events: list[AuditEvent]) -> None:
    with nullcontext() if db.in_transaction() else db.atomic():
        if is_postgres():
            db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK_KEY,))
        head = AuditHead.get_or_none(AuditHead.id == 1)
        prev = head.last_hash if head else GENESIS
        for event in events:
            event.prev_hash = prev
            event.hash = prev = link_hash(prev, event)
        if len(events) == 1:
            events[0].save(force_insert=True)
        else:
            _insert_in_order(events)
        last = events[-1]
        if head:
            AuditHead.update(last_id=last.id, last_hash=last.hash).where(AuditHead.id == 1).execute()
        else:
            AuditHead.create(id=1, last_id=last.id, last_hash=last.hash)


def _insert_in_order(events: list[AuditEvent]) -> None:
    """Multi-row INSERTs of at most 1,000 events; ids follow the list order (verify walks the chain by id)."""
    for start in range(0, len(events), 1_000):
        chunk = events[start : start + 1_000]
        rows = [[event.__data__.get(name) for name in _COLUMNS] for event in chunk]
        for event, event_id in zip(chunk, insert_rows(AuditEvent, _COLUMNS, rows, returning_ids=True), strict=True):
            event.id = event_id


@dataclass
class Verification:
    ok: bool
    checked: int
    broken_id: int | None = None
    problem: str = ""

    def __str__(self) -> str:
        if self.ok:
            return f"audit trail intact: {self.checked} events"
        return f"audit trail broken at event {self.broken_id}: {self.problem} ({self.checked} events checked)"


def verify(batch: int = 5_000) -> Verification:
    """Walk the chain in id order; report the first event whose content or link does not hold."""
    expected_prev = GENESIS
    checked = 0
    last_id = 0
    query = AuditEvent.select().order_by(AuditEvent.id)
    for event in query.iterator():
        checked += 1
        if event.prev_hash != expected_prev:
            return Verification(
                False,
                checked,
                event.id,
                "its link to the previous event does not match: an event before it was deleted, inserted or reordered",
            )
        if link_hash(event.prev_hash, event) != event.hash:
            return Verification(False, checked, event.id, "its content was changed after it was written")
        expected_prev = event.hash
        last_id = event.id
    head = AuditHead.get_or_none(AuditHead.id == 1)
    head_id, head_hash = (head.last_id, head.last_hash) if head else (0, GENESIS)
    if head_id != last_id or head_hash != expected_prev:
        return Verification(
            False,
            checked,
            head_id or None,
            f"the chain ends at event {last_id} but its head names event {head_id}: the newest events were deleted",
        )
    return Verification(True, checked)
