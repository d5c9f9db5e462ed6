"""The last gaps of the FHIR API (issue 5): no contact data in the directory, one AuditEvent by id, the local code
systems served as CodeSystem resources."""

from __future__ import annotations

import ast
import copy
import datetime as dt
import inspect
import json
from pathlib import Path
from urllib.parse import urlencode

import pytest
from fhir.resources.R4B.auditevent import AuditEvent as FhirAuditEvent
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.codesystem import CodeSystem as FhirCodeSystem

from jobs import tasks
from models import AuditEvent, Document, Physician, PhysicianSpecialty, Role, Specialty
from web.fhir import create_client
from web.fhir_directory import AUDIT_SUBTYPE_SYSTEM, EVENTS, SPECIALTY_SYSTEM
from web.fhir_resources import CODE_SYSTEM_BASE, CODE_SYSTEMS, REASON_SYSTEM
from workflows import DeliveryState
from workflows.engine import Reason

from . import test_fhir, test_fhir_directory
from .test_fhir import FHIR_JSON, GLN, document_id_of, entry_of, example, post_example

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


# -- CodeSystem ---------------------------------------------------------------------------------------------------
DESIGN_REASONS = {  # DESIGN §5, $delivery-status
    "not-final",
    "not-communicable",
    "not-designated",
    "not-authorized",
    "no-account",
    "account-inactive",
    "revoked",
    "superseded",
    "notifications-off",
    "bounced",
}
# Code systems of others the API writes: HL7 terminology, LOINC, DICOM. Anything else must be served here.
EXTERNAL = (
    "http://terminology.hl7.org/CodeSystem/",
    "http://loinc.org",
    "http://dicom.nema.org/resources/ontology/DCM",
)


def served(api, system_id: str) -> dict:
    body = answer(api("GET", f"/fhir/CodeSystem/{system_id}"))
    FhirCodeSystem.model_validate(body)
    return body


def codes_of(code_system: dict) -> set[str]:
    return {concept["code"] for concept in code_system["concept"]}


def test_the_code_systems_are_listed_read_by_id_and_found_by_url(api, client):
    listed = answer(api("GET", "/fhir/CodeSystem"))
    Bundle.model_validate(listed)
    ids = [entry["resource"]["id"] for entry in listed["entry"]]
    assert (
        sorted(ids)
        == sorted(CODE_SYSTEMS)
        == [
            "delivery-reason",
            "delivery-state",
            "document-event",
            "fmh-specialty",
            "refusal-reason",
        ]
    )
    for entry in listed["entry"]:
        resource = entry["resource"]
        assert entry["fullUrl"].endswith(f"/fhir/CodeSystem/{resource['id']}")
        assert served(api, resource["id"]) == resource
        assert resource["url"] == CODE_SYSTEM_BASE + resource["id"]
        assert resource["content"] == "complete" and resource["count"] == len(resource["concept"]) > 0
        by_url = answer(api("GET", "/fhir/CodeSystem?" + urlencode({"url": resource["url"]})))
        assert [e["resource"]["id"] for e in by_url["entry"]] == [resource["id"]]
    assert answer(api("GET", "/fhir/CodeSystem?url=http://loinc.org"))["total"] == 0
    test_fhir.outcome(api("GET", "/fhir/CodeSystem/loinc"), 404)
    test_fhir.outcome(api("GET", "/fhir/CodeSystem?name=DeliveryReason"), 400)
    test_fhir.outcome(api("GET", "/fhir/CodeSystem", token=None), 401)

    metadata = client.get("/fhir/metadata").get_json()
    CapabilityStatement.model_validate(metadata)
    resources = {r["type"]: r for r in metadata["rest"][0]["resource"]}
    assert {i["code"] for i in resources["CodeSystem"]["interaction"]} == {"read", "search-type"}
    assert [p["name"] for p in resources["CodeSystem"]["searchParam"]] == ["url"]
    assert {i["code"] for i in resources["AuditEvent"]["interaction"]} == {"read", "search-type"}
    definition = answer(api("GET", "/fhir/OperationDefinition/DocumentReference-delivery-status"))
    documented = str(definition["parameter"])
    assert CODE_SYSTEM_BASE + "delivery-state" in documented and CODE_SYSTEM_BASE + "delivery-reason" in documented


def test_the_concepts_are_the_tables_the_api_codes_from(api):
    specialties = served(api, "fmh-specialty")
    assert {(c["code"], c["display"]) for c in specialties["concept"]} == {
        (s.code, s.name_fr) for s in Specialty.select()
    }
    assert codes_of(served(api, "document-event")) == {code for _t, code, _d, _a in EVENTS.values()}
    states = {str(s) for s in DeliveryState if s != DeliveryState.NEW} | {"none"}
    assert codes_of(served(api, "delivery-state")) == states
    assert codes_of(served(api, "delivery-reason")) == DESIGN_REASONS == reasons_explain_can_give()
    assert codes_of(served(api, "refusal-reason")) == refusals_the_fhir_api_can_give()


# What the API can emit, read from the code that emits it: a code added there and not to the CodeSystem (or a code
# left in the CodeSystem that nothing emits any more) fails the test above.
def _codes(node: ast.expr, namespace: dict) -> set[str]:
    """The codes an argument names: a string, or a module name bound to a string or a Reason."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.Name):
        value = namespace.get(node.id)
        if isinstance(value, str):
            return {value}
        if isinstance(value, Reason):
            return {value.code}
    return set()


def _argument(call: ast.Call, position: int, keyword: str) -> ast.expr | None:
    if len(call.args) > position:
        return call.args[position]
    return next((k.value for k in call.keywords if k.arg == keyword), None)


def _called(call: ast.Call) -> str:
    return call.func.id if isinstance(call.func, ast.Name) else getattr(call.func, "attr", "")


def _tree(module) -> ast.Module:
    return ast.parse(inspect.getsource(module))


def _reachable(module, roots: set[str]) -> list[ast.AST]:
    """The module's functions that `roots` reach, by calling or naming them."""
    functions = {n.name: n for n in _tree(module).body if isinstance(n, ast.FunctionDef)}
    seen: set[str] = set()
    todo = [name for name in roots if name in functions]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += [n.id for n in ast.walk(functions[name]) if isinstance(n, ast.Name) and n.id in functions]
    return [functions[name] for name in seen]


def refusals_the_fhir_api_can_give() -> set[str]:
    from web import fhir, fhir_directory, fhir_resources
    from workflows import documents, engine

    found: set[str] = set()
    # The service functions the FHIR API calls, and what they call; the engine, which they all fire through.
    called = {
        n.attr
        for n in ast.walk(_tree(fhir))
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "service"
    }
    for module, nodes in ((documents, _reachable(documents, called)), (engine, [_tree(engine)])):
        for node in nodes:
            for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
                if _called(call) in ("_refuse", "Reason", "TransitionRefused") and call.args:
                    found |= _codes(call.args[0], vars(module))
    # The refusals the FHIR layer words itself: refuse(status, code, text, expression, reason), unprocessable(
    # expression, text, reason), and the service's Reasons it raises.
    for module in (fhir, fhir_directory, fhir_resources):
        for call in (n for n in ast.walk(_tree(module)) if isinstance(n, ast.Call)):
            argument = {"refuse": (4, "reason"), "unprocessable": (2, "reason"), "TransitionRefused": (0, "reason")}
            if _called(call) in argument:
                node = _argument(call, *argument[_called(call)])
                if node is not None:
                    found |= _codes(node, vars(module))
    return found


def reasons_explain_can_give() -> set[str]:
    """The codes of the guards `explain` (behind $delivery-status) runs: the document's own facts and those
    revocation_due checks, then the guards of the step each state waits for (NEXT_STEP)."""
    from workflows import delivery
    from workflows.documents import NEXT_STEP

    guards = {delivery.document_is_final, delivery.document_is_current, delivery.type_is_communicable}
    guards.add(delivery.sending_authorized)  # revocation_due
    for state, trigger in NEXT_STEP.items():
        guards |= set(delivery.DELIVERY.spec(trigger, str(state)).guards)
    found: set[str] = set()
    for guard in guards:
        for call in (n for n in ast.walk(ast.parse(inspect.getsource(guard))) if isinstance(n, ast.Call)):
            if _called(call) != "Reason":
                continue
            codes = _codes(call.args[0], vars(delivery))
            if not codes:  # a computed code: only the revocation's own reason is (revoked_reason or "revoked")
                names = {n.attr for n in ast.walk(call.args[0]) if isinstance(n, ast.Attribute)}
                assert names == {"row", "revoked_reason"}, f"cannot tell the codes of {guard.__name__}"
                codes = set(delivery.REVOCATION_REASONS)
                codes |= {n.value for n in ast.walk(call.args[0]) if isinstance(n, ast.Constant)}
            found |= codes
    return found


def codings(value) -> list[tuple[str, str]]:
    """Every (system, code) in a FHIR answer: Codings, not Identifiers (which have a value, not a code)."""
    found = []
    if isinstance(value, dict):
        if isinstance(value.get("system"), str) and "code" in value:
            found.append((value["system"], value["code"]))
        for item in value.values():
            found += codings(item)
    elif isinstance(value, list):
        for item in value:
            found += codings(item)
    return found


def test_every_system_the_api_writes_is_served_with_the_codes_it_writes(api, consulted):
    """Answers of every kind, then each local `system` in them resolved (by id and by url), each code found in it;
    and every code of $delivery-status (state, reason) in the served CodeSystems."""
    document_id = consulted["document_id"]
    transaction = post_example(api)  # again: the same answer, now naming every resource
    paths = [entry["response"]["location"].rsplit("/_history", 1)[0] for entry in transaction["entry"]]
    paths += ["Practitioner", "PractitionerRole", "AuditEvent", "metadata"]
    answers = [answer(api("GET", f"/fhir/{path}")) for path in paths]
    refused = api(
        "POST",
        "/fhir/Practitioner",
        {**example("practitioner.json"), "identifier": [{"system": GLN_SYSTEM, "value": "7601000543210"}]},
    )
    answers.append(answer(refused, 422))
    statuses = [answer(api("GET", f"/fhir/DocumentReference/{document_id}/$delivery-status"))]
    statuses.append(
        answer(api("GET", f"/fhir/DocumentReference/{document_id}/$delivery-status?practitioner=7601000888884"))
    )
    answers += statuses

    seen = codings(answers)
    local = {system for system, _code in seen if not system.startswith(EXTERNAL)}
    assert local == {SPECIALTY_SYSTEM, AUDIT_SUBTYPE_SYSTEM, REASON_SYSTEM}
    for system in local:
        by_url = answer(api("GET", "/fhir/CodeSystem?" + urlencode({"url": system})))
        [code_system] = [entry["resource"] for entry in by_url["entry"]]
        assert served(api, system.removeprefix(CODE_SYSTEM_BASE)) == code_system
        assert {code for s, code in seen if s == system} <= codes_of(code_system)
    assert ("refusal-reason" in REASON_SYSTEM) and (REASON_SYSTEM, "bad-gln") in seen

    parts = [part for status in statuses for delivery in status["parameter"] for part in delivery["part"]]
    states = {p["valueCode"] for p in parts if p["name"] == "state"}
    reasons = {p["valueCode"] for p in parts if p["name"] == "reason"}
    assert states == {"consulted", "none"} and reasons == {"not-designated"}
    assert states <= codes_of(served(api, "delivery-state"))
    assert reasons <= codes_of(served(api, "delivery-reason"))


# -- the PDF of a Bundle that failed later, swept by the scheduled job -----------------------------------------------
def test_the_scheduled_sweep_removes_the_pdf_a_failed_bundle_left(api, app):
    committed = document_id_of(post_example(api))
    failing = another_document("DOC-2025-0009999")
    second = copy.deepcopy(entry_of(failing, "DocumentReference"))
    second["fullUrl"] = "urn:uuid:5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c99"
    second["resource"]["identifier"][0]["value"] = "DOC-2025-0010000"
    second["request"]["url"] = f"DocumentReference?identifier={DOCUMENT_SYSTEM}|DOC-2025-0010000"
    second["resource"]["type"]["coding"][0]["code"] = "99999-9"  # not in the catalogue: refused after the first
    failing["entry"].append(second)
    test_fhir.outcome(api("POST", "/fhir", failing), 422, reason="unknown-type")
    assert Document.select().count() == 1

    folder = Path(app.config["BLOB_DIR"])
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    assert len(files) == 2  # the committed document's PDF, and the one stored before the Bundle failed
    [job] = [job for job in tasks.SCHEDULE if job.name == "sweep_blobs"]
    names = [job.name for job in tasks.SCHEDULE]
    assert names.index("sweep_blobs") < names.index("dispatch_outbox") and job.every == dt.timedelta(hours=6)
    newest = max(dt.datetime.fromtimestamp(p.stat().st_mtime, dt.UTC).replace(tzinfo=None) for p in files)
    assert job.run(app, newest + dt.timedelta(hours=1, seconds=1)) == {
        "orphan_blobs_deleted": 1,
        "unfinished_blobs_deleted": 0,
    }
    document = Document.get(Document.public_id == committed.replace(".", "_"))
    assert [p.name for p in folder.rglob("*") if p.is_file()] == [document.blob_id]
