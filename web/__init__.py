"""The application factory: reads the configuration and wires the database, extensions, hooks and blueprints."""

from __future__ import annotations

import base64
import logging
import os
from pathlib import Path

from flask import Flask, g, request
from flask_wtf.csrf import CSRFProtect
from werkzeug.middleware.proxy_fix import ProxyFix

import models
from config import load_config
from gateways.mail import mail
from jobs.runner import start_in_process
from security import encryption, sessions
from workflows import account as account_workflow
from workflows import documents, notifications

csrf = CSRFProtect()

# Endpoints that must work without a database session or a user session (load balancers poll them).
UNSESSIONED_ENDPOINTS = frozenset({"static", "main.healthz", "ops.readyz", "ops.metrics"})
# Environments where development helpers (the SMS outbox page) exist; never production.
DEVELOPMENT_ENVIRONMENTS = frozenset({"development", "testing"})


def create_app(test_config: dict | None = None) -> Flask:
    """`flask --app web …` and the WSGI server call this; tests pass the whole configuration in `test_config`.

    test_config may carry `DATABASE` (an open peewee Database, e.g. the tests' fixture) to reuse it as is.
    """
    test_config = dict(test_config or {})
    app = Flask(__name__, instance_path=test_config.pop("INSTANCE_PATH", None), instance_relative_config=True)
    app.config.update(_settings(app, test_config))
    app.config.update(test_config)
    app.config.update(
        SESSION_COOKIE_NAME="myhug_state",  # Flask's signed cookie: CSRF secret, login attempt, language
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
    )

    # peewee logs every statement with its parameters at DEBUG: codes and hashes must never reach a log.
    logging.getLogger("peewee").setLevel(max(logging.INFO, logging.getLogger("peewee").level))
    _open_database(app)
    encryption.configure(app.config["DATA_KEY"])
    notifications.configure(app.config["PUBLIC_URL"], app.config["SUPPORT_EMAIL"])
    documents.configure(app.config["BLOB_DIR"], app.config["MAX_DOCUMENT_BYTES"])
    account_workflow.TEMPORARY_PASSWORD_HOURS = app.config["TEMPORARY_PASSWORD_HOURS"]
    sessions.configure(app.config["SESSION_IDLE_MINUTES"], app.config["SESSION_ABSOLUTE_HOURS"])

    from . import admin, auth, authenticator, cli, dev, errors, headers, hin, i18n, limits, main, physician, templating
    from . import admin_accounts  # noqa: F401  # isort: skip  (its routes join admin.bp before it is registered)
    from . import admin_enrol  # noqa: F401  # isort: skip  (the same: step 6 and the applications' file)
    from . import admin_types  # noqa: F401  # isort: skip  (the same: the catalogue of document types)
    from . import admin_outbox  # noqa: F401  # isort: skip  (the same: outgoing messages, dead letters)
    from . import admin_audit, admin_dashboard  # noqa: F401  # isort: skip  (the same: the journal, the dashboard)
    from . import desk  # isort: skip  (steps 2–5: the validation desk)
    from . import appointments, enrol  # isort: skip  (step 1: the applicant's pages; the desks' opening slots)
    from . import help as help_pages  # isort: skip  (the physician's "Aide" pages)
    from . import clinic  # isort: skip  (hospital staff: designations per stay, manual sends, the explainer)
    from . import fhir  # isort: skip  (the DPI's FHIR R4 API)
    from . import observability  # isort: skip  (/readyz, /metrics, JSON logs with a request id)

    # Order matters: the request id (every later line carries it), database, then the logged-in account, then the
    # CSRF check (whose refusal page shows both).
    observability.init_app(app)
    app.before_request(_connect)
    app.teardown_request(_close)
    auth.init_app(app)
    csrf.init_app(app)
    mail.init_app(app)
    limits.init_app(app)
    i18n.init_app(app)
    templating.init_app(app)
    headers.init_app(app)
    errors.init_app(app)
    app.register_blueprint(main.bp)
    app.register_blueprint(auth.bp)
    hin.init_app(app)  # /login/hin and its callback; without MYHUG_HIN_ISSUER they say HIN is not configured
    app.register_blueprint(admin.bp)
    app.register_blueprint(desk.bp)
    app.register_blueprint(enrol.bp)
    app.register_blueprint(appointments.bp)
    app.register_blueprint(physician.bp)
    app.register_blueprint(help_pages.bp)  # /aide: contact, message, "Je ne reçois pas de document"
    app.register_blueprint(clinic.bp)  # /clinique
    app.register_blueprint(fhir.bp)  # /fhir: the DPI's FHIR R4 API, bearer tokens, answers in JSON only
    app.register_blueprint(authenticator.bp)
    if app.config["MYHUG_ENV"] in DEVELOPMENT_ENVIRONMENTS:
        app.register_blueprint(dev.bp)
    cli.init_app(app)
    _behind_proxies(app)
    # `make run`: the jobs beside the development server, under the same leader lock as `flask jobs run`; a test
    # gets them only by asking in its configuration.
    if app.config["JOBS_IN_PROCESS"] and (not app.config["TESTING"] or test_config.get("JOBS_IN_PROCESS")):
        start_in_process(app)
    return app


def _behind_proxies(app: Flask) -> None:
    """MYHUG_TRUSTED_PROXIES=N (nginx: 1): the client address that rate limits, sessions and the audit trail record,
    and the scheme, are the ones the last N proxies saw. Werkzeug keeps the socket's own values in the environ
    (`werkzeug.proxy_fix.orig`), which /metrics checks. With 0, forwarded headers are ignored: anyone can send them."""
    proxies = app.config["TRUSTED_PROXIES"]
    if proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)


def _settings(app: Flask, test_config: dict) -> dict:
    """The process environment, unless the caller (a test) describes the configuration itself."""
    if not test_config:
        return load_config(os.environ, instance_path=app.instance_path)
    # Tests must not depend on the shell they run in: only what test_config says, in MYHUG_* form so that
    # load_config validates it the same way (and generates no secret under instance/ when one is given).
    environ = {
        "MYHUG_ENV": test_config.get("MYHUG_ENV") or ("testing" if test_config.get("TESTING") else "development")
    }
    for key in ("SECRET_KEY", "DATABASE_URL", "PUBLIC_URL", "SUPPORT_EMAIL"):
        if isinstance(test_config.get(key), str):
            environ[f"MYHUG_{key}"] = test_config[key]
    if isinstance(test_config.get("DATA_KEY"), bytes):
        environ["MYHUG_DATA_KEY"] = base64.urlsafe_b64encode(test_config["DATA_KEY"]).decode()
    if test_config.get("DATABASE") is not None and "MYHUG_DATABASE_URL" not in environ:
        environ["MYHUG_DATABASE_URL"] = getattr(test_config["DATABASE"], "url", None) or "sqlite:///:memory:"
    return load_config(environ, instance_path=app.instance_path)


def _open_database(app: Flask) -> None:
    """Point the shared DatabaseProxy at this app's database, unless it already is (tests, a second app)."""
    database = app.config.get("DATABASE")
    if database is not None:
        if models.db.obj is not database:
            models.db.initialize(database)
        return
    url = app.config["DATABASE_URL"]
    if models.db.obj is not None and getattr(models.db.obj, "url", None) == url:
        return
    if url.startswith("sqlite:///") and url != "sqlite:///":
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    database = models.init_database(url, app.config["DATABASE_POOL_SECONDS"])
    database.url = url  # how the next create_app knows (the tests' fixture marks its databases the same way)


def _connect() -> None:
    g.account = None  # until web.auth loads it: error pages render even when nothing else ran
    if request.endpoint in UNSESSIONED_ENDPOINTS:
        return
    # peewee connections are per thread; a test holding one in this thread keeps it (connect returns False).
    g.db_opened_here = models.db.connect(reuse_if_open=True)


def _close(_exc: BaseException | None) -> None:
    if g.pop("db_opened_here", False) and not models.db.is_closed():
        models.db.close()
