"""Workflow factories: patients, stays, designations, documents, manual authorizations and deliveries.

Each factory is a fixture returning a callable (STYLE habit 9). Rows that hold no workflow state are inserted
directly; deliveries are created through `workflows.engine.create`, as the DPI or a clinician would.
"""

from __future__ import annotations

import datetime as dt
from contextlib import contextmanager

import pytest
import time_machine

from models import (
    AuditEvent,
    Delivery,
    Designation,
    Document,
    DocumentStatus,
    DocumentType,
    ManualAuthorization,
    OutboxMessage,
    Patient,
    Role,
    Session,
    Stay,
    TransitionLog,
    utcnow,
)
from workflows import DELIVERY, SYSTEM, TransitionRefused, engine

DISCHARGE_SUMMARY = "18842-5"  # seeded communicable
PROGRESS_NOTE = "11506-3"  # seeded not communicable
NOW = dt.datetime(2025, 3, 3, 9, 30, tzinfo=dt.UTC)


@pytest.fixture
def frozen_now():
    """Time stands still at NOW for the whole test; the value is what models.utcnow() returns (naive UTC)."""
    with time_machine.travel(NOW, tick=False):
        yield NOW.replace(tzinfo=None)


def _written(row) -> tuple:
    """Everything a refused transition must leave as it was: the row itself and the tables a firing appends to."""
    model = type(row)
    stored = model.get_by_id(row.id).__data__ if row.id is not None else model.select().count()
    return (
        stored,
        TransitionLog.select().count(),
        AuditEvent.select().count(),
        OutboxMessage.select().count(),
        Session.select().where(Session.revoked_at.is_null(False)).count(),
    )


@pytest.fixture
def refused(database):
    """`with refused(row, "code"):` — the block raises TransitionRefused with that reason and writes nothing.

    For a saved row the whole stored row (state and version included) must be unchanged; for an unsaved one (a
    refused `create`) the table must not grow. Transition log, audit events, outbox and ended sessions: unchanged.
    """

    @contextmanager
    def check(row, code: str):
        before = _written(row)
        with pytest.raises(TransitionRefused) as raised:
            yield raised
        assert raised.value.reason.code == code
        assert _written(row) == before

    return check


@pytest.fixture
def make_patient(database):
    counter = iter(range(1, 10_000))

    def make(**fields) -> Patient:
        n = next(counter)
        defaults = dict(
            dpi_system="urn:oid:2.16.756.5.30.1.145.1.1",
            dpi_value=f"P{n:06d}",
            family_name=f"Patient{n}",
            given_name="Jean",
            birth_date=dt.date(1950, 3, 14),
        )
        return Patient.create(**{**defaults, **fields})

    return make


@pytest.fixture
def make_stay(make_patient):
    counter = iter(range(1, 10_000))

    def make(patient=None, **fields) -> Stay:
        n = next(counter)
        defaults = dict(
            dpi_system="urn:oid:2.16.756.5.30.1.145.1.2",
            dpi_value=f"S{n:06d}",
            started_at=dt.datetime(2024, 3, 1, 8, 0),
        )
        return Stay.create(patient=patient or make_patient(), **{**defaults, **fields})

    return make


@pytest.fixture
def designate(database):
    """designate(stay, physician, authorized=True): the patient named this physician for this stay."""

    def make(stay, physician, *, authorized=True, **fields) -> Designation:
        return Designation.create(stay=stay, physician=physician, authorized=authorized, **fields)

    return make


@pytest.fixture
def make_document(make_stay):
    """make_document(stay=…, loinc=…, status=…): a document as the DPI sent it (final discharge summary by default)."""
    counter = iter(range(1, 10_000))

    def make(stay=None, *, loinc=DISCHARGE_SUMMARY, status=DocumentStatus.FINAL, **fields) -> Document:
        n = next(counter)
        stay = stay or make_stay()
        defaults = dict(
            dpi_system="urn:oid:2.16.756.5.30.1.145.1.3",
            dpi_value=f"D{n:06d}",
            title=f"Document {n}",
            author="Dr House",
        )
        return Document.create(
            patient=stay.patient_id, stay=stay, type=DocumentType.get(loinc=loinc), status=status, **(defaults | fields)
        )

    return make


@pytest.fixture
def clinician(make_account):
    return make_account(Role.CLINICIAN)


@pytest.fixture
def authorize_manually(clinician):
    """A clinician records the patient's explicit agreement to send this one document to this physician."""

    def make(document, physician, **fields) -> ManualAuthorization:
        return ManualAuthorization.create(
            document=document, physician=physician, recorded_by=clinician, patient_agreed_at=utcnow(), **fields
        )

    return make


@pytest.fixture
def make_delivery(database):
    """make_delivery(document, physician): created through the workflow (state `finalized`), not advanced."""

    def make(document, physician, actor=SYSTEM) -> Delivery:
        return engine.create(DELIVERY, Delivery(document=document, physician=physician), "create", actor)

    return make


@pytest.fixture
def recipient(make_physician, make_account):
    """recipient(state='active', **physician fields) → (physician, account): a physician with a myHUG account."""

    def make(state="active", **fields):
        physician = make_physician(**fields)
        return physician, make_account(Role.PHYSICIAN, physician=physician, state=state)

    return make


@pytest.fixture
def set_communicable(database):
    """set_communicable(loinc, flag): the administrator edits the catalogue; the seeded value comes back afterwards.

    The catalogue is reference data that survives between tests, so every edit must be undone.
    """
    saved: dict[str, bool] = {}

    def change(loinc: str, communicable: bool) -> None:
        saved.setdefault(loinc, DocumentType.get(loinc=loinc).communicable)
        DocumentType.update(communicable=communicable).where(DocumentType.loinc == loinc).execute()

    yield change
    for loinc, communicable in saved.items():
        DocumentType.update(communicable=communicable).where(DocumentType.loinc == loinc).execute()
