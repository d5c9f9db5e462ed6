"""Schema creation and migrations: idempotent, versioned in `schema_version`, run by `flask init-db`."""

from __future__ import annotations

from collections.abc import Callable

from peewee import CharField, DateTimeField, IntegerField
from playhouse.migrate import PostgresqlMigrator, SchemaMigrator, SqliteMigrator, migrate

from .accounts import Account, CodeChallenge, Session, SupportMessage, TotpCredential
from .audit import AuditEvent, AuditHead, TransitionLog
from .db import BaseModel, db, is_postgres, utcnow
from .documents import SEED_DOCUMENT_TYPES, Delivery, Document, DocumentType, ManualAuthorization
from .dpi import DpiClient
from .enrollment import Appointment, AppointmentSlot, EnrollmentApplication
from .jobs import JobRun
from .outbox import OutboxMessage
from .patients import Designation, Patient, Stay
from .physicians import FMH_SPECIALTIES, Physician, PhysicianSpecialty, Specialty


class SchemaVersion(BaseModel):
    version = IntegerField(primary_key=True)
    name = CharField()
    applied_at = DateTimeField(default=utcnow)


ALL_MODELS = [
    SchemaVersion,
    Specialty,
    Physician,
    PhysicianSpecialty,
    Account,
    Session,
    CodeChallenge,
    TotpCredential,
    SupportMessage,
    EnrollmentApplication,
    AppointmentSlot,
    Appointment,
    Patient,
    Stay,
    Designation,
    DocumentType,
    Document,
    ManualAuthorization,
    Delivery,
    DpiClient,
    OutboxMessage,
    AuditEvent,
    AuditHead,
    TransitionLog,
    JobRun,
]


def _baseline(migrator: SchemaMigrator) -> None:
    db.create_tables(ALL_MODELS, safe=True)


def add_column(table: str, name: str, field):
    """A migration step that adds a column to databases made before it. A new database already has the column
    (the baseline creates the current models), so the step is a no-op there."""

    def step(migrator: SchemaMigrator) -> None:
        if name not in {column.name for column in db.get_columns(table)}:
            migrate(migrator.add_column(table, name, field))

    step.__name__ = f"add_{table}_{name}"
    return step


def _jobs_and_notifications(migrator: SchemaMigrator) -> None:
    db.create_tables([JobRun], safe=True)
    add_column("delivery", "notification_id", IntegerField(null=True))(migrator)
    add_column("physician", "email_bounce_reason", CharField(null=True))(migrator)
    add_column("physician", "last_digest_at", DateTimeField(null=True))(migrator)
    existing = {index.name for index in db.get_indexes("delivery")}
    if "delivery_notification_id" not in existing:
        db.execute_sql('CREATE INDEX "delivery_notification_id" ON "delivery" ("notification_id")')


def _audit_journal_indexes(migrator: SchemaMigrator) -> None:
    """What the administrators' journal searches a large trail with (models/audit.py says what each serves):
    actor_id for the user filter; (action, at), which replaces the index on action alone, and (outcome, at). On
    1,000,000 events: 7.2 s on SQLite, 8.4 s on PostgreSQL, the trail closed to writes meanwhile (docs/deploy.md)."""
    existing = {index.name for index in db.get_indexes("audit_event")}
    for columns in (("actor_id",), ("action", "at"), ("outcome", "at")):
        if "_".join(("audit_event", *columns)) not in existing:
            migrate(migrator.add_index("audit_event", columns))
    if "audit_event_action" in existing:
        migrate(migrator.drop_index("audit_event", "audit_event_action"))


# Append-only: (version, name, function); never edit an entry that has shipped.
MIGRATIONS: list[tuple[int, str, Callable[[SchemaMigrator], None]]] = [
    (1, "baseline", _baseline),
    (
        2,
        "account.temporary_password_reminded_at",
        add_column("account", "temporary_password_reminded_at", DateTimeField(null=True)),
    ),
    (3, "jobs and notifications", _jobs_and_notifications),
    (4, "audit journal indexes", _audit_journal_indexes),
]


def migrator() -> SchemaMigrator:
    return PostgresqlMigrator(db.obj) if is_postgres() else SqliteMigrator(db.obj)


def current_version() -> int:
    if not db.table_exists(SchemaVersion._meta.table_name):
        return 0
    row = SchemaVersion.select().order_by(SchemaVersion.version.desc()).first()
    return row.version if row else 0


def upgrade() -> list[str]:
    """Apply every migration not yet recorded, each in its own transaction; return the names applied."""
    applied = []
    with db.atomic():
        db.create_tables([SchemaVersion], safe=True)
    for version, name, step in MIGRATIONS:
        if version <= current_version():
            continue
        with db.atomic():
            step(migrator())
            SchemaVersion.create(version=version, name=name)
        applied.append(name)
    seed_reference_data()
    return applied


def seed_reference_data() -> None:
    """The FMH specialties and the LOINC document types: inserted once, never overwriting an administrator's edits."""
    with db.atomic():
        for code, fr, en in FMH_SPECIALTIES:
            Specialty.get_or_create(code=code, defaults={"name_fr": fr, "name_en": en})
        for loinc, fr, en, communicable in SEED_DOCUMENT_TYPES:
            DocumentType.get_or_create(
                loinc=loinc, defaults={"name_fr": fr, "name_en": en, "communicable": communicable}
            )


def drop_all() -> None:
    """Tests only."""
    db.drop_tables(list(reversed(ALL_MODELS)), safe=True, cascade=is_postgres())


__all__ = ["ALL_MODELS", "MIGRATIONS", "SchemaVersion", "current_version", "drop_all", "migrate", "upgrade"]
