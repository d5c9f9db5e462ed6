"""FHIR R4 ⇄ the portal's rows: what the DPI sends, read and checked; what the API answers; OperationOutcome.

Validation is fhir.resources' R4B models (the five resource types used here are the same in R4 and R4B); the
business rules of DESIGN §5 are checked after, each failure naming the element in FHIRPath
(`Bundle.entry[3].resource.content[0].attachment.contentType`). Ids: a row's random public id, with `_` written
`.` because a FHIR id may only hold `A-Za-z0-9-.` (public ids are URL-safe base64, which has `_` but never `.`).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pydantic
from fhir.resources.R4B.consent import Consent
from fhir.resources.R4B.documentreference import DocumentReference
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.patient import Patient as FhirPatient
from fhir.resources.R4B.practitioner import Practitioner

from models import Designation, Document, DocumentStatus, Patient, Physician, Stay, StayKind
from workflows import DeliveryState

FHIR_JSON = "application/fhir+json"
JSON_TYPES = frozenset({FHIR_JSON, "application/json", "application/json+fhir"})
FHIR_VERSION = "4.0.1"  # R4: what the DPI speaks; parsed with the R4B models, identical for these resources

GLN_SYSTEM = "urn:oid:2.51.1.3"
LOINC_SYSTEM = "http://loinc.org"
ACT_CODE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PARTICIPATION_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
PRIMARY_RECIPIENT = "PRCP"

# Dependency order: a transaction writes its entries in this order, whatever the order of the Bundle.
RESOURCE_TYPES = ("Patient", "Practitioner", "Encounter", "Consent", "DocumentReference")
FHIR_MODELS = {
    "Patient": FhirPatient,
    "Practitioner": Practitioner,
    "Encounter": Encounter,
    "Consent": Consent,
    "DocumentReference": DocumentReference,
}
# Encounter.class (v3 ActCode) → the kind of stay; ACUTE and NONAC are the two kinds of IMP.
STAY_KINDS = {
    "IMP": StayKind.INPATIENT,
    "ACUTE": StayKind.INPATIENT,
    "NONAC": StayKind.INPATIENT,
    "AMB": StayKind.AMBULATORY,
}
CLASS_CODES = {StayKind.INPATIENT: ("IMP", "inpatient encounter"), StayKind.AMBULATORY: ("AMB", "ambulatory")}
# DocumentReference.docStatus → Document.status; entered-in-error is a recall, handled apart.
DOC_STATUSES = {
    "final": DocumentStatus.FINAL,
    "amended": DocumentStatus.FINAL,
    "preliminary": DocumentStatus.PRELIMINARY,
}
# Consent.status → is the designation in force? draft and proposed are not decisions yet: refused.
CONSENT_ACTIVE = {"active": True, "inactive": False, "rejected": False, "entered-in-error": False}

_HTTP_TEXT = {200: "200 OK", 201: "201 Created"}


# -- the portal's own code systems -----------------------------------------------------------------------------------
# Each is served as a CodeSystem at GET /fhir/CodeSystem/{id}. Its canonical url, what the API writes in `system`, is
# CODE_SYSTEM_BASE + id: stable across environments (a test server answers for the same url), so a DPI may keep a
# copy. The concepts are read from the very tables the API codes from, at each request: nothing is copied by hand.
CODE_SYSTEM_BASE = "https://myhug.hcuge.ch/fhir/CodeSystem/"
PUBLISHER = "Hôpitaux Universitaires de Genève (HUG)"


@dataclass(frozen=True)
class Concept:
    code: str
    display: str
    definition: str | None = None
    designations: tuple[tuple[str, str], ...] = ()  # (language, text): the display in other languages


@dataclass(frozen=True)
class LocalCodeSystem:
    id: str
    name: str
    title: str
    description: str
    concepts: Callable[[], list[Concept]]  # called at each read: some come from tables of the database

    @property
    def url(self) -> str:
        return CODE_SYSTEM_BASE + self.id


CODE_SYSTEMS: dict[str, LocalCodeSystem] = {}


def local_code_system(
    system_id: str, name: str, title: str, description: str, concepts: Callable[[], list[Concept]]
) -> str:
    """Declare a code system of the portal (served by web/fhir.py); returns its url, the `system` to emit."""
    if system_id in CODE_SYSTEMS:
        raise ValueError(f"code system {system_id!r} declared twice")
    CODE_SYSTEMS[system_id] = LocalCodeSystem(system_id, name, title, description, concepts)
    return CODE_SYSTEMS[system_id].url


def code_system_resource(system: LocalCodeSystem) -> dict:
    concepts = system.concepts()
    return {
        "resourceType": "CodeSystem",
        "id": system.id,
        "url": system.url,
        "name": system.name,
        "title": system.title,
        "status": "active",
        "experimental": False,
        "publisher": PUBLISHER,
        "description": system.description,
        "caseSensitive": True,
        "content": "complete",
        "count": len(concepts),
        "concept": [_concept(c) for c in concepts],
    }


def _concept(concept: Concept) -> dict:
    out: dict[str, Any] = {"code": concept.code, "display": concept.display}
    if concept.definition:
        out["definition"] = concept.definition
    if concept.designations:
        out["designation"] = [{"language": lang, "value": text} for lang, text in concept.designations]
    return out


def _table(table: dict[str, tuple[str, str]]) -> Callable[[], list[Concept]]:
    return lambda: [Concept(str(code), display, definition) for code, (display, definition) in table.items()]


# Why a document has not (fully) reached a physician: `reason` of $delivery-status (DESIGN §5), in the order the
# rules are checked. The delivery machine's guards return these codes (workflows/delivery.py).
DELIVERY_REASONS = {
    "not-final": ("Not final", "The document is preliminary: it has not been finalized."),
    "not-communicable": ("Not communicable", "Documents of this type are not sent outside the hospital."),
    "not-designated": ("Not designated", "The patient did not designate this physician for this stay."),
    "not-authorized": ("Not authorized", "The patient did not authorize sending documents electronically."),
    "no-account": ("No account", "The physician has no myHUG account."),
    "account-inactive": ("Account not active", "The physician's myHUG account is not active (yet, or any more)."),
    "revoked": ("Recalled", "The hospital recalled the document."),
    "superseded": ("Superseded", "A newer version of the document replaced it."),
    "notifications-off": (
        "Notifications off",
        "The document is in the physician's space, but they chose to receive no e-mail about new documents.",
    ),
    "bounced": (
        "E-mail bounced",
        "The document is in the physician's space, but e-mail to the physician bounced: they were not notified.",
    ),
}
DELIVERY_REASON_SYSTEM = local_code_system(
    "delivery-reason",
    "DeliveryReason",
    "Why a document has not reached a physician",
    "The `reason` of $delivery-status: the first rule not met between a document and a physician.",
    _table(DELIVERY_REASONS),
)

# Where a document stands for one physician: `state` of $delivery-status, one per state of the delivery machine.
DELIVERY_STATES = {
    DeliveryState.FINALIZED: ("Finalized", "A delivery exists for a final document and a recipient of its stay."),
    DeliveryState.COMMUNICABLE: ("Communicable", "The document type may leave the hospital."),
    DeliveryState.CONSENTED: ("Consented", "The patient designated the physician and authorized electronic sending."),
    DeliveryState.AVAILABLE: ("Available", 'The document is in the physician\'s "Mes documents".'),
    DeliveryState.NOTIFIED: ("Notified", "The physician was notified as they chose (each document, daily digest)."),
    DeliveryState.CONSULTED: ("Consulted", "The physician opened the document."),
    DeliveryState.WITHHELD: ("Withheld", "Documents of this type are not sent outside the hospital."),
    DeliveryState.REVOKED: ("Revoked", "Recalled, superseded, or the designation or authorization was withdrawn."),
}
NO_DELIVERY = "none"


def delivery_state_codes() -> list[str]:
    return [concept.code for concept in _delivery_states()]


def _delivery_states() -> list[Concept]:
    # Every state of the machine but the transient `new`: a state added to the machine and not described here fails
    # the read (KeyError), and the tests with it.
    concepts = [Concept(str(state), *DELIVERY_STATES[state]) for state in DeliveryState if state != DeliveryState.NEW]
    return [*concepts, Concept(NO_DELIVERY, "No delivery", "No delivery exists for this physician and document.")]


DELIVERY_STATE_SYSTEM = local_code_system(
    "delivery-state",
    "DeliveryState",
    "Where a document stands for a physician",
    "The `state` of $delivery-status: the state of the delivery of the document to that physician.",
    _delivery_states,
)

# Why the portal refused a write: OperationOutcome.issue.details. The codes of the document service
# (workflows/documents.py) and of its workflow engine, and those the FHIR layer checks itself.
REFUSAL_REASONS = {
    "forbidden": ("Forbidden", "The client's role does not allow this action."),
    "wrong-state": ("Wrong step", "The action is not possible at the record's current step."),
    "conflict": ("Conflict", "Someone else changed the record in the meantime: send the request again."),
    "other-client": ("Another client's document", "The identifier belongs to another DPI client's document."),
    "missing-identifier": ("Identifier missing", "An identifier (system and value) is required."),
    "bad-gln": ("Wrong GLN", "The GLN's check digit is wrong."),
    "bad-stay-kind": ("Unknown kind of stay", "A stay is a hospital stay (IMP) or an ambulatory episode (AMB)."),
    "stay-patient-mismatch": ("Another patient's stay", "The stay belongs to another patient."),
    "unknown-type": ("Unknown document type", "The LOINC document type is not in the portal's catalogue."),
    "bad-status": ("Unknown document status", "A document is either preliminary or final."),
    "no-pdf": ("PDF missing", "A final document needs its PDF."),
    "not-pdf": ("Not a PDF", "The attachment is not a PDF file."),
    "too-large": ("PDF too large", "The PDF is larger than the portal accepts."),
    "document-mismatch": (
        "Document mismatch",
        "The document belongs to another patient or stay, or already replaces another document.",
    ),
    "already-replaced": ("Already replaced", "A newer version already replaces the document named in relatesTo."),
    "final-document-changed": (
        "Final document changed",
        "A final document cannot change: send a new version that replaces it.",
    ),
}
REASON_SYSTEM = local_code_system(
    "refusal-reason",
    "RefusalReason",
    "Why the portal refused a request",
    "The code in OperationOutcome.issue.details when a request breaks a rule of the portal.",
    _table(REFUSAL_REASONS),
)


# -- errors -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Issue:
    """One OperationOutcome issue: the issue type (a FHIR code), what is wrong, and where."""

    code: str
    diagnostics: str
    expression: str | None = None
    reason: str | None = None


class FhirError(Exception):
    """Answered as an OperationOutcome with `status` (always 4xx for what the client sent)."""

    def __init__(self, status: int, *issues: Issue, headers: dict | None = None):
        super().__init__("; ".join(issue.diagnostics for issue in issues))
        self.status = status
        self.issues = issues
        self.headers = headers or {}


def refuse(status: int, code: str, diagnostics: str, expression: str | None = None, reason: str | None = None):
    return FhirError(status, Issue(code, diagnostics, expression, reason))


def unprocessable(expression: str, diagnostics: str, reason: str | None = None, code: str = "business-rule"):
    """422: the resource is valid FHIR but breaks a rule of the portal (DESIGN §5)."""
    return refuse(422, code, diagnostics, expression, reason)


def unresolved(expression: str, what: str):
    return refuse(422, "not-found", f"The reference resolves to no {what} known to the portal.", expression)


def operation_outcome(issues) -> dict:
    out = []
    for issue in issues:
        entry: dict[str, Any] = {"severity": "error", "code": issue.code, "diagnostics": issue.diagnostics}
        if issue.reason:
            entry["details"] = {"coding": [{"system": REASON_SYSTEM, "code": issue.reason}], "text": issue.diagnostics}
        if issue.expression:
            entry["expression"] = [issue.expression]
        out.append(entry)
    return {"resourceType": "OperationOutcome", "issue": out}


# -- reading what the DPI sends ---------------------------------------------------------------------------------
def parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = f" (line {exc.lineno}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise refuse(400, "invalid", f"The body is not valid JSON{where}.") from exc


_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _expression(base: str, loc: tuple) -> str:
    """pydantic's error location as FHIRPath: ('content', 0, 'attachment') → base.content[0].attachment."""
    path = base
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif isinstance(part, str) and _NAME.match(part):
            if part == "resource_type":
                part = "resourceType"
            elif part.endswith("__ext"):
                part = "_" + part[: -len("__ext")]  # the JSON name of a primitive's extensions
            elif part.endswith("_fhir"):
                part = part[: -len("_fhir")]  # class_fhir: Python keywords get a suffix
            path += f".{part}"
    return path


def validation_issues(error: pydantic.ValidationError, base: str) -> list[Issue]:
    issues = []
    for detail in error.errors(include_input=False, include_url=False):
        kind = detail.get("type", "")
        code = "required" if kind == "missing" else "structure" if kind == "extra_forbidden" else "value"
        issues.append(Issue(code, str(detail.get("msg", "invalid")), _expression(base, tuple(detail.get("loc", ())))))
    return issues


def validate(data: Any, base: str, allowed: tuple[str, ...] = RESOURCE_TYPES):
    """The R4B model of `data`, or a FhirError (400) listing every problem with its expression."""
    if not isinstance(data, dict):
        raise refuse(400, "structure", "A FHIR resource (a JSON object) is expected.", base)
    resource_type = data.get("resourceType")
    if resource_type not in allowed:
        expected = " or ".join(allowed)
        raise refuse(400, "invalid", f"resourceType must be {expected}, not {resource_type!r}.", f"{base}.resourceType")
    try:
        return FHIR_MODELS[resource_type].model_validate(data)
    except pydantic.ValidationError as exc:
        raise FhirError(400, *validation_issues(exc, base)) from exc
    except (KeyError, TypeError, ValueError) as exc:  # e.g. an unknown resourceType inside `contained`
        raise refuse(400, "structure", f"The resource could not be read: {exc}.", base) from exc


@dataclass(frozen=True)
class Target:
    """How a request addresses a resource: POST (nothing), a conditional `?identifier=system|value`, or an id."""

    system: str | None = None
    value: str | None = None
    id: str | None = None

    @property
    def conditional(self) -> bool:
        return self.value is not None


def parse_token(text: str, expression: str, *, system_required: bool = True) -> tuple[str | None, str]:
    """A token search value `system|value` (FHIR search syntax)."""
    system, bar, value = text.partition("|")
    if not bar:
        system, value = None, text
    if not value or (system_required and not system):
        raise refuse(400, "invalid", "An identifier is written system|value, both parts present.", expression)
    return system or None, value


def parse_request_url(url: str, method: str, resource_type: str, expression: str) -> Target:
    """`Patient` (POST), `Patient?identifier=system|value` or `Patient/{id}` (PUT), as in a transaction entry."""
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(url)
    path = parts.path.strip("/")
    segments = path.split("/") if path else []
    if not segments or segments[0] != resource_type:
        raise refuse(400, "invalid", f"request.url must address {resource_type}, as the resource is one.", expression)
    if method == "POST":
        if len(segments) != 1:
            raise refuse(400, "invalid", f"A POST goes to {resource_type}, without an id.", expression)
        return Target()
    if len(segments) == 2 and not parts.query:
        return Target(id=segments[1])
    query = parse_qs(parts.query, keep_blank_values=True)
    if len(segments) != 1 or set(query) != {"identifier"} or len(query["identifier"]) != 1:
        raise refuse(
            400,
            "not-supported",
            f"A PUT goes to {resource_type}/{{id}} or {resource_type}?identifier=system|value (nothing else).",
            expression,
        )
    system, value = parse_token(query["identifier"][0], expression)
    return Target(system=system, value=value)


def to_utc(value) -> dt.datetime | None:
    """A FHIR dateTime as the portal stores time (naive UTC); a partial date ("2024-05") is its first instant."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)
    pieces = [int(p) for p in str(value).split("-")[:3]]
    return dt.datetime(*[*pieces, 1, 1][:3])


def full_date(value) -> dt.date | None:
    """A birth date as stored: only a full date (a year alone says too little to be shown as a date)."""
    return value if isinstance(value, dt.date) and not isinstance(value, dt.datetime) else None


def human_name(names, base: str) -> tuple[str, str]:
    """(family, given) from the official name, else the first; both are required."""
    if not names:
        raise unprocessable(f"{base}.name", "A name (family and given) is required.", code="required")
    index = next((i for i, n in enumerate(names) if n.use == "official"), 0)
    name = names[index]
    if not (name.family or "").strip():
        raise unprocessable(f"{base}.name[{index}].family", "The family name is required.", code="required")
    given = " ".join(g for g in (name.given or []) if g and g.strip())
    if not given:
        raise unprocessable(f"{base}.name[{index}].given", "The given name is required.", code="required")
    return name.family.strip(), given


def identifiers(resource, base: str) -> list[tuple[str, str, str]]:
    """(expression, system, value) of every identifier that has both."""
    found = []
    for i, ident in enumerate(getattr(resource, "identifier", None) or []):
        if ident.system and ident.value:
            found.append((f"{base}.identifier[{i}]", ident.system, ident.value))
    return found


def split_reference(reference: str) -> tuple[str, str] | None:
    """`Patient/abc`, `…/fhir/Patient/abc` or `Patient/abc/_history/2` → ("Patient", "abc")."""
    segments = [s for s in reference.split("?")[0].split("/") if s]
    if len(segments) >= 4 and segments[-2] == "_history":
        segments = segments[:-2]
    if len(segments) < 2:
        return None
    return segments[-2], segments[-1]


# -- ids ----------------------------------------------------------------------------------------------------------
def fhir_id(public_id: str) -> str:
    return public_id.replace("_", ".")


def public_id_of(resource_id: str) -> str:
    return resource_id.replace(".", "_")


def consent_id(designation: Designation) -> str:
    """A Consent is the designation of one physician for one stay: its id names both (unguessable, stable)."""
    return f"{fhir_id(designation.stay.public_id)}-{fhir_id(designation.physician.public_id)}"


def designation_by_consent_id(resource_id: str) -> Designation | None:
    # Public ids may themselves contain "-": try each place the two could meet (there are only a few).
    for at in [m.start() for m in re.finditer("-", resource_id)]:
        stay_id, physician_id = public_id_of(resource_id[:at]), public_id_of(resource_id[at + 1 :])
        if not stay_id or not physician_id:
            continue
        found = (
            Designation.select(Designation, Stay, Physician)
            .join(Stay, on=(Designation.stay == Stay.id))
            .switch(Designation)
            .join(Physician, on=(Designation.physician == Physician.id))
            .where((Stay.public_id == stay_id) & (Physician.public_id == physician_id))
            .first()
        )
        if found is not None:
            return found
    return None


# -- finding rows ---------------------------------------------------------------------------------------------
def by_id(resource_type: str, resource_id: str, client: str | None):
    """The row a FHIR id names, or None. A document is found only for the client that sent it."""
    if resource_type == "Consent":
        return designation_by_consent_id(resource_id)
    public_id = public_id_of(resource_id)
    if resource_type == "Patient":
        return Patient.get_or_none(Patient.public_id == public_id)
    if resource_type == "Encounter":
        return Stay.get_or_none(Stay.public_id == public_id)
    if resource_type == "Practitioner":
        return Physician.get_or_none(Physician.public_id == public_id)
    if resource_type == "DocumentReference":
        return Document.get_or_none((Document.public_id == public_id) & (Document.dpi_client == client))
    return None


def by_identifier(resource_type: str, system: str | None, value: str, client: str | None) -> list:
    """The rows carrying an identifier (`system` None: any system), as a token search finds them."""
    if resource_type == "Practitioner":
        if system not in (None, GLN_SYSTEM):
            return []
        return list(Physician.select().where(Physician.gln == value))
    if resource_type == "Consent":
        query = Designation.select().where(
            Designation.dpi_consent_id == f"{system}|{value}"
            if system
            else Designation.dpi_consent_id.endswith(f"|{value}")
        )
        return list(query.order_by(Designation.id))
    model = {"Patient": Patient, "Encounter": Stay, "DocumentReference": Document}.get(resource_type)
    if model is None:
        return []
    condition = model.dpi_value == value
    if system is not None:
        condition &= model.dpi_system == system
    if model is Document:
        condition &= Document.dpi_client == client
    return list(model.select().where(condition).order_by(model.id))


# -- writing what the API answers -------------------------------------------------------------------------------
def instant(value: dt.datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def reference(resource_type: str, row, display: str | None = None) -> dict:
    ref = {"reference": f"{resource_type}/{fhir_id(row.public_id)}"}
    if display:
        ref["display"] = display
    return ref


def _drop_empty(value):
    if isinstance(value, dict):
        return {k: _drop_empty(v) for k, v in value.items() if v not in (None, [], {}, "")}
    if isinstance(value, list):
        return [_drop_empty(v) for v in value]
    return value


def patient_resource(patient: Patient) -> dict:
    return _drop_empty(
        {
            "resourceType": "Patient",
            "id": fhir_id(patient.public_id),
            "meta": {"versionId": "1"},
            "identifier": [{"system": patient.dpi_system, "value": patient.dpi_value}],
            "name": [{"use": "official", "family": patient.family_name, "given": patient.given_name.split()}],
            "birthDate": patient.birth_date.isoformat() if patient.birth_date else None,
        }
    )


def practitioner_resource(physician: Physician) -> dict:
    """Who the physician is (GLN, name, practice), never how to reach them: hospital systems read this to pick a
    recipient, documents never travel by e-mail, and the e-mail address and mobile are the physician's own personal
    contact data ("Mon profil")."""
    return _drop_empty(
        {
            "resourceType": "Practitioner",
            "id": fhir_id(physician.public_id),
            "meta": {"versionId": "1"},
            "identifier": [{"system": GLN_SYSTEM, "value": physician.gln}],
            "name": [{"use": "official", "family": physician.last_name, "given": physician.first_name.split()}],
            "address": [{"text": physician.practice_address}] if physician.practice_address else [],
        }
    )


def encounter_resource(stay: Stay) -> dict:
    code, display = CLASS_CODES.get(stay.kind, CLASS_CODES[StayKind.INPATIENT])
    return _drop_empty(
        {
            "resourceType": "Encounter",
            "id": fhir_id(stay.public_id),
            "meta": {"versionId": "1"},
            "identifier": [{"system": stay.dpi_system, "value": stay.dpi_value}],
            # The portal keeps no encounter status: a stay with an end is over, else it is under way.
            "status": "finished" if stay.ended_at else "in-progress",
            "class": {"system": ACT_CODE_SYSTEM, "code": code, "display": display},
            "subject": reference("Patient", stay.patient),
            "period": {"start": instant(stay.started_at), "end": instant(stay.ended_at)},
        }
    )


def consent_resource(designation: Designation) -> dict:
    stay, physician = designation.stay, designation.physician
    identifier = []
    if designation.dpi_consent_id and "|" in designation.dpi_consent_id:
        system, value = designation.dpi_consent_id.split("|", 1)
        identifier = [{"system": system, "value": value}]
    return _drop_empty(
        {
            "resourceType": "Consent",
            "id": consent_id(designation),
            "meta": {"versionId": "1"},
            "identifier": identifier,
            "status": "active" if designation.revoked_at is None else "inactive",
            "scope": {
                "coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]
            },
            "category": [{"coding": [{"system": LOINC_SYSTEM, "code": "59284-0", "display": "Patient Consent"}]}],
            "patient": reference("Patient", stay.patient),
            "dateTime": instant(designation.recorded_at),
            "policyRule": {"coding": [{"system": ACT_CODE_SYSTEM, "code": "OPTIN"}]},
            "provision": {
                "type": "permit" if designation.authorized else "deny",
                "actor": [
                    {
                        "role": {"coding": [{"system": PARTICIPATION_TYPE_SYSTEM, "code": PRIMARY_RECIPIENT}]},
                        "reference": {
                            **reference("Practitioner", physician, physician.display_name),
                            "identifier": {"system": GLN_SYSTEM, "value": physician.gln},
                        },
                    }
                ],
                "data": [{"meaning": "related", "reference": reference("Encounter", stay)}],
            },
        }
    )


def document_resource(document: Document) -> dict:
    if document.recalled_at is not None:
        status = "entered-in-error"
    elif document.superseded_at is not None:
        status = "superseded"
    else:
        status = "current"
    doc_type = document.type
    return _drop_empty(
        {
            "resourceType": "DocumentReference",
            "id": fhir_id(document.public_id),
            "meta": {"versionId": str(document.version_number), "lastUpdated": instant(document.updated_at)},
            "identifier": [{"system": document.dpi_system, "value": document.dpi_value}],
            "status": status,
            "docStatus": "final" if document.status == DocumentStatus.FINAL else "preliminary",
            "type": {"coding": [{"system": LOINC_SYSTEM, "code": doc_type.loinc, "display": doc_type.name_en}]},
            "subject": reference("Patient", document.patient),
            "date": instant(document.created_at),
            "author": [{"display": document.author}] if document.author else [],
            "description": document.title,
            "relatesTo": (
                [{"code": "replaces", "target": reference("DocumentReference", document.replaces)}]
                if document.replaces_id
                else []
            ),
            # The PDF itself stays in the portal: the DPI has it; size and title say which one it is.
            "content": [
                {"attachment": {"contentType": "application/pdf", "size": document.size_bytes, "title": document.title}}
            ],
            "context": {"encounter": [reference("Encounter", document.stay)]},
        }
    )


RESOURCE_WRITERS = {
    "Patient": patient_resource,
    "Practitioner": practitioner_resource,
    "Encounter": encounter_resource,
    "Consent": consent_resource,
    "DocumentReference": document_resource,
}


def resource_id(resource_type: str, row) -> str:
    return consent_id(row) if resource_type == "Consent" else fhir_id(row.public_id)


def version_of(resource_type: str, row) -> int:
    return row.version_number if resource_type == "DocumentReference" else 1


@dataclass
class Written:
    """What one write did: the row, whether it was created, and how a transaction-response names it."""

    resource_type: str
    row: Any
    created: bool

    @property
    def id(self) -> str:
        return resource_id(self.resource_type, self.row)

    @property
    def version(self) -> int:
        return version_of(self.resource_type, self.row)

    @property
    def location(self) -> str:
        return f"{self.resource_type}/{self.id}/_history/{self.version}"

    @property
    def status(self) -> str:
        return _HTTP_TEXT[201 if self.created else 200]


def searchset(base_url: str, resource_type: str, rows) -> dict:
    entries = [
        {
            "fullUrl": f"{base_url}/{resource_type}/{resource_id(resource_type, row)}",
            "resource": RESOURCE_WRITERS[resource_type](row),
            "search": {"mode": "match"},
        }
        for row in rows
    ]
    return {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}
