"""Schema creation is idempotent and versioned; migrations apply once each."""

from __future__ import annotations

from peewee import CharField
from playhouse.migrate import migrate

from models import DocumentType, Specialty, db, schema
from models.documents import SEED_DOCUMENT_TYPES
from models.physicians import FMH_SPECIALTIES, gln_is_valid


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

    assert schema.upgrade() == ["jobs and notifications"]
    assert db.table_exists("job_run")
    assert "notification_id" in {c.name for c in db.get_columns("delivery")}
    assert "delivery_notification_id" in {i.name for i in db.get_indexes("delivery")}
    assert {"email_bounce_reason", "last_digest_at"} <= {c.name for c in db.get_columns("physician")}
    assert schema.upgrade() == []  # once
