"""The FHIR R4 API through which the DPI pushes patients, stays, practitioners, consents and documents (DESIGN §5).

Every request but `GET /fhir/metadata` carries `Authorization: Bearer <token>` of a DPI client (`flask dpi
create-client NAME`; only the SHA-256 of the token is stored). Every write goes through workflows/documents.py, in
one database transaction per request: a transaction Bundle is written whole or not at all. Every answer is
`application/fhir+json`, errors included (an OperationOutcome naming the element at fault).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import timedelta

from flask import Blueprint, current_app, g, request
from flask_limiter.util import get_remote_address
from werkzeug.exceptions import HTTPException, InternalServerError, MethodNotAllowed, NotFound

from models import Designation, Document, DpiClient, Role, db, gln_is_valid, utcnow
from security import audit
from workflows import Actor, TransitionRefused
from workflows import documents as service
from workflows.documents import OTHER_CLIENT
from workflows.engine import CONFLICT, FORBIDDEN, WRONG_STATE

from . import csrf
from .fhir_resources import (
    CODE_SYSTEMS,
    CONSENT_ACTIVE,
    DELIVERY_REASON_SYSTEM,
    DELIVERY_REASONS,
    DELIVERY_STATE_SYSTEM,
    DOC_STATUSES,
    FHIR_JSON,
    FHIR_VERSION,
    GLN_SYSTEM,
    JSON_TYPES,
    LOINC_SYSTEM,
    PARTICIPATION_TYPE_SYSTEM,
    PRIMARY_RECIPIENT,
    RESOURCE_TYPES,
    RESOURCE_WRITERS,
    STAY_KINDS,
    FhirError,
    Issue,
    Target,
    Written,
    by_id,
    by_identifier,
    code_system_resource,
    delivery_state_codes,
    full_date,
    human_name,
    identifiers,
    operation_outcome,
    parse_json,
    parse_request_url,
    parse_token,
    refuse,
    searchset,
    split_reference,
    to_utc,
    unprocessable,
    unresolved,
    validate,
    version_of,
)
from .limits import limiter

bp = Blueprint("fhir", __name__, url_prefix="/fhir")
csrf.exempt(bp)  # a machine API authenticated by a bearer token: there is no cookie to forge a request with

TYPES = "any(" + ",".join(RESOURCE_TYPES) + ")"
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
LAST_CALL_PRECISION = timedelta(minutes=1)
OPERATION_URL = "OperationDefinition/DocumentReference-delivery-status"
STATUS_CODES = {  # HTTP error → OperationOutcome issue type
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    409: "conflict",
    413: "too-costly",
    415: "not-supported",
    422: "processing",
    429: "throttled",
}


# -- clients and their tokens (the CLI calls these) ---------------------------------------------------------------
def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_client(name: str) -> str:
    """A new DPI client; returns its bearer token, which exists nowhere else (only its SHA-256 is kept)."""
    name = name.strip()
    if not name:
        raise ValueError("a client needs a name")
    token = secrets.token_urlsafe(32)
    with db.atomic():
        if DpiClient.select().where(DpiClient.name == name).exists():
            raise ValueError(f"a DPI client named {name!r} exists already")
        client = DpiClient.create(name=name, token_hash=token_digest(token))
        audit.record("dpi.client_created", object_type="dpi_client", object_id=client.id, details={"name": name})
    return token


def revoke_client(name: str) -> bool:
    """Revoke a client's token at once; False if it was revoked already."""
    with db.atomic():
        client = DpiClient.get_or_none(DpiClient.name == name)
        if client is None:
            raise LookupError(f"no DPI client named {name!r}")
        if client.revoked_at is not None:
            return False
        DpiClient.update(revoked_at=utcnow()).where(DpiClient.id == client.id).execute()
        audit.record("dpi.client_revoked", object_type="dpi_client", object_id=client.id, details={"name": name})
    return True


def bearer_token() -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def rate_limit_key() -> str:
    """One allowance per client (by the token presented), not per address: the DPI may sit behind one proxy."""
    token = bearer_token()
    return f"dpi:{token_digest(token)[:32]}" if token else get_remote_address()


def rate_limit() -> str:
    return current_app.config.get("FHIR_RATE_LIMIT", "6000 per minute")


limiter.limit(rate_limit, key_func=rate_limit_key)(bp)


def unauthorized(text: str) -> FhirError:
    return FhirError(401, Issue("login", text), headers={"WWW-Authenticate": 'Bearer realm="myHUG FHIR"'})


@bp.before_request
def authenticate() -> None:
    g.no_store = True  # patient data: never kept by a proxy
    # A PDF travels base64-encoded (4/3 of its size), possibly a few in one Bundle: the site's upload limit is
    # for forms and would refuse a legitimate document.
    document_limit = current_app.config.get("MAX_DOCUMENT_BYTES", service.MAX_DOCUMENT_BYTES)
    request.max_content_length = current_app.config.get("FHIR_MAX_REQUEST_BYTES", 3 * (document_limit * 4 // 3) + 2**20)
    if request.endpoint == "fhir.metadata":
        return
    token = bearer_token()
    if token is None:
        raise unauthorized("A bearer token is required (Authorization: Bearer …).")
    digest = token_digest(token)
    # Looked up by its digest (an index lookup whose timing says nothing about the token), then compared in
    # constant time all the same.
    client = DpiClient.get_or_none(DpiClient.token_hash == digest)
    if client is None or not hmac.compare_digest(client.token_hash, digest):
        raise unauthorized("The bearer token is not valid.")
    if client.revoked_at is not None:
        raise unauthorized("The bearer token was revoked.")
    now = utcnow()
    if client.last_call_at is None or now - client.last_call_at >= LAST_CALL_PRECISION:
        DpiClient.update(last_call_at=now).where(DpiClient.id == client.id).execute()
    g.dpi_client = client
    accepted = request.accept_mimetypes
    if request.args.get("_format", "json") not in ("json", FHIR_JSON, "application/json") or (
        accepted and accepted.best_match([FHIR_JSON, "application/json"]) is None
    ):
        raise refuse(406, "not-supported", "This server answers application/fhir+json only.")


def actor() -> Actor:
    return Actor(Role.DPI, ip=request.remote_addr)


def client_name() -> str:
    return g.dpi_client.name


# -- answers --------------------------------------------------------------------------------------------------------
def base_url() -> str:
    return current_app.config["PUBLIC_URL"].rstrip("/") + "/fhir"


def fhir_response(body: dict | None, status: int = 200, headers: dict | None = None):
    text = "" if body is None else json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    response = current_app.response_class(text, status=status, headers=headers or {})
    response.headers["Content-Type"] = f"{FHIR_JSON}; charset=utf-8"
    return response


@bp.errorhandler(FhirError)
def handle_fhir_error(error: FhirError):
    return fhir_response(operation_outcome(error.issues), error.status, error.headers)


@bp.errorhandler(TransitionRefused)
def handle_refusal(refused: TransitionRefused):
    # Reasons that reach here were not placed on an element (the write paths place the ones they expect).
    return handle_fhir_error(refusal_error(refused, None))


@bp.errorhandler(HTTPException)
def handle_http_error(error: HTTPException):
    status = error.code or 500
    headers = {}
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        headers["Allow"] = ", ".join(error.valid_methods)
    text = error.description if status < 500 else "The server could not answer; the problem has been recorded."
    return fhir_response(operation_outcome([Issue(STATUS_CODES.get(status, "exception"), text)]), status, headers)


@bp.errorhandler(InternalServerError)
def handle_internal_error(_error: InternalServerError):
    issue = Issue("exception", "The server could not answer; the problem has been recorded.")
    return fhir_response(operation_outcome([issue]), 500)


def refusal_error(refused: TransitionRefused, expression: str | None) -> FhirError:
    """A refusal of the service layer: 409 for a concurrent change, 413 for a PDF too large, else 422."""
    code = refused.reason.code
    status = {CONFLICT: 409, WRONG_STATE: 409, FORBIDDEN: 403, OTHER_CLIENT.code: 409, "too-large": 413}.get(code, 422)
    kind = {409: "conflict", 403: "forbidden", 413: "too-costly"}.get(status, "business-rule")
    # Reason texts are English message ids (workflows/ marks them with N_): the DPI reads them as they are.
    return FhirError(status, Issue(kind, refused.reason.text, expression, code))


def read_body() -> object:
    if request.mimetype not in JSON_TYPES:
        raise refuse(415, "not-supported", "Send application/fhir+json.")
    return parse_json(request.get_data(cache=False))


# -- metadata ---------------------------------------------------------------------------------------------------
@bp.get("/metadata")
def metadata():
    return fhir_response(capability_statement())


def capability_statement() -> dict:
    search = [
        {
            "name": "identifier",
            "type": "token",
            "documentation": "system|value (a Practitioner's GLN: urn:oid:2.51.1.3|GLN)",
        }
    ]
    interactions = [{"code": c} for c in ("read", "search-type", "create", "update")]
    resources = []
    for resource_type in RESOURCE_TYPES:
        resource = {
            "type": resource_type,
            "interaction": interactions,
            "versioning": "no-version",
            "readHistory": False,
            "updateCreate": False,
            "conditionalCreate": False,
            "conditionalUpdate": True,
            "conditionalDelete": "not-supported",
            "searchParam": search,
        }
        if resource_type == "DocumentReference":
            resource["versioning"] = "versioned"
            resource["operation"] = [
                {
                    "name": "delivery-status",
                    "definition": f"{base_url()}/{OPERATION_URL}",
                    "documentation": "Where the document stands for each recipient physician, with a reason code "
                    "while it has not reached them.",
                }
            ]
        resources.append(resource)
    fhir_directory.declare(resources)  # Practitioner's directory search, PractitionerRole, AuditEvent
    resources.append(
        {
            "type": "CodeSystem",
            "documentation": "The portal's own code systems, built from the tables the API codes from: "
            + ", ".join(system.url for system in CODE_SYSTEMS.values())
            + ".",
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": [{"name": "url", "type": "uri", "documentation": "the canonical url (a `system`)"}],
        }
    )
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2025-01-01",
        "publisher": "Hôpitaux Universitaires de Genève (HUG)",
        "kind": "instance",
        "software": {"name": "myHUG"},
        "implementation": {"description": "myHUG: documents for the physicians of the patients", "url": base_url()},
        "fhirVersion": FHIR_VERSION,
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "documentation": "Writes are idempotent on the DPI's identifiers; every write of a request is one "
                "database transaction. References inside a transaction Bundle use urn:uuid: fullUrls.",
                "security": {
                    "cors": False,
                    "description": "A static bearer token per DPI client (Authorization: Bearer …), issued by "
                    "`flask dpi create-client NAME` and revocable; no SMART on FHIR, no OAuth flow.",
                },
                "resource": resources,
                "interaction": [{"code": "transaction"}],
            }
        ],
    }


@bp.get("/OperationDefinition/DocumentReference-delivery-status")
def delivery_status_definition():
    part = [
        {"name": "practitioner", "use": "out", "min": 1, "max": "1", "type": "Identifier"},
        {
            "name": "state",
            "use": "out",
            "min": 1,
            "max": "1",
            "type": "code",
            "documentation": f"a code of {DELIVERY_STATE_SYSTEM}",
        },
        {
            "name": "reason",
            "use": "out",
            "min": 0,
            "max": "1",
            "type": "code",
            "documentation": f"a code of {DELIVERY_REASON_SYSTEM}",
        },
    ]
    return fhir_response(
        {
            "resourceType": "OperationDefinition",
            "id": "DocumentReference-delivery-status",
            "url": f"{base_url()}/{OPERATION_URL}",
            "name": "DeliveryStatus",
            "status": "active",
            "kind": "operation",
            "code": "delivery-status",
            "resource": ["DocumentReference"],
            "system": False,
            "type": False,
            "instance": True,
            "affectsState": False,
            "description": f"state: {', '.join(delivery_state_codes())}; reason: {', '.join(DELIVERY_REASONS)}.",
            "parameter": [
                {"name": "practitioner", "use": "in", "min": 0, "max": "1", "type": "string"},
                {"name": "delivery", "use": "out", "min": 0, "max": "*", "part": part},
            ],
        }
    )


# -- the portal's own code systems -------------------------------------------------------------------------------
@bp.get("/CodeSystem")
def code_systems():
    """Every code system of the portal, or the one whose canonical url is `url` (how a `system` is resolved)."""
    unknown = set(request.args) - {"url", "_format"}
    if unknown:
        raise refuse(400, "not-supported", f"Search by {', '.join(sorted(unknown))} is not supported here.")
    urls = request.args.getlist("url")
    found = [system for system in CODE_SYSTEMS.values() if not urls or system.url in urls]
    entries = [
        {
            "fullUrl": f"{base_url()}/CodeSystem/{system.id}",
            "resource": code_system_resource(system),
            "search": {"mode": "match"},
        }
        for system in found
    ]
    return fhir_response({"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries})


@bp.get("/CodeSystem/<system_id>")
def code_system(system_id: str):
    system = CODE_SYSTEMS.get(system_id)
    if system is None:
        raise NotFound("No CodeSystem has this id.")
    return fhir_response(code_system_resource(system))


# -- writing: one resource at a time, in the transaction of the request ------------------------------------------
@dataclass
class Entry:
    """One resource to write: where it sits in the request (for error expressions) and how it was addressed."""

    index: int
    resource_type: str
    resource: object
    target: Target
    base: str
    full_url: str | None = None


class Writer:
    """Writes validated resources through the service layer, resolving references as it goes."""

    def __init__(self, client: str, actor: Actor, max_document_bytes: int):
        self.client = client
        self.actor = actor
        self.max_document_bytes = max_document_bytes
        self.in_bundle: dict[str, tuple[str, object]] = {}  # fullUrl → (type, row) written by this request

    def write(self, entry: Entry) -> Written:
        method = getattr(self, f"write_{entry.resource_type.lower()}")
        written = method(entry.resource, entry.target, entry.base)
        if entry.full_url:
            self.in_bundle[entry.full_url] = (entry.resource_type, written.row)
        return written

    # references
    def resolve(self, ref, resource_type: str, expression: str, *, required: bool = True):
        if ref is None or (ref.reference is None and ref.identifier is None):
            if not required:
                return None
            raise unprocessable(expression, f"A reference to the {resource_type} is required.", code="required")
        if ref.reference:
            if ref.reference in self.in_bundle:
                found_type, row = self.in_bundle[ref.reference]
                if found_type != resource_type:
                    raise unprocessable(f"{expression}.reference", f"The reference must name a {resource_type}.")
                return row
            if ref.reference.startswith(("urn:uuid:", "urn:oid:")):
                raise unresolved(f"{expression}.reference", f"{resource_type} (no entry of this Bundle has it)")
            parts = split_reference(ref.reference)
            if parts is None or parts[0] != resource_type:
                raise unprocessable(f"{expression}.reference", f"The reference must name a {resource_type}.")
            row = by_id(resource_type, parts[1], self.client)
            if row is None:
                raise unresolved(f"{expression}.reference", resource_type)
            return row
        ident = ref.identifier
        if not ident.value:
            raise unprocessable(f"{expression}.identifier.value", "The identifier has no value.", code="required")
        if resource_type == "Practitioner" and not gln_is_valid(ident.value):
            raise unprocessable(f"{expression}.identifier.value", "The GLN check digit is wrong.", "bad-gln")
        rows = by_identifier(resource_type, ident.system, ident.value, self.client)
        if len(rows) != 1:
            raise unresolved(f"{expression}.identifier", resource_type)
        return rows[0]

    def key(self, resource_type: str, found: list[tuple[str, str, str]], target: Target, base: str, lookup=True):
        """(system, value) the row is idempotent on, and the existing row when there is one (when `lookup`, or
        when the request names the row by its id). Addressed by id, the resource may omit its identifier."""
        pairs = [(s, v) for _, s, v in found]
        if target.conditional:
            if (target.system, target.value) not in pairs:
                raise unprocessable(
                    f"{base}.identifier", "The resource must carry the identifier of its conditional update."
                )
            key = (target.system, target.value)
        elif target.id is not None:
            row = by_id(resource_type, target.id, self.client)
            if row is None:
                raise refuse(404, "not-found", f"No {resource_type} has this id; create it with POST.", base)
            key = identity(resource_type, row)
            if pairs and key not in pairs:
                raise unprocessable(f"{base}.identifier", f"The identifier of a {resource_type} cannot change.")
            return key, row
        else:
            if not pairs:
                raise unprocessable(
                    f"{base}.identifier", "An identifier (system and value) is required.", code="required"
                )
            key = pairs[0]
        if not lookup:
            return key, None
        existing = by_identifier(resource_type, key[0], key[1], self.client)
        return key, existing[0] if existing else None

    def service_call(self, refusals: dict[str, str], base: str, call, *args, **kwargs):
        """Call the service layer; its refusals become 4xx OperationOutcomes on the element concerned."""
        try:
            return call(*args, **kwargs)
        except TransitionRefused as refused:
            raise refusal_error(refused, refusals.get(refused.reason.code, base)) from refused

    # the five resource types
    def write_patient(self, resource, target: Target, base: str) -> Written:
        (system, value), existing = self.key("Patient", identifiers(resource, base), target, base)
        family, given = human_name(resource.name, base)
        patient = self.service_call(
            {},
            base,
            service.record_patient,
            system=system,
            value=value,
            family_name=family,
            given_name=given,
            birth_date=full_date(resource.birthDate),
        )
        return Written("Patient", patient, existing is None)

    def write_practitioner(self, resource, target: Target, base: str) -> Written:
        glns = [(e, s, v) for e, s, v in identifiers(resource, base) if s == GLN_SYSTEM]
        if not glns:
            raise unprocessable(
                f"{base}.identifier", f"A GLN identifier (system {GLN_SYSTEM}) is required.", code="required"
            )
        for expression, _, value in glns:
            if not gln_is_valid(value):
                raise unprocessable(f"{expression}.value", "The GLN check digit is wrong.", "bad-gln")
        if target.conditional and target.system != GLN_SYSTEM:
            raise unprocessable(f"{base}.identifier", f"A Practitioner is identified by its GLN ({GLN_SYSTEM}).")
        (_, gln), existing = self.key("Practitioner", glns, target, base)
        family, given = human_name(resource.name, base)
        email = next((t.value for t in resource.telecom or [] if t.system == "email" and t.value), None)
        physician = self.service_call(
            {"bad-gln": f"{base}.identifier"},
            base,
            service.record_practitioner,
            gln=gln,
            family_name=family,
            given_name=given,
            email=email,
        )
        return Written("Practitioner", physician, existing is None)

    def write_encounter(self, resource, target: Target, base: str) -> Written:
        (system, value), existing = self.key("Encounter", identifiers(resource, base), target, base)
        patient = self.resolve(resource.subject, "Patient", f"{base}.subject")
        coding = resource.class_fhir
        kind = STAY_KINDS.get(coding.code or "")
        if kind is None:
            raise unprocessable(
                f"{base}.class.code", "Encounter.class must be IMP (hospital stay) or AMB (ambulatory episode)."
            )
        period = resource.period
        stay = self.service_call(
            {"stay-patient-mismatch": f"{base}.subject"},
            base,
            service.record_stay,
            system=system,
            value=value,
            patient=patient,
            kind=kind,
            started_at=to_utc(period.start) if period else None,
            ended_at=to_utc(period.end) if period else None,
        )
        return Written("Encounter", stay, existing is None)

    def write_consent(self, resource, target: Target, base: str) -> Written:
        if resource.status not in CONSENT_ACTIVE:
            raise unprocessable(
                f"{base}.status", "A Consent is active (designation) or inactive/rejected (withdrawal).", code="value"
            )
        active = CONSENT_ACTIVE[resource.status]
        patient = self.resolve(resource.patient, "Patient", f"{base}.patient")
        provision = resource.provision
        if provision is None:
            raise unprocessable(f"{base}.provision", "The provision (actor and data) is required.", code="required")
        recipients = [(j, a) for j, a in enumerate(provision.actor or []) if is_primary_recipient(a.role)]
        if len(recipients) != 1:
            raise unprocessable(
                f"{base}.provision.actor",
                f"Exactly one actor with role {PRIMARY_RECIPIENT} (the designated physician) is required.",
                code="required",
            )
        j, recipient = recipients[0]
        physician = self.resolve(recipient.reference, "Practitioner", f"{base}.provision.actor[{j}].reference")
        related = [(k, d) for k, d in enumerate(provision.data or []) if d.meaning == "related"]
        if len(related) != 1:
            raise unprocessable(
                f"{base}.provision.data",
                "Exactly one data element {meaning: related, reference: the Encounter} is required.",
                code="required",
            )
        k, data = related[0]
        stay = self.resolve(data.reference, "Encounter", f"{base}.provision.data[{k}].reference")
        if stay.patient_id != patient.id:
            raise unprocessable(f"{base}.patient", "This stay belongs to another patient.", "stay-patient-mismatch")
        if active and provision.type not in ("permit", "deny"):
            raise unprocessable(
                f"{base}.provision.type",
                "provision.type permit (sending authorized) or deny (not authorized) is required.",
                code="required",
            )
        found = identifiers(resource, base)
        consent_key = None
        if target.conditional:
            consent_key, _ = self.key("Consent", found, target, base)
        elif found:
            consent_key = (found[0][1], found[0][2])
        existing = Designation.get_or_none((Designation.stay == stay.id) & (Designation.physician == physician.id))
        if target.id is not None:
            addressed = by_id("Consent", target.id, self.client)
            if addressed is None:
                raise refuse(404, "not-found", "No Consent has this id; create it with POST.", base)
            if existing is None or addressed.id != existing.id:
                raise unprocessable(f"{base}.provision", "A Consent keeps its patient, stay and practitioner.")
        refusals = {"stay-patient-mismatch": f"{base}.patient"}
        consent_id = f"{consent_key[0]}|{consent_key[1]}" if consent_key else None
        if consent_id:
            # The same Consent now names another stay or physician: the one it named before is withdrawn.
            for previous in by_identifier("Consent", *consent_key, self.client):
                if previous.id != (existing.id if existing else None) and previous.revoked_at is None:
                    self.service_call(
                        refusals,
                        base,
                        service.record_designation,
                        stay=previous.stay,
                        physician=previous.physician,
                        authorized=previous.authorized,
                        active=False,
                        consent_id=consent_id,
                        actor=self.actor,
                    )
        designation = self.service_call(
            refusals,
            base,
            service.record_designation,
            stay=stay,
            physician=physician,
            authorized=provision.type == "permit",
            active=active,
            source="dpi",
            consent_id=consent_id,
            actor=self.actor,
        )
        return Written("Consent", designation, existing is None)

    def write_documentreference(self, resource, target: Target, base: str) -> Written:
        found = identifiers(resource, base)
        master = resource.masterIdentifier
        if master is not None and master.system and master.value:
            found.append((f"{base}.masterIdentifier", master.system, master.value))
        (system, value), _ = self.key("DocumentReference", found, target, base, lookup=False)
        if resource.status == "entered-in-error" or resource.docStatus == "entered-in-error":
            existing = Document.by_dpi_id(system, value)
            if existing is not None and existing.dpi_client != self.client:
                raise refusal_error(TransitionRefused(OTHER_CLIENT), base)
            if existing is None:
                raise unprocessable(f"{base}.status", "There is no such document to withdraw.")
            self.service_call({}, base, service.recall_document, existing, actor=self.actor)
            return Written("DocumentReference", Document.get_by_id(existing.id), False)
        if resource.docStatus not in DOC_STATUSES:
            raise unprocessable(
                f"{base}.docStatus", "docStatus must be final (or amended), or preliminary.", code="required"
            )
        type_code, type_expression = loinc_code(resource.type, base)
        patient = self.resolve(resource.subject, "Patient", f"{base}.subject")
        context = resource.context
        if context is None or not context.encounter:
            raise unprocessable(
                f"{base}.context.encounter", "The stay (context.encounter) is required.", code="required"
            )
        stay = self.resolve(context.encounter[0], "Encounter", f"{base}.context.encounter[0]")
        pdf, title = self.attachment(resource.content, base)
        replaces = None
        for j, relation in enumerate(resource.relatesTo or []):
            if relation.code != "replaces":
                raise unprocessable(f"{base}.relatesTo[{j}].code", "Only relatesTo.code replaces is understood.")
            if replaces is not None:
                raise unprocessable(f"{base}.relatesTo[{j}]", "A document replaces one other document at most.")
            replaces = self.resolve(relation.target, "DocumentReference", f"{base}.relatesTo[{j}].target")
        document, created = self.service_call(
            {
                "unknown-type": type_expression,
                "stay-patient-mismatch": f"{base}.context.encounter[0]",
                "not-pdf": f"{base}.content[0].attachment.data",
                "too-large": f"{base}.content[0].attachment.data",
                "document-mismatch": f"{base}.relatesTo[0].target" if replaces is not None else f"{base}.subject",
                "already-replaced": f"{base}.relatesTo[0].target",
                "final-document-changed": f"{base}.content[0].attachment.data",
            },
            base,
            service.receive_document,
            dpi_system=system,
            dpi_value=value,
            patient=patient,
            stay=stay,
            type_code=type_code,
            title=resource.description or title or display_of(resource.type),
            author=author_of(resource.author, self, base),
            status=DOC_STATUSES[resource.docStatus],
            pdf=pdf,
            replaces=replaces,
            client=self.client,
            actor=self.actor,
        )
        return Written("DocumentReference", document, created)

    def attachment(self, content, base: str) -> tuple[bytes, str | None]:
        if not content or len(content) != 1:
            raise unprocessable(f"{base}.content", "Exactly one content (the PDF) is required.", code="required")
        attachment = content[0].attachment
        at = f"{base}.content[0].attachment"
        if (attachment.contentType or "").split(";")[0].strip().lower() != "application/pdf":
            raise unprocessable(f"{at}.contentType", "The attachment must be application/pdf.", "not-pdf", "value")
        if attachment.data is None:
            raise unprocessable(f"{at}.data", "The PDF must be sent in data (base64).", code="required")
        pdf = bytes(attachment.data)
        if len(pdf) > self.max_document_bytes:
            raise refuse(
                413,
                "too-costly",
                f"The PDF is larger than {self.max_document_bytes} bytes.",
                f"{at}.data",
                "too-large",
            )
        if not pdf.startswith(b"%PDF-"):
            raise unprocessable(f"{at}.data", "The attachment is not a PDF file.", "not-pdf", "value")
        if attachment.size is not None and attachment.size != len(pdf):
            raise unprocessable(
                f"{at}.size", f"size says {attachment.size} bytes, data holds {len(pdf)}.", code="value"
            )
        if attachment.hash is not None and bytes(attachment.hash) != hashlib.sha1(pdf).digest():  # noqa: S324
            raise unprocessable(f"{at}.hash", "hash is not the SHA-1 of data.", code="value")
        return pdf, attachment.title


def identity(resource_type: str, row) -> tuple[str, str]:
    if resource_type == "Practitioner":
        return GLN_SYSTEM, row.gln
    if resource_type == "Consent":
        system, _, value = (row.dpi_consent_id or "").partition("|")
        return system, value
    return row.dpi_system, row.dpi_value


def is_primary_recipient(role) -> bool:
    """provision.actor.role is PRCP (v3 ParticipationType: primary information recipient)."""
    codings = role.coding if role is not None else None
    return any(c.code == PRIMARY_RECIPIENT and c.system in (None, PARTICIPATION_TYPE_SYSTEM) for c in codings or [])


def loinc_code(concept, base: str) -> tuple[str, str]:
    for j, coding in enumerate((concept.coding or []) if concept else []):
        if coding.system == LOINC_SYSTEM and coding.code:
            return coding.code, f"{base}.type.coding[{j}].code"
    raise unprocessable(
        f"{base}.type.coding", f"The document type must be coded in LOINC ({LOINC_SYSTEM}).", code="required"
    )


def display_of(concept) -> str:
    if concept is None:
        return ""
    return concept.text or next((c.display for c in concept.coding or [] if c.display), "")


def author_of(authors, writer: Writer, base: str) -> str:
    """The author as shown to the physician: the display given, else the Practitioner's name."""
    names = []
    for j, author in enumerate(authors or []):
        if author.display:
            names.append(author.display)
        elif (author.reference or "").startswith(("urn:", "Practitioner/")) or author.identifier is not None:
            physician = writer.resolve(author, "Practitioner", f"{base}.author[{j}]")
            names.append(physician.display_name)
    return ", ".join(names)


# -- the transaction Bundle ------------------------------------------------------------------------------------------
def read_transaction(bundle) -> list[Entry]:
    """Check the Bundle's envelope and validate every resource; all problems of the resources are listed at once."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        kind = bundle.get("resourceType") if isinstance(bundle, dict) else None
        raise refuse(400, "invalid", f"POST /fhir takes a transaction Bundle, not {kind!r}.", "Bundle.resourceType")
    if bundle.get("type") != "transaction":
        raise refuse(400, "not-supported", "Only Bundle.type transaction is accepted here.", "Bundle.type")
    raw_entries = bundle.get("entry") or []
    if not isinstance(raw_entries, list):
        raise refuse(400, "structure", "Bundle.entry must be a list.", "Bundle.entry")
    entries, issues, full_urls = [], [], set()
    for i, raw in enumerate(raw_entries):
        base = f"Bundle.entry[{i}]"
        if not isinstance(raw, dict):
            raise refuse(400, "structure", "A Bundle entry is a JSON object.", base)
        request_part = raw.get("request")
        if not isinstance(request_part, dict) or request_part.get("method") not in ("POST", "PUT"):
            raise refuse(400, "not-supported", "Each entry needs request.method POST or PUT.", f"{base}.request.method")
        if not isinstance(request_part.get("url"), str):
            raise refuse(400, "required", "Each entry needs request.url.", f"{base}.request.url")
        resource = raw.get("resource")
        if not isinstance(resource, dict):
            raise refuse(400, "required", "Each entry needs its resource.", f"{base}.resource")
        resource_type = resource.get("resourceType")
        if resource_type not in RESOURCE_TYPES:
            raise refuse(
                400,
                "not-supported",
                f"resourceType must be one of {', '.join(RESOURCE_TYPES)}, not {resource_type!r}.",
                f"{base}.resource.resourceType",
            )
        full_url = raw.get("fullUrl")
        if full_url is not None:
            if not isinstance(full_url, str) or full_url in full_urls:
                raise refuse(400, "invalid", "Each fullUrl must be a distinct URI.", f"{base}.fullUrl")
            full_urls.add(full_url)
        target = parse_request_url(request_part["url"], request_part["method"], resource_type, f"{base}.request.url")
        try:
            model = validate(resource, f"{base}.resource", (resource_type,))
        except FhirError as error:
            issues.extend(error.issues)
            continue
        if target.id is not None and model.id not in (None, target.id):
            raise refuse(
                400, "invalid", "The resource's id differs from the one of request.url.", f"{base}.resource.id"
            )
        entries.append(Entry(i, resource_type, model, target, f"{base}.resource", full_url))
    if issues:
        raise FhirError(400, *issues)
    return entries


def writer(client: str | None = None, ip: str | None = None) -> Writer:
    """The writer of this request's client, or of `client` (the `dpi import` command, outside any request)."""
    limit = current_app.config.get("MAX_DOCUMENT_BYTES", service.MAX_DOCUMENT_BYTES)
    if client is None:
        return Writer(client_name(), actor(), limit)
    return Writer(client, Actor(Role.DPI, ip=ip), limit)


def apply_transaction(bundle, bundle_writer: Writer) -> list[Written]:
    """Write a transaction Bundle whole or not at all, in dependency order; what each entry did, in its order."""
    entries = read_transaction(bundle)
    results: dict[int, Written] = {}
    with db.atomic():
        for entry in sorted(entries, key=lambda e: (RESOURCE_TYPES.index(e.resource_type), e.index)):
            results[entry.index] = bundle_writer.write(entry)
    return [results[entry.index] for entry in entries]


def transaction_response(results: list[Written]) -> dict:
    entries = [
        {
            "fullUrl": f"{base_url()}/{written.resource_type}/{written.id}",
            "response": {"status": written.status, "location": written.location, "etag": f'W/"{written.version}"'},
        }
        for written in results
    ]
    return {"resourceType": "Bundle", "type": "transaction-response", "entry": entries}


@bp.route("", methods=ALL_METHODS, strict_slashes=False)
def transaction():
    if request.method != "POST":
        raise MethodNotAllowed(valid_methods=["POST"], description="POST a transaction Bundle to /fhir.")
    return fhir_response(transaction_response(apply_transaction(read_body(), writer())))


# -- one resource: create, update, read, search ---------------------------------------------------------------------
def write_one(resource_type: str, target: Target):
    resource = validate(read_body(), resource_type, (resource_type,))
    if target.id is not None and resource.id not in (None, target.id):
        raise refuse(400, "invalid", "The resource's id differs from the one of the URL.", f"{resource_type}.id")
    with db.atomic():
        written = writer().write(Entry(0, resource_type, resource, target, resource_type))
    body = RESOURCE_WRITERS[resource_type](written.row)
    headers = {"Location": f"{base_url()}/{written.location}", "ETag": f'W/"{written.version}"'}
    return fhir_response(body, 201 if written.created else 200, headers)


@bp.route(f"/<{TYPES}:resource_type>", methods=["GET", "POST", "PUT"])
def type_level(resource_type: str):
    if request.method == "POST":
        return write_one(resource_type, Target())
    if request.method == "PUT":
        token = request.args.getlist("identifier")
        if len(token) != 1 or set(request.args) != {"identifier"}:
            raise refuse(400, "not-supported", f"A conditional update is PUT {resource_type}?identifier=system|value.")
        system, value = parse_token(token[0], "identifier")
        return write_one(resource_type, Target(system=system, value=value))
    return search(resource_type)


def search(resource_type: str):
    unknown = set(request.args) - {"identifier", "_format"}
    if unknown:
        raise refuse(400, "not-supported", f"Search by {', '.join(sorted(unknown))} is not supported here.")
    tokens = request.args.getlist("identifier")
    if len(tokens) != 1:
        raise refuse(400, "required", f"Search {resource_type} by identifier=system|value.", "identifier")
    system, value = parse_token(tokens[0], "identifier", system_required=False)
    return fhir_response(
        searchset(base_url(), resource_type, by_identifier(resource_type, system, value, client_name()))
    )


@bp.route(f"/<{TYPES}:resource_type>/<resource_id>", methods=["GET", "PUT"])
def instance_level(resource_type: str, resource_id: str):
    if request.method == "PUT":
        return write_one(resource_type, Target(id=resource_id))
    row = by_id(resource_type, resource_id, client_name())
    if row is None:
        foreign_document_probe(resource_type, resource_id)
        raise NotFound(f"No {resource_type} has this id.")
    headers = {"ETag": f'W/"{version_of(resource_type, row)}"'}
    return fhir_response(RESOURCE_WRITERS[resource_type](row), headers=headers)


def foreign_document_probe(resource_type: str, resource_id: str) -> None:
    """A client asking for another client's document gets 404 like for none, and the attempt is on the trail."""
    if resource_type != "DocumentReference":
        return
    document = Document.get_or_none(Document.public_id == resource_id.replace(".", "_"))
    if document is not None:
        audit.record(
            "fhir.foreign_document",
            actor_role=Role.DPI,
            ip=request.remote_addr,
            outcome="denied",
            object_type="document",
            object_id=document.id,
            details={"client": client_name()},
        )


@bp.get("/DocumentReference/<resource_id>/$delivery-status")
def delivery_status(resource_id: str):
    document = by_id("DocumentReference", resource_id, client_name())
    if document is None:
        foreign_document_probe("DocumentReference", resource_id)
        raise NotFound("No DocumentReference has this id.")
    gln = request.args.get("practitioner")
    if gln is not None:
        if "|" in gln:
            system, gln = parse_token(gln, "practitioner")
            if system != GLN_SYSTEM:
                raise refuse(
                    400, "value", f"practitioner is a GLN ({GLN_SYSTEM}|GLN or the GLN alone).", "practitioner"
                )
        if not gln_is_valid(gln):
            raise refuse(400, "value", "The GLN check digit is wrong.", "practitioner", "bad-gln")
    parameters = []
    for status in service.delivery_status(document, gln):
        part = [
            {"name": "practitioner", "valueIdentifier": {"system": GLN_SYSTEM, "value": status.gln}},
            {"name": "state", "valueCode": status.state},
        ]
        if status.reason:
            part.append({"name": "reason", "valueCode": status.reason})
        parameters.append({"name": "delivery", "part": part})
    return fhir_response({"resourceType": "Parameters", "parameter": parameters})


@bp.route("/<path:rest>", methods=ALL_METHODS)
def elsewhere(rest: str):
    """Everything else under /fhir answers an OperationOutcome too (the site's error pages are HTML)."""
    adapter = current_app.url_map.bind_to_environ(request.environ)
    allowed = []
    for method in ("GET", "POST", "PUT"):
        try:
            endpoint, _ = adapter.match(request.path, method=method)
        except HTTPException:
            continue
        if endpoint != "fhir.elsewhere":
            allowed.append(method)
    if allowed:
        raise MethodNotAllowed(valid_methods=allowed, description=f"{request.method} is not supported here.")
    raise NotFound("This server has no such resource type, operation or address.")


# The directory (Practitioner, PractitionerRole) and the trace (AuditEvent): routes on this blueprint.
from . import fhir_directory  # noqa: E402
