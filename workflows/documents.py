"""What happens to documents, stays and designations: every change advances or revokes the deliveries it concerns,
in the same transaction.

This module orchestrates; only workflows/engine.py writes a `state` column. Each function runs in one `db.atomic()`
(a savepoint inside a caller's transaction, e.g. a FHIR transaction Bundle), so a refusal writes nothing. Domain
refusals raise `TransitionRefused` with a stable reason code; the web and the FHIR API translate them.

"Why hasn't it reached this physician?" (`explain`) runs the delivery machine's own guards on a transient copy of
the delivery: the explanation and the machine cannot disagree.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from peewee import IntegrityError

from models import (
    Account,
    Delivery,
    Designation,
    Document,
    DocumentStatus,
    DocumentType,
    EnrollmentApplication,
    ManualAuthorization,
    Patient,
    Physician,
    Role,
    Stay,
    StayKind,
    db,
    gln_is_valid,
    utcnow,
)
from security import audit
from security.encryption import BlobStore, StoredBlob, keyring
from security.files import sniff_type

from . import engine
from .delivery import (
    AUTOMATIC,
    DELIVERY,
    LIVE,
    DeliveryState,
    advance,
    document_is_current,
    document_is_final,
    memoized,
    notifications_wanted,
    remember_designations,
    revocation_due,
    type_is_communicable,
)
from .engine import CHANGED_MEANWHILE, CONFLICT, FORBIDDEN, N_, SYSTEM, Actor, Reason, TransitionRefused

S = DeliveryState
MAX_DOCUMENT_BYTES = 20 * 1024 * 1024
LOINC_CODE = re.compile(r"\d{1,5}-\d")

# Who may call what (the DPI through the FHIR API, hospital staff through the web, the system's jobs and CLI).
RECEIVERS = frozenset({Role.DPI, Role.SYSTEM})
DESIGNATORS = frozenset({Role.DPI, Role.CLINICIAN, Role.SYSTEM})
RECALLERS = frozenset({Role.DPI, Role.CLINICIAN, Role.ADMINISTRATOR, Role.SYSTEM})
MANUAL_SENDERS = frozenset({Role.CLINICIAN})
CATALOGUE_EDITORS = frozenset({Role.ADMINISTRATOR, Role.SYSTEM})

# The step each delivery state waits for: its refusal is why the document has not gone further.
NEXT_STEP = {
    S.NEW: "create",
    S.FINALIZED: "classify",
    S.WITHHELD: "release",
    S.COMMUNICABLE: "consent",
    S.CONSENTED: "make_available",
    S.REVOKED: "reinstate",
    S.AVAILABLE: "notify",
}
REACHED = frozenset({S.AVAILABLE, S.NOTIFIED, S.CONSULTED})


class Settings:
    """Where the encrypted PDFs live and how large one may be (set by the app factory, or by tests)."""

    blob_dir: str | None = None
    max_bytes: int = MAX_DOCUMENT_BYTES


def configure(blob_dir: str, max_bytes: int = MAX_DOCUMENT_BYTES) -> None:
    Settings.blob_dir = blob_dir
    Settings.max_bytes = max_bytes


def blob_store() -> BlobStore:
    if Settings.blob_dir is None:
        raise RuntimeError("the document store is not configured (create_app calls documents.configure)")
    return BlobStore(Settings.blob_dir, keyring.require())


def blob_context(document: Document) -> str:
    return f"document:{document.public_id}"


def document_pdf(document: Document) -> bytes:
    """The document's PDF, decrypted and checked against the digest recorded when it arrived."""
    if document.blob_id is None:
        raise LookupError("this document has no PDF")
    pdf = blob_store().get(document.blob_id, blob_context(document))
    if hashlib.sha256(pdf).hexdigest() != document.sha256:
        raise ValueError("the stored PDF does not match its digest")
    return pdf


@dataclass(frozen=True)
class RecipientStatus:
    """Where one document stands for one physician (DESIGN §5 `$delivery-status`)."""

    gln: str
    state: str  # a delivery state, or "none" when no delivery exists
    reason: str | None  # a DESIGN §5 reason code while the document has not (fully) reached the physician


# -- helpers ----------------------------------------------------------------------------------------------------
# A client names a document by an identifier another DPI client already used: it is never changed, and nothing
# is said of it beyond this.
OTHER_CLIENT = Reason("other-client", N_("This identifier belongs to another client's document."))


def _refuse(code: str, text: str):
    raise TransitionRefused(Reason(code, text))


def _allow(actor: Actor, roles: frozenset[str]) -> None:
    if str(actor.role) not in roles:
        _refuse(FORBIDDEN, N_("Your role does not allow this action."))


def _audit(action: str, actor: Actor, object_type: str, object_id, **details) -> None:
    audit.record(
        action,
        actor_id=actor.account_id,
        actor_role=actor.role,
        ip=actor.ip,
        object_type=object_type,
        object_id=object_id,
        details=details,
    )


def _as(actor: Actor, trigger: str) -> Actor:
    """The actor if their role may fire `trigger` (so the audit trail names them), else the system."""
    spec = next(spec for spec in DELIVERY.transitions if spec.trigger == trigger)
    return actor if str(actor.role) in spec.roles else SYSTEM


def _insert_once(model, where, make):
    """(row, created): the row matching `where`, or a new one; two simultaneous inserts make one row."""
    row = model.get_or_none(where)
    if row is not None:
        return row, False
    try:
        with db.atomic():
            return make(), True
    except IntegrityError:  # the other one won; its row is ours too
        return model.get(where), False


def _update(delivery: Delivery, actor: Actor) -> Delivery:
    """Revoke the delivery if a fact it stood on is gone (in the name of whoever removed it), else advance it."""
    with memoized():  # the guards' lookups, once for the revocation check and every step of the advance
        return _update_now(delivery, actor)


def _update_now(delivery: Delivery, actor: Actor) -> Delivery:
    reason = revocation_due(delivery)
    if reason is not None:
        try:
            return engine.fire(DELIVERY, delivery, "revoke", _as(actor, "revoke"), reason=reason.code)
        except TransitionRefused as refused:
            if refused.reason.code != CONFLICT:
                raise
            delivery = Delivery.get_by_id(delivery.id)
    return advance(delivery)


def _creation_refused(delivery: Delivery, actor: Actor) -> Reason | None:
    flow = engine.Flow(workflow=DELIVERY, row=delivery, actor=actor, data=None, state=DELIVERY.initial)
    return DELIVERY.first_failure(DELIVERY.spec("create", DELIVERY.initial), flow)


def _deliver(document: Document, physician_id: int, actor: Actor, *, existing: bool = True) -> Delivery | None:
    """Bring (document, physician) up to date: the existing delivery moves on or is revoked; a missing one is
    created if the rules allow it (final, current document; physician designated or manually authorized).
    `existing=False`: the caller knows no delivery exists yet (a document inserted in this transaction)."""
    with memoized():  # creation guards, the creation itself and the advance ask the same facts: once each
        return _deliver_now(document, physician_id, actor, existing)


def _deliver_now(document: Document, physician_id: int, actor: Actor, existing: bool) -> Delivery | None:
    delivery = None
    if existing:
        delivery = Delivery.get_or_none((Delivery.document == document.id) & (Delivery.physician == physician_id))
    if delivery is None:
        delivery = Delivery(document=document, physician=physician_id)
        creator = _as(actor, "create")
        if _creation_refused(delivery, creator) is not None:
            return None
        try:  # created and brought as far as the rules allow, in one write (its own savepoint)
            return engine.settle(DELIVERY, delivery, AUTOMATIC, start=("create", creator))
        except IntegrityError:  # created meanwhile by another request: bring that one up to date
            delivery = Delivery.get((Delivery.document == document.id) & (Delivery.physician == physician_id))
    return _update(delivery, actor)


def _moved(deliveries: Iterable[Delivery], actor: Actor) -> int:
    moved = 0
    for delivery in deliveries:
        before = delivery.state
        if _update(delivery, actor).state != before:
            moved += 1
    return moved


# -- patients, stays, practitioners (reference data from the DPI) -------------------------------------------------
def _identifier(system: str, value: str) -> tuple[str, str]:
    system, value = (system or "").strip(), (value or "").strip()
    if not system or not value:
        _refuse("missing-identifier", N_("An identifier (system and value) is required."))
    return system, value


def record_patient(*, system: str, value: str, family_name: str, given_name: str, birth_date: date | None) -> Patient:
    """Idempotent on the DPI's identifier: creates the patient, or updates the names and the birth date."""
    system, value = _identifier(system, value)
    fields = {"family_name": family_name.strip(), "given_name": given_name.strip(), "birth_date": birth_date}
    with db.atomic():
        patient, created = _insert_once(
            Patient,
            (Patient.dpi_system == system) & (Patient.dpi_value == value),
            lambda: Patient.create(dpi_system=system, dpi_value=value, **fields),
        )
        if not created and any(getattr(patient, k) != v for k, v in fields.items()):
            Patient.update(fields).where(Patient.id == patient.id).execute()
            patient = Patient.get_by_id(patient.id)
    return patient


def record_stay(
    *,
    system: str,
    value: str,
    patient: Patient,
    kind: str,
    started_at: datetime | None,
    ended_at: datetime | None,
) -> Stay:
    """Idempotent on the DPI's identifier; a stay never moves to another patient."""
    system, value = _identifier(system, value)
    if kind not in StayKind.CHOICES:
        _refuse("bad-stay-kind", N_("A stay is either a hospital stay or an ambulatory episode."))
    fields = {"kind": kind, "started_at": started_at, "ended_at": ended_at}
    with db.atomic():
        stay, created = _insert_once(
            Stay,
            (Stay.dpi_system == system) & (Stay.dpi_value == value),
            lambda: Stay.create(dpi_system=system, dpi_value=value, patient=patient, **fields),
        )
        if stay.patient_id != patient.id:
            _refuse("stay-patient-mismatch", N_("This stay belongs to another patient."))
        if not created and any(getattr(stay, k) != v for k, v in fields.items()):
            Stay.update(fields).where(Stay.id == stay.id).execute()
            stay = Stay.get_by_id(stay.id)
    return stay


def record_practitioner(*, gln: str, family_name: str, given_name: str, email: str | None = None) -> Physician:
    """Idempotent on the GLN. Once the physician has an account, "Mon profil" is theirs: the DPI changes nothing."""
    gln = (gln or "").strip()
    if not gln_is_valid(gln):
        _refuse("bad-gln", N_("The GLN check digit is wrong."))
    fields = {"last_name": family_name.strip(), "first_name": given_name.strip()}
    if email:
        fields["email"] = email.strip()
    with db.atomic():
        physician, created = _insert_once(
            Physician,
            Physician.gln == gln,
            lambda: Physician.create(gln=gln, **{"email": "", **fields}),
        )
        if created or Account.select().where(Account.physician == physician.id).exists():
            return physician
        if any(getattr(physician, k) != v for k, v in fields.items()):
            Physician.update(fields).where(Physician.id == physician.id).execute()
            physician = Physician.get_by_id(physician.id)
    return physician


# -- designations and manual sends -------------------------------------------------------------------------------
def record_designation(
    *,
    stay: Stay,
    physician: Physician,
    authorized: bool,
    active: bool = True,
    source: str = "dpi",
    consent_id: str | None = None,
    actor: Actor,
) -> Designation:
    """The patient designates `physician` for `stay` and authorizes (or not) electronic sending; `active=False`
    withdraws the designation. Then every document of the stay is brought up to date for that physician."""
    _allow(actor, DESIGNATORS)
    now = utcnow()
    with db.atomic():
        designation, created = _insert_once(
            Designation,
            (Designation.stay == stay.id) & (Designation.physician == physician.id),
            lambda: Designation.create(
                stay=stay,
                physician=physician,
                authorized=authorized,
                source=source,
                dpi_consent_id=consent_id,
                recorded_by=actor.account_id,
                recorded_at=now,
                revoked_at=None if active else now,
                revocation_reason=None if active else "withdrawn",
            ),
        )
        was = None if created else (designation.revoked_at is None, designation.authorized)
        if not created and was != (active, authorized):
            Designation.update(
                authorized=authorized,
                source=source,
                dpi_consent_id=consent_id or designation.dpi_consent_id,
                recorded_by=actor.account_id,
                recorded_at=now,
                revoked_at=None if active else now,
                revocation_reason=None if active else "withdrawn",
            ).where(Designation.id == designation.id).execute()
            designation = Designation.get_by_id(designation.id)
        if was != (active, authorized):
            _audit(
                "designation.record" if active else "designation.revoke",
                actor,
                "designation",
                designation.id,
                stay=stay.public_id,
                gln=physician.gln,
                authorized=authorized,
                source=source,
            )
        for document in Document.of_stay(stay.id):
            _deliver(document, physician.id, actor)
    return designation


def authorize_manual_send(
    *, document: Document, physician: Physician, patient_agreed_at: datetime, note: str, actor: Actor
) -> Delivery:
    """A clinician sends one document to one physician with the patient's explicit agreement, recorded."""
    _allow(actor, MANUAL_SENDERS)
    if actor.account_id is None:
        _refuse(FORBIDDEN, N_("Your role does not allow this action."))
    if patient_agreed_at > utcnow() + timedelta(minutes=5):
        _refuse("agreement-in-future", N_("The patient's agreement cannot be dated in the future."))
    with db.atomic():
        document = Document.get_by_id(document.id)
        flow = engine.Flow(
            workflow=DELIVERY, row=Delivery(document=document, physician=physician), actor=actor, data=None
        )
        for guard in (document_is_final, document_is_current, type_is_communicable):
            reason = guard(flow)
            if reason is not None:
                raise TransitionRefused(reason)
        authorization, created = _insert_once(
            ManualAuthorization,
            (ManualAuthorization.document == document.id)
            & (ManualAuthorization.physician == physician.id)
            & ManualAuthorization.revoked_at.is_null(),
            lambda: ManualAuthorization.create(
                document=document,
                physician=physician,
                recorded_by=actor.account_id,
                patient_agreed_at=patient_agreed_at,
                note=note.strip(),
            ),
        )
        if created:
            _audit(
                "document.manual_send",
                actor,
                "document",
                document.id,
                gln=physician.gln,
                authorization=authorization.id,
            )
        delivery = _deliver(document, physician.id, actor)
    return delivery


def account_activated(account: Account) -> int:
    """The physician's deliveries that waited for an active account reach "Mes documents"; returns how many."""
    if account.physician_id is None:
        return 0
    with db.atomic():
        return _moved(Delivery.of_physician(account.physician_id, [S.CONSENTED]), SYSTEM)


# -- documents ---------------------------------------------------------------------------------------------------
def _check_pdf(pdf: bytes) -> None:
    if sniff_type(pdf) != "application/pdf":
        _refuse("not-pdf", N_("The document is not a PDF file."))
    if len(pdf) > Settings.max_bytes:
        _refuse("too-large", N_("The document is larger than allowed."))


def receive_document(
    *,
    dpi_system: str,
    dpi_value: str,
    patient: Patient,
    stay: Stay,
    type_code: str,
    title: str,
    author: str,
    status: str,
    pdf: bytes | None,
    replaces: Document | None = None,
    client: str | None = None,
    actor: Actor,
) -> tuple[Document, bool]:
    """A document from the DPI; the same identifier again updates it in place (returns created=False).

    A final document starts one delivery per physician designated for its stay (authorized or not: the delivery
    then says why it waits) or manually authorized. A final new version supersedes the one it replaces and revokes
    its deliveries. A preliminary version only takes its place once it is final: until then the physician keeps
    the version they have.
    """
    _allow(actor, RECEIVERS)
    dpi_system, dpi_value = _identifier(dpi_system, dpi_value)
    document_type = DocumentType.get_or_none(DocumentType.loinc == (type_code or "").strip())
    if document_type is None:
        _refuse("unknown-type", N_("This document type is not in the catalogue."))
    if stay.patient_id != patient.id:
        _refuse("stay-patient-mismatch", N_("This stay belongs to another patient."))
    if status not in (DocumentStatus.PRELIMINARY, DocumentStatus.FINAL):
        _refuse("bad-status", N_("A document is either preliminary or final."))
    if pdf is not None:
        _check_pdf(pdf)
    digest = hashlib.sha256(pdf).hexdigest() if pdf is not None else None
    store, new_blob = None, None
    try:
        with db.atomic(), audit.batch():  # the document's events and its deliveries' chained in one append
            existing = Document.by_dpi_id(dpi_system, dpi_value)
            if existing is not None and client is not None and existing.dpi_client != client:
                raise TransitionRefused(OTHER_CLIENT)
            if existing is not None:
                _check_update(existing, patient, stay, document_type, status, digest, replaces)
            if replaces is not None:
                _check_replaces(replaces, patient, existing)
            if status == DocumentStatus.FINAL and pdf is None and (existing is None or existing.blob_id is None):
                _refuse("no-pdf", N_("A final document needs its PDF."))

            document = existing or Document(dpi_system=dpi_system, dpi_value=dpi_value, patient=patient, stay=stay)
            before = _facts(document) if existing is not None else None
            if digest is not None and (existing is None or existing.sha256 != digest):
                store = blob_store()
                new_blob = store.put(pdf, blob_context(document))
                document.blob_id, document.sha256, document.size_bytes = new_blob, digest, len(pdf)
            document.type = document_type
            document.title = (title or "").strip() or document_type.name_fr
            document.author = (author or "").strip()
            document.status = status
            document.dpi_client = client or document.dpi_client
            if replaces is not None:
                document.replaces = replaces
                document.version_number = replaces.version_number + 1
            if _facts(document) != before:
                document.updated_at = utcnow()
            if existing is None:
                try:
                    with db.atomic():
                        document.save(force_insert=True)
                except IntegrityError:
                    raise TransitionRefused(CHANGED_MEANWHILE) from None
            elif _facts(document) != before:
                document.save()
            if existing is None or _facts(document) != before:
                _audit(
                    "document.receive" if existing is None else "document.update",
                    actor,
                    "document",
                    document.id,
                    status=status,
                    type=document_type.loinc,
                    version=document.version_number,
                    sha256=document.sha256,
                    client=client,
                )
            if document.status == DocumentStatus.FINAL:
                _start_deliveries(document, actor, new=existing is None)
    except BaseException:
        if new_blob is not None:
            store.delete(new_blob)  # the database never referred to it
        raise
    # A preliminary PDF replaced in place is not deleted here: the orphan sweep removes it once no row refers to it.
    # Deleting it now could take it from under a backup whose snapshot still names it (jobs/backup.py).
    return document, existing is None


def _facts(document: Document) -> tuple:
    """What the DPI says about a document: a repeated message that changes none of it writes nothing."""
    return tuple(
        document.__data__.get(name)
        for name in ("type", "title", "author", "status", "blob_id", "replaces", "version_number", "dpi_client")
    )


def _check_update(existing, patient, stay, document_type, status, digest, replaces) -> None:
    if existing.patient_id != patient.id or existing.stay_id != stay.id:
        _refuse("document-mismatch", N_("This document belongs to another patient or stay."))
    if replaces is not None and existing.replaces_id not in (None, replaces.id):
        _refuse("document-mismatch", N_("This document already replaces another one."))
    if existing.status != DocumentStatus.FINAL:
        return
    # What physicians may have read never changes under them: a correction is a new version that replaces it.
    if (
        status != DocumentStatus.FINAL
        or existing.type_id != document_type.id
        or (digest is not None and digest != existing.sha256)
    ):
        _refuse("final-document-changed", N_("A final document cannot change: send a new version that replaces it."))


def _check_replaces(replaces: Document, patient: Patient, existing: Document | None) -> None:
    if existing is not None and replaces.id == existing.id:
        _refuse("document-mismatch", N_("A document cannot replace itself."))
    if replaces.patient_id != patient.id:
        _refuse("document-mismatch", N_("The replaced document belongs to another patient."))
    others = Document.select().where(Document.replaces == replaces.id)
    if existing is not None:
        others = others.where(Document.id != existing.id)
    if others.exists():
        _refuse("already-replaced", N_("A newer version already replaces this document."))


def _start_deliveries(document: Document, actor: Actor, *, new: bool = False) -> None:
    """`new`: the document was inserted by this transaction, so nothing refers to it yet (no manual authorization,
    no delivery): those lookups are skipped."""
    if document.replaces_id is not None:
        now = utcnow()
        Document.update(superseded_at=now, updated_at=now).where(
            (Document.id == document.replaces_id) & Document.superseded_at.is_null()
        ).execute()
        _moved(Delivery.of_document_in(document.replaces_id, LIVE), actor)
    with memoized():
        designations = list(Designation.in_force(document.stay_id))
        remember_designations(document.stay_id, designations, no_manual_for=document.id if new else None)
        recipients = {d.physician_id for d in designations}
        if not new:
            recipients |= {m.physician_id for m in ManualAuthorization.in_force(document.id)}
            recipients |= {d.physician_id for d in Delivery.of_document(document.id)}
        for physician_id in sorted(recipients):
            _deliver(document, physician_id, actor, existing=not new)


def recall_document(document: Document, *, actor: Actor) -> int:
    """The hospital recalls a document: it leaves every "Mes documents" at once. Returns how many deliveries were
    revoked (0 when it was already recalled)."""
    _allow(actor, RECALLERS)
    with db.atomic():
        now = utcnow()
        recalled = (
            Document.update(recalled_at=now, updated_at=now)
            .where((Document.id == document.id) & Document.recalled_at.is_null())
            .execute()
        )
        if recalled:
            document.recalled_at = now
            _audit("document.recall", actor, "document", document.id)
        return _moved(Delivery.of_document_in(document.id, LIVE), actor)


# -- the catalogue of document types --------------------------------------------------------------------------
def set_type_communicable(document_type: DocumentType, communicable: bool, *, actor: Actor) -> int:
    """Administrators classify a type. Its waiting deliveries follow: made communicable, the withheld ones are
    released (and reach their physicians); made non-communicable, those not yet classified are withheld. Documents
    already past the classification are not recalled: recalling one is the hospital's explicit act
    (`recall_document`). Returns how many deliveries moved."""
    _allow(actor, CATALOGUE_EDITORS)
    with db.atomic():
        changed = (
            DocumentType.update(communicable=communicable)
            .where((DocumentType.id == document_type.id) & (DocumentType.communicable != communicable))
            .execute()
        )
        document_type.communicable = communicable
        if changed:
            _audit(
                "document_type.communicable",
                actor,
                "document_type",
                document_type.id,
                loinc=document_type.loinc,
                communicable=communicable,
            )
        waiting = [S.WITHHELD, S.FINALIZED] if communicable else [S.FINALIZED]
        return _moved(Delivery.of_type(document_type.id, waiting), SYSTEM)


def add_document_type(*, loinc: str, name_fr: str, name_en: str, communicable: bool, actor: Actor) -> DocumentType:
    """Administrators extend the catalogue with a LOINC document type (names in French and English)."""
    _allow(actor, CATALOGUE_EDITORS)
    loinc, name_fr, name_en = (loinc or "").strip(), (name_fr or "").strip(), (name_en or "").strip()
    if not LOINC_CODE.fullmatch(loinc):
        _refuse("bad-loinc", N_("A LOINC code is up to five digits, a hyphen and a check digit (e.g. 18842-5)."))
    if not name_fr or not name_en:
        _refuse("name-required", N_("Give the type's name in French and in English."))
    with db.atomic():
        document_type, created = _insert_once(
            DocumentType,
            DocumentType.loinc == loinc,
            lambda: DocumentType.create(loinc=loinc, name_fr=name_fr, name_en=name_en, communicable=communicable),
        )
        if not created:
            _refuse("type-exists", N_("This LOINC code is already in the catalogue."))
        _audit(
            "document_type.add",
            actor,
            "document_type",
            document_type.id,
            loinc=loinc,
            communicable=communicable,
        )
    return document_type


# -- "Why haven't I received it?" --------------------------------------------------------------------------------
def explain(document: Document, physician: Physician) -> Reason | None:
    """The first unmet rule between this document and this physician (DESIGN §5 codes), or None once it reached
    them (available — with notifications wanted —, notified or consulted).

    The delivery's path is walked forward on a transient copy, with the machine's own guards: at each state, a
    fact that would make the machine revoke it, then the document's own facts (final, current, communicable) while
    it is not classified yet, then the guards of the step it waits for. Nothing is written.
    """
    delivery = Delivery.get_or_none((Delivery.document == document.id) & (Delivery.physician == physician.id))
    state = S(delivery.state) if delivery is not None else S.NEW
    revoked_reason = delivery.revoked_reason if delivery is not None else None
    notified = delivery is not None and delivery.notified_at is not None
    for _step in range(len(S) + 1):  # each state at most once: the path has no loop forward
        if state in REACHED:
            if state == S.AVAILABLE and not notified:
                return notifications_wanted(_flow(document, physician, state, revoked_reason))
            return None
        flow = _flow(document, physician, state, revoked_reason)
        reason = revocation_due(flow.row)
        if reason is not None:
            return reason
        if state in (S.NEW, S.FINALIZED, S.WITHHELD, S.REVOKED):
            for guard in (document_is_final, document_is_current, type_is_communicable):
                reason = guard(flow)
                if reason is not None:
                    return reason
        spec = DELIVERY.spec(NEXT_STEP[state], state)
        reason = DELIVERY.first_failure(spec, flow)
        if reason is not None:
            return reason
        state, revoked_reason = S(spec.dest), None
    raise AssertionError("the delivery path loops")  # pragma: no cover


def _flow(document: Document, physician: Physician, state: str, revoked_reason: str | None) -> engine.Flow:
    # A transient copy, never saved: it lets the guards ask about a delivery that is not (or not yet) in this state.
    row = Delivery(document=document, physician=physician, state=str(state), revoked_reason=revoked_reason)
    return engine.Flow(workflow=DELIVERY, row=row, actor=SYSTEM, data=None, state=str(state))


def delivery_status(document: Document, gln: str | None = None) -> list[RecipientStatus]:
    """Where the document stands for each recipient (every physician designated for its stay or manually
    authorized, and any with a delivery), or only for the physician with that GLN, known to the portal or not."""
    if gln is not None:
        physician = Physician.get_or_none(Physician.gln == gln)
        if physician is None:
            return [RecipientStatus(gln, "none", _unknown_physician_reason(document))]
        physicians = [physician]
    else:
        ids = {d.physician_id for d in Designation.in_force(document.stay_id)}
        ids |= {m.physician_id for m in ManualAuthorization.in_force(document.id)}
        ids |= {d.physician_id for d in Delivery.of_document(document.id)}
        physicians = list(Physician.select().where(Physician.id.in_(list(ids))).order_by(Physician.gln)) if ids else []
    states = {
        d.physician_id: d.state
        for d in Delivery.of_document(document.id).where(Delivery.physician.in_([p.id for p in physicians]))
    }
    statuses = []
    for physician in physicians:
        reason = explain(document, physician)
        statuses.append(RecipientStatus(physician.gln, states.get(physician.id, "none"), reason and reason.code))
    return statuses


def _unknown_physician_reason(document: Document) -> str:
    """A GLN the portal does not know: the document's own facts first, then: nobody designated them."""
    flow = _flow(document, Physician(gln=""), S.NEW, None)
    for guard in (document_is_final, document_is_current, type_is_communicable):
        reason = guard(flow)
        if reason is not None:
            return reason.code
    return "not-designated"


# -- orphan blobs ------------------------------------------------------------------------------------------------
# Every column that holds a blob id: a file named in none of them is an orphan. Orphans come from PDFs stored by a
# transaction Bundle that rolled back after `receive_document` returned (a later entry failed), preliminary PDFs
# replaced inside such a Bundle, and uploads whose request died between the write and the commit.
BLOB_REFERENCES = (Document.blob_id, EnrollmentApplication.id_copy_blob)
# Far longer than any transaction: the row naming a younger blob may not be committed yet.
ORPHAN_MIN_AGE = timedelta(hours=1)
SWEEP_BATCH = 500  # blob ids looked up per query


def sweep_orphan_blobs(
    older_than: timedelta = ORPHAN_MIN_AGE,
    *,
    blob_dir: str | None = None,
    now: datetime | None = None,
    batch: int = SWEEP_BATCH,
) -> dict[str, int]:
    """Delete the blob files no row refers to, once older than `older_than` (so that a blob whose transaction is
    still under way is never touched), and the leftovers of writes that never finished. The store's listing is
    streamed and checked against every column of BLOB_REFERENCES `batch` ids at a time. Returns how many of each
    were deleted. `blob_dir`: the store's folder (default: the configured one)."""
    store = BlobStore(blob_dir, keyring.require()) if blob_dir else blob_store()
    cutoff = ((now or utcnow()) - older_than).replace(tzinfo=UTC).timestamp()
    counts = {"orphan_blobs_deleted": 0, "unfinished_blobs_deleted": 0}
    candidates: list[StoredBlob] = []
    for stored in store.listing():
        if stored.modified >= cutoff:
            continue
        if not stored.complete:
            store.discard(stored)
            counts["unfinished_blobs_deleted"] += 1
            continue
        candidates.append(stored)
        if len(candidates) >= batch:
            counts["orphan_blobs_deleted"] += _discard_orphans(store, candidates)
            candidates = []
    if candidates:
        counts["orphan_blobs_deleted"] += _discard_orphans(store, candidates)
    return counts


def _discard_orphans(store: BlobStore, candidates: list[StoredBlob]) -> int:
    """Delete those of `candidates` no column names. A blob old enough to be a candidate never gains a reference
    (every write names a blob it has just stored), so what is unreferenced now stays so."""
    ids = [c.blob_id for c in candidates]
    referenced: set[str] = set()
    for column in BLOB_REFERENCES:
        query = column.model.select(column).where(column.in_(ids))
        referenced.update(value for (value,) in query.tuples())
    orphans = [c for c in candidates if c.blob_id not in referenced]
    for orphan in orphans:
        store.discard(orphan)
    return len(orphans)
