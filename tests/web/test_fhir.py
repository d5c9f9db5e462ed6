"""The FHIR R4 API of the DPI (web/fhir.py), through the Flask test client with the FHIR JSON of tests/fhir_examples."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.parameters import Parameters

from models import AuditEvent, Delivery, Designation, Document, DpiClient, Patient, Physician, Role, Stay
from web import create_app
from web.fhir import create_client, revoke_client
from web.fhir_resources import fhir_id

from .conftest import settings

EXAMPLES = Path(__file__).resolve().parents[1] / "fhir_examples"
GLN = "7601000123459"  # the practitioner the examples' patient designates
OTHER_GLN = "7601000543219"
FHIR_JSON = "application/fhir+json"
LOCATION = re.compile(r"^(Patient|Encounter|Practitioner|Consent|DocumentReference)/[A-Za-z0-9\-.]{1,64}/_history/\d+$")


def example(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text())


def entry_of(bundle: dict, resource_type: str) -> dict:
    return next(e for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type)


def counts() -> dict[str, int]:
    return {m.__name__: m.select().count() for m in (Patient, Stay, Physician, Designation, Document, Delivery)}


NOTHING = dict.fromkeys(("Patient", "Stay", "Physician", "Designation", "Document", "Delivery"), 0)


@pytest.fixture
def token(database):
    return create_client("dpi-hug")


@pytest.fixture
def api(client, token):
    """api(method, path, body=None, token=…, **kw) → the response; body a dict (sent as FHIR JSON) or bytes."""

    def call(method: str, path: str, body=None, *, token=token, headers=None, content_type=FHIR_JSON):
        headers = dict(headers or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = json.dumps(body) if isinstance(body, dict | list) else body
        return client.open(path, method=method, data=data, headers=headers, content_type=content_type)

    return call


def outcome(response, status: int, expression: str | None = None, reason: str | None = None) -> dict:
    """The response is an OperationOutcome with this status, naming `expression` (and `reason`) in an issue."""
    assert response.status_code == status, response.get_data(as_text=True)[:2000]
    assert response.mimetype == FHIR_JSON
    body = response.get_json()
    OperationOutcome.model_validate(body)
    if expression is not None:
        expressions = [x for issue in body["issue"] for x in issue.get("expression", [])]
        assert expression in expressions, body
    if reason is not None:
        codes = [c["code"] for issue in body["issue"] for c in issue.get("details", {}).get("coding", [])]
        assert reason in codes, body
    return body


def physician_with_account(make_physician, make_account, gln: str, state: str = "active") -> Physician:
    physician = make_physician(gln=gln, last_name="Favre", first_name="Anne")
    make_account(Role.PHYSICIAN, physician=physician, state=state)
    return physician


def post_example(api, name: str = "transaction-discharge-summary.json", bundle: dict | None = None):
    response = api("POST", "/fhir", bundle or example(name))
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def delivery_status(api, document_id: str, gln: str | None = None) -> dict[str, dict]:
    path = f"/fhir/DocumentReference/{document_id}/$delivery-status"
    response = api("GET", path + (f"?practitioner={gln}" if gln else ""))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == FHIR_JSON
    body = response.get_json()
    Parameters.model_validate(body)
    found = {}
    for parameter in body["parameter"]:
        assert parameter["name"] == "delivery"
        parts = {p["name"]: p for p in parameter["part"]}
        assert parts["practitioner"]["valueIdentifier"]["system"] == "urn:oid:2.51.1.3"
        found[parts["practitioner"]["valueIdentifier"]["value"]] = {
            "state": parts["state"]["valueCode"],
            "reason": parts["reason"]["valueCode"] if "reason" in parts else None,
        }
    return found


def document_id_of(response_bundle: dict) -> str:
    location = next(e["response"]["location"] for e in response_bundle["entry"] if "DocumentReference/" in e["fullUrl"])
    return location.split("/")[1]


# -- authentication -----------------------------------------------------------------------------------------------
def test_metadata_needs_no_token_and_declares_what_is_supported(client):
    response = client.get("/fhir/metadata")
    assert response.status_code == 200
    assert response.mimetype == FHIR_JSON
    body = response.get_json()
    CapabilityStatement.model_validate(body)
    assert body["fhirVersion"] == "4.0.1" and body["format"] == ["json"]
    rest = body["rest"][0]
    assert {"code": "transaction"} in rest["interaction"]
    assert "bearer token" in rest["security"]["description"].lower()
    resources = {r["type"]: r for r in rest["resource"]}
    written = {"Patient", "Encounter", "Practitioner", "Consent", "DocumentReference"}
    # The others: test_fhir_directory.py (PractitionerRole, AuditEvent), test_fhir_gaps.py (CodeSystem).
    assert set(resources) == written | {"PractitionerRole", "AuditEvent", "CodeSystem"}
    assert all(resources[t]["conditionalUpdate"] for t in written)
    assert resources["DocumentReference"]["operation"][0]["name"] == "delivery-status"


@pytest.mark.parametrize("case", ["missing", "bad", "revoked", "not-bearer"])
def test_requests_without_a_valid_token_are_refused_and_write_nothing(api, token, case):
    headers, used = {}, token
    if case == "missing":
        used = None
    elif case == "bad":
        used = token[:-2] + "xx"
    elif case == "revoked":
        assert revoke_client("dpi-hug")
    else:
        used, headers = None, {"Authorization": f"Basic {token}"}
    response = api("POST", "/fhir", example("transaction-discharge-summary.json"), token=used, headers=headers)
    outcome(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert counts() == NOTHING
    outcome(api("GET", "/fhir/Patient?identifier=a|b", token=used, headers=headers), 401)


def test_a_call_marks_the_client_and_the_token_is_stored_hashed(api, token):
    assert api("GET", "/fhir/Patient?identifier=a|b").status_code == 200
    client = DpiClient.get(DpiClient.name == "dpi-hug")
    assert client.last_call_at is not None
    assert token not in client.token_hash and len(client.token_hash) == 64


# -- the transaction Bundle ---------------------------------------------------------------------------------------
def test_a_transaction_reaches_the_designated_physician_only(api, make_physician, make_account):
    designated = physician_with_account(make_physician, make_account, GLN)
    other = physician_with_account(make_physician, make_account, OTHER_GLN)
    sent = example("transaction-discharge-summary.json")

    answer = post_example(api, bundle=sent)

    Bundle.model_validate(answer)
    assert answer["type"] == "transaction-response"
    assert len(answer["entry"]) == len(sent["entry"])
    for request_entry, response_entry in zip(sent["entry"], answer["entry"], strict=True):
        resource_type = request_entry["resource"]["resourceType"]
        assert response_entry["response"]["status"] == ("200 OK" if resource_type == "Practitioner" else "201 Created")
        assert LOCATION.match(response_entry["response"]["location"])
        assert response_entry["response"]["location"].startswith(resource_type + "/")
    document = Document.get()
    assert answer["entry"][0]["response"]["location"] == f"DocumentReference/{fhir_id(document.public_id)}/_history/1"
    assert document.dpi_client == "dpi-hug" and document.status == "final"
    assert document.sha256 and document.size_bytes > 0
    delivery = Delivery.get()
    assert delivery.physician_id == designated.id and delivery.state == "available"
    assert not Delivery.select().where(Delivery.physician == other.id).exists()
    stay = Stay.get()
    assert stay.kind == "inpatient" and stay.started_at.hour == 8  # 09:15+01:00 stored as UTC
    designation = Designation.get()
    assert designation.authorized and designation.dpi_consent_id == "http://dpi.hcuge.ch/sid/consent|C-2025-004711-1"

    statuses = delivery_status(api, document_id_of(answer))
    assert statuses == {GLN: {"state": "available", "reason": None}}
    assert delivery_status(api, document_id_of(answer), OTHER_GLN) == {
        OTHER_GLN: {"state": "none", "reason": "not-designated"}
    }


def test_the_same_bundle_twice_writes_no_new_row(api):
    first = post_example(api)
    before = counts()
    assert before == {"Patient": 1, "Stay": 1, "Physician": 1, "Designation": 1, "Document": 1, "Delivery": 1}
    second = post_example(api)
    assert counts() == before
    assert [e["response"]["status"] for e in second["entry"]] == ["200 OK"] * 5
    assert [e["response"]["location"] for e in second["entry"]] == [e["response"]["location"] for e in first["entry"]]


def test_references_by_urn_uuid_and_by_id_both_resolve(api):
    bundle = example("transaction-discharge-summary.json")
    consent = entry_of(bundle, "Consent")["resource"]
    practitioner_url = entry_of(bundle, "Practitioner")["fullUrl"]
    consent["provision"]["actor"][0]["reference"] = {"reference": practitioner_url}
    answer = post_example(api, bundle=bundle)
    patient_id = answer["entry"][1]["response"]["location"].split("/")[1]
    assert Designation.select().count() == 1
    # A later Bundle may point at rows by their ids.
    later = example("transaction-ambulatory-consent-deny.json")
    entry_of(later, "Encounter")["resource"]["subject"] = {"reference": f"Patient/{patient_id}"}
    post_example(api, bundle=later)
    assert Stay.select().where(Stay.patient == Patient.get().id).count() == 2


def invalid_json(bundle):
    return b'{"resourceType": "Bundle", "type": "transaction", "entry": ['


def wrong_resource_type(bundle):
    return entry_of(bundle, "Patient")["resource"]


def unsupported_entry_type(bundle):
    entry_of(bundle, "Patient")["resource"]["resourceType"] = "Observation"
    return bundle


def document_without_patient(bundle):
    del entry_of(bundle, "DocumentReference")["resource"]["subject"]
    return bundle


def document_without_encounter(bundle):
    del entry_of(bundle, "DocumentReference")["resource"]["context"]
    return bundle


def document_without_attachment(bundle):
    entry_of(bundle, "DocumentReference")["resource"]["content"] = [{}]
    return bundle


def attachment_not_declared_pdf(bundle):
    entry_of(bundle, "DocumentReference")["resource"]["content"][0]["attachment"]["contentType"] = "text/plain"
    return bundle


def attachment_not_a_pdf(bundle):
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
    entry_of(bundle, "DocumentReference")["resource"]["content"][0]["attachment"]["data"] = base64.b64encode(
        png
    ).decode()
    return bundle


def gln_with_wrong_check_digit(bundle):
    entry = entry_of(bundle, "Practitioner")
    entry["resource"]["identifier"][0]["value"] = "7601000123450"
    entry["request"]["url"] = "Practitioner?identifier=urn:oid:2.51.1.3|7601000123450"
    return bundle


def reference_to_no_patient(bundle):
    entry_of(bundle, "Encounter")["resource"]["subject"] = {"reference": "Patient/nobody-has-this-id"}
    return bundle


def unknown_urn_uuid(bundle):
    entry_of(bundle, "Consent")["resource"]["provision"]["data"][0]["reference"] = {
        "reference": "urn:uuid:00000000-0000-4000-8000-000000000000"
    }
    return bundle


def unknown_document_type(bundle):
    entry_of(bundle, "DocumentReference")["resource"]["type"]["coding"][0]["code"] = "99999-9"
    return bundle


def invalid_fhir_date(bundle):
    entry_of(bundle, "Patient")["resource"]["birthDate"] = "12.03.1954"
    return bundle


# (mutation, status, expression — entries are: 0 DocumentReference, 1 Patient, 2 Encounter, 3 Practitioner, 4 Consent)
BAD_INPUT = [
    (invalid_json, 400, None),
    (wrong_resource_type, 400, "Bundle.resourceType"),
    (unsupported_entry_type, 400, "Bundle.entry[1].resource.resourceType"),
    (document_without_patient, 422, "Bundle.entry[0].resource.subject"),
    (document_without_encounter, 422, "Bundle.entry[0].resource.context.encounter"),
    (document_without_attachment, 400, "Bundle.entry[0].resource.content[0].attachment"),
    (attachment_not_declared_pdf, 422, "Bundle.entry[0].resource.content[0].attachment.contentType"),
    (attachment_not_a_pdf, 422, "Bundle.entry[0].resource.content[0].attachment.data"),
    (gln_with_wrong_check_digit, 422, "Bundle.entry[3].resource.identifier[0].value"),
    (reference_to_no_patient, 422, "Bundle.entry[2].resource.subject.reference"),
    (unknown_urn_uuid, 422, "Bundle.entry[4].resource.provision.data[0].reference.reference"),
    (unknown_document_type, 422, "Bundle.entry[0].resource.type.coding[0].code"),
    (invalid_fhir_date, 400, "Bundle.entry[1].resource.birthDate"),
]


@pytest.mark.parametrize(("mutate", "status", "expression"), BAD_INPUT, ids=[m.__name__ for m, _, _ in BAD_INPUT])
def test_bad_input_is_an_operation_outcome_and_writes_nothing(api, mutate, status, expression):
    body = mutate(example("transaction-discharge-summary.json"))
    outcome(api("POST", "/fhir", body), status, expression)
    assert counts() == NOTHING


def test_an_error_in_the_last_entry_undoes_the_first_ones(api):
    """Patient, stay, practitioner and consent are written before the document fails: all of it is rolled back."""
    bundle = attachment_not_a_pdf(example("transaction-discharge-summary.json"))
    outcome(api("POST", "/fhir", bundle), 422, reason="not-pdf")
    assert counts() == NOTHING


def test_an_oversized_attachment_is_413(database, tmp_path):
    app = create_app(settings(database, INSTANCE_PATH=str(tmp_path / "instance"), MAX_DOCUMENT_BYTES=512))
    token = create_client("dpi-small")
    response = app.test_client().post(
        "/fhir",
        data=json.dumps(example("transaction-discharge-summary.json")),
        content_type=FHIR_JSON,
        headers={"Authorization": f"Bearer {token}"},
    )
    outcome(response, 413, "Bundle.entry[0].resource.content[0].attachment.data", "too-large")
    assert counts() == NOTHING


def test_a_request_larger_than_the_api_accepts_is_413(database, tmp_path):
    app = create_app(settings(database, INSTANCE_PATH=str(tmp_path / "instance"), FHIR_MAX_REQUEST_BYTES=1000))
    token = create_client("dpi-small")
    response = app.test_client().post(
        "/fhir",
        data=json.dumps(example("transaction-discharge-summary.json")),
        content_type=FHIR_JSON,
        headers={"Authorization": f"Bearer {token}"},
    )
    outcome(response, 413)


def test_a_bundle_must_be_a_transaction(api):
    bundle = example("transaction-discharge-summary.json")
    bundle["type"] = "batch"
    outcome(api("POST", "/fhir", bundle), 400, "Bundle.type")


def test_all_validation_problems_are_listed_at_once(api):
    bundle = invalid_fhir_date(example("transaction-discharge-summary.json"))
    entry_of(bundle, "Encounter")["resource"]["period"]["start"] = "yesterday"
    body = outcome(api("POST", "/fhir", bundle), 400, "Bundle.entry[1].resource.birthDate")
    assert "Bundle.entry[2].resource.period.start" in [x for i in body["issue"] for x in i.get("expression", [])]


# -- $delivery-status and the reasons ------------------------------------------------------------------------------
def test_a_designated_physician_without_account_waits(api, make_physician):
    answer = post_example(api)
    document_id = document_id_of(answer)
    assert delivery_status(api, document_id) == {GLN: {"state": "consented", "reason": "no-account"}}
    assert delivery_status(api, document_id, f"urn:oid:2.51.1.3|{GLN}") == {
        GLN: {"state": "consented", "reason": "no-account"}
    }


def test_a_deny_consent_designates_without_authorizing(api, make_physician, make_account):
    physician_with_account(make_physician, make_account, GLN)
    bundle = example("transaction-discharge-summary.json")
    entry_of(bundle, "Consent")["resource"]["provision"]["type"] = "deny"
    answer = post_example(api, bundle=bundle)
    assert Designation.get().authorized is False
    statuses = delivery_status(api, document_id_of(answer), GLN)
    assert statuses[GLN]["reason"] == "not-authorized"
    assert statuses[GLN]["state"] not in Delivery.VISIBLE_STATES


def test_a_consent_withdrawn_revokes_the_delivery(api, make_physician, make_account):
    physician_with_account(make_physician, make_account, GLN)
    answer = post_example(api)
    bundle = example("transaction-discharge-summary.json")
    entry_of(bundle, "Consent")["resource"]["status"] = "inactive"
    post_example(api, bundle=bundle)
    statuses = delivery_status(api, document_id_of(answer), GLN)
    assert statuses[GLN]["state"] == "revoked"
    assert statuses[GLN]["reason"] in ("not-designated", "not-authorized")
    assert Designation.get().revoked_at is not None


def test_delivery_status_checks_the_gln(api):
    answer = post_example(api)
    response = api(
        "GET", f"/fhir/DocumentReference/{document_id_of(answer)}/$delivery-status?practitioner=7601000123450"
    )
    outcome(response, 400, "practitioner", "bad-gln")


def test_a_new_version_supersedes_the_old_one(api, make_physician, make_account):
    physician_with_account(make_physician, make_account, GLN)
    first = post_example(api)
    old_id = document_id_of(first)
    new_version = example("documentreference-new-version.json")
    new_version["relatesTo"][0]["target"] = {"reference": f"DocumentReference/{old_id}"}

    response = api(
        "PUT", "/fhir/DocumentReference?identifier=http://dpi.hcuge.ch/sid/document|DOC-2025-0001234-v2", new_version
    )

    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.headers["Location"].endswith("/_history/2")
    new_id = response.get_json()["id"]
    assert delivery_status(api, old_id, GLN) == {GLN: {"state": "revoked", "reason": "superseded"}}
    assert delivery_status(api, new_id, GLN) == {GLN: {"state": "available", "reason": None}}
    old = api("GET", f"/fhir/DocumentReference/{old_id}").get_json()
    assert old["status"] == "superseded"
    new = api("GET", f"/fhir/DocumentReference/{new_id}").get_json()
    assert new["relatesTo"] == [{"code": "replaces", "target": {"reference": f"DocumentReference/{old_id}"}}]


def test_a_new_version_may_name_the_old_one_by_the_dpi_identifier(api):
    first = post_example(api)
    response = api("POST", "/fhir/DocumentReference", example("documentreference-new-version.json"))
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.get_json()["relatesTo"][0]["target"]["reference"] == f"DocumentReference/{document_id_of(first)}"


def test_a_preliminary_document_starts_its_deliveries_once_final(api, make_physician, make_account):
    physician_with_account(make_physician, make_account, GLN)
    bundle = example("transaction-discharge-summary.json")
    entry_of(bundle, "DocumentReference")["resource"]["docStatus"] = "preliminary"
    answer = post_example(api, bundle=bundle)
    document_id = document_id_of(answer)
    assert delivery_status(api, document_id, GLN)[GLN]["reason"] == "not-final"
    final = post_example(api)
    assert final["entry"][0]["response"]["status"] == "200 OK"
    assert delivery_status(api, document_id, GLN) == {GLN: {"state": "available", "reason": None}}
    assert Document.select().count() == 1


def test_entered_in_error_recalls_the_document(api, make_physician, make_account):
    physician_with_account(make_physician, make_account, GLN)
    answer = post_example(api)
    document = entry_of(example("transaction-discharge-summary.json"), "DocumentReference")["resource"]
    document["status"] = "entered-in-error"
    response = api("PUT", f"/fhir/DocumentReference/{document_id_of(answer)}", document)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["status"] == "entered-in-error"
    assert delivery_status(api, document_id_of(answer), GLN) == {GLN: {"state": "revoked", "reason": "revoked"}}


# -- one client's documents ---------------------------------------------------------------------------------------
def test_another_clients_document_is_not_found(api):
    answer = post_example(api)
    document_id = document_id_of(answer)
    other = create_client("dpi-other")
    outcome(api("GET", f"/fhir/DocumentReference/{document_id}", token=other), 404)
    outcome(api("GET", f"/fhir/DocumentReference/{document_id}/$delivery-status", token=other), 404)
    search = api(
        "GET", "/fhir/DocumentReference?identifier=http://dpi.hcuge.ch/sid/document|DOC-2025-0001234", token=other
    )
    assert search.get_json()["total"] == 0
    # Writing over it is refused too, and nothing changes.
    outcome(api("POST", "/fhir", example("transaction-discharge-summary.json"), token=other), 409)
    assert Document.get().dpi_client == "dpi-hug"
    assert AuditEvent.select().where(AuditEvent.action == "fhir.foreign_document").count() == 2


# -- single resources: create, conditional update, update by id, read, search ----------------------------------------
def test_practitioner_post_put_and_read(api):
    practitioner = example("practitioner.json")
    created = api("POST", "/fhir/Practitioner", practitioner)
    assert created.status_code == 201
    practitioner_id = created.get_json()["id"]
    assert created.headers["Location"].endswith(f"/fhir/Practitioner/{practitioner_id}/_history/1")
    again = api("PUT", f"/fhir/Practitioner?identifier=urn:oid:2.51.1.3|{OTHER_GLN}", practitioner)
    assert again.status_code == 200 and again.get_json()["id"] == practitioner_id
    practitioner["id"] = practitioner_id
    practitioner["name"][0]["family"] = "Berset-Rey"
    updated = api("PUT", f"/fhir/Practitioner/{practitioner_id}", practitioner)
    assert updated.status_code == 200
    assert Physician.get().last_name == "Berset-Rey"
    read = api("GET", f"/fhir/Practitioner/{practitioner_id}")
    assert read.status_code == 200 and read.get_json()["identifier"][0]["value"] == OTHER_GLN
    found = api("GET", f"/fhir/Practitioner?identifier=urn:oid:2.51.1.3|{OTHER_GLN}").get_json()
    Bundle.model_validate(found)
    # The search is the directory (test_fhir_directory.py): only physicians with an active account are listed.
    assert found["type"] == "searchset" and found["total"] == 0


def test_put_by_an_unknown_id_is_404_and_a_different_id_400(api):
    practitioner = example("practitioner.json")
    outcome(api("PUT", "/fhir/Practitioner/unknown-id", practitioner), 404)
    created = api("POST", "/fhir/Practitioner", practitioner).get_json()
    practitioner["id"] = "another-id"
    outcome(api("PUT", f"/fhir/Practitioner/{created['id']}", practitioner), 400, "Practitioner.id")


def test_every_resource_of_a_transaction_can_be_read_and_searched(api, make_physician, make_account):
    physician_with_account(make_physician, make_account, GLN)  # else the Practitioner search does not list them
    answer = post_example(api)
    sent = example("transaction-discharge-summary.json")
    models_by_type = {
        "Patient": "fhir.resources.R4B.patient",
        "Encounter": "fhir.resources.R4B.encounter",
        "Practitioner": "fhir.resources.R4B.practitioner",
        "Consent": "fhir.resources.R4B.consent",
        "DocumentReference": "fhir.resources.R4B.documentreference",
    }
    for request_entry, response_entry in zip(sent["entry"], answer["entry"], strict=True):
        resource_type, resource_id = response_entry["response"]["location"].split("/")[:2]
        read = api("GET", f"/fhir/{resource_type}/{resource_id}")
        assert read.status_code == 200, read.get_data(as_text=True)
        body = read.get_json()
        module = __import__(models_by_type[resource_type], fromlist=[resource_type])
        getattr(module, resource_type).model_validate(body)
        assert body["id"] == resource_id
        identifier = request_entry["resource"]["identifier"][0]
        found = api("GET", f"/fhir/{resource_type}?identifier={identifier['system']}|{identifier['value']}")
        assert [e["resource"]["id"] for e in found.get_json()["entry"]] == [resource_id]
    consent = api("GET", "/fhir" + answer["entry"][4]["fullUrl"].split("/fhir", 1)[1]).get_json()
    assert consent["provision"]["actor"][0]["reference"]["identifier"]["value"] == GLN
    assert consent["provision"]["data"][0]["meaning"] == "related"


def test_a_consent_that_names_another_physician_withdraws_the_first(api, make_physician, make_account):
    physician_with_account(make_physician, make_account, GLN)
    physician_with_account(make_physician, make_account, OTHER_GLN)
    post_example(api)
    bundle = example("transaction-discharge-summary.json")
    actor = entry_of(bundle, "Consent")["resource"]["provision"]["actor"][0]
    actor["reference"] = {"identifier": {"system": "urn:oid:2.51.1.3", "value": OTHER_GLN}}
    post_example(api, bundle=bundle)
    in_force = Designation.select().join(Physician).where(Designation.revoked_at.is_null())
    assert [d.physician.gln for d in in_force] == [OTHER_GLN]


def test_a_consent_for_a_gln_unknown_to_the_portal_is_422(api):
    bundle = example("transaction-discharge-summary.json")
    bundle["entry"] = [e for e in bundle["entry"] if e["resource"]["resourceType"] != "Practitioner"]
    outcome(api("POST", "/fhir", bundle), 422, "Bundle.entry[3].resource.provision.actor[0].reference.identifier")
    assert counts() == NOTHING


# -- JSON everywhere --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/fhir/Observation/1", 404),
        ("GET", "/fhir/Patient/nobody", 404),
        ("DELETE", "/fhir/Patient/abc", 405),
        ("GET", "/fhir", 405),
        ("PATCH", "/fhir/Patient", 405),
        ("GET", "/fhir/Patient", 400),
    ],
)
def test_errors_are_operation_outcomes(api, method, path, status):
    body = outcome(api(method, path), status)
    assert body["issue"][0]["severity"] == "error"


def test_a_body_that_is_not_json_is_415(api):
    outcome(api("POST", "/fhir", b"<Bundle/>", content_type="application/fhir+xml"), 415)


def test_xml_is_not_offered(api):
    outcome(api("GET", "/fhir/Patient?identifier=a|b", headers={"Accept": "application/fhir+xml"}), 406)


def test_the_rate_limit_answers_429_in_json(database, tmp_path):
    app = create_app(settings(database, INSTANCE_PATH=str(tmp_path / "instance"), FHIR_RATE_LIMIT="2 per minute"))
    token = create_client("dpi-busy")
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    statuses = [client.get("/fhir/Patient?identifier=a|b", headers=headers).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    outcome(client.get("/fhir/Patient?identifier=a|b", headers=headers), 429)


# -- the CLI ------------------------------------------------------------------------------------------------------
def test_cli_creates_lists_and_revokes_a_client(app):
    runner = app.test_cli_runner()
    created = runner.invoke(args=["dpi", "create-client", "dpi-cli"])
    assert created.exit_code == 0, created.output
    token = re.search(r"bearer token: (\S+)", created.output).group(1)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/fhir/Patient?identifier=a|b", headers=headers).status_code == 200
    assert token not in runner.invoke(args=["dpi", "list-clients"]).output
    again = runner.invoke(args=["dpi", "create-client", "dpi-cli"])
    assert again.exit_code != 0 and "exists already" in again.output
    revoked = runner.invoke(args=["dpi", "revoke-client", "dpi-cli"])
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    assert client.get("/fhir/Patient?identifier=a|b", headers=headers).status_code == 401
    assert runner.invoke(args=["dpi", "revoke-client", "nobody"]).exit_code != 0


def test_cli_imports_bundles(app, tmp_path):
    create_client("dpi-import")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(attachment_not_a_pdf(example("transaction-discharge-summary.json"))))
    result = app.test_cli_runner().invoke(
        args=["dpi", "import", "--client", "dpi-import", str(EXAMPLES / "transaction-discharge-summary.json"), str(bad)]
    )
    assert result.exit_code == 1
    assert "imported 1 of 2 files" in result.output
    assert Document.get().dpi_client == "dpi-import"


def test_the_examples_are_valid_fhir():
    for path in EXAMPLES.glob("*.json"):
        body = json.loads(path.read_text())
        module = __import__(f"fhir.resources.R4B.{body['resourceType'].lower()}", fromlist=[body["resourceType"]])
        getattr(module, body["resourceType"]).model_validate(body)


def test_an_unexpected_error_is_a_500_operation_outcome(database, tmp_path, token, monkeypatch):
    app = create_app(settings(database, INSTANCE_PATH=str(tmp_path / "instance")))
    app.config["PROPAGATE_EXCEPTIONS"] = False

    def broken(**_kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("workflows.documents.record_patient", broken)
    response = app.test_client().post(
        "/fhir",
        data=json.dumps(example("transaction-discharge-summary.json")),
        content_type=FHIR_JSON,
        headers={"Authorization": f"Bearer {token}"},
    )
    body = outcome(response, 500)
    assert "disk on fire" not in json.dumps(body)
    assert counts() == NOTHING


def test_the_sites_upload_limit_does_not_apply_to_documents(database, tmp_path, token):
    """Forms are limited to MAX_CONTENT_LENGTH; a document may be as large as MAX_DOCUMENT_BYTES (base64 in JSON)."""
    app = create_app(settings(database, INSTANCE_PATH=str(tmp_path / "instance"), MAX_CONTENT_LENGTH=2000))
    response = app.test_client().post(
        "/fhir",
        data=json.dumps(example("transaction-discharge-summary.json")),
        content_type=FHIR_JSON,
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.get_data(as_text=True)


def test_a_consent_can_be_updated_by_its_id(api, make_physician, make_account):
    physician_with_account(make_physician, make_account, GLN)
    answer = post_example(api)
    consent_id = answer["entry"][4]["response"]["location"].split("/")[1]
    consent = api("GET", f"/fhir/Consent/{consent_id}").get_json()
    assert consent["status"] == "active" and consent["provision"]["type"] == "permit"
    consent["provision"]["type"] = "deny"
    response = api("PUT", f"/fhir/Consent/{consent_id}", consent)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["provision"]["type"] == "deny"
    assert Designation.get().authorized is False
    assert delivery_status(api, document_id_of(answer), GLN)[GLN] == {"state": "revoked", "reason": "not-authorized"}
    consent["id"] = "no-such-consent"
    outcome(api("PUT", "/fhir/Consent/no-such-consent", consent), 404)
