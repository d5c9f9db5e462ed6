"""Schema creation is idempotent and versioned; migrations apply once each and end where a fresh schema starts."""

from __future__ import annotations

import datetime as dt

import pytest
from peewee import CharField
from playhouse.migrate import migrate

from models import (
    Account,
    AuditEvent,
    Delivery,
    Document,
    DocumentType,
    Patient,
    Role,
    Specialty,
    Stay,
    db,
    is_postgres,
    schema,
)
from models.documents import SEED_DOCUMENT_TYPES
from models.physicians import FMH_SPECIALTIES, gln_is_valid
from tests.conftest import statements


def test_upgrade_is_idempotent(database):
    assert schema.current_version() == schema.MIGRATIONS[-1][0]
    assert schema.upgrade() == []
    assert Specialty.select().count() == len(FMH_SPECIALTIES) == 46
    assert DocumentType.select().count() == len(SEED_DOCUMENT_TYPES) == 7


def test_reference_data_keeps_administrator_edits(database):
    DocumentType.update(communicable=True).where(DocumentType.loinc == "11506-3").execute()
    try:
        schema.seed_reference_data()
        assert DocumentType.get(DocumentType.loinc == "11506-3").communicable is True
    finally:  # the catalogue is kept between tests
        DocumentType.update(communicable=False).where(DocumentType.loinc == "11506-3").execute()


def test_a_new_migration_is_applied_once(database, monkeypatch):
    calls = []

    def add_column(migrator):
        calls.append(1)
        migrate(migrator.add_column("dpi_client", "contact", CharField(null=True)))

    version = schema.MIGRATIONS[-1][0] + 1
    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, (version, "dpi_client.contact", add_column)])
    try:
        assert schema.upgrade() == ["dpi_client.contact"]
        assert schema.upgrade() == []
        assert calls == [1]
        assert schema.current_version() == version
        assert "contact" in {c.name for c in db.get_columns("dpi_client")}
    finally:
        migrate(schema.migrator().drop_column("dpi_client", "contact"))
        schema.SchemaVersion.delete().where(schema.SchemaVersion.version == version).execute()


def test_gln_check_digit():
    assert gln_is_valid("7601000000002")
    assert gln_is_valid("4006381333931")  # a GS1 number from the wild: same check digit rule
    assert not gln_is_valid("7601000000003")
    assert not gln_is_valid("760100000000a")
    assert not gln_is_valid(None)


def test_an_older_database_gets_the_new_column(database):
    """A database at version 1 (before account.temporary_password_reminded_at) is brought up to date."""
    migrate(schema.migrator().drop_column("account", "temporary_password_reminded_at"))
    schema.SchemaVersion.delete().where(schema.SchemaVersion.version >= 2).execute()
    assert schema.current_version() == 1
    assert "account.temporary_password_reminded_at" in schema.upgrade()
    assert "temporary_password_reminded_at" in {c.name for c in db.get_columns("account")}
    assert schema.current_version() == schema.MIGRATIONS[-1][0]


def test_a_database_at_version_2_gets_the_jobs_and_notifications_schema(database):
    """Migration 3: the job_run table, delivery.notification_id (indexed), the physician's bounce and digest."""
    from models import JobRun

    m = schema.migrator()
    db.drop_tables([JobRun])
    db.execute_sql('DROP INDEX IF EXISTS "delivery_notification_id"')
    migrate(
        m.drop_column("delivery", "notification_id"),
        m.drop_column("physician", "email_bounce_reason"),
        m.drop_column("physician", "last_digest_at"),
    )
    schema.SchemaVersion.delete().where(schema.SchemaVersion.version >= 3).execute()
    assert schema.current_version() == 2

    assert schema.upgrade() == [name for version, name, _step in schema.MIGRATIONS if version >= 3]
    assert db.table_exists("job_run")
    assert "notification_id" in {c.name for c in db.get_columns("delivery")}
    assert "delivery_notification_id" in {i.name for i in db.get_indexes("delivery")}
    assert {"email_bounce_reason", "last_digest_at"} <= {c.name for c in db.get_columns("physician")}
    assert schema.upgrade() == []  # once


# -- migration 4: the indexes of the administrators' journal ---------------------------------------------------------
JOURNAL_INDEXES = {"audit_event_actor_id", "audit_event_action_at", "audit_event_outcome_at"}


def indexes() -> dict[str, set]:
    """Every index of every table but the primary keys: {table: {(name, columns, unique)}}."""
    return {
        model._meta.table_name: {
            (index.name, tuple(index.columns), index.unique)
            for index in db.get_indexes(model._meta.table_name)
            if not index.name.endswith("_pkey")  # PostgreSQL's; SQLite's integer keys have none
        }
        for model in schema.ALL_MODELS
    }


def declared_indexes() -> dict[str, set]:
    """The indexes the models declare (index=True, unique=True, Meta.indexes), as `indexes()` reads them."""
    return {
        model._meta.table_name: {
            (index._name, tuple(field.column_name for field in index._expressions), index._unique)
            for index in model._meta.fields_to_index()
        }
        for model in schema.ALL_MODELS
    }


def back_to_version_3() -> None:
    """The audit_event indexes as version 3 left them (an index on action alone), and version 4 forgotten."""
    for name in JOURNAL_INDEXES:
        db.execute_sql(f'DROP INDEX IF EXISTS "{name}"')
    db.execute_sql('CREATE INDEX "audit_event_action" ON "audit_event" ("action")')
    schema.SchemaVersion.delete().where(schema.SchemaVersion.version >= 4).execute()


def test_a_fresh_database_is_created_at_version_4_with_the_journal_indexes(database):
    """What `flask init-db` does on an empty database: every migration recorded, the model's indexes built."""
    schema.drop_all()
    assert schema.upgrade() == [name for _version, name, _step in schema.MIGRATIONS]
    versions = [(row.version, row.name) for row in schema.SchemaVersion.select().order_by(schema.SchemaVersion.version)]
    assert versions[3] == (4, "audit journal indexes")
    assert schema.current_version() == versions[-1][0] >= 4
    assert indexes() == declared_indexes()
    names = {name for name, _columns, _unique in indexes()["audit_event"]}
    assert names >= JOURNAL_INDEXES and "audit_event_action" not in names


def test_a_trail_at_version_3_is_migrated_to_4_and_keeps_its_rows(database, make_account):
    from security import audit

    admin = make_account(Role.ADMINISTRATOR)
    with audit.batch():
        for n in range(200):
            audit.record("login.success", actor_id=admin.id, actor_role="administrator", at=dt.datetime(2024, 1, 1))
            audit.record("login.failure", outcome="failure", actor_role="anonymous", details={"n": n})
    rows = [(e.id, e.hash) for e in AuditEvent.select().order_by(AuditEvent.id)]
    back_to_version_3()
    assert schema.current_version() == 3
    assert ("audit_event_action", ("action",), False) in indexes()["audit_event"]

    assert schema.upgrade() == ["audit journal indexes"]
    assert schema.current_version() == 4
    assert indexes() == declared_indexes()  # what a fresh database gets from the models
    assert [(e.id, e.hash) for e in AuditEvent.select().order_by(AuditEvent.id)] == rows
    assert len(rows) > 400 and Account.select().count() == 1
    assert audit.verify().ok
    assert AuditEvent.search(user=admin.username, outcome="success").count() == 200 + 2  # + its creation, activation
    assert schema.upgrade() == []  # once


# -- the journal's filters use them ---------------------------------------------------------------------------------
def plan(query) -> str:
    """The database's plan for `query` (a peewee query or SQL text), one step a line."""
    sql, params = (query, ()) if isinstance(query, str) else query.sql()
    if is_postgres():
        return "\n".join(row[0] for row in db.execute_sql(f"EXPLAIN {sql}", params))
    return "\n".join(row[-1] for row in db.execute_sql(f"EXPLAIN QUERY PLAN {sql}", params))


@pytest.fixture
def trail(database, make_account, make_physician):
    """3,000 events of 30 accounts about themselves and about deliveries; then one more account that acted three
    times, and a document with one delivery that have two events each. Returns (that account, that document)."""
    from security import audit

    accounts = [make_account(Role.CLINICIAN) for _ in range(30)]
    rare = make_account(Role.CLINICIAN, username="rare.clinician")
    patient = Patient.create(dpi_system="urn:test", dpi_value="P1", family_name="Zeller", given_name="Eva")
    stay = Stay.create(dpi_system="urn:test", dpi_value="S1", patient=patient)
    document = Document.create(
        dpi_system="urn:test", dpi_value="D1", patient=patient, stay=stay, type=DocumentType.get(), title="Lettre"
    )
    delivery = Delivery.create(document=document, physician=make_physician(), state="available")
    events = [
        (
            ("login.success", "document.opened")[n % 2],
            accounts[n % 30].id,
            "failure" if n % 50 == 0 else "success",
            ("account", accounts[n % 30].id) if n % 2 == 0 else ("delivery", 1_000 + n),
        )
        for n in range(3_000)
    ]
    events += [("login.success", rare.id, "success", ("account", rare.id))] * 3
    events += [("document.receive", None, "success", ("document", document.id))] * 2
    events += [("delivery.notify", None, "success", ("delivery", delivery.id))] * 2
    with audit.batch():
        for n, (action, actor_id, outcome, (object_type, object_id)) in enumerate(events):
            at = dt.datetime(2024, 1, 1) + dt.timedelta(minutes=n)
            audit.record(
                action,
                actor_id=actor_id,
                actor_role="clinician",
                at=at,
                outcome=outcome,
                object_type=object_type,
                object_id=object_id,
            )
    if is_postgres():  # as its autovacuum would; SQLite plans without statistics, as the portal never gathers any
        db.execute_sql("ANALYZE audit_event")
    return rare, document


@pytest.fixture
def without_seq_scan(database):
    """PostgreSQL reads a table this small whole whatever its indexes: forbid that for the plans (SQLite: nothing)."""
    if not is_postgres():
        yield
        return
    with db.atomic():
        db.execute_sql("SET LOCAL enable_seqscan = off")
        yield


@pytest.mark.parametrize("name", ["user", "document"])
def test_the_user_and_document_filters_find_their_events_by_index(trail, without_seq_scan, name):
    """The user filter by actor_id (and object_id: what was done to the account), the document filter by object_id;
    on PostgreSQL too, which uses no index for `IN (subquery) OR IN (subquery)`."""
    account, document = trail
    query = (
        AuditEvent.search(user=account.username) if name == "user" else AuditEvent.search(document=document.public_id)
    )
    assert query.count() == {"user": 3 + 2, "document": 2 + 2}[name]  # the user's: + its creation and activation
    columns = {"user": ["actor_id", "object_id"], "document": ["object_id"]}[name]
    page, count = plan(query.paginate(1, 50)), plan(query.order_by())
    for column in columns:
        if is_postgres():
            assert f"Bitmap Index Scan on audit_event_{column}" in count, count
            assert "Seq Scan on audit_event" not in page, page
        else:
            for steps in (page, count):
                assert f"SEARCH t1 USING INDEX audit_event_{column} ({column}=?)" in steps, steps
                assert "SCAN t1" not in steps, steps


@pytest.mark.parametrize("column", ["action", "outcome"])
def test_the_action_and_outcome_filters_read_their_page_in_order_down_their_index(trail, without_seq_scan, column):
    value = {"action": "document.opened", "outcome": "failure"}[column]
    query = AuditEvent.search(**{column: value})
    assert query.count() == {"action": 1_500, "outcome": 60}[column]
    if is_postgres():
        assert f"audit_event_{column}_at" in plan(query.order_by()), plan(query.order_by())
    else:
        page = plan(query.paginate(1, 50))
        assert f"SEARCH t1 USING INDEX audit_event_{column}_at ({column}=?)" in page, page
        assert "TEMP B-TREE" not in page, page  # no sort: the index gives the order


def test_the_lists_of_actions_and_outcomes_seek_their_index_value_by_value(trail, without_seq_scan):
    """Each value after the previous one by one seek (a loose index scan), never a read of the whole trail."""
    with statements() as seen:
        assert AuditEvent.actions() == [
            "account.activate",
            "account.issue_login",
            "delivery.notify",
            "document.opened",
            "document.receive",
            "login.success",
        ]
        assert AuditEvent.outcomes() == ["failure", "success"]
    for sql, column in zip(seen, ("action", "outcome"), strict=True):
        steps = plan(sql)
        if is_postgres():  # the seeks are in the recursive term, which EXPLAIN does not detail
            assert "Recursive Union" in steps and f"Index Only Scan using audit_event_{column}_at" in steps, steps
        else:
            assert f"SEARCH audit_event USING COVERING INDEX audit_event_{column}_at ({column}>?)" in steps, steps
        assert "Seq Scan on audit_event" not in steps and "SCAN audit_event" not in steps, steps
