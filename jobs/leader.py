"""The scheduler's single-leader lock: one process fires the jobs, the others wait on standby to take over.

SQLite (one host): an exclusive `flock` on a file beside the database, released by the kernel when the process
dies. PostgreSQL (several hosts): a session-level advisory lock held on a connection of its own; when that
connection dies (process killed, network cut, backend terminated) the server releases the lock, and the holder
learns it has lost leadership at its next `still_held()`.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

import psycopg2

log = logging.getLogger(__name__)

# "myHUGjob" read as a 64-bit integer: every node asks for this key (the audit chain's lock is another one).
LEADER_LOCK_KEY = int.from_bytes(b"myHUGjob", "big")
# How long a check of the lock's connection may take before the leader counts the lock as lost (seconds).
CHECK_TIMEOUT_SECONDS = 5


class LeaderLock(Protocol):
    def try_acquire(self) -> bool:
        """Take the lock without waiting; False when another process holds it (or it cannot be reached)."""
        ...

    def still_held(self) -> bool:
        """Whether this process still holds the lock; False once it is lost, for good."""
        ...

    def release(self) -> None:
        """Let the lock go (idempotent)."""
        ...


class FileLock:
    """`flock(LOCK_EX | LOCK_NB)` on one file. The lock belongs to the open file, not the process: two runners in
    one process exclude each other too, and the kernel drops it when the process dies, however it dies."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)  # not inherited by child processes (PEP 446)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def still_held(self) -> bool:
        """Held while our descriptor still names the file at `path`: were the file deleted or replaced, another
        process would lock the new one, so we must count ours as lost."""
        if self._fd is None:
            return False
        try:
            ours, current = os.fstat(self._fd), os.stat(self.path)
        except FileNotFoundError:
            return False
        return (ours.st_dev, ours.st_ino) == (current.st_dev, current.st_ino)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor of the open file releases the flock
            self._fd = None


class PostgresLock:
    """`pg_try_advisory_lock` on a dedicated autocommit connection (not peewee's: those come and go per job run,
    and a session-level lock lives exactly as long as its connection). Keepalives and a TCP user timeout bound
    how long a cut network can hide a lost lock; the statement timeout bounds the check itself."""

    def __init__(self, url: str, key: int = LEADER_LOCK_KEY, timeout: int = CHECK_TIMEOUT_SECONDS):
        self.url = url
        self.key = key
        self.timeout = timeout
        self._conn = None
        self._held = False
        self._guard = threading.Lock()  # the runner's loop and its job threads both call still_held()

    def try_acquire(self) -> bool:
        with self._guard:
            if self._held:
                return True
            try:
                if self._conn is None:  # a standby keeps its connection between attempts
                    self._conn = self._connect()
                self._held = bool(self._query("SELECT pg_try_advisory_lock(%s)", (self.key,)))
            except psycopg2.Error as exc:
                log.warning("leader lock: PostgreSQL unreachable (%s)", type(exc).__name__)
                self._drop()
            return self._held

    def still_held(self) -> bool:
        with self._guard:
            if not self._held:
                return False
            try:
                self._query("SELECT 1")
            except psycopg2.Error as exc:
                log.warning("leader lock: its connection is gone (%s)", type(exc).__name__)
                self._drop()
            return self._held

    def release(self) -> None:
        with self._guard:
            if self._held:
                # Explicit, so the next holder need not wait for the server to notice the closed session; if the
                # connection is dead, the server released the lock with it.
                with contextlib.suppress(psycopg2.Error):
                    self._query("SELECT pg_advisory_unlock(%s)", (self.key,))
            self._drop()

    def _connect(self):
        conn = psycopg2.connect(
            self.url.replace("postgres://", "postgresql://", 1),
            connect_timeout=self.timeout,
            application_name="myhug jobs leader",
            options=f"-c statement_timeout={self.timeout * 1000}",
            keepalives=1,
            keepalives_idle=self.timeout,
            keepalives_interval=1,
            keepalives_count=3,
            tcp_user_timeout=self.timeout * 1000,
        )
        conn.autocommit = True
        return conn

    def _query(self, sql: str, params: tuple = ()):
        with self._conn.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()[0]

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg2.Error):
                self._conn.close()
        self._conn, self._held = None, False


def file_lock_path(database_url: str, instance_path: str | Path) -> Path:
    """Beside the SQLite database (`instance/myhug.sqlite3.jobs.lock` by default): the lock guards that file, so
    two processes pointed at one database share it whatever their instance folders; `:memory:` → instance/."""
    path = database_url[len("sqlite:///") :]
    if path in ("", ":memory:"):
        return Path(instance_path) / "jobs.lock"
    return Path(f"{path}.jobs.lock")


def lock_for(app) -> LeaderLock:
    """The lock that fits the configured database: the one every runner on that database competes for."""
    url = app.config["DATABASE_URL"]
    scheme = urlparse(url).scheme
    if scheme in {"postgres", "postgresql"}:
        return PostgresLock(url)
    if scheme == "sqlite":
        return FileLock(file_lock_path(url, app.instance_path))
    raise ValueError(f"no leader lock for database URL scheme {scheme!r}")
