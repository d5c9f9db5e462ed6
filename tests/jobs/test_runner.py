"""The scheduler: one leader fires the jobs, a standby takes over when the leader dies or loses the lock; each run
is recorded, a failing job neither stops the others nor leaks its message to the log; in-process mode."""

from __future__ import annotations

import base64
import datetime as dt
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import click
import pytest
from flask import current_app

import jobs.runner as runner_module
from jobs.leader import lock_for
from jobs.runner import Runner, in_process_runner, serves_requests_here, start_in_process
from jobs.tasks import Job
from models import JobRun, db, is_postgres
from security import encryption
from tests.jobs.test_leader import holders, terminate
from tests.web.conftest import settings
from web import create_app

ROOT = Path(__file__).resolve().parents[2]
TICK = dt.timedelta(seconds=0.1)
BOUND = 30.0  # seconds: how long a takeover may take before the test calls it broken (a correctness bound)


def wait_for(condition, timeout: float = BOUND):
    """Poll `condition` until it is truthy or `timeout` passes; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    return condition()


def runs(node: str | None = None, job: str | None = None, outcome: str | None = None) -> list[JobRun]:
    query = JobRun.select().order_by(JobRun.started_at, JobRun.id)
    if node:
        query = query.where(JobRun.node == node)
    if job:
        query = query.where(JobRun.job == job)
    if outcome:
        query = query.where(JobRun.outcome == outcome)
    return list(query)


def tick(app, now) -> dict[str, int]:
    return {"ticks": 1, "in_app_context": int(current_app._get_current_object() is app)}


@pytest.fixture
def app(database, tmp_path):
    return create_app(settings(database, INSTANCE_PATH=str(tmp_path / "instance")))


@pytest.fixture
def runners(app):
    """runners(node, schedule, **options) → a Runner on the test database, running in a thread; all stopped after."""
    started: list[Runner] = []

    def start(node: str | None, schedule, **options) -> Runner:
        runner = Runner(app, node=node, schedule=schedule, **options)
        started.append(runner)
        runner.start_in_thread()
        return runner

    yield start
    for runner in started:
        runner.stop()
    for runner in started:
        runner.join(timeout=BOUND)


def test_a_failing_job_is_recorded_and_the_next_jobs_still_run(database, runners, caplog):
    def boom(app, now):
        raise ValueError("Jeanne Martin, 01.02.1950")  # what a careless message could carry

    def broken_sql(app, now):
        db.execute_sql("SELECT * FROM no_such_table")  # a database error must not spoil the connection's next use

    caplog.set_level(logging.INFO)
    schedule = [Job("boom", TICK, boom), Job("broken_sql", TICK, broken_sql), Job("tick", TICK, tick)]
    runners(None, schedule)
    assert wait_for(
        lambda: (
            len(runs(job="boom", outcome="failed")) >= 3
            and len(runs(job="broken_sql", outcome="failed")) >= 3
            and len(runs(job="tick", outcome="ok")) >= 3
        )
    ), [(r.job, r.outcome) for r in runs()]

    failed = runs(job="boom")[0]
    assert failed.error == "ValueError: Jeanne Martin, 01.02.1950"
    assert failed.finished_at is not None and failed.result == ""
    assert runs(job="broken_sql")[0].error.split(":")[0] in {"OperationalError", "ProgrammingError"}
    ok = runs(job="tick")[0]
    assert ok.result == '{"in_app_context":1,"ticks":1}' and ok.error is None and ok.finished_at is not None
    assert ok.node == f"{socket.gethostname()}:{os.getpid()}"  # the default node name
    # The log names the job and the exception's type; never its message, never a traceback.
    assert "job boom on" in caplog.text and "(ValueError)" in caplog.text
    assert "Jeanne" not in caplog.text and "Traceback" not in caplog.text
    assert '"ticks":1' in caplog.text


def take_the_lock_from(runner: Runner, database) -> None:
    """What a failover does to the leader: PostgreSQL terminates its lock's session; on SQLite, the lock file goes."""
    if is_postgres():
        [pid] = holders(database.url)
        terminate(database.url, pid)
    else:
        runner.lock.path.unlink()


def test_a_leader_that_loses_the_lock_stops_firing_and_the_standby_takes_over(database, runners):
    # The old leader waits a whole second before asking again; the standby asks every 0.1 s: it wins the lock.
    old = runners("old", [Job("tick", TICK, tick)], standby_poll=1.0, check_every=0.2)
    assert wait_for(lambda: runs(node="old"))
    standby = runners("standby", [Job("tick", TICK, tick)], standby_poll=0.1, check_every=0.2)
    seen = len(runs(node="old"))
    assert wait_for(lambda: len(runs(node="old")) >= seen + 5)  # the standby asked several times meanwhile
    assert runs(node="standby") == []

    take_the_lock_from(old, database)
    assert wait_for(lambda: runs(node="standby")), "the standby did not take over"
    assert wait_for(lambda: len(runs(node="standby")) >= 10)  # several of the old leader's check intervals
    first_of_new = runs(node="standby")[0].started_at
    assert [r.started_at for r in runs(node="old") if r.started_at > first_of_new] == []  # never two leaders
    assert standby.lock.still_held() and not old.lock.still_held()


def test_a_stopped_runner_releases_the_lock(database, runners, app, tmp_path):
    first = runners("first", [Job("tick", TICK, tick)])
    assert wait_for(lambda: runs(node="first"))
    first.stop()
    first.join(timeout=BOUND)
    assert not first._thread.is_alive()
    assert [r for r in runs(node="first") if r.outcome == "running"] == []  # it let its runs finish
    lock = lock_for(app)
    assert lock.try_acquire()
    lock.release()


# `flask jobs run`, as operators start it: real processes, killed however the test ends.


@pytest.fixture
def flask_jobs_run(database, tmp_path):
    """flask_jobs_run(node) → a `flask --app web jobs run --standby-poll 0.5` process on the test database."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("MYHUG_", "FLASK_"))}
    env.update(
        MYHUG_ENV="testing",
        MYHUG_DATABASE_URL=database.url,
        MYHUG_SECRET_KEY=secrets.token_urlsafe(32),
        MYHUG_DATA_KEY=base64.urlsafe_b64encode(encryption.keyring.require()).decode(),
        MYHUG_BLOB_DIR=str(tmp_path / "blobs"),
        MYHUG_MAIL_PORT="9",  # nothing to send: the outbox is empty
    )
    processes: list[tuple[subprocess.Popen, Path]] = []

    def start(node: str) -> subprocess.Popen:
        log = tmp_path / f"{node}.log"
        with log.open("w") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "flask", "--app", "web", "jobs", "run", "--standby-poll", "0.5", "--node", node],
                cwd=ROOT,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        processes.append((process, log))
        return process

    start.logs = lambda: "\n".join(f"--- {log.name}\n{log.read_text()}" for _process, log in processes)
    yield start
    for process, _log in processes:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=BOUND)


@pytest.mark.slow
def test_two_nodes_one_leader_then_a_takeover_when_it_is_killed(database, flask_jobs_run):
    nodes = {"node-a": flask_jobs_run("node-a"), "node-b": flask_jobs_run("node-b")}
    assert wait_for(runs), flask_jobs_run.logs()
    time.sleep(3)  # the standby asks for the lock six times meanwhile
    assert len({r.node for r in runs()}) == 1, flask_jobs_run.logs()
    leader = runs()[0].node
    [standby] = set(nodes) - {leader}
    if is_postgres():
        assert len(holders(database.url)) == 1

    nodes[leader].send_signal(signal.SIGKILL)
    nodes[leader].wait(timeout=BOUND)
    assert wait_for(lambda: runs(node=standby)), flask_jobs_run.logs()


@pytest.mark.slow
def test_sigterm_stops_the_leader_which_exits_0_and_releases_the_lock(database, flask_jobs_run, tmp_path):
    process = flask_jobs_run("node-a")
    assert wait_for(lambda: runs(node="node-a")), flask_jobs_run.logs()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=BOUND) == 0, flask_jobs_run.logs()
    assert "jobs runner node-a: stopped" in flask_jobs_run.logs()
    assert [r for r in runs(node="node-a") if r.outcome == "running"] == []
    lock = lock_for(SimpleNamespace(config={"DATABASE_URL": database.url}, instance_path=str(tmp_path)))
    assert lock.try_acquire()
    lock.release()


# In-process mode: `make run` runs the jobs in a thread of the development server.


@pytest.fixture
def no_in_process_runner(monkeypatch):
    """This process's in-process runner, forgotten before the test; stopped after it, if the test started one."""
    monkeypatch.setattr(runner_module, "_in_process", None)
    yield
    runner = in_process_runner()
    if runner is not None:
        runner.stop()
        runner.join(timeout=BOUND)


def jobs_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "myhug-jobs"]


def test_in_process_mode_starts_one_runner_per_process(database, tmp_path, no_in_process_runner):
    config = settings(database, INSTANCE_PATH=str(tmp_path / "instance"), JOBS_IN_PROCESS=True)
    first = create_app(config)
    create_app(dict(config))
    runner = in_process_runner()
    assert runner is not None and runner.app is first
    assert jobs_threads() == [runner._thread]
    assert wait_for(lambda: runs(node=runner.node))  # it leads and runs the schedule


def test_in_process_mode_is_off_under_testing_unless_a_test_asks(database, tmp_path, monkeypatch, no_in_process_runner):
    for name, value in {
        "MYHUG_ENV": "testing",
        "MYHUG_JOBS_IN_PROCESS": "1",
        "MYHUG_DATABASE_URL": database.url,
        "MYHUG_SECRET_KEY": secrets.token_urlsafe(32),
        "MYHUG_DATA_KEY": base64.urlsafe_b64encode(encryption.keyring.require()).decode(),
    }.items():
        monkeypatch.setenv(name, value)
    app = create_app({"INSTANCE_PATH": str(tmp_path / "instance")})  # from the environment, as `flask` reads it
    assert app.config["TESTING"] and app.config["JOBS_IN_PROCESS"]
    assert in_process_runner() is None and jobs_threads() == []


@pytest.mark.parametrize(
    ("command", "reload", "environ", "serves"),
    [
        (None, None, {}, True),  # a WSGI server (gunicorn) imported the factory
        ("run", False, {}, True),  # `flask run` without the reloader: `make run`
        ("run", None, {}, True),
        ("run", True, {}, False),  # the reloader's parent only watches files
        ("run", None, {"FLASK_DEBUG": "1"}, False),  # --debug turns the reloader on
        ("run", True, {"WERKZEUG_RUN_MAIN": "true"}, True),  # the reloader's child serves
        ("init-db", None, {}, False),  # a command serves nothing
        ("jobs", None, {}, False),
    ],
)
def test_only_the_process_that_serves_starts_jobs_in_process(command, reload, environ, serves, monkeypatch):
    monkeypatch.delenv("FLASK_DEBUG", raising=False)
    monkeypatch.delenv("WERKZEUG_RUN_MAIN", raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    if command is None:
        assert serves_requests_here() is serves
        return
    with click.Context(click.Command(command), info_name=command) as context:
        context.params["reload"] = reload
        assert serves_requests_here() is serves
        if not serves:  # the decision comes before anything else: the app is not even looked at
            assert start_in_process(SimpleNamespace()) is None and jobs_threads() == []
