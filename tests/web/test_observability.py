"""Operations: /readyz, the request id, JSON access lines that keep secrets out, /metrics and who may read it."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import logging
import math
import os
import re
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import time_machine
from prometheus_client.parser import text_string_to_metric_families

from config import ConfigError, load_config
from jobs.tasks import SCHEDULE
from models import Account, Delivery, JobRun, OutboxMessage, OutboxStatus, Role
from models.schema import SchemaVersion
from security import encryption, sessions
from web import create_app, demo
from web.logs import REQUEST_ID_HEADER
from web.observability import blob_dir_is_writable
from workflows.delivery import DeliveryState

from .conftest import csrf_token_in, settings

ROOT = Path(__file__).resolve().parents[2]
HEX_ID = re.compile(r"[0-9a-f]{32}")
MOBILE = "+41790000001"
T0 = dt.datetime(2031, 5, 4, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def blob_dir(tmp_path) -> Path:
    path = tmp_path / "blobs"
    path.mkdir()
    return path


@pytest.fixture
def app(database, tmp_path, blob_dir):
    """As production writes them: JSON log lines; and a document store that exists."""
    return create_app(
        settings(database, INSTANCE_PATH=str(tmp_path / "instance"), BLOB_DIR=str(blob_dir), LOG_FORMAT="json")
    )


def log_lines(capsys) -> list[dict]:
    """Every line written to stderr since the last call; each must be one JSON object."""
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]


def access_lines(lines: list[dict]) -> list[dict]:
    return [line for line in lines if line["logger"] == "myhug.access"]


# -- /readyz ----------------------------------------------------------------------------------------------------
def test_readyz_answers_ok_without_session_or_access_line(client, capsys):
    log_lines(capsys)
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "checks": {"database": "ok", "schema": "ok", "blob_dir": "ok"}}
    assert "Set-Cookie" not in response.headers
    assert client.get("/healthz").status_code == 200  # liveness stays as it was
    assert log_lines(capsys) == []  # load balancers poll both every few seconds


def test_readyz_is_503_when_the_schema_is_behind(client):
    latest = SchemaVersion.select().order_by(SchemaVersion.version.desc()).get()
    SchemaVersion.delete().where(SchemaVersion.version == latest.version).execute()
    try:
        response = client.get("/readyz")
    finally:  # the schema's version rows are kept between tests
        SchemaVersion.create(version=latest.version, name=latest.name, applied_at=latest.applied_at)
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "unavailable"
    assert body["checks"] == {"database": "ok", "schema": "failed", "blob_dir": "ok"}
    assert f"version {latest.version - 1}" in body["detail"]["schema"]
    assert client.get("/readyz").status_code == 200


def test_readyz_is_503_when_the_blob_dir_is_missing(client, blob_dir, capsys):
    blob_dir.rmdir()
    log_lines(capsys)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"] == {"database": "ok", "schema": "ok", "blob_dir": "failed"}
    assert "FileNotFoundError" in response.get_json()["detail"]["blob_dir"]
    (warning,) = log_lines(capsys)
    assert (warning["level"], warning["message"]) == ("WARNING", "not ready: blob_dir (FileNotFoundError)")


def test_readyz_in_production_names_the_failed_check_but_no_path(database, tmp_path):
    missing = tmp_path / "not-mounted"
    app = create_app(
        settings(
            database,
            INSTANCE_PATH=str(tmp_path / "instance"),
            BLOB_DIR=str(missing),
            MYHUG_ENV="production",
            PUBLIC_URL="https://myhug.example.ch",
        )
    )
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {
        "status": "unavailable",
        "checks": {"database": "ok", "schema": "ok", "blob_dir": "failed"},
    }
    assert str(tmp_path) not in response.get_data(as_text=True)


def refused_by_check(path: Path) -> str | None:
    """The error the check raises on `path` (its type's name), or None when the directory is writable."""
    try:
        blob_dir_is_writable(str(path))
    except OSError as error:
        return type(error).__name__
    return None


def as_nobody(function, *args):
    """`function(*args)` in a child process that runs as the unprivileged user (root writes anywhere); its result
    comes back through a pipe."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop privileges, answer, exit without running the parent's cleanup
        code = 1
        try:
            os.close(reader)
            os.setgid(65534)
            os.setuid(65534)
            os.write(writer, json.dumps(function(*args)).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(writer)
    with os.fdopen(reader) as answer:
        result = answer.read()
    assert os.waitpid(pid, 0)[1] == 0
    return json.loads(result)


def test_a_read_only_blob_dir_fails_the_check():
    with tempfile.TemporaryDirectory() as top:
        os.chmod(top, 0o755)
        writable, read_only = Path(top, "writable"), Path(top, "read-only")
        writable.mkdir()
        read_only.mkdir()
        os.chmod(writable, 0o777)
        os.chmod(read_only, 0o555)
        run = as_nobody if os.geteuid() == 0 else (lambda function, *args: function(*args))
        assert run(refused_by_check, writable) is None
        assert run(refused_by_check, read_only) == "PermissionError"
        assert list(writable.iterdir()) == []  # the probe file is removed


# -- the request id ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("incoming", ["0123456789abcdef0123456789abcdef", "6f1c2b1e-3d4a-4c5b-9e8f-1a2b3c4d5e6f"])
def test_a_safe_request_id_is_echoed(client, incoming):
    assert client.get("/", headers={REQUEST_ID_HEADER: incoming}).headers[REQUEST_ID_HEADER] == incoming


@pytest.mark.parametrize(
    "incoming",
    [
        "a" * 65,  # too long
        "short",  # too short to be anyone's id
        "abc def ghi jkl",  # spaces
        'abcdefgh"}{"level":"CRITICAL',  # an attempt at forging a log field
        "../../etc/passwd",
        "abcdéfghijkl",  # non-ASCII
    ],
)
def test_an_unsafe_request_id_is_replaced(client, capsys, incoming):
    log_lines(capsys)
    response = client.get("/", headers={REQUEST_ID_HEADER: incoming})
    issued = response.headers[REQUEST_ID_HEADER]
    assert issued != incoming and HEX_ID.fullmatch(issued)
    (line,) = access_lines(log_lines(capsys))
    assert line["request_id"] == issued


def test_without_a_request_id_each_request_gets_its_own(client):
    first, second = (client.get("/").headers[REQUEST_ID_HEADER] for _ in range(2))
    assert HEX_ID.fullmatch(first) and HEX_ID.fullmatch(second) and first != second


def test_every_line_of_a_request_carries_its_id(app, capsys):
    def probe():
        logging.getLogger("workflows.probe").warning("probe: %s", "written during the request")
        return "ok"

    app.add_url_rule("/probe", "probe", probe)
    client = app.test_client()
    log_lines(capsys)
    request_id = client.get("/probe").headers[REQUEST_ID_HEADER]
    probe_line, access_line = log_lines(capsys)
    assert probe_line["logger"] == "workflows.probe"
    assert probe_line["message"] == "probe: written during the request"
    assert probe_line["request_id"] == access_line["request_id"] == request_id
    logging.getLogger("workflows.probe").warning("outside any request")
    (outside,) = log_lines(capsys)
    assert "request_id" not in outside


def test_text_lines_carry_the_request_id_too(database, tmp_path, capsys):
    app = create_app(settings(database, INSTANCE_PATH=str(tmp_path / "instance"), LOG_FORMAT="text"))
    capsys.readouterr()
    request_id = app.test_client().get("/?q=1").headers[REQUEST_ID_HEADER]
    (line,) = capsys.readouterr().err.splitlines()
    assert f" INFO myhug.access [{request_id}] GET / 200 " in line
    assert "q=1" not in line


# -- the access line --------------------------------------------------------------------------------------------
def test_the_access_line_has_its_fields_and_a_role_never_a_name(client, login_as, capsys):
    account = login_as(Role.CLINICIAN)
    log_lines(capsys)
    response = client.get("/clinique?q=Dupont", environ_base={"REMOTE_ADDR": "192.0.2.7"})
    (line,) = access_lines(log_lines(capsys))
    assert set(line) == {
        "time",
        "level",
        "logger",
        "message",
        "request_id",
        "method",
        "path",
        "route",
        "status",
        "duration_ms",
        "remote_addr",
        "role",
    }
    assert line["level"] == "INFO"
    assert dt.datetime.fromisoformat(line["time"]).tzinfo is not None
    assert (line["method"], line["path"], line["route"]) == ("GET", "/clinique", "/clinique")
    assert (line["status"], line["remote_addr"], line["role"]) == (response.status_code, "192.0.2.7", "clinician")
    assert line["request_id"] == response.headers[REQUEST_ID_HEADER]
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert line["message"] == f"GET /clinique {response.status_code} {line['duration_ms']:.1f} ms"
    text = json.dumps(line)
    assert account.username not in text and account.email not in text and "Dupont" not in text


def test_no_access_line_for_probes_metrics_and_static_files(client, capsys):
    log_lines(capsys)
    for path in ("/healthz", "/readyz", "/metrics", "/static/css/myhug.css"):
        assert client.get(path).status_code == 200
    assert access_lines(log_lines(capsys)) == []
    client.get("/no-such-page")
    (line,) = access_lines(log_lines(capsys))
    assert (line["path"], line["route"], line["status"], line["role"]) == (
        "/no-such-page",
        "unmatched",
        404,
        "anonymous",
    )


def test_a_login_and_a_confirmation_link_leave_no_secret_in_the_log(client, make_account, submit_application, capsys):
    account = make_account(Role.CLINICIAN, email="anne.secret@hcuge.ch")
    Account.update(mobile=MOBILE).where(Account.id == account.id).execute()
    query_token = secrets.token_urlsafe(16)
    log_lines(capsys)

    form = csrf_token_in(client.get(f"/login?token={query_token}").data)
    wrong = client.post(
        f"/login?token={query_token}",
        data={"csrf_token": form, "username": account.username, "password": "Wrong-password-1234"},
    )
    assert wrong.status_code == 200
    form = csrf_token_in(wrong.data)
    response = client.post(
        f"/login?token={query_token}",
        data={"csrf_token": form, "username": account.username, "password": account.issued_password},
    )
    assert response.headers["Location"] == "/login/code"
    message = OutboxMessage.select().where(OutboxMessage.template == "login_code").get()
    code = re.search(r"\b(\d{6})\b", message.body).group(1)
    page = client.get(f"/login/code?token={query_token}")
    response = client.post(
        f"/login/code?token={query_token}", data={"csrf_token": csrf_token_in(page.data), "code": code}
    )
    assert response.status_code == 302
    session_token = client.get_cookie(sessions.COOKIE_NAME).value

    application = submit_application()
    mail = OutboxMessage.get(OutboxMessage.template == "enrollment_received")
    link = re.search(r"/inscription/confirmer/[^/\s]+/[^\s\"<]+", mail.body).group(0)
    confirm_token = link.rsplit("/", 1)[1]
    assert client.get(link).status_code == 200

    output = json.dumps(log_lines(capsys))
    paths = [line["path"] for line in access_lines(json.loads(output))]
    assert paths.count("/login") == 3 and paths.count("/login/code") == 2
    assert f"/inscription/confirmer/{application.reference}/<token>" in paths
    for secret in (
        account.issued_password,
        "Wrong-password-1234",
        code,
        query_token,
        account.username,
        account.email,
        session_token,
        confirm_token,
        application.email,
        MOBILE,
    ):
        assert secret not in output


def test_an_exception_is_logged_by_type_and_stack_not_by_its_message(app, capsys):
    address = "claire.dupont@example.ch"

    def boom():  # the stack shows this line, not the value it formats
        raise ValueError(f"duplicate key value (email)=({address})")

    app.add_url_rule("/boom", "boom", boom)
    app.config["PROPAGATE_EXCEPTIONS"] = False  # as in production: the error page, and a log line
    log_lines(capsys)
    response = app.test_client().get("/boom")
    assert response.status_code == 500
    lines = log_lines(capsys)
    (error,) = [line for line in lines if line["level"] == "ERROR"]
    assert error["exception"]["type"] == "ValueError"
    assert "in boom" in error["exception"]["stack"]
    assert error["request_id"] == response.headers[REQUEST_ID_HEADER]
    assert address not in json.dumps(lines)


# -- /metrics ---------------------------------------------------------------------------------------------------
def scrape(client, **kwargs) -> dict[tuple[str, frozenset], float]:
    response = client.get("/metrics", **kwargs)
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    return samples(response.get_data(as_text=True))


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def requests_counted(values, method: str, route: str, status: int) -> float:
    labels = frozenset({"method": method, "route": route, "status": str(status)}.items())
    return values.get(("myhug_http_requests_total", labels), 0.0)


def latency_count(values, route: str) -> float:
    return values.get(("myhug_http_request_duration_seconds_count", frozenset({"route": route}.items())), 0.0)


def test_requests_are_counted_by_route_template_never_by_path(client, login_as):
    login_as(Role.PHYSICIAN)
    template = "/documents/<public_id>"
    before = scrape(client)
    ids = [secrets.token_urlsafe(9) for _ in range(3)]
    for public_id in ids:
        assert client.get(f"/documents/{public_id}").status_code == 404
    assert client.get("/").status_code == 200
    response = client.get("/metrics")
    after = samples(response.get_data(as_text=True))
    assert requests_counted(after, "GET", template, 404) - requests_counted(before, "GET", template, 404) == 3
    assert latency_count(after, template) - latency_count(before, template) == 3
    assert requests_counted(after, "GET", "/", 200) - requests_counted(before, "GET", "/", 200) == 1
    text = response.get_data(as_text=True)
    assert not any(public_id in text for public_id in ids)
    assert {dict(labels)["route"] for name, labels in after if name == "myhug_http_requests_total"} >= {template, "/"}


def test_an_unknown_method_does_not_become_a_label(client):
    client.open("/", method="BREW")
    assert 'method="BREW"' not in client.get("/metrics").get_data(as_text=True)
    assert requests_counted(scrape(client), "other", "unmatched", 405) >= 1  # refused before routing


def test_gauges_equal_the_counts_in_the_database(client, app):
    demo.load(app.config["BLOB_DIR"])  # deliveries in several states
    for status, count in zip(OutboxStatus.ALL, (3, 1, 2, 1, 0), strict=True):
        for _ in range(count):
            OutboxMessage.create(channel="email", template="probe", recipient="x@example.ch", body="", status=status)
    dispatch, digests = "dispatch_outbox", "send_digests"
    at = T0.replace(tzinfo=None)
    success_finished = at - dt.timedelta(seconds=125)
    JobRun.create(
        job=dispatch, node="n", started_at=at - dt.timedelta(seconds=130), outcome="ok", finished_at=success_finished
    )
    JobRun.create(job=dispatch, node="n", started_at=at - dt.timedelta(seconds=20), outcome="failed", finished_at=at)
    JobRun.create(job=digests, node="n", started_at=at - dt.timedelta(seconds=5), outcome="failed", finished_at=at)

    with time_machine.travel(T0, tick=False):
        values = scrape(client)

    def gauge(name: str, **labels) -> float:
        return values[(name, frozenset(labels.items()))]

    assert gauge("myhug_database_up") == 1
    states = [state for state in DeliveryState if state is not DeliveryState.NEW]
    for state in states:
        assert gauge("myhug_deliveries", state=state.value) == Delivery.select().where(Delivery.state == state).count()
    assert sum(gauge("myhug_deliveries", state=s.value) for s in states) == Delivery.select().count() > 0
    for status in OutboxStatus.ALL:
        expected = OutboxMessage.select().where(OutboxMessage.status == status).count()
        assert gauge("myhug_outbox_messages", status=status) == expected
    assert gauge("myhug_outbox_messages", status="dead") == 1
    pending, sending = (OutboxMessage.select().where(OutboxMessage.status == s).count() for s in ("pending", "sending"))
    assert gauge("myhug_outbox_depth") == pending + sending >= 4
    assert gauge("myhug_job_seconds_since_last_success", job=dispatch) == 125  # the later failure does not count
    assert gauge("myhug_job_seconds_since_last_success", job=digests) == math.inf  # never succeeded
    for job in SCHEDULE:
        assert gauge("myhug_job_period_seconds", job=job.name) == job.every.total_seconds()


def test_a_scrape_without_database_still_answers_the_counters(client, monkeypatch, tmp_path):
    import models

    broken = models.open_database(f"sqlite:///{tmp_path / 'missing-dir' / 'db.sqlite3'}")
    monkeypatch.setattr(models.db, "obj", broken)
    values = scrape(client)
    assert values[("myhug_database_up", frozenset())] == 0
    assert not any(name == "myhug_deliveries" for name, _labels in values)
    assert any(name == "myhug_http_requests_total" for name, _labels in values)


@pytest.mark.parametrize(
    ("remote_addr", "headers", "status"),
    [
        ("127.0.0.1", {}, 200),
        ("::1", {}, 200),
        ("::ffff:127.0.0.1", {}, 200),  # a server listening on [::]
        ("10.20.30.40", {}, 404),
        ("192.0.2.1", {}, 404),
        ("127.0.0.1", {"X-Forwarded-For": "203.0.113.9"}, 404),  # through nginx: nginx's address proves nothing
        ("127.0.0.1", {"Forwarded": "for=203.0.113.9"}, 404),
        ("127.0.0.1", {"X-Real-IP": "203.0.113.9"}, 404),
    ],
)
def test_metrics_only_for_allowed_addresses(client, remote_addr, headers, status):
    response = client.get("/metrics", environ_base={"REMOTE_ADDR": remote_addr}, headers=headers)
    assert response.status_code == status
    text = response.get_data(as_text=True)
    if status == 200:
        assert "myhug_http_requests_total" in text
        assert "Set-Cookie" not in response.headers
    else:  # the site's own "page not found": nothing tells that something is there
        assert "myhug_" not in text and "Page introuvable" in text


def test_metrics_allow_takes_cidr_blocks(database, tmp_path):
    networks = (ipaddress.ip_network("10.0.0.0/8"),)
    app = create_app(settings(database, INSTANCE_PATH=str(tmp_path / "instance"), METRICS_ALLOW=networks))
    client = app.test_client()
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.20.30.40"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 404


MULTIPROCESS_WORKER = """
import sys
from web import create_app
client = create_app().test_client()
for _ in range(int(sys.argv[1])):
    assert client.get("/").status_code == 200
"""


def test_multiprocess_mode_adds_up_the_workers(database, tmp_path, client, monkeypatch):
    """Two processes (gunicorn's workers) write to one PROMETHEUS_MULTIPROC_DIR; a scrape answered by any process
    counts the requests of both."""
    directory = tmp_path / "prometheus"
    directory.mkdir()
    env = {name: value for name, value in os.environ.items() if not name.startswith(("MYHUG_", "FLASK_"))}
    env.update(
        PROMETHEUS_MULTIPROC_DIR=str(directory),
        MYHUG_ENV="testing",
        MYHUG_DATABASE_URL=database.url,
        MYHUG_SECRET_KEY=secrets.token_urlsafe(32),
        MYHUG_DATA_KEY=base64.urlsafe_b64encode(encryption.keyring.require()).decode(),
        MYHUG_BLOB_DIR=str(tmp_path / "blobs"),
    )
    workers = [subprocess.Popen([sys.executable, "-c", MULTIPROCESS_WORKER, str(n)], cwd=ROOT, env=env) for n in (3, 4)]
    assert [worker.wait(timeout=120) for worker in workers] == [0, 0]
    assert len({path.name.rsplit("_", 1)[1] for path in directory.glob("counter_*.db")}) == 2  # one file per pid

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    values = scrape(client)
    assert requests_counted(values, "GET", "/", 200) == 7
    assert latency_count(values, "/") == 7
    assert values[("myhug_database_up", frozenset())] == 1  # the gauges come from the database, once


# -- settings ---------------------------------------------------------------------------------------------------
PRODUCTION = {
    "MYHUG_ENV": "production",
    "MYHUG_SECRET_KEY": "s" * 40,
    "MYHUG_DATA_KEY": base64.urlsafe_b64encode(bytes(32)).decode(),
    "MYHUG_DATABASE_URL": "postgresql://myhug@db/myhug",
    "MYHUG_PUBLIC_URL": "https://myhug.example.ch",
}


def test_log_format_is_json_in_production_and_text_in_development(tmp_path):
    assert load_config(PRODUCTION, instance_path=tmp_path)["LOG_FORMAT"] == "json"
    assert load_config({}, instance_path=tmp_path)["LOG_FORMAT"] == "text"
    assert load_config({"MYHUG_LOG_FORMAT": "json"}, instance_path=tmp_path)["LOG_FORMAT"] == "json"
    with pytest.raises(ConfigError, match="MYHUG_LOG_FORMAT"):
        load_config({"MYHUG_LOG_FORMAT": "xml"}, instance_path=tmp_path)


def test_metrics_allow_is_parsed_and_a_typo_stops_the_start(tmp_path):
    default = load_config(PRODUCTION, instance_path=tmp_path)["METRICS_ALLOW"]
    assert default == (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128"))
    config = load_config({**PRODUCTION, "MYHUG_METRICS_ALLOW": "10.0.0.0/8, 192.0.2.5"}, instance_path=tmp_path)
    assert config["METRICS_ALLOW"] == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("192.0.2.5/32"))
    with pytest.raises(ConfigError, match="MYHUG_METRICS_ALLOW"):
        load_config({**PRODUCTION, "MYHUG_METRICS_ALLOW": "10.0.0.300"}, instance_path=tmp_path)
