"""The DPI's directory and trace (issue 5): who may receive documents, and what happened to the client's documents.

- `GET /fhir/Practitioner?name=…&identifier=urn:oid:2.51.1.3|GLN&specialty=…` and
  `GET /fhir/PractitionerRole?practitioner.identifier=…&specialty=…&name=…`: the authorized recipients hospital staff
  pick from, i.e. only physicians whose myHUG account is active (a physician the DPI wrote but who has no active
  account is still readable by id, never listed). No e-mail address in the directory: contact goes through the
  portal, and the address is the physician's own ("Mon profil").
- `GET /fhir/AuditEvent?entity=DocumentReference/{id}&patient=Patient/{id}&date=ge…&date=lt…`: the audit trail of
  the documents this client sent (received, recalled, made available, notified, consulted, revoked), as FHIR
  AuditEvents; another client's documents never appear. `GET /fhir/AuditEvent/{id}` reads one of those events; any
  other id answers 404 (and, when it names an existing event, the attempt is audited).

Every search is paged by `_count` (default 50, at most 200) and `_offset`, and costs a constant number of queries.
The routes sit on the FHIR blueprint (web/fhir.py imports this module), so authentication, errors as
OperationOutcome and `no-store` are those of the API.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from urllib.parse import urlencode

from flask import request
from werkzeug.exceptions import NotFound

from models import AuditEvent, Document, Patient, Physician, Role, Specialty, gln_is_valid
from security import audit

from .fhir import base_url, bp, client_name, fhir_response
from .fhir_resources import (
    GLN_SYSTEM,
    Concept,
    fhir_id,
    instant,
    local_code_system,
    parse_token,
    practitioner_resource,
    public_id_of,
    reference,
    refuse,
    split_reference,
)

DICOM_SYSTEM = "http://dicom.nema.org/resources/ontology/DCM"
ENTITY_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE_SYSTEM = "http://terminology.hl7.org/CodeSystem/object-role"
SOURCE_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/security-source-type"
ROLE_CLASS_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-RoleClass"

DEFAULT_COUNT, MAX_COUNT = 50, 200
COMMON = frozenset({"_count", "_offset", "_format"})

# DICOM audit event ids (AuditEvent.type)
IMPORT = (DICOM_SYSTEM, "110107", "Import")
EXPORT = (DICOM_SYSTEM, "110106", "Export")
PATIENT_RECORD = (DICOM_SYSTEM, "110110", "Patient Record")
APPLICATION_ACTIVITY = (DICOM_SYSTEM, "110100", "Application Activity")
AUDIT_LOG_USED = (DICOM_SYSTEM, "110101", "Audit Log Used")
SECURITY_ALERT = (DICOM_SYSTEM, "110113", "Security Alert")
USER_AUTHENTICATION = (DICOM_SYSTEM, "110114", "User Authentication")
SECURITY_ATTRIBUTES = (DICOM_SYSTEM, "110137", "User Security Attributes Changed")
# audit action → (type, subtype code, subtype display, FHIR action code)
EVENTS = {
    "document.receive": (IMPORT, "received", "Received from the DPI", "C"),
    "document.update": (IMPORT, "updated", "Updated by the DPI", "U"),
    "document.recall": (PATIENT_RECORD, "recalled", "Recalled by the hospital", "D"),
    "delivery.make_available": (EXPORT, "made-available", "Made available to the physician", "C"),
    "delivery.notify": (EXPORT, "notified", "Physician notified", "E"),
    "delivery.consult": (PATIENT_RECORD, "consulted", "First opened by the physician", "R"),
    "document.opened": (PATIENT_RECORD, "opened", "Opened by the physician", "R"),
    "document.viewed": (PATIENT_RECORD, "viewed", "PDF viewed by the physician", "R"),
    "document.downloaded": (PATIENT_RECORD, "downloaded", "PDF downloaded by the physician", "R"),
    "delivery.revoke": (PATIENT_RECORD, "revoked", "Delivery revoked", "D"),
}
# Every other event (only the administrators' export shows them): AuditEvent.type by the action's first word, else
# APPLICATION_ACTIVITY; the subtype is the action itself and the object is named by the portal's type and id.
PORTAL_EVENT_TYPES = {
    "login": USER_AUTHENTICATION,
    "logout": USER_AUTHENTICATION,
    "totp": SECURITY_ATTRIBUTES,
    "account": SECURITY_ATTRIBUTES,
    "audit": AUDIT_LOG_USED,
    "fhir": SECURITY_ALERT,
    "document": PATIENT_RECORD,
    "delivery": PATIENT_RECORD,
    "designation": PATIENT_RECORD,
}
PORTAL_ACTION_SYSTEM = "urn:myhug:audit-action"
PORTAL_OBJECT_SYSTEM = "urn:myhug:object:"


def _specialties() -> list[Concept]:
    """The Specialty table as the directory shows it: French display (specialty_concept), English beside."""
    return [
        Concept(s.code, s.name_fr, designations=(("en", s.name_en),))
        for s in Specialty.select().order_by(Specialty.code)
    ]


def _document_events() -> list[Concept]:
    return [Concept(code, display) for _type, code, display, _action in EVENTS.values()]


# Our own code systems (served at /fhir/CodeSystem/{id}): the FMH specialist titles and what happened to a document.
SPECIALTY_SYSTEM = local_code_system(
    "fmh-specialty",
    "FmhSpecialty",
    "FMH specialist titles",
    "The specialist titles of the FMH a physician holds (PractitionerRole.specialty); display in French.",
    _specialties,
)
AUDIT_SUBTYPE_SYSTEM = local_code_system(
    "document-event",
    "DocumentEvent",
    "What happened to a document",
    "AuditEvent.subtype: what the portal did with a document the DPI sent, or what its recipient did.",
    _document_events,
)
OUTCOMES = {"success": "0", "denied": "4"}  # anything else: "8" (serious failure)
AGENT_TYPES = {  # actor role → (system, code, display) of AuditEvent.agent.type
    Role.PHYSICIAN: (ROLE_CLASS_SYSTEM, "PROV", "healthcare provider"),
    Role.DPI: (DICOM_SYSTEM, "110150", "Application"),
    Role.SYSTEM: (DICOM_SYSTEM, "110150", "Application"),
}
HUMAN_USER = ("http://terminology.hl7.org/CodeSystem/extra-security-role-type", "humanuser", "human user")


# -- parameters ---------------------------------------------------------------------------------------------------
def check_parameters(allowed: set[str]) -> None:
    unknown = set(request.args) - allowed - COMMON
    if unknown:
        raise refuse(400, "not-supported", f"Search by {', '.join(sorted(unknown))} is not supported here.")


def one(name: str) -> str | None:
    values = request.args.getlist(name)
    if len(values) > 1:
        raise refuse(400, "not-supported", f"{name} may be given once.", name)
    return values[0].strip() if values else None


def paging() -> tuple[int, int]:
    def number(name: str, default: int) -> int:
        text = one(name)
        if text is None:
            return default
        if not text.isdigit():
            raise refuse(400, "value", f"{name} is a whole number.", name)
        return int(text)

    return min(number("_count", DEFAULT_COUNT), MAX_COUNT), number("_offset", 0)


def gln_token(text: str, name: str) -> str:
    system, value = parse_token(text, name, system_required=False)
    if system not in (None, GLN_SYSTEM):
        raise refuse(400, "value", f"{name} is a GLN ({GLN_SYSTEM}|GLN or the GLN alone).", name)
    if not gln_is_valid(value):
        raise refuse(400, "value", "The GLN check digit is wrong.", name, "bad-gln")
    return value


def specialty_token() -> str | None:
    text = one("specialty")
    if text is None:
        return None
    system, code = parse_token(text, "specialty", system_required=False)
    if system not in (None, SPECIALTY_SYSTEM):
        raise refuse(400, "value", f"specialty is coded in {SPECIALTY_SYSTEM}.", "specialty")
    return code


def page_bundle(resource_type: str, resources: list[dict], count: int, offset: int) -> dict:
    """A searchset Bundle of one page, with self and next links (next while the page is full)."""
    args = [(k, v) for k, v in request.args.items(multi=True) if k not in ("_count", "_offset")]

    def url(at: int) -> str:
        return f"{base_url()}/{resource_type}?" + urlencode([*args, ("_count", count), ("_offset", at)])

    links = [{"relation": "self", "url": url(offset)}]
    if len(resources) == count and count > 0:
        links.append({"relation": "next", "url": url(offset + count)})
    bundle: dict = {"resourceType": "Bundle", "type": "searchset"}
    if len(resources) < count and (resources or offset == 0):
        bundle["total"] = offset + len(resources)  # the last page: the whole count is known without a query
    bundle["link"] = links
    bundle["entry"] = [
        {"fullUrl": f"{base_url()}/{resource_type}/{r['id']}", "resource": r, "search": {"mode": "match"}}
        for r in resources
    ]
    return bundle


# -- the directory ------------------------------------------------------------------------------------------------
def directory_rows(count: int, offset: int, gln_parameter: str) -> list[Physician]:
    gln = one(gln_parameter)
    return Physician.directory(
        one("name") or "",
        gln=gln_token(gln, gln_parameter) if gln is not None else None,
        specialty=specialty_token(),
        limit=count,
        offset=offset,
    )


def directory_practitioner(physician: Physician) -> dict:
    """The Practitioner as the directory shows it: GLN, name, practice address, and active (only physicians with an
    active account are listed)."""
    resource = practitioner_resource(physician)
    resource["active"] = True
    return resource


def specialty_concept(specialty: Specialty) -> dict:
    coding = {"system": SPECIALTY_SYSTEM, "code": specialty.code, "display": specialty.name_fr}
    return {"coding": [coding], "text": specialty.name_fr}


def practitioner_role(physician: Physician, specialties: list[Specialty]) -> dict:
    practitioner = {
        **reference("Practitioner", physician, physician.display_name),
        "identifier": {"system": GLN_SYSTEM, "value": physician.gln},
    }
    role = {
        "resourceType": "PractitionerRole",
        "id": fhir_id(physician.public_id),
        "meta": {"versionId": "1"},
        "active": True,
        "practitioner": practitioner,
        "code": [{"coding": [{"system": ROLE_CLASS_SYSTEM, "code": "PROV", "display": "healthcare provider"}]}],
        "specialty": [specialty_concept(s) for s in specialties],
    }
    if not role["specialty"]:
        del role["specialty"]
    return role


@bp.get("/Practitioner")
def practitioner_directory():
    check_parameters({"name", "identifier", "specialty"})
    count, offset = paging()
    rows = directory_rows(count, offset, "identifier")
    return fhir_response(page_bundle("Practitioner", [directory_practitioner(p) for p in rows], count, offset))


@bp.get("/PractitionerRole")
def practitioner_role_directory():
    check_parameters({"name", "practitioner.identifier", "specialty"})
    count, offset = paging()
    rows = directory_rows(count, offset, "practitioner.identifier")
    specialties = Physician.specialties_of(p.id for p in rows)
    roles = [practitioner_role(p, specialties.get(p.id, [])) for p in rows]
    return fhir_response(page_bundle("PractitionerRole", roles, count, offset))


# -- the trace ----------------------------------------------------------------------------------------------------
DATE = re.compile(r"^(eq|ne|gt|ge|lt|le|sa|eb|ap)?(\d{4}(-\d{2}(-\d{2}(T[0-9:.]+(Z|[+-]\d{2}:\d{2})?)?)?)?)$")


def date_range(text: str) -> tuple[dt.datetime | None, dt.datetime | None]:
    """A FHIR date search value as [since, before) in naive UTC: a date covers its whole day (month, year)."""
    match = DATE.match(text.strip())
    prefix = (match.group(1) or "eq") if match else None
    if match is None or prefix not in ("eq", "gt", "ge", "lt", "le"):
        raise refuse(400, "value", "date is [eq|ge|gt|le|lt]YYYY[-MM[-DD[Thh:mm:ss[Z|±hh:mm]]]].", "date")
    value = match.group(2)
    try:
        if "T" in value:
            moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            if moment.tzinfo is not None:
                moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
            start, end = moment, moment + dt.timedelta(seconds=1)
        else:
            parts = [int(p) for p in value.split("-")]
            start = dt.datetime(*[*parts, 1, 1][:3])
            if len(parts) == 3:
                end = start + dt.timedelta(days=1)
            elif len(parts) == 2:
                end = dt.datetime(start.year + start.month // 12, start.month % 12 + 1, 1)
            else:
                end = dt.datetime(start.year + 1, 1, 1)
    except ValueError as exc:
        raise refuse(400, "value", f"date {value!r} is not a date.", "date") from exc
    return {
        "eq": (start, end),
        "ge": (start, None),
        "gt": (end, None),
        "lt": (None, start),
        "le": (None, end),
    }[prefix]


def referenced_id(name: str, resource_type: str) -> str | None:
    """The FHIR id of `name`=Type/id (or a full URL, or the id alone), or None when the parameter is absent."""
    text = one(name)
    if text is None:
        return None
    parts = split_reference(text) if "/" in text else (resource_type, text)
    if parts is None or parts[0] != resource_type or not parts[1]:
        raise refuse(400, "value", f"{name} names a {resource_type} ({resource_type}/id).", name)
    return parts[1]


def coding(triple: tuple[str, str, str]) -> dict:
    system, code, display = triple
    return {"system": system, "code": code, "display": display}


def dpi_client_of(event: AuditEvent) -> str:
    """The DPI client that acted: the one that sent the event's document (the trace shows a client only its own),
    else the one the event names (a refused probe)."""
    document = getattr(event, "document", None)
    if document is not None and document.dpi_client:
        return document.dpi_client
    return str(json.loads(event.details or "{}").get("client", "?"))


def agent_of(event: AuditEvent) -> dict:
    """Who acted: the physician by GLN (never their address), the DPI client, the portal itself, or hospital staff
    (by role only: the DPI has its own staff directory, and the portal's staff accounts are not its business)."""
    role = event.actor_role
    delivery = getattr(event, "delivery", None)
    if role == Role.PHYSICIAN and delivery is not None and delivery.physician_id is not None:
        physician = delivery.physician
        who = {
            **reference("Practitioner", physician, physician.display_name),
            "identifier": {"system": GLN_SYSTEM, "value": physician.gln},
        }
        return {"type": {"coding": [coding(AGENT_TYPES[Role.PHYSICIAN])]}, "who": who, "requestor": True}
    if role == Role.DPI:
        who = {"display": f"DPI client {dpi_client_of(event)}"}
        return {"type": {"coding": [coding(AGENT_TYPES[Role.DPI])]}, "who": who, "requestor": True}
    if role == Role.SYSTEM:
        return {"type": {"coding": [coding(AGENT_TYPES[Role.SYSTEM])]}, "who": {"display": "myHUG"}, "requestor": False}
    return {"type": {"coding": [coding(HUMAN_USER)]}, "who": {"display": f"HUG ({role})"}, "requestor": True}


def audit_event_resource(event: AuditEvent) -> dict:
    """One audit event as a FHIR AuditEvent. The DPI's trace reads only the document events of EVENTS, with
    `event.document` (its patient joined) and, for a delivery, `event.delivery` (its physician joined). The
    administrators' export (web/admin_audit.py) passes any event: the others (a login, an account locked, an
    export…) get a DICOM type by the action's family, the action itself as subtype, and their object as entity."""
    document = getattr(event, "document", None)
    details = json.loads(event.details or "{}")
    if event.action in EVENTS and document is not None:
        event_type, code, display, action = EVENTS[event.action]
        subtype = {"system": AUDIT_SUBTYPE_SYSTEM, "code": code, "display": display}
        entities = document_entities(document)
        if event.action == "delivery.revoke" and details.get("reason"):
            entities[0]["detail"] = [{"type": "reason", "valueString": str(details["reason"])}]
    else:
        event_type = PORTAL_EVENT_TYPES.get(event.action.split(".")[0], APPLICATION_ACTIVITY)
        subtype, action = {"system": PORTAL_ACTION_SYSTEM, "code": event.action}, None
        entities = document_entities(document) if document is not None else object_entities(event)
    resource = {
        "resourceType": "AuditEvent",
        # The event's hash: unique, stable, and it says nothing about how many events the portal holds.
        "id": event.hash,
        "type": coding(event_type),
        "subtype": [subtype],
        "action": action,
        "recorded": instant(event.at),
        "outcome": OUTCOMES.get(event.outcome, "8"),
        "agent": [agent_of(event)],
        "source": {
            "site": "HUG",
            "observer": {"display": "myHUG"},
            "type": [{"system": SOURCE_TYPE_SYSTEM, "code": "4", "display": "Application Server"}],
        },
        "entity": entities,
    }
    if action is None:
        del resource["action"]
    return resource


def document_entities(document: Document) -> list[dict]:
    """The document (by id and the DPI's identifier) and its patient."""
    return [
        {
            "what": {
                **reference("DocumentReference", document),
                "identifier": {"system": document.dpi_system, "value": document.dpi_value},
            },
            "type": {"system": ENTITY_TYPE_SYSTEM, "code": "2", "display": "System Object"},
            "role": {"system": OBJECT_ROLE_SYSTEM, "code": "3", "display": "Report"},
        },
        {
            "what": reference("Patient", document.patient),
            "type": {"system": ENTITY_TYPE_SYSTEM, "code": "1", "display": "Person"},
            "role": {"system": OBJECT_ROLE_SYSTEM, "code": "1", "display": "Patient"},
        },
    ]


def object_entities(event: AuditEvent) -> list[dict]:
    """Any other object (an account, an application, a message…) by the portal's own type and id."""
    if event.object_type is None:
        return []
    identifier = {"system": PORTAL_OBJECT_SYSTEM + event.object_type}
    if event.object_id:
        identifier["value"] = event.object_id
    return [
        {
            "what": {"identifier": identifier},
            "type": {"system": ENTITY_TYPE_SYSTEM, "code": "2", "display": "System Object"},
        }
    ]


@bp.get("/AuditEvent")
def audit_events():
    check_parameters({"entity", "patient", "date"})
    count, offset = paging()
    since, before = None, None
    for text in request.args.getlist("date"):
        low, high = date_range(text)
        since = max(since, low) if since and low else since or low
        before = min(before, high) if before and high else before or high
    document_id, patient_id = None, None
    entity = referenced_id("entity", "DocumentReference")
    if entity is not None:
        document = Document.get_or_none(
            (Document.public_id == public_id_of(entity)) & (Document.dpi_client == client_name())
        )
        if document is None:
            return fhir_response(page_bundle("AuditEvent", [], count, offset))
        document_id = document.id
    patient = referenced_id("patient", "Patient")
    if patient is not None:
        found = Patient.get_or_none(Patient.public_id == public_id_of(patient))
        if found is None:
            return fhir_response(page_bundle("AuditEvent", [], count, offset))
        patient_id = found.id
    rows = AuditEvent.of_client_documents(
        client_name(),
        EVENTS,
        document_id=document_id,
        patient_id=patient_id,
        since=since,
        before=before,
        limit=count,
        offset=offset,
    )
    return fhir_response(page_bundle("AuditEvent", [audit_event_resource(e) for e in rows], count, offset))


@bp.get("/AuditEvent/<event_id>")
def audit_event(event_id: str):
    """One event, under the search's rule: it must be about a document this client sent."""
    found = AuditEvent.of_client_documents(client_name(), EVENTS, event_hash=event_id, limit=1)
    if not found:
        foreign_event_probe(event_id)
        raise NotFound("No AuditEvent has this id.")
    return fhir_response(audit_event_resource(found[0]))


def foreign_event_probe(event_id: str) -> None:
    """An id naming an event the client may not see (another client's document, a login…) gets 404 like an id
    naming none, and the attempt is on the trail, as for another client's document."""
    event = AuditEvent.get_or_none(AuditEvent.hash == event_id)
    if event is not None:
        audit.record(
            "fhir.foreign_audit_event",
            actor_role=Role.DPI,
            ip=request.remote_addr,
            outcome="denied",
            object_type="audit_event",
            object_id=event.id,
            details={"client": client_name()},
        )


# -- the CapabilityStatement ------------------------------------------------------------------------------------
def declare(resources: list[dict]) -> None:
    """Add the directory's and the trace's resources and search parameters to the CapabilityStatement's."""
    paging_params = [
        {
            "name": "_count",
            "type": "number",
            "documentation": f"page size (default {DEFAULT_COUNT}, at most {MAX_COUNT})",
        },
        {"name": "_offset", "type": "number", "documentation": "rows to skip (the next link carries it)"},
    ]
    name = {"name": "name", "type": "string", "documentation": "every word in the first or last name"}
    specialty = {
        "name": "specialty",
        "type": "token",
        "documentation": f"an FMH specialist title, code of the CodeSystem {SPECIALTY_SYSTEM} (displays in French)",
    }
    directory = "Lists only physicians whose myHUG account is active: the authorized recipients."
    for resource in resources:
        if resource["type"] == "Practitioner":
            resource["searchParam"] = [*resource["searchParam"], name, specialty, *paging_params]
            resource["documentation"] = directory + " A Practitioner is read by id whatever its account."
    resources.append(
        {
            "type": "PractitionerRole",
            "documentation": directory + " One role per physician, with their specialties.",
            "interaction": [{"code": "search-type"}],
            "searchParam": [
                {"name": "practitioner.identifier", "type": "token", "documentation": f"{GLN_SYSTEM}|GLN"},
                specialty,
                name,
                *paging_params,
            ],
        }
    )
    resources.append(
        {
            "type": "AuditEvent",
            "documentation": "What happened to this client's documents: type DICOM (110107 Import, 110106 Export, "
            f"110110 Patient Record), subtype in the CodeSystem {AUDIT_SUBTYPE_SYSTEM} ("
            + ", ".join(code for _, code, _, _ in EVENTS.values())
            + "); a physician appears by GLN. Read by id: the same events only (404 for any other).",
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": [
                {"name": "entity", "type": "reference", "documentation": "DocumentReference/{id}"},
                {"name": "patient", "type": "reference", "documentation": "Patient/{id}"},
                {"name": "date", "type": "date", "documentation": "on recorded; repeat for a range (ge…&lt…)"},
                *paging_params,
            ],
        }
    )
