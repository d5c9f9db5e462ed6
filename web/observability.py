"""What operators watch: /readyz, /metrics, the request id and one access line per request (see README, Operations).

/healthz (web/main.py) says the process lives and reaches its database; /readyz says this instance can serve:
database, schema and document store. Neither needs a login or a session, and neither is rate-limited.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial

from flask import Blueprint, Flask, Response, abort, current_app, g, jsonify, request
from flask.logging import default_handler

from models import Role, db, schema

from . import logs, metrics
from .limits import limiter

bp = Blueprint("ops", __name__)

access_log = logging.getLogger("myhug.access")
log = logging.getLogger(__name__)

# Polled every few seconds by load balancers and Prometheus, or served by nginx from disk: no access line.
QUIET_ENDPOINTS = frozenset({"main.healthz", "ops.readyz", "ops.metrics", "static"})
# URL variables that are secrets (the e-mailed confirmation link's token): the access line shows their name.
SECRET_URL_VARIABLES = frozenset({"token"})


def init_app(app: Flask) -> None:
    """Before every other hook (create_app calls it first), so that their log lines carry the request id."""
    logs.configure_logging(app.config["LOG_FORMAT"], app.config["LOG_LEVEL"])
    app.logger.removeHandler(default_handler)  # the root handler writes Flask's lines, once, in our format
    app.before_request(start_request)
    app.after_request(finish_request)  # after_request hooks run last-registered first: this one sees the final answer
    app.teardown_request(end_request)
    limiter.exempt(bp)
    app.register_blueprint(bp)


# -- every request ------------------------------------------------------------------------------------------------
def start_request() -> None:
    g.request_started = time.perf_counter()
    g.request_id = logs.accept_request_id(request.headers.get(logs.REQUEST_ID_HEADER))
    g.request_id_binding = logs.bind_request_id(g.request_id)


def finish_request(response: Response) -> Response:
    seconds = time.perf_counter() - g.get("request_started", time.perf_counter())
    route = request.url_rule.rule if request.url_rule is not None else metrics.UNMATCHED_ROUTE
    response.headers[logs.REQUEST_ID_HEADER] = g.get("request_id") or logs.new_request_id()
    metrics.observe_request(request.method, route, response.status_code, seconds)
    if request.endpoint not in QUIET_ENDPOINTS:
        log_access(response.status_code, route, seconds)
    return response


def end_request(_exc: BaseException | None) -> None:
    binding = g.pop("request_id_binding", None)
    if binding is not None:
        logs.unbind_request_id(binding)


def log_access(status: int, route: str, seconds: float) -> None:
    """One line: who (a role, never a name), what (method, path without its query string), how it ended."""
    path, duration_ms = loggable_path(), round(seconds * 1000, 1)
    fields = {
        "method": request.method,
        "path": path,
        "route": route,
        "status": status,
        "duration_ms": duration_ms,
        "remote_addr": request.remote_addr,
        "role": requester_role(),
    }
    access_log.info("%s %s %s %.1f ms", request.method, path, status, duration_ms, extra=fields)


def loggable_path() -> str:
    path = request.path
    for name, value in (request.view_args or {}).items():
        if name in SECRET_URL_VARIABLES and value:
            path = path.replace(str(value), f"<{name}>")
    return path


def requester_role() -> str:
    account = g.get("account")
    if account is not None:
        return account.role
    if g.get("dpi_client") is not None:
        return Role.DPI
    return "anonymous"


# -- the endpoints ------------------------------------------------------------------------------------------------
@bp.get("/readyz")
def readyz():
    """200 when this instance can serve, else 503 naming the failed checks (and, outside production, why)."""
    checks: dict[str, Callable[[], None]] = {
        "database": database_answers,
        "schema": schema_is_current,
        "blob_dir": partial(blob_dir_is_writable, current_app.config["BLOB_DIR"]),
    }
    with closing_what_it_opens():
        failures = {name: error for name, check in checks.items() if (error := attempt(check)) is not None}
    body: dict = {
        "status": "unavailable" if failures else "ok",
        "checks": {name: "failed" if name in failures else "ok" for name in checks},
    }
    if not failures:
        return jsonify(body)
    log.warning("not ready: %s", ", ".join(f"{name} ({type(error).__name__})" for name, error in failures.items()))
    if current_app.config["MYHUG_ENV"] != "production":  # production answers names only: no paths, no hosts
        body["detail"] = {name: f"{type(error).__name__}: {error}" for name, error in failures.items()}
    return jsonify(body), 503


@bp.get("/metrics", endpoint="metrics")
def metrics_endpoint():
    """Prometheus' text format, for the addresses in MYHUG_METRICS_ALLOW only; 404 for anyone else."""
    if not metrics.may_scrape(request.environ, current_app.config["METRICS_ALLOW"]):
        abort(404)
    with closing_what_it_opens():
        body = metrics.exposition()
    return Response(body, content_type=metrics.CONTENT_TYPE)


# -- the readiness checks: each raises when it fails ---------------------------------------------------------------
class NotReady(Exception):
    """A check that found something wrong without an exception of its own."""


def database_answers() -> None:
    db.execute_sql("SELECT 1").fetchone()


def schema_is_current() -> None:
    found, latest = schema.current_version(), schema.MIGRATIONS[-1][0]
    if found != latest:
        raise NotReady(f"the schema is at version {found}, this code runs on {latest} (flask init-db migrates)")


def blob_dir_is_writable(blob_dir: str) -> None:
    """A temporary file written, flushed and removed; the store's listing ignores files outside its shards."""
    with tempfile.NamedTemporaryFile(dir=blob_dir, prefix=".readyz-") as probe:
        probe.write(b"ready")
        probe.flush()


def attempt(check: Callable[[], None]) -> Exception | None:
    try:
        check()
    except Exception as error:  # any failure means "not ready"; its type is logged, its text shown outside production
        return error
    return None


@contextmanager
def closing_what_it_opens() -> Iterator[None]:
    """These endpoints get no connection from the request hooks (they need no session): peewee opens one on the
    first query; close it afterwards unless it was open already (a test's, in this thread)."""
    was_closed = db.is_closed()
    try:
        yield
    finally:
        if was_closed and not db.is_closed():
            db.close()
