"""The last gaps of the FHIR API (issue 5): no contact data in the directory, one AuditEvent by id, the local code
systems served as CodeSystem resources."""

from __future__ import annotations

import json

import pytest
from fhir.resources.R4B.auditevent import AuditEvent as FhirAuditEvent

from models import AuditEvent, Physician, PhysicianSpecialty, Role, Specialty
from web.fhir import create_client

from . import test_fhir, test_fhir_directory
from .test_fhir import FHIR_JSON, GLN, entry_of, example, post_example

api, token = test_fhir.api, test_fhir.token  # the fixtures of test_fhir.py: a client "dpi-hug" and its calls

GLN_SYSTEM = "urn:oid:2.51.1.3"
DOCUMENT_SYSTEM = "http://dpi.hcuge.ch/sid/document"


def another_document(value: str) -> dict:
    """The example Bundle with another document identifier (same patient, stay and designated physician)."""
    bundle = example("transaction-discharge-summary.json")
    entry = entry_of(bundle, "DocumentReference")
    entry["resource"]["identifier"][0]["value"] = value
    entry["request"]["url"] = f"DocumentReference?identifier={DOCUMENT_SYSTEM}|{value}"
    return bundle


def answer(response, status: int = 200) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)[:2000]
    assert response.mimetype == FHIR_JSON
    return response.get_json()


# -- Practitioner: no e-mail, no mobile -----------------------------------------------------------------------------
PRIVATE = ("anne.favre@cabinet-favre.ch", "luc.berset@example.ch", "+41791112233", "79 111 22 33")


@pytest.mark.parametrize("written_by", ["dpi", "profile"])
def test_no_practitioner_answer_carries_the_email_or_the_mobile(api, make_physician, make_account, written_by):
    """Whether the DPI sent the address (telecom) or the physician gave it in "Mon profil", no read, search or write
    answer about a Practitioner or a PractitionerRole gives it back; name, GLN, specialties and active stay."""
    if written_by == "dpi":
        post_example(api)  # its Practitioner carries telecom email anne.favre@cabinet-favre.ch
        physician = Physician.get(Physician.gln == GLN)
        # What the physician completes in "Mon profil" before their account is active.
        Physician.update(mobile="+41791112233", practice_address="Rue du Rhône 1, 1204 Genève").where(
            Physician.id == physician.id
        ).execute()
        PhysicianSpecialty.create(physician=physician, specialty=Specialty.get(code="cardiology"))
        make_account(Role.PHYSICIAN, physician=Physician.get_by_id(physician.id))
    else:
        physician = make_physician(gln=GLN, last_name="Favre", first_name="Anne", email="anne.favre@cabinet-favre.ch")
        Physician.update(mobile="+41791112233").where(Physician.id == physician.id).execute()
        make_account(Role.PHYSICIAN, physician=physician)
    assert Physician.get_by_id(physician.id).email == "anne.favre@cabinet-favre.ch"  # the portal keeps it
    practitioner_id = test_fhir.fhir_id(physician.public_id)
    responses = {
        "read": api("GET", f"/fhir/Practitioner/{practitioner_id}"),
        "directory": api("GET", f"/fhir/Practitioner?identifier={GLN_SYSTEM}|{GLN}"),
        "directory by name": api("GET", "/fhir/Practitioner?name=favre"),
        "roles": api("GET", f"/fhir/PractitionerRole?practitioner.identifier={GLN}"),
        "create": api("POST", "/fhir/Practitioner", example("practitioner.json")),
        "conditional update": api(
            "PUT", f"/fhir/Practitioner?identifier={GLN_SYSTEM}|7601000543219", example("practitioner.json")
        ),
    }
    for what, response in responses.items():
        assert response.status_code in (200, 201), (what, response.get_data(as_text=True))
        text = response.get_data(as_text=True)
        for private in PRIVATE:
            assert private not in text, what
        assert '"telecom"' not in text, what
    read = responses["read"].get_json()
    assert read["identifier"] == [{"system": GLN_SYSTEM, "value": GLN}]
    assert read["name"][0]["family"] == "Favre"
    listed = responses["directory"].get_json()["entry"][0]["resource"]
    assert listed["active"] is True and listed["identifier"][0]["value"] == GLN
    role = responses["roles"].get_json()["entry"][0]["resource"]
    assert role["active"] is True and role["practitioner"]["identifier"]["value"] == GLN
    assert [c["coding"][0]["code"] for c in role["specialty"]] == ["cardiology"]


# -- AuditEvent by id ---------------------------------------------------------------------------------------------
consulted = test_fhir_directory.consulted  # dpi-hug's example document, made available and opened by its physician


def events_listed(api, **kw) -> dict[str, dict]:
    """What the search shows this client: event id → the AuditEvent."""
    bundle = answer(api("GET", "/fhir/AuditEvent?_count=200", **kw))
    return {entry["resource"]["id"]: entry["resource"] for entry in bundle.get("entry", [])}


def foreign_reads() -> list[AuditEvent]:
    return list(AuditEvent.select().where(AuditEvent.action == "fhir.foreign_audit_event").order_by(AuditEvent.id))


def test_an_event_about_the_clients_own_document_is_read_by_id(api, consulted):
    listed = events_listed(api)
    assert len(listed) == 3  # received, made available, consulted
    for event_id, resource in listed.items():
        read = answer(api("GET", f"/fhir/AuditEvent/{event_id}"))
        FhirAuditEvent.model_validate(read)
        assert read == resource
    assert foreign_reads() == []


def test_any_other_event_is_not_found_like_a_missing_id_and_the_attempt_is_audited(api, consulted):
    other = create_client("dpi-other")
    own = next(iter(events_listed(api)))
    missing = answer(api("GET", "/fhir/AuditEvent/" + "0" * 64), 404)
    assert foreign_reads() == []  # a made-up id: nothing to say about it

    # Another client asks for one of dpi-hug's events: the same 404, word for word; the attempt is recorded.
    assert answer(api("GET", f"/fhir/AuditEvent/{own}", token=other), 404) == missing
    [attempt] = foreign_reads()
    assert attempt.outcome == "denied" and attempt.actor_role == Role.DPI
    assert attempt.object_type == "audit_event"
    assert attempt.object_id == str(AuditEvent.get(AuditEvent.hash == own).id)
    assert json.loads(attempt.details) == {"client": "dpi-other"}

    # An event that is not about a document (the creation of a client), or about dpi-hug's document but not one
    # the search lists (that refused read): dpi-hug does not read them either.
    created = AuditEvent.get(AuditEvent.action == "dpi.client_created").hash
    assert answer(api("GET", f"/fhir/AuditEvent/{created}"), 404) == missing
    assert answer(api("GET", f"/fhir/AuditEvent/{attempt.hash}"), 404) == missing
    assert len(foreign_reads()) == 3


def test_reading_by_id_follows_the_rule_of_the_search_for_every_event(api, consulted):
    """Every event on the trail, asked for by each client: found exactly when that client's search lists it."""
    other = create_client("dpi-other")
    answer(api("POST", "/fhir", another_document("DOC-OTHER-1"), token=other))  # dpi-other's own document
    for client_token in (None, other):
        kw = {} if client_token is None else {"token": client_token}
        listed = events_listed(api, **kw)
        for event in list(AuditEvent.select()):
            status = api("GET", f"/fhir/AuditEvent/{event.hash}", **kw).status_code
            assert status == (200 if event.hash in listed else 404), event.action
