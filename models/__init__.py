"""peewee models, one module per aggregate; `db` is the deferred database opened by the app factory or the CLI."""

from .accounts import ACCOUNT_ROLES, Account, CodeChallenge, Role, Session, SupportMessage, TotpCredential
from .audit import AuditEvent, AuditHead, TransitionLog
from .db import BaseModel, db, init_database, insert_rows, is_postgres, open_database, public_id, utcnow
from .documents import Delivery, Document, DocumentStatus, DocumentType, ManualAuthorization
from .dpi import DpiClient
from .enrollment import Appointment, AppointmentSlot, Desk, EnrollmentApplication, IdDocumentType
from .jobs import JobRun
from .outbox import OutboxMessage, OutboxStatus
from .patients import Designation, Patient, Stay, StayKind
from .physicians import (
    DocumentsFilter,
    LandingPage,
    NotificationMode,
    PatientsFilter,
    Physician,
    PhysicianSpecialty,
    Specialty,
    gln_is_valid,
    gln_with_check_digit,
)

__all__ = [
    "ACCOUNT_ROLES",
    "Account",
    "Appointment",
    "AppointmentSlot",
    "AuditEvent",
    "AuditHead",
    "BaseModel",
    "CodeChallenge",
    "Delivery",
    "Designation",
    "Desk",
    "Document",
    "DocumentStatus",
    "DocumentType",
    "DocumentsFilter",
    "DpiClient",
    "EnrollmentApplication",
    "IdDocumentType",
    "JobRun",
    "LandingPage",
    "ManualAuthorization",
    "NotificationMode",
    "OutboxMessage",
    "OutboxStatus",
    "Patient",
    "PatientsFilter",
    "Physician",
    "PhysicianSpecialty",
    "Role",
    "Session",
    "Specialty",
    "Stay",
    "StayKind",
    "SupportMessage",
    "TotpCredential",
    "TransitionLog",
    "db",
    "gln_is_valid",
    "gln_with_check_digit",
    "init_database",
    "insert_rows",
    "is_postgres",
    "open_database",
    "public_id",
    "utcnow",
]
