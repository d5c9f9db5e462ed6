"""Fixtures: a database per backend (SQLite always, PostgreSQL where reachable), actors, and factories."""

from __future__ import annotations

import contextlib
import datetime as dt
import secrets
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import models  # noqa: E402
from models import Account, EnrollmentApplication, Role, db, schema  # noqa: E402
from security import encryption, passwords  # noqa: E402
from tests import pg  # noqa: E402
from workflows import ACCOUNT, SYSTEM, Actor, engine  # noqa: E402

# The OpenID Connect provider of the HIN tests (`provider`, `make_provider`) and the SMTP server (`smtp_server`).
pytest_plugins = ["tests.oidc", "tests.smtp"]

TEST_DATA_KEY = secrets.token_bytes(32)
encryption.configure(TEST_DATA_KEY)
# Production keeps argon2-cffi's RFC 9106 defaults (about 0.1 s a hash here); tests need thousands of hashes.
passwords.configure(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture(autouse=True)
def _test_data_key():
    """Every test starts with the suite's data key. create_app installs its app's key process-wide: a test whose app
    made its own key (a CLI test without DATA_KEY) must not leave it to the next test in the same worker, which
    would then encrypt with one key what a subprocess or a check reads with TEST_DATA_KEY."""
    encryption.configure(TEST_DATA_KEY)


# Reference data survives between tests; everything else is emptied.
_KEEP = {"schema_version", "specialty", "document_type"}
_databases: dict[str, object] = {}


def _open(backend: str, tmp_path_factory):
    if backend in _databases:
        return _databases[backend]
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'test.sqlite3'}"
    else:
        url = pg.test_database_url()
    database = models.open_database(url)
    db.initialize(database)
    schema.drop_all()
    schema.upgrade()
    _databases[backend] = (database, url)
    return _databases[backend]


def _empty_tables(database) -> None:
    tables = [m._meta.table_name for m in reversed(schema.ALL_MODELS) if m._meta.table_name not in _KEEP]
    with database.atomic():
        if models.is_postgres():
            database.execute_sql(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
        else:
            for table in tables:
                database.execute_sql(f"DELETE FROM {table}")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request, tmp_path_factory):
    """An empty schema (reference data kept) on each backend; every database test runs on both."""
    if request.param == "postgresql":
        pg.require()
    database, url = _open(request.param, tmp_path_factory)
    db.initialize(database)
    database.connect(reuse_if_open=True)
    _empty_tables(database)
    database.url = url
    yield database
    database.close()


@pytest.fixture
def sqlite_database(tmp_path_factory):
    database, _url = _open("sqlite", tmp_path_factory)
    db.initialize(database)
    database.connect(reuse_if_open=True)
    _empty_tables(database)
    yield database
    database.close()


@pytest.fixture
def make_account(database):
    """make_account(role, username=…, physician=…, state='active') → a saved Account, made through the workflow."""
    counter = iter(range(1, 10_000))

    def make(role=Role.ADMINISTRATOR, *, username=None, physician=None, state="active", email=None, extra_roles=""):
        n = next(counter)
        username = username or f"{role}{n}"
        account = Account(
            username=username,
            email=email or f"{username}@hcuge.ch",
            role=role,
            extra_roles=extra_roles,
            full_name=username.title(),
            physician=physician,
        )
        engine.create(ACCOUNT, account, "issue_login", SYSTEM)
        if state in ("active", "locked", "disabled"):
            # Replace the temporary password as the holder would, then activate through the workflow.
            account.password_is_temporary = False
            engine.fire(ACCOUNT, account, "activate", Actor(role, account.id))
        if state == "locked":
            engine.fire(ACCOUNT, account, "lock", SYSTEM)
        if state == "disabled":
            engine.fire(ACCOUNT, account, "disable", SYSTEM)
        return account

    return make


@pytest.fixture
def make_physician(database):
    counter = iter(range(1, 10_000))

    def make(**fields):
        n = next(counter)
        physician = models.Physician.create(
            gln=fields.pop("gln", models.gln_with_check_digit(f"7601{n:08d}")),
            last_name=fields.pop("last_name", f"Médecin{n}"),
            first_name=fields.pop("first_name", "Anne"),
            email=fields.pop("email", f"dr{n}@example.ch"),
            practice_address=fields.pop("practice_address", "Rue du Rhône 1, 1204 Genève"),
            **fields,
        )
        models.PhysicianSpecialty.create(physician=physician, specialty=models.Specialty.get(code="cardiology"))
        return physician

    return make


def section_one(**overrides) -> dict:
    fields = dict(
        last_name="Dupont",
        first_name="Claire",
        date_of_birth=dt.date(1978, 5, 17),
        gln=models.gln_with_check_digit("760100099999"),
        specialty_codes="general-internal-medicine,cardiology",
        practice_address="Boulevard Carl-Vogt 2, 1205 Genève",
        mobile="+41791234567",
        email="claire.dupont@example.ch",
    )
    fields.update(overrides)
    return fields


@pytest.fixture
def submit_application(database):
    def submit(**overrides) -> EnrollmentApplication:
        app = EnrollmentApplication(**section_one(**overrides))
        from workflows import ENROLLMENT

        app.reference = app.reference or None
        engine.create(ENROLLMENT, app, "submit", Actor(Role.APPLICANT))
        return app

    return submit


@contextlib.contextmanager
def statements():
    """The SQL statements the database receives while the block runs (a page's query count staying constant)."""
    seen: list[str] = []
    database = models.db.obj
    real = database.execute_sql

    def spy(sql, params=None, *args, **kwargs):
        seen.append(sql)
        return real(sql, params, *args, **kwargs)

    database.execute_sql = spy
    try:
        yield seen
    finally:
        del database.execute_sql
