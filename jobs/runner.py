"""The long-running scheduler: one leader fires the jobs of jobs/tasks.py on time, the other processes stand by.

`flask jobs run` blocks in `Runner.run_forever()`; under the development server (`make run`) the same runner runs
in a daemon thread. Both take the same leader lock (jobs/leader.py), so whatever mix of them is started on one
database, exactly one fires. The schedule lives in code and in memory (APScheduler's MemoryJobStore): job stores
are never shared between schedulers (PITFALLS), the lock decides which one scheduler runs.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from zoneinfo import ZoneInfo

import click
from apscheduler.schedulers.background import BackgroundScheduler
from flask.helpers import get_debug_flag

from jobs import tasks
from jobs.leader import LeaderLock, lock_for
from models import JobRun, db, utcnow

log = logging.getLogger(__name__)
# APScheduler logs two INFO lines per run; ours says the same once, with the counts.
logging.getLogger("apscheduler").setLevel(max(logging.WARNING, logging.getLogger("apscheduler").level))

TIMEZONE = ZoneInfo("Europe/Zurich")
# How often the leader makes sure it still holds the lock (each job run checks too, just before it starts).
HOLD_CHECK_SECONDS = 2.0


def default_node() -> str:
    """host:pid — what JobRun.node says, so an operator knows which process ran what."""
    return f"{socket.gethostname()}:{os.getpid()}"


@contextmanager
def connected() -> Iterator[None]:
    """A database connection for one job run in this thread (peewee's are per thread), closed if opened here."""
    opened = db.connect(reuse_if_open=True)
    try:
        yield
    finally:
        if opened and not db.is_closed():
            db.close()


class Runner:
    """Standby until the lock is free, then leader until stopped or the lock is lost, then standby again."""

    def __init__(
        self,
        app,
        node: str | None = None,
        standby_poll: float = 5.0,
        *,
        schedule: Sequence[tasks.Job] | None = None,
        check_every: float = HOLD_CHECK_SECONDS,
        lock: LeaderLock | None = None,
    ):
        self.app = app
        self.node = node or default_node()
        self.standby_poll = standby_poll
        self.check_every = check_every
        self.lock = lock or lock_for(app)
        self._schedule = schedule  # None: tasks.SCHEDULE as it is when leadership begins (modules register jobs)
        self._stop = threading.Event()
        self._wake = threading.Event()  # ends the leader's wait early: a stop, or a job run that found the lock gone
        self._thread: threading.Thread | None = None

    def run_forever(self) -> None:
        """Block until SIGTERM or SIGINT (`flask jobs run`, main thread only): then stop firing, let running jobs
        finish, release the lock and return, so the command exits 0."""
        handlers = {sig: signal.signal(sig, lambda *_: self.stop()) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self._loop()
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)

    def start_in_thread(self) -> threading.Thread:
        """The same loop in a daemon thread (beside the development server): it dies with the process, and the
        lock with it."""
        self._thread = threading.Thread(target=self._loop, name="myhug-jobs", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        log.info("jobs runner %s: standby", self.node)
        try:
            while not self._stop.is_set():
                if self.lock.try_acquire():
                    self._lead()
                    if not self._stop.is_set():  # lost: give the standbys their chance before trying again
                        log.warning("jobs runner %s: lost the leader lock, back to standby", self.node)
                        self._stop.wait(self.standby_poll)
                else:
                    self._stop.wait(self.standby_poll)
        finally:
            self.lock.release()
            log.info("jobs runner %s: stopped", self.node)

    def _lead(self) -> None:
        """Fire the jobs until a stop (then wait for the running ones) or until the lock is lost (then stop firing
        at once: a standby may already be leader; a run in progress cannot be interrupted, and the jobs are safe
        to overlap — compare-and-set, SKIP LOCKED)."""
        log.info("jobs runner %s: leader", self.node)
        scheduler = self._start_scheduler()
        while True:
            self._wake.wait(self.check_every)
            self._wake.clear()
            if self._stop.is_set():
                scheduler.shutdown(wait=True)
                return
            if not self.lock.still_held():
                scheduler.shutdown(wait=False)
                self.lock.release()
                return

    def _start_scheduler(self) -> BackgroundScheduler:
        scheduler = BackgroundScheduler(timezone=TIMEZONE)
        first = dt.datetime.now(TIMEZONE)
        for job in tasks.SCHEDULE if self._schedule is None else self._schedule:
            scheduler.add_job(
                self._run,
                "interval",
                seconds=job.every.total_seconds(),
                args=(job,),
                id=job.name,
                name=job.name,
                next_run_time=first,  # the first run at once: a new leader catches up on what its predecessor left
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,  # late (a busy pool, a slow run) is run late, never skipped
            )
        scheduler.start()
        return scheduler

    def _run(self, job: tasks.Job) -> None:
        """One run of a job, recorded in JobRun. Never raises: APScheduler would log the traceback, and an
        exception's message may carry data; the log says job, node, duration and counts, the row the error."""
        if not self.lock.still_held():
            self._wake.set()
            return
        started = time.monotonic()
        try:
            with self.app.app_context(), connected():
                now = utcnow()
                run = JobRun.create(job=job.name, node=self.node, started_at=now)
                try:
                    counts = dict(job.run(self.app, now))
                except Exception as exc:
                    _finish(run, "failed", error=f"{type(exc).__name__}: {exc}")
                    log.warning(
                        "job %s on %s: failed after %.2f s (%s)",
                        job.name,
                        self.node,
                        time.monotonic() - started,
                        type(exc).__name__,
                    )
                    return
                result = json.dumps(counts, sort_keys=True, separators=(",", ":"))
                _finish(run, "ok", result=result)
                log.info("job %s on %s: ok in %.2f s %s", job.name, self.node, time.monotonic() - started, result)
        except Exception as exc:  # the bookkeeping itself failed: the database is away
            log.error("job %s on %s: not recorded (%s)", job.name, self.node, type(exc).__name__)


def _finish(run: JobRun, outcome: str, *, result: str = "", error: str | None = None) -> None:
    JobRun.update(finished_at=utcnow(), outcome=outcome, result=result, error=error).where(
        JobRun.id == run.id
    ).execute()


# In-process mode (`MYHUG_JOBS_IN_PROCESS`): one runner per process, however many apps it creates.
_in_process: Runner | None = None
_in_process_guard = threading.Lock()


def serves_requests_here() -> bool:
    """Whether this process answers HTTP. Under `flask run` with the reloader, the parent only watches files and
    restarts the child (WERKZEUG_RUN_MAIN=true) that serves; other commands (init-db, jobs run…) serve nothing;
    without any command, a WSGI server imported the factory."""
    if os.environ.get("WERKZEUG_RUN_MAIN") == "true":
        return True
    command = click.get_current_context(silent=True)
    if command is None:
        return True
    if command.info_name != "run":
        return False
    reload = command.params.get("reload")
    return not (get_debug_flag() if reload is None else reload)


def start_in_process(app) -> Runner | None:
    """Start the jobs beside the server that serves `app`, once per process; None where nothing is served."""
    global _in_process
    if not serves_requests_here():
        return None
    with _in_process_guard:
        if _in_process is None:
            _in_process = Runner(app, standby_poll=app.config["JOBS_STANDBY_POLL_SECONDS"])
            _in_process.start_in_thread()
        return _in_process


def in_process_runner() -> Runner | None:
    """The runner this process started in-process, if any."""
    return _in_process
