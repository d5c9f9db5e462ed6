"""The audit trail is a hash chain: `verify` names the first edited, deleted, inserted or reordered event."""

from __future__ import annotations

import itertools
import multiprocessing

import pytest

from models import AuditEvent, AuditHead, db
from security import audit
from tests.conftest import TEST_DATA_KEY
from tests.workers import append_audit


def _events(n: int) -> list[AuditEvent]:
    return [
        audit.record(
            "test.event",
            actor_id=7,
            actor_role="administrator",
            ip="192.0.2.1",
            object_type="thing",
            object_id=i,
            details={"n": i, "é": "ü"},
        )
        for i in range(n)
    ]


def test_empty_trail_verifies(database):
    assert audit.verify().ok


def test_intact_chain_verifies(database):
    events = _events(5)
    result = audit.verify()
    assert result.ok and result.checked == 5
    assert events[0].prev_hash == audit.GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(events))


def test_edited_row_is_named(database):
    events = _events(5)
    db.execute_sql(f"UPDATE audit_event SET outcome = 'failure' WHERE id = {events[2].id}")
    result = audit.verify()
    assert not result.ok
    assert result.broken_id == events[2].id
    assert "changed" in result.problem


def test_edit_with_recomputed_hash_breaks_the_next_link(database):
    events = _events(5)
    forged = AuditEvent.get_by_id(events[1].id)
    forged.action = "test.forged"
    forged.hash = audit.link_hash(forged.prev_hash, forged)
    forged.save()
    result = audit.verify()
    assert not result.ok and result.broken_id == events[2].id


def test_deleted_row_is_detected(database):
    events = _events(5)
    AuditEvent.delete().where(AuditEvent.id == events[2].id).execute()
    result = audit.verify()
    assert not result.ok and result.broken_id == events[3].id


def test_deleted_newest_rows_are_detected_by_the_head(database):
    events = _events(5)
    AuditEvent.delete().where(AuditEvent.id >= events[3].id).execute()
    result = audit.verify()
    assert not result.ok
    assert "newest events were deleted" in result.problem
    assert AuditHead.get_by_id(1).last_id == events[4].id


def test_reordered_rows_are_detected(database):
    events = _events(4)
    a, b = AuditEvent.get_by_id(events[1].id), AuditEvent.get_by_id(events[2].id)
    columns = [
        "at",
        "actor_id",
        "actor_role",
        "ip",
        "action",
        "outcome",
        "object_type",
        "object_id",
        "details",
        "prev_hash",
        "hash",
    ]
    values_a, values_b = {c: getattr(a, c) for c in columns}, {c: getattr(b, c) for c in columns}
    with db.atomic():
        AuditEvent.update(hash="swap").where(AuditEvent.id == a.id).execute()  # unique(hash) during the swap
        AuditEvent.update(values_a).where(AuditEvent.id == b.id).execute()
        AuditEvent.update(values_b).where(AuditEvent.id == a.id).execute()
    result = audit.verify()
    assert not result.ok and result.broken_id == events[1].id


def test_canonical_serialization_is_stable():
    assert audit.canonical({"b": 1, "a": "é"}) == '{"a":"é","b":1}'
    with pytest.raises(TypeError):
        audit.canonical({"x": object()})


def test_two_processes_append_concurrently_and_the_chain_holds(database):
    """Two writers × 1,000 events: the append is serialised (advisory lock / immediate lock), no fork in the chain."""
    per_process = 1_000
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    database.close()  # children open their own connections
    workers = [
        ctx.Process(target=append_audit, args=(database.url, TEST_DATA_KEY, per_process, label, barrier, results))
        for label in ("a", "b")
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=240) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    database.connect(reuse_if_open=True)
    assert outcomes == ["done", "done"]
    assert AuditEvent.select().count() == 2 * per_process
    result = audit.verify()
    assert result.ok, str(result)

    middle = AuditEvent.select().order_by(AuditEvent.id).offset(per_process).first()
    db.execute_sql(f"UPDATE audit_event SET object_id = 'tampered' WHERE id = {middle.id}")
    result = audit.verify()
    assert not result.ok and result.broken_id == middle.id


# -- batch(): a service call's events chained and written together ---------------------------------------------------
def test_batch_writes_every_event_at_its_end_in_order_and_the_chain_holds(database):
    _events(2)
    with db.atomic(), audit.batch():
        batched = _events(4)
        assert AuditEvent.select().count() == 2  # kept in memory until the block ends
        assert all(event.id is None for event in batched)
    stored = list(AuditEvent.select().order_by(AuditEvent.id))
    assert [e.object_id for e in stored] == ["0", "1", "0", "1", "2", "3"]
    assert [e.id for e in batched] == [e.id for e in stored[2:]]
    assert [e.hash for e in batched] == [e.hash for e in stored[2:]]
    assert AuditHead.get_by_id(1).last_id == stored[-1].id
    assert audit.verify().ok


def test_batch_that_raises_writes_nothing(database):
    _events(1)
    with pytest.raises(RuntimeError), db.atomic(), audit.batch():
        _events(3)
        raise RuntimeError("the change being recorded failed")
    assert AuditEvent.select().count() == 1
    assert audit.verify().ok
    _events(1)  # and the next append still links to the head
    assert audit.verify().ok


def test_nested_batches_join_the_outermost(database):
    with db.atomic(), audit.batch():
        _events(1)
        with audit.batch():
            _events(1)
        assert AuditEvent.select().count() == 0  # the inner block's end wrote nothing
    assert AuditEvent.select().count() == 2
    assert audit.verify().ok
