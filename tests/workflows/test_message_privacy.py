"""No e-mail or SMS ever carries patient data (DESIGN §4.2, §6): every template, rendered with realistic data, and
every message the document pipeline really queues, are searched for the patient's name, date of birth, the
document's title and every identifier of the patient, the stay, the document and the delivery.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import time_machine
from jinja2 import meta

from models import Delivery, Document, DocumentType, NotificationMode, OutboxMessage, Patient, Stay
from workflows import Actor
from workflows import documents as service
from workflows.notices import queue_digests, queue_new_document_notices
from workflows.notifications import Portal, _env

TEMPLATES = Path(__file__).resolve().parents[2] / "web" / "templates"

PATIENT = {"family_name": "Martin-Rochat", "given_name": "Jeanne", "birth_date": dt.date(1948, 3, 12)}
TITLE = "Lettre de sortie – insuffisance cardiaque décompensée"
IDS = {"patient": "P-1029384", "stay": "S-2025-004711", "document": "DOC-77-5521"}


class _Patient:
    """What a template would reach for if someone passed it the patient: every attribute is patient data."""

    family_name, given_name = PATIENT["family_name"], PATIENT["given_name"]
    birth_date, dpi_value = PATIENT["birth_date"], IDS["patient"]
    display_name = f"{given_name} {family_name}"


class _Document:
    title, dpi_value, public_id = TITLE, IDS["document"], "doc-public-7Hq2"
    patient = _Patient()


# A realistic value for every variable the templates declare. A template that starts using a new variable fails
# here until someone adds it, and so looks at what it carries.
REALISTIC = {
    "portal": Portal,
    "reference": "INS-2026-000123",
    "starts_at": "03.12.2026 09:30",
    "desk": "cyber",
    "moved": False,
    "tracking_url": "https://myhug.hcuge.ch/inscription/suivi",
    "confirm_url": "https://myhug.hcuge.ch/inscription/confirmer/INS-2026-000123/tok",
    "outcome": "rejected",
    "count": 3,
    "digest": True,
    "hours": 72,
    "password": "Vx9-temporary-Kp2",
    "reissued": False,
    "username": "cdupont",
    "expires_at": "04.12.2026 14:00",
    "code": "482913",
    "minutes": 5,
    # The help form: what the physician typed reaches the hospital's own support mailbox, never a third party.
    "body": "Je ne reçois pas mes documents depuis lundi.",
    "email": "dr.dupont@example.ch",
    "full_name": "Dr Claire Dupont",
    "gln": "7601000123459",
    "sent_at": "28.11.2026 10:12",
    "subject": "Documents",
}
# Offered to every template beside its own variables: none may use them.
POISON = {"patient": _Patient(), "document": _Document(), "title": TITLE, "delivery_id": "dlv-public-Zz81"}


def forbidden_strings(*, extra: tuple[str, ...] = ()) -> list[str]:
    born = PATIENT["birth_date"]
    return [
        PATIENT["family_name"],
        PATIENT["given_name"],
        born.isoformat(),
        born.strftime("%d.%m.%Y"),
        born.strftime("%d/%m/%Y"),
        TITLE,
        *IDS.values(),
        _Document.public_id,
        POISON["delivery_id"],
        *extra,
    ]


def all_templates() -> list[str]:
    return sorted(f"{kind}/{path.name}" for kind in ("email", "sms") for path in (TEMPLATES / kind).glob("*.txt"))


@pytest.mark.parametrize("name", all_templates())
def test_every_template_rendered_with_realistic_data_carries_no_patient_data(name):
    source = _env.loader.get_source(_env, name)[0]
    declared = meta.find_undeclared_variables(_env.parse(source))
    unknown = declared - REALISTIC.keys()
    assert not unknown, (
        f"{name} uses {sorted(unknown)}: add realistic values above, and check they are not patient data"
    )
    assert not declared & POISON.keys(), f"{name} reaches for patient or document data"
    text = _env.get_template(name).render(**{key: REALISTIC[key] for key in declared}, **POISON)
    leaked = [value for value in forbidden_strings() if value in text]
    assert leaked == [], f"{name} shows {leaked}"


def test_the_notices_the_pipeline_queues_carry_no_patient_data(database, recipient, tmp_path):
    """A real patient, stay and document through the service layer, to two physicians (each and digest)."""
    service.configure(str(tmp_path / "blobs"))
    dpi = Actor("dpi")
    each, _ = recipient(notification_mode=NotificationMode.EACH)
    daily, _ = recipient(notification_mode=NotificationMode.DIGEST)
    OutboxMessage.delete().execute()  # the accounts' own e-mails are not the subject here
    arrived = dt.datetime(2026, 11, 30, 16, 0)
    with time_machine.travel(arrived, tick=False):
        patient = service.record_patient(system="http://dpi.hcuge.ch/sid/patient", value=IDS["patient"], **PATIENT)
        stay = service.record_stay(
            system="http://dpi.hcuge.ch/sid/encounter",
            value=IDS["stay"],
            patient=patient,
            kind="inpatient",
            started_at=dt.datetime(2026, 11, 20, 8, 0),
            ended_at=dt.datetime(2026, 11, 29, 11, 0),
        )
        for physician in (each, daily):
            service.record_designation(stay=stay, physician=physician, authorized=True, source="dpi", actor=dpi)
        document, _ = service.receive_document(
            dpi_system="http://dpi.hcuge.ch/sid/document",
            dpi_value=IDS["document"],
            patient=patient,
            stay=stay,
            type_code=DocumentType.get(DocumentType.communicable == True).loinc,  # noqa: E712
            title=TITLE,
            author="Dr Jean Muller",
            status="final",
            pdf=b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n",
            actor=dpi,
        )
    assert Delivery.select().where(Delivery.state == "available").count() == 2

    next_morning = dt.datetime(2026, 12, 1, 8, 0)
    assert queue_new_document_notices(next_morning, dt.timedelta(minutes=2)) == 1
    assert queue_digests(next_morning, 7) == 1

    messages = list(OutboxMessage.select())
    assert len(messages) == 2
    stored_ids = [
        Patient.get_by_id(patient.id).public_id,
        Stay.get_by_id(stay.id).public_id,
        Document.get_by_id(document.id).public_id,
        *(d.public_id for d in Delivery.select()),
    ]
    for message in messages:
        text = f"{message.subject}\n{message.body}"
        leaked = [value for value in forbidden_strings(extra=tuple(stored_ids)) if value in text]
        assert leaked == [], f"{message.template} shows {leaked}"
