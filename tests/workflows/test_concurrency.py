"""Two processes fire the same trigger on the same row at once: exactly one wins, the other gets the conflict."""

from __future__ import annotations

import multiprocessing

from models import Account, AuditEvent, Role, TransitionLog
from tests.conftest import TEST_DATA_KEY
from tests.workers import fire_lock


def test_simultaneous_trigger_fires_once(make_account):
    account = make_account(Role.CLINICIAN)
    database = Account._meta.database.obj
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    database.close()
    workers = [
        ctx.Process(target=fire_lock, args=(database.url, TEST_DATA_KEY, account.id, barrier, results))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    outcomes = sorted(results.get(timeout=120) for _ in workers)
    for worker in workers:
        worker.join(timeout=30)
    database.connect(reuse_if_open=True)

    assert outcomes == ["conflict", "fired"]
    stored = Account.get_by_id(account.id)
    assert (stored.state, stored.version) == ("locked", account.version + 1)
    lock_logs = TransitionLog.select().where(
        (TransitionLog.object_id == account.id) & (TransitionLog.trigger == "lock")
    )
    assert lock_logs.count() == 1
    assert (
        AuditEvent.select()
        .where((AuditEvent.action == "account.lock") & (AuditEvent.object_id == str(account.id)))
        .count()
        == 1
    )
