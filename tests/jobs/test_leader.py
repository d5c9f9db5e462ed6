"""The leader lock: one holder at a time, freed when the holder dies; on PostgreSQL, lost with its connection."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import psycopg2
import pytest

from jobs.leader import LEADER_LOCK_KEY, FileLock, PostgresLock, lock_for
from tests import pg

ROOT = Path(__file__).resolve().parents[2]

HOLDER = textwrap.dedent(
    """
    import sys, time
    from jobs.leader import FileLock
    lock = FileLock(sys.argv[1])
    print("held" if lock.try_acquire() else "refused", flush=True)
    time.sleep(120)
    """
)


@pytest.fixture
def holder():
    """holder(path) → a child process that took the file lock (it says so before returning); killed at the end."""
    children = []

    def start(path: Path) -> subprocess.Popen:
        child = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        children.append(child)
        assert child.stdout.readline().strip() == "held"
        return child

    yield start
    for child in children:
        child.kill()
        child.wait(timeout=30)


def test_file_lock_is_refused_while_another_process_holds_it_and_freed_when_it_is_killed(tmp_path, holder):
    path = tmp_path / "jobs.lock"
    child = holder(path)
    ours = FileLock(path)
    assert not ours.try_acquire()
    assert not ours.still_held()
    os.kill(child.pid, signal.SIGKILL)  # no clean-up code runs: the kernel releases the lock
    child.wait(timeout=30)
    assert ours.try_acquire()
    assert ours.still_held()
    ours.release()
    assert not ours.still_held()


def test_file_lock_excludes_a_second_runner_of_the_same_process(tmp_path):
    first, second = FileLock(tmp_path / "jobs.lock"), FileLock(tmp_path / "jobs.lock")
    assert first.try_acquire()
    assert not second.try_acquire()
    first.release()
    assert second.try_acquire()
    second.release()


def test_file_lock_counts_as_lost_when_its_file_is_deleted(tmp_path):
    """Another process would lock a new file at the same path: the holder must stop counting itself leader."""
    path = tmp_path / "jobs.lock"
    lock = FileLock(path)
    assert lock.try_acquire()
    path.unlink()
    assert not lock.still_held()
    assert FileLock(path).try_acquire()  # what another runner would do meanwhile
    lock.release()


def test_the_lock_follows_the_database(tmp_path):
    def app(url: str):
        return SimpleNamespace(config={"DATABASE_URL": url}, instance_path=str(tmp_path / "instance"))

    lock = lock_for(app(f"sqlite:///{tmp_path / 'data' / 'myhug.sqlite3'}"))
    assert isinstance(lock, FileLock) and lock.path == tmp_path / "data" / "myhug.sqlite3.jobs.lock"
    assert lock_for(app("sqlite:///:memory:")).path == tmp_path / "instance" / "jobs.lock"
    assert isinstance(lock_for(app("postgresql://myhug@db.example/myhug")), PostgresLock)


# PostgreSQL: the advisory lock on a dedicated connection.


@pytest.fixture
def pg_url():
    pg.require()
    return pg.test_database_url()


@pytest.fixture
def pg_locks(pg_url):
    """pg_locks() → a new PostgresLock on the test database; all released at the end."""
    made = []

    def make() -> PostgresLock:
        made.append(PostgresLock(pg_url))
        return made[-1]

    yield make
    for lock in made:
        lock.release()


def holders(url: str) -> list[int]:
    """The backends that hold the leader key, as the server sees it (a bigint key is split in classid/objid)."""
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database()) "
                "AND classid::bigint = %s AND objid::bigint = %s AND objsubid = 1",
                (LEADER_LOCK_KEY >> 32, LEADER_LOCK_KEY & 0xFFFFFFFF),
            )
            return [pid for (pid,) in cursor.fetchall()]
    finally:
        conn.close()


def terminate(url: str, pid: int) -> None:
    """What an administrator or a failover does to a session; returns once the backend is gone (its locks too)."""
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,))
    finally:
        conn.close()


@pytest.mark.postgres
def test_advisory_lock_has_one_holder_at_a_time(pg_url, pg_locks):
    first, second = pg_locks(), pg_locks()
    assert first.try_acquire()
    assert not second.try_acquire()
    assert first.still_held() and not second.still_held()
    assert len(holders(pg_url)) == 1
    first.release()
    assert holders(pg_url) == []  # released at once, not when the server notices a closed session
    assert second.try_acquire()
    assert not first.try_acquire()


@pytest.mark.postgres
def test_advisory_lock_is_lost_with_its_connection(pg_url, pg_locks):
    first, second = pg_locks(), pg_locks()
    assert first.try_acquire()
    [pid] = holders(pg_url)
    terminate(pg_url, pid)
    assert not first.still_held()
    assert second.try_acquire()  # the server released it with the session
    assert not first.still_held()  # lost for good, even though the key is held again (by the other)
    assert not first.try_acquire()  # a new connection, refused while the other holds it


@pytest.mark.postgres
def test_a_standby_survives_losing_its_connection(pg_url, pg_locks):
    leader, standby = pg_locks(), pg_locks()
    assert leader.try_acquire()
    assert not standby.try_acquire()
    backends = set(holders(pg_url))
    conn = psycopg2.connect(pg_url)
    conn.autocommit = True
    with conn.cursor() as cursor:  # the standby's own connection, found by its application name
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'myhug jobs leader' AND datname = "
            "current_database() AND NOT pid = ANY(%s)",
            (list(backends),),
        )
        [(standby_pid,)] = cursor.fetchall()
    conn.close()
    terminate(pg_url, standby_pid)
    assert not standby.try_acquire()  # reports "not leader", reconnects next time, does not raise
    leader.release()
    assert standby.try_acquire()
