"""Functions run in child processes by the concurrency tests (importable under the spawn start method)."""

from __future__ import annotations


def _open(url: str, key: bytes):
    import models
    from security import encryption

    encryption.configure(key)
    database = models.init_database(url)
    database.connect(reuse_if_open=True)
    return database


def fire_lock(url: str, key: bytes, account_id: int, barrier, results) -> None:
    """Load the account, wait for the other process, then fire `lock` at the same instant."""
    _open(url, key)
    from models import Account
    from workflows import ACCOUNT, SYSTEM, TransitionRefused, engine

    account = Account.get_by_id(account_id)
    barrier.wait(timeout=30)
    try:
        engine.fire(ACCOUNT, account, "lock", SYSTEM)
        results.put("fired")
    except TransitionRefused as refused:
        results.put(refused.reason.code)
    except Exception as exc:  # reported, so the test shows it instead of hanging
        results.put(f"error: {exc!r}")


def append_audit(url: str, key: bytes, count: int, label: str, barrier, results) -> None:
    _open(url, key)
    from security import audit

    barrier.wait(timeout=30)
    try:
        for i in range(count):
            audit.record("test.append", actor_role="system", object_type="worker", object_id=f"{label}-{i}")
        results.put("done")
    except Exception as exc:
        results.put(f"error: {exc!r}")
