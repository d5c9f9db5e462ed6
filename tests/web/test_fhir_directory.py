"""The DPI's directory (Practitioner, PractitionerRole) and trace (AuditEvent) of web/fhir_directory.py.

Name search: case-insensitive on both backends; accent-insensitive on PostgreSQL only (SQLite's LIKE folds ASCII
letters only), so the accent cases below run on PostgreSQL.
"""

from __future__ import annotations

import pytest
from fhir.resources.R4B.auditevent import AuditEvent as FhirAuditEvent
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.practitionerrole import PractitionerRole

from models import Account, Delivery, Document, Patient, PhysicianSpecialty, Role, Specialty, is_postgres
from tests.conftest import statements
from web.fhir import create_client
from web.fhir_directory import AUDIT_SUBTYPE_SYSTEM, SPECIALTY_SYSTEM
from web.fhir_resources import fhir_id
from workflows import Actor
from workflows.delivery import DELIVERY
from workflows.engine import fire

from . import test_fhir
from .test_fhir import FHIR_JSON, GLN, OTHER_GLN, document_id_of, example, outcome, post_example

api, token = test_fhir.api, test_fhir.token  # the fixtures of test_fhir.py: a client "dpi-hug" and its calls

GLN_SYSTEM = "urn:oid:2.51.1.3"


def search(api, path: str) -> dict:
    response = api("GET", path)
    assert response.status_code == 200, response.get_data(as_text=True)[:2000]
    assert response.mimetype == FHIR_JSON
    body = response.get_json()
    Bundle.model_validate(body)
    assert body["type"] == "searchset"
    return body


def glns(bundle: dict) -> list[str]:
    found = []
    for entry in bundle.get("entry", []):
        resource = entry["resource"]
        if resource["resourceType"] == "Practitioner":
            found.append(resource["identifier"][0]["value"])
        else:
            found.append(resource["practitioner"]["identifier"]["value"])
    return found


@pytest.fixture
def directory(make_physician, make_account):
    """Four physicians: two active (one a neurologist too), one pending (account not active), one without account."""

    def physician(gln, last, first, state):
        made = make_physician(gln=gln, last_name=last, first_name=first)
        if state is not None:
            make_account(Role.PHYSICIAN, physician=made, state=state)
        return made

    favre = physician(GLN, "Favre", "Anne", "active")
    berset = physician(OTHER_GLN, "Berset-Rey", "Benoît", "active")
    PhysicianSpecialty.create(physician=berset, specialty=Specialty.get(code="neurology"))
    pending = physician("7601000999993", "Favrod", "Paul", "pending")
    nobody = physician("7601000888884", "Favresse", "Léa", None)
    return {"favre": favre, "berset": berset, "pending": pending, "nobody": nobody}


# -- Practitioner -------------------------------------------------------------------------------------------------
def test_practitioners_listed_are_the_physicians_with_an_active_account(api, directory):
    everyone = search(api, "/fhir/Practitioner")
    assert glns(everyone) == [OTHER_GLN, GLN]  # by last name: Berset-Rey, Favre
    assert everyone["total"] == 2
    resource = everyone["entry"][1]["resource"]
    assert resource["identifier"] == [{"system": GLN_SYSTEM, "value": GLN}]
    assert resource["name"][0]["family"] == "Favre" and resource["active"] is True
    assert "telecom" not in resource  # no e-mail address in the directory
    assert everyone["entry"][1]["fullUrl"].endswith(f"/fhir/Practitioner/{fhir_id(directory['favre'].public_id)}")
    # The pending one and the one without an account are never listed, whatever the search.
    assert glns(search(api, "/fhir/Practitioner?name=fav")) == [GLN]
    assert glns(search(api, f"/fhir/Practitioner?identifier={GLN_SYSTEM}|7601000999993")) == []
    assert glns(search(api, "/fhir/Practitioner?identifier=7601000888884")) == []
    # …though the DPI may still read them by id.
    assert api("GET", f"/fhir/Practitioner/{fhir_id(directory['nobody'].public_id)}").status_code == 200


def test_practitioner_search_by_name_gln_and_specialty(api, directory):
    assert glns(search(api, "/fhir/Practitioner?name=FAVRE")) == [GLN]
    assert glns(search(api, "/fhir/Practitioner?name=anne%20fav")) == [GLN]
    assert glns(search(api, "/fhir/Practitioner?name=rey")) == [OTHER_GLN]
    assert glns(search(api, "/fhir/Practitioner?name=zzz")) == []
    assert glns(search(api, f"/fhir/Practitioner?identifier={GLN_SYSTEM}|{GLN}")) == [GLN]
    assert glns(search(api, f"/fhir/Practitioner?identifier={OTHER_GLN}")) == [OTHER_GLN]
    assert glns(search(api, "/fhir/Practitioner?specialty=neurology")) == [OTHER_GLN]
    assert glns(search(api, f"/fhir/Practitioner?specialty={SPECIALTY_SYSTEM}|cardiology")) == [OTHER_GLN, GLN]
    assert glns(search(api, "/fhir/Practitioner?specialty=neurology&name=favre")) == []
    assert glns(search(api, "/fhir/Practitioner?specialty=urology")) == []


def test_practitioner_name_search_ignores_accents_on_postgresql(api, directory):
    assert glns(search(api, "/fhir/Practitioner?name=Benoît")) == [OTHER_GLN]
    if not is_postgres():
        pytest.skip("SQLite's LIKE folds ASCII letters only: accents and the case of É count there")
    assert glns(search(api, "/fhir/Practitioner?name=BENOÎT")) == [OTHER_GLN]
    assert glns(search(api, "/fhir/Practitioner?name=benoit")) == [OTHER_GLN]
    assert glns(search(api, "/fhir/Practitioner?name=BENOIT%20berset")) == [OTHER_GLN]


def test_practitioner_paging_and_bad_parameters(api, directory):
    first = search(api, "/fhir/Practitioner?_count=1")
    assert glns(first) == [OTHER_GLN] and "total" not in first
    following = next(link["url"] for link in first["link"] if link["relation"] == "next")
    second = search(api, following[following.index("/fhir/") :])
    assert glns(second) == [GLN]
    assert glns(search(api, "/fhir/Practitioner?_count=1&_offset=2")) == []
    outcome(api("GET", "/fhir/Practitioner?family=Favre"), 400)
    outcome(api("GET", "/fhir/Practitioner?identifier=7601000123450"), 400, "identifier", "bad-gln")
    outcome(api("GET", "/fhir/Practitioner?identifier=http://other|7601000123459"), 400, "identifier")
    outcome(api("GET", "/fhir/Practitioner?_count=many"), 400, "_count")


def test_practitioner_writes_still_reach_the_api(api):
    """The directory takes GET only: POST to the type still creates (web/fhir.py)."""
    assert api("POST", "/fhir/Practitioner", example("practitioner.json")).status_code == 201


def test_the_directory_costs_a_constant_number_of_queries(api, make_physician, make_account):
    def queries(path: str) -> int:
        with statements() as seen:
            search(api, path)
        return len(seen)

    make_account(Role.PHYSICIAN, physician=make_physician())
    search(api, "/fhir/Practitioner")  # not counted: the first call of the minute marks the client
    one = {path: queries(path) for path in ("/fhir/Practitioner", "/fhir/PractitionerRole")}
    assert one == {"/fhir/Practitioner": 2, "/fhir/PractitionerRole": 3}  # the token; the page; its specialties
    for _ in range(6):
        make_account(Role.PHYSICIAN, physician=make_physician())
    assert {path: queries(path) for path in one} == one


# -- PractitionerRole ---------------------------------------------------------------------------------------------
def test_practitioner_roles_carry_the_specialties(api, directory):
    body = search(api, "/fhir/PractitionerRole")
    assert glns(body) == [OTHER_GLN, GLN]
    role = body["entry"][0]["resource"]
    PractitionerRole.model_validate(role)
    assert role["active"] is True
    assert role["practitioner"]["reference"] == f"Practitioner/{fhir_id(directory['berset'].public_id)}"
    assert role["practitioner"]["identifier"] == {"system": GLN_SYSTEM, "value": OTHER_GLN}
    codings = [concept["coding"][0] for concept in role["specialty"]]
    assert codings == [
        {"system": SPECIALTY_SYSTEM, "code": "cardiology", "display": "Cardiologie"},
        {"system": SPECIALTY_SYSTEM, "code": "neurology", "display": "Neurologie"},
    ]
    assert glns(search(api, f"/fhir/PractitionerRole?practitioner.identifier={GLN_SYSTEM}|{GLN}")) == [GLN]
    assert glns(search(api, "/fhir/PractitionerRole?specialty=neurology")) == [OTHER_GLN]
    assert glns(search(api, "/fhir/PractitionerRole?name=favre")) == [GLN]
    assert glns(search(api, "/fhir/PractitionerRole?practitioner.identifier=7601000999993")) == []


def test_the_capability_statement_declares_the_directory_and_the_trace(client):
    body = client.get("/fhir/metadata").get_json()
    CapabilityStatement.model_validate(body)
    resources = {r["type"]: r for r in body["rest"][0]["resource"]}
    assert {p["name"] for p in resources["Practitioner"]["searchParam"]} >= {"identifier", "name", "specialty"}
    assert {p["name"] for p in resources["PractitionerRole"]["searchParam"]} >= {"practitioner.identifier", "specialty"}
    assert {p["name"] for p in resources["AuditEvent"]["searchParam"]} >= {"entity", "patient", "date"}
    assert SPECIALTY_SYSTEM in str(resources["PractitionerRole"]) and AUDIT_SUBTYPE_SYSTEM in str(resources)


# -- AuditEvent ---------------------------------------------------------------------------------------------------
@pytest.fixture
def consulted(api, make_physician, make_account):
    """The example Bundle posted by dpi-hug, its document made available to the designated physician, who opens it."""
    physician = make_physician(gln=GLN, last_name="Favre", first_name="Anne")
    account = make_account(Role.PHYSICIAN, physician=physician)
    answer = post_example(api)
    delivery = Delivery.get()
    assert delivery.state == "available"
    fire(DELIVERY, delivery, "consult", Actor(Role.PHYSICIAN, account.id, ip="203.0.113.9"))
    return {"document_id": document_id_of(answer), "physician": physician, "account": account}


def subtypes(bundle: dict) -> list[str]:
    return [e["resource"]["subtype"][0]["code"] for e in bundle.get("entry", [])]


def test_audit_events_tell_what_happened_to_the_clients_documents(api, consulted):
    document_id = consulted["document_id"]
    patient_id = fhir_id(Patient.get().public_id)
    body = search(api, f"/fhir/AuditEvent?entity=DocumentReference/{document_id}")
    assert subtypes(body) == ["received", "made-available", "consulted"]
    for entry in body["entry"]:
        FhirAuditEvent.model_validate(entry["resource"])
    received, available, consult = (e["resource"] for e in body["entry"])
    assert available["type"]["code"] == "110106" and available["action"] == "C" and available["outcome"] == "0"
    assert available["agent"][0]["who"] == {"display": "myHUG"} and available["agent"][0]["requestor"] is False
    assert received["type"]["code"] == "110107" and received["action"] == "C"
    assert consult["action"] == "R" and consult["type"]["code"] == "110110"
    who = consult["agent"][0]["who"]
    assert who["identifier"] == {"system": GLN_SYSTEM, "value": GLN}
    assert who["reference"] == f"Practitioner/{fhir_id(consulted['physician'].public_id)}"
    assert "203.0.113.9" not in str(consult) and "network" not in consult["agent"][0]
    assert consult["recorded"].endswith("Z") and consult["source"]["observer"] == {"display": "myHUG"}
    whats = [entity["what"]["reference"] for entity in consult["entity"]]
    assert whats == [f"DocumentReference/{document_id}", f"Patient/{patient_id}"]
    assert consult["id"] == body["entry"][2]["fullUrl"].rsplit("/", 1)[1]

    assert subtypes(search(api, f"/fhir/AuditEvent?patient=Patient/{patient_id}")) == subtypes(body)
    assert subtypes(search(api, f"/fhir/AuditEvent?patient={patient_id}&_count=2")) == ["received", "made-available"]
    assert subtypes(search(api, "/fhir/AuditEvent")) == subtypes(body)
    assert subtypes(search(api, "/fhir/AuditEvent?entity=DocumentReference/unknown")) == []
    assert subtypes(search(api, "/fhir/AuditEvent?patient=Patient/unknown")) == []


def test_audit_events_filter_on_the_date_recorded(api, consulted):
    recorded = search(api, "/fhir/AuditEvent")["entry"][0]["resource"]["recorded"]
    day = recorded[:10]
    year, month = int(day[:4]), int(day[5:7])
    next_month = f"{year + month // 12}-{month % 12 + 1:02d}-01"
    assert len(subtypes(search(api, f"/fhir/AuditEvent?date=ge{day[:7]}-01&date=lt{next_month}"))) == 3
    assert len(subtypes(search(api, f"/fhir/AuditEvent?date={day}"))) == 3
    assert subtypes(search(api, f"/fhir/AuditEvent?date=lt{day}")) == []
    assert subtypes(search(api, f"/fhir/AuditEvent?date=ge{next_month}")) == []
    assert subtypes(search(api, f"/fhir/AuditEvent?date=gt{day}")) == []
    outcome(api("GET", "/fhir/AuditEvent?date=yesterday"), 400, "date")
    outcome(api("GET", "/fhir/AuditEvent?date=sa2026-01-01"), 400, "date")
    outcome(api("GET", "/fhir/AuditEvent?entity=Patient/abc"), 400, "entity")
    outcome(api("GET", "/fhir/AuditEvent?action=R"), 400)


def test_revocation_and_recall_appear_too(api, consulted):
    from workflows import documents as service

    document = Document.get()
    service.recall_document(document, actor=Actor(Role.DPI))
    codes = subtypes(search(api, f"/fhir/AuditEvent?entity=DocumentReference/{consulted['document_id']}"))
    assert codes == ["received", "made-available", "consulted", "recalled", "revoked"]
    revoked = search(api, "/fhir/AuditEvent")["entry"][-1]["resource"]
    assert revoked["action"] == "D"
    assert revoked["agent"][0]["who"]["display"] == "DPI client dpi-hug"


def test_another_client_sees_none_of_these_events(api, consulted):
    other = create_client("dpi-other")
    document_id = consulted["document_id"]
    patient_id = fhir_id(Patient.get().public_id)
    for path in (
        "/fhir/AuditEvent",
        f"/fhir/AuditEvent?entity=DocumentReference/{document_id}",
        f"/fhir/AuditEvent?patient=Patient/{patient_id}",
    ):
        response = api("GET", path, token=other)
        assert response.status_code == 200
        assert response.get_json().get("entry", []) == [] and response.get_json()["total"] == 0


def test_no_token_no_directory_and_no_trace(api, consulted):
    for path in ("/fhir/Practitioner", "/fhir/PractitionerRole", "/fhir/AuditEvent"):
        response = api("GET", path, token=None)
        outcome(response, 401)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert Account.select().count() == 1


def test_what_the_physician_opens_views_and_downloads_is_listed_by_gln(api, consulted):
    from security import audit

    delivery = Delivery.get()
    for action in ("document.opened", "document.viewed", "document.downloaded"):
        audit.record(
            action,
            actor_id=consulted["account"].id,
            actor_role=Role.PHYSICIAN,
            ip="203.0.113.9",
            object_type="delivery",
            object_id=delivery.id,
        )
    body = search(api, "/fhir/AuditEvent")
    assert subtypes(body)[-3:] == ["opened", "viewed", "downloaded"]
    for entry in body["entry"][-3:]:
        resource = entry["resource"]
        assert resource["action"] == "R"
        assert resource["agent"][0]["who"]["identifier"]["value"] == GLN
    assert "203.0.113.9" not in str(body)


def test_the_trace_costs_a_constant_number_of_queries(api, consulted):
    def queries(path: str) -> int:
        with statements() as seen:
            search(api, path)
        return len(seen)

    assert queries("/fhir/AuditEvent?_count=1") == queries("/fhir/AuditEvent") == 2  # the token; the page
