"""The document service (workflows/documents.py): DPI facts in, deliveries advanced or revoked in the same
transaction, and "why hasn't it reached this physician?" answered with the machine's own guards.

Every scenario of DESIGN §4.2 ends with the same two checks: `explain()` names the rule the machine itself gives
when the delivery's next step is refused, and `delivery_status()` reports it with the state.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest

from models import (
    Account,
    AuditEvent,
    Delivery,
    Designation,
    Document,
    DocumentType,
    ManualAuthorization,
    NotificationMode,
    Patient,
    Physician,
    Role,
    Stay,
    TransitionLog,
    gln_with_check_digit,
    utcnow,
)
from models.documents import SEED_DOCUMENT_TYPES
from security.encryption import DecryptionError
from tests.conftest import _empty_tables
from workflows import ACCOUNT, DELIVERY, SYSTEM, Actor, Reason, TransitionRefused, documents, engine, may
from workflows.documents import NEXT_STEP, RecipientStatus
from workflows.login import set_own_password

from .conftest import DISCHARGE_SUMMARY, PROGRESS_NOTE

DPI = Actor(Role.DPI, ip="10.1.2.3")
PATIENTS = "urn:oid:2.16.756.5.30.1.127.3.10.3"
STAYS = "urn:oid:2.16.756.5.30.1.127.3.10.2"
DOCUMENTS = "urn:oid:2.16.756.5.30.1.127.3.10.1"
LAB_REPORT = "11502-2"


def pdf_bytes(text: str = "Lettre de sortie") -> bytes:
    body = f"BT /F1 12 Tf 72 760 Td ({text}) Tj ET".encode()
    head = b"%PDF-1.4\n1 0 obj\n<< /Length " + str(len(body)).encode() + b" >>\nstream\n"
    return head + body + b"\nendstream\nendobj\n%%EOF\n"


PDF = pdf_bytes()


# -- fixtures ----------------------------------------------------------------------------------------------------
@pytest.fixture
def blob_dir(tmp_path):
    """The document store in a temporary folder (the app factory configures the real one)."""
    saved = (documents.Settings.blob_dir, documents.Settings.max_bytes)
    folder = tmp_path / "blobs"
    documents.configure(str(folder))
    yield folder
    documents.Settings.blob_dir, documents.Settings.max_bytes = saved


@pytest.fixture
def catalogue(database):
    """The catalogue is reference data kept between tests: every change is undone afterwards."""
    yield
    _empty_tables(database)  # the documents of an added type go before it
    DocumentType.delete().where(DocumentType.loinc.not_in([t[0] for t in SEED_DOCUMENT_TYPES])).execute()
    for loinc, _fr, _en, communicable in SEED_DOCUMENT_TYPES:
        DocumentType.update(communicable=communicable).where(DocumentType.loinc == loinc).execute()


@pytest.fixture
def hug(database, blob_dir, catalogue, make_physician, make_account):
    """The DPI's side of a scenario: patients, stays, designations, documents, through the service layer."""

    class Hug:
        counter = iter(range(1, 10_000))

        def patient(self, value=None) -> Patient:
            n = next(self.counter)
            return documents.record_patient(
                system=PATIENTS,
                value=value or f"P-{n}",
                family_name="Martin",
                given_name="Jeanne",
                birth_date=dt.date(1948, 2, 11),
            )

        def stay(self, patient=None, value=None, kind="inpatient") -> Stay:
            n = next(self.counter)
            return documents.record_stay(
                system=STAYS,
                value=value or f"S-{n}",
                patient=patient or self.patient(),
                kind=kind,
                started_at=dt.datetime(2026, 3, 1, 8, 0),
                ended_at=None,
            )

        def designate(self, stay, physician, *, authorized=True, active=True, actor=DPI) -> Designation:
            return documents.record_designation(
                stay=stay, physician=physician, authorized=authorized, active=active, actor=actor
            )

        def send(self, stay, *, value=None, loinc=DISCHARGE_SUMMARY, status="final", pdf=PDF, **kw) -> Document:
            n = next(self.counter)
            document, _created = documents.receive_document(
                dpi_system=DOCUMENTS,
                dpi_value=value or f"DOC-{n}",
                patient=stay.patient,
                stay=stay,
                type_code=loinc,
                title=kw.pop("title", "Lettre de sortie"),
                author="Dr Denis Clinicien",
                status=status,
                pdf=pdf,
                actor=kw.pop("actor", DPI),
                **kw,
            )
            return document

        def physician(self, account="active", **fields) -> Physician:
            """A physician known to the portal; account=None: no myHUG account yet."""
            physician = make_physician(**fields)
            if account is not None:
                make_account(Role.PHYSICIAN, physician=physician, state=account)
            return physician

    return Hug()


def delivery_of(document, physician) -> Delivery | None:
    return Delivery.get_or_none((Delivery.document == document.id) & (Delivery.physician == physician.id))


def state_of(document, physician) -> str:
    delivery = delivery_of(document, physician)
    return delivery.state if delivery else "none"


def machine_reason(document, physician) -> str | None:
    """What the delivery machine itself says: the revocation's reason, or why its next step is refused now."""
    delivery = delivery_of(document, physician) or Delivery(document=document, physician=physician, state="new")
    if delivery.state == "revoked" and may(DELIVERY, delivery, "reinstate", SYSTEM) is not None:
        return delivery.revoked_reason
    step = NEXT_STEP.get(delivery.state)
    if step is None:
        return None
    if delivery.id is None:
        flow = engine.Flow(workflow=DELIVERY, row=delivery, actor=SYSTEM, data=None, state="new")
        reason = DELIVERY.first_failure(DELIVERY.spec("create", "new"), flow)
    else:
        reason = may(DELIVERY, delivery, step, SYSTEM)
    return reason.code if reason else None


def reason_of(document, physician) -> str | None:
    reason = documents.explain(document, physician)
    assert reason is None or isinstance(reason, Reason)
    return reason.code if reason else None


def assert_explained(document, physician, state: str, code: str | None) -> None:
    """The delivery is in `state`; explain(), delivery_status() and the machine all give `code`."""
    document = Document.get_by_id(document.id)
    assert state_of(document, physician) == state
    assert reason_of(document, physician) == code
    assert documents.delivery_status(document, physician.gln) == [RecipientStatus(physician.gln, state, code)]
    if state not in ("notified", "consulted"):
        assert machine_reason(document, physician) == code


def visible(physician) -> set[int]:
    return {d.document_id for d in Delivery.visible_to(physician.id)}


def written() -> tuple:
    """Every table the service writes, and the audit trail."""
    models = (Patient, Stay, Physician, Designation, Document, Delivery, ManualAuthorization, AuditEvent)
    return (*(m.select().count() for m in models), TransitionLog.select().count())


def blobs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.fixture
def refused_cleanly(blob_dir):
    """`with refused_cleanly("code"):` the block is refused with that reason, and nothing is written anywhere."""
    from contextlib import contextmanager

    @contextmanager
    def check(code: str):
        before, files = written(), blobs(blob_dir)
        with pytest.raises(TransitionRefused) as raised:
            yield raised
        assert raised.value.reason.code == code
        assert written() == before
        assert blobs(blob_dir) == files

    return check


# -- patients, stays, practitioners --------------------------------------------------------------------------------
def test_record_patient_is_idempotent_and_updates_the_names(hug):
    first = hug.patient("P-100234")
    again = documents.record_patient(
        system=PATIENTS, value="P-100234", family_name="Martin-Favre", given_name="Jeanne", birth_date=None
    )
    assert again.id == first.id
    assert Patient.select().count() == 1
    assert (again.family_name, again.birth_date) == ("Martin-Favre", None)


@pytest.mark.parametrize(("system", "value"), [("", "P-1"), (PATIENTS, "  ")])
def test_record_patient_needs_an_identifier(hug, refused_cleanly, system, value):
    with refused_cleanly("missing-identifier"):
        documents.record_patient(system=system, value=value, family_name="X", given_name="Y", birth_date=None)


def test_record_stay_is_idempotent(hug):
    patient = hug.patient()
    first = hug.stay(patient, "S-1")
    again = documents.record_stay(
        system=STAYS,
        value="S-1",
        patient=patient,
        kind="ambulatory",
        started_at=None,
        ended_at=dt.datetime(2026, 3, 4),
    )
    assert again.id == first.id and Stay.select().count() == 1
    assert (again.kind, again.ended_at) == ("ambulatory", dt.datetime(2026, 3, 4))


def test_a_stay_never_moves_to_another_patient(hug, refused_cleanly):
    hug.stay(hug.patient(), "S-1")
    other = hug.patient()
    with refused_cleanly("stay-patient-mismatch"):
        documents.record_stay(
            system=STAYS, value="S-1", patient=other, kind="inpatient", started_at=None, ended_at=None
        )


def test_record_stay_refuses_an_unknown_kind(hug, refused_cleanly):
    patient = hug.patient()
    with refused_cleanly("bad-stay-kind"):
        documents.record_stay(
            system=STAYS, value="S-9", patient=patient, kind="day-care", started_at=None, ended_at=None
        )


def test_record_practitioner_is_idempotent_on_the_gln(hug):
    gln = gln_with_check_digit("760100012345")
    first = documents.record_practitioner(gln=gln, family_name="Favre", given_name="Marc")
    again = documents.record_practitioner(gln=gln, family_name="Favre", given_name="Marc", email="marc@example.ch")
    assert again.id == first.id and Physician.select().count() == 1
    assert (again.last_name, again.email) == ("Favre", "marc@example.ch")


def test_record_practitioner_never_overwrites_the_profile_of_a_physician_with_an_account(hug):
    physician = hug.physician(email="own@example.ch", last_name="Dupont")
    again = documents.record_practitioner(
        gln=physician.gln, family_name="Dupond", given_name="X", email="dpi@example.ch"
    )
    assert again.id == physician.id
    stored = Physician.get_by_id(physician.id)
    assert (stored.email, stored.last_name, stored.practice_address) == (
        "own@example.ch",
        "Dupont",
        physician.practice_address,
    )


def test_record_practitioner_checks_the_gln(hug, refused_cleanly):
    with refused_cleanly("bad-gln"):
        documents.record_practitioner(gln="7601000123450", family_name="Favre", given_name="Marc")


# -- designations ---------------------------------------------------------------------------------------------------
def test_record_designation_is_idempotent(hug):
    stay, physician = hug.stay(), hug.physician()
    first = hug.designate(stay, physician)
    events = AuditEvent.select().count()
    again = hug.designate(stay, physician)
    assert again.id == first.id and Designation.select().count() == 1
    assert AuditEvent.select().count() == events  # nothing changed, nothing to record


@pytest.mark.parametrize("role", [Role.PHYSICIAN, Role.VALIDATOR, Role.ADMINISTRATOR])
def test_record_designation_refused_to_other_roles(hug, refused_cleanly, role):
    stay, physician = hug.stay(), hug.physician()
    with refused_cleanly("forbidden"):
        hug.designate(stay, physician, actor=Actor(role, 1))


# -- documents: storage and idempotency ---------------------------------------------------------------------------
def test_a_document_is_stored_encrypted(hug, blob_dir):
    document = hug.send(hug.stay())

    [blob] = blobs(blob_dir)
    assert b"%PDF" not in blob.read_bytes()
    assert blob.name == document.blob_id
    assert documents.document_pdf(document) == PDF
    assert (
        document.sha256
        == hashlib.sha256(PDF).hexdigest()
        == hashlib.sha256(documents.document_pdf(document)).hexdigest()
    )
    assert document.size_bytes == len(PDF)
    with pytest.raises(DecryptionError):  # the blob is bound to its document
        documents.blob_store().get(document.blob_id, "document:someone-else")


def test_the_same_document_twice_is_one_row(hug, blob_dir):
    stay, physician = hug.stay(), hug.physician()
    hug.designate(stay, physician)
    hug.send(stay, value="DOC-1")
    before = written()

    document, created = documents.receive_document(
        dpi_system=DOCUMENTS,
        dpi_value="DOC-1",
        patient=stay.patient,
        stay=stay,
        type_code=DISCHARGE_SUMMARY,
        title="Lettre de sortie",
        author="Dr Denis Clinicien",
        status="final",
        pdf=PDF,
        actor=DPI,
    )

    assert created is False
    assert written() == before
    assert len(blobs(blob_dir)) == 1
    assert state_of(document, physician) == "available"


def test_a_preliminary_document_becomes_final_in_place_and_starts_its_deliveries(hug):
    stay, physician = hug.stay(), hug.physician()
    hug.designate(stay, physician)
    draft = hug.send(stay, value="DOC-7", status="preliminary", pdf=None)
    assert_explained(draft, physician, "none", "not-final")

    final, created = documents.receive_document(
        dpi_system=DOCUMENTS,
        dpi_value="DOC-7",
        patient=stay.patient,
        stay=stay,
        type_code=DISCHARGE_SUMMARY,
        title="Lettre de sortie",
        author="Dr Denis Clinicien",
        status="final",
        pdf=PDF,
        actor=DPI,
    )

    assert (final.id, created, final.version_number) == (draft.id, False, 1)
    assert_explained(final, physician, "available", None)


def test_a_preliminary_pdf_replaced_in_place_is_left_to_the_orphan_sweep(hug, blob_dir):
    """Not deleted at once: a backup whose snapshot predates the replacement still needs it (jobs/backup.py). The
    sweep removes it once past its safety age, and the current PDF stays."""
    stay = hug.stay()
    draft = hug.send(stay, value="DOC-8", status="preliminary", pdf=pdf_bytes("draft")).blob_id
    document = hug.send(stay, value="DOC-8", status="final", pdf=pdf_bytes("final"))
    assert sorted(p.name for p in blobs(blob_dir)) == sorted([draft, document.blob_id])

    later = utcnow() + documents.ORPHAN_MIN_AGE + dt.timedelta(minutes=1)
    assert documents.sweep_orphan_blobs(now=later)["orphan_blobs_deleted"] == 1
    assert [p.name for p in blobs(blob_dir)] == [document.blob_id]
    assert documents.document_pdf(document) == pdf_bytes("final")


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"pdf": pdf_bytes("corrected")}, "final-document-changed"),
        ({"status": "preliminary"}, "final-document-changed"),
        ({"loinc": LAB_REPORT}, "final-document-changed"),
    ],
    ids=["new-pdf", "back-to-preliminary", "new-type"],
)
def test_a_final_document_never_changes_in_place(hug, refused_cleanly, change, code):
    stay = hug.stay()
    hug.send(stay, value="DOC-2")
    with refused_cleanly(code):
        hug.send(stay, value="DOC-2", **change)


def test_a_document_never_moves_to_another_stay(hug, refused_cleanly):
    stay = hug.stay()
    hug.send(stay, value="DOC-3")
    other = hug.stay(stay.patient)
    with refused_cleanly("document-mismatch"):
        hug.send(other, value="DOC-3")


@pytest.mark.parametrize(
    ("arrange", "code"),
    [
        (lambda hug, stay: {"loinc": "99999-9"}, "unknown-type"),
        (lambda hug, stay: {"pdf": b"GIF89a not a pdf"}, "not-pdf"),
        (lambda hug, stay: {"pdf": b""}, "not-pdf"),
        (lambda hug, stay: {"pdf": None}, "no-pdf"),
        (lambda hug, stay: {"status": "entered-in-error"}, "bad-status"),
        (lambda hug, stay: {"actor": Actor(Role.CLINICIAN, 1)}, "forbidden"),
    ],
    ids=["unknown-type", "not-pdf", "empty", "final-without-pdf", "bad-status", "clinician"],
)
def test_receive_document_refusals_write_nothing(hug, refused_cleanly, arrange, code):
    stay = hug.stay()
    with refused_cleanly(code):
        hug.send(stay, **arrange(hug, stay))


def test_receive_document_refuses_a_stay_of_another_patient(hug, refused_cleanly):
    stay, other = hug.stay(), hug.patient()
    with refused_cleanly("stay-patient-mismatch"):
        documents.receive_document(
            dpi_system=DOCUMENTS,
            dpi_value="DOC-X",
            patient=other,
            stay=stay,
            type_code=DISCHARGE_SUMMARY,
            title="t",
            author="a",
            status="final",
            pdf=PDF,
            actor=DPI,
        )


def test_receive_document_refuses_a_pdf_over_the_limit(hug, refused_cleanly):
    documents.configure(documents.Settings.blob_dir, max_bytes=len(PDF) - 1)
    stay = hug.stay()
    with refused_cleanly("too-large"):
        hug.send(stay)


def test_a_refusal_after_the_pdf_was_stored_removes_it(hug, refused_cleanly, monkeypatch):
    """A failure inside the transaction (here: a recipient's delivery) leaves neither rows nor blob behind."""
    stay = hug.stay()
    hug.designate(stay, hug.physician())

    def broken(*_args, **_kwargs):
        raise TransitionRefused(Reason("conflict", "boom"))

    monkeypatch.setattr(documents, "_deliver", broken)
    with refused_cleanly("conflict"):
        hug.send(stay)


# -- the scenarios of DESIGN §4.2 ---------------------------------------------------------------------------------
def test_designated_and_authorized_reaches_the_designated_physician_only(hug):
    stay = hug.stay()
    designated, bystander = hug.physician(), hug.physician()
    hug.designate(stay, designated)

    document = hug.send(stay)

    assert visible(designated) == {document.id}
    assert visible(bystander) == set()
    assert_explained(document, designated, "available", None)
    assert_explained(document, bystander, "none", "not-designated")
    assert Delivery.select().count() == 1


def test_a_document_before_the_designation_waits_then_arrives(hug):
    stay, physician = hug.stay(), hug.physician()
    document = hug.send(stay)
    assert_explained(document, physician, "none", "not-designated")

    hug.designate(stay, physician)

    assert visible(physician) == {document.id}
    assert_explained(document, physician, "available", None)


def test_designated_without_authorization_waits_until_the_patient_authorizes(hug):
    stay, physician = hug.stay(), hug.physician()
    hug.designate(stay, physician, authorized=False)
    document = hug.send(stay)
    assert_explained(document, physician, "communicable", "not-authorized")

    hug.designate(stay, physician, authorized=True)

    assert_explained(document, physician, "available", None)


def test_a_non_communicable_type_is_withheld(hug):
    stay, physician = hug.stay(), hug.physician()
    hug.designate(stay, physician)
    document = hug.send(stay, loinc=PROGRESS_NOTE)
    assert visible(physician) == set()
    assert_explained(document, physician, "withheld", "not-communicable")


def test_a_designation_for_another_stay_delivers_nothing(hug):
    first = hug.stay()
    second = hug.stay(first.patient)
    physician = hug.physician()
    hug.designate(first, physician)

    document = hug.send(second)

    assert visible(physician) == set()
    assert_explained(document, physician, "none", "not-designated")


def test_a_recipient_without_an_account_gets_it_once_the_account_is_activated(hug, make_account):
    stay, physician = hug.stay(), hug.physician(account=None)
    hug.designate(stay, physician)
    document = hug.send(stay)
    assert_explained(document, physician, "consented", "no-account")

    # The desk's path: login issued (pending), then the physician's own first password activates it.
    account = make_account(Role.PHYSICIAN, physician=physician, state="pending")
    assert_explained(document, physician, "consented", "account-inactive")
    set_own_password(Account.get_by_id(account.id), "Rhône-Salève-2026-nouveau", None)

    assert visible(physician) == {document.id}
    assert_explained(document, physician, "available", None)


def test_a_first_hin_login_releases_the_waiting_documents(hug):
    stay, physician = hug.stay(), hug.physician(account=None)
    hug.designate(stay, physician)
    document = hug.send(stay)

    account = Account(
        username=f"hin-{physician.gln}", email=physician.email, role=Role.PHYSICIAN, extra_roles="", physician=physician
    )
    engine.create(
        ACCOUNT, account, "provision_hin", SYSTEM, identity_type="personal", issuer="https://hin", subject="s-1"
    )

    assert_explained(document, physician, "available", None)


def test_unlocking_the_account_releases_the_waiting_documents(hug, make_account):
    stay, physician = hug.stay(), hug.physician(account="locked")
    hug.designate(stay, physician)
    document = hug.send(stay)
    assert_explained(document, physician, "consented", "account-inactive")

    admin = make_account(Role.ADMINISTRATOR)
    engine.fire(ACCOUNT, Account.get(Account.physician == physician.id), "unlock", Actor(Role.ADMINISTRATOR, admin.id))

    assert_explained(document, physician, "available", None)


def test_account_activated_moves_only_the_waiting_deliveries_and_counts_them(hug, make_account):
    physician = hug.physician(account=None)
    waiting = []
    for _ in range(2):
        stay = hug.stay()
        hug.designate(stay, physician)
        waiting.append(hug.send(stay))
    unauthorized = hug.stay()
    hug.designate(unauthorized, physician, authorized=False)
    hug.send(unauthorized)
    account = make_account(Role.PHYSICIAN, physician=physician, state="pending")
    assert documents.account_activated(account) == 0  # pending: nothing moves

    Account.update(password_is_temporary=False).where(Account.id == account.id).execute()
    # Through the engine without the effect's call, to count what account_activated moves by itself.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(documents, "account_activated", lambda account: 0)
        engine.fire(ACCOUNT, Account.get_by_id(account.id), "activate", Actor(Role.PHYSICIAN, account.id))
    assert documents.account_activated(Account.get_by_id(account.id)) == 2
    assert visible(physician) == {d.id for d in waiting}
    assert documents.account_activated(Account.get_by_id(account.id)) == 0


def test_a_new_version_supersedes_the_old_one(hug):
    stay, physician = hug.stay(), hug.physician()
    hug.designate(stay, physician)
    old = hug.send(stay, value="DOC-1")

    new = hug.send(stay, value="DOC-2", replaces=old, title="Lettre de sortie (corrigée)")

    assert new.version_number == 2 and new.replaces_id == old.id
    assert Document.get_by_id(old.id).superseded_at is not None
    assert delivery_of(old, physician).revoked_reason == "superseded"
    assert visible(physician) == {new.id}
    assert_explained(old, physician, "revoked", "superseded")
    assert_explained(new, physician, "available", None)


def test_a_preliminary_new_version_supersedes_only_once_final(hug):
    stay, physician = hug.stay(), hug.physician()
    hug.designate(stay, physician)
    old = hug.send(stay, value="DOC-1")
    hug.send(stay, value="DOC-2", replaces=old, status="preliminary", pdf=None)
    assert visible(physician) == {old.id}

    new = hug.send(stay, value="DOC-2", replaces=old)

    assert visible(physician) == {new.id}
    assert_explained(old, physician, "revoked", "superseded")


def test_a_version_is_replaced_once(hug, refused_cleanly):
    stay = hug.stay()
    old = hug.send(stay, value="DOC-1")
    hug.send(stay, value="DOC-2", replaces=old)
    with refused_cleanly("already-replaced"):
        hug.send(stay, value="DOC-3", replaces=Document.get_by_id(old.id))


def test_a_replaced_document_of_another_patient_is_refused(hug, refused_cleanly):
    old, other = hug.send(hug.stay(), value="DOC-1"), hug.stay()
    with refused_cleanly("document-mismatch"):
        hug.send(other, value="DOC-2", replaces=old)


@pytest.mark.parametrize(
    ("withdrawal", "code"),
    [({"authorized": False}, "not-authorized"), ({"active": False}, "not-designated")],
    ids=["authorization-withdrawn", "designation-withdrawn"],
)
def test_a_withdrawn_consent_revokes_and_a_renewed_one_reinstates(hug, withdrawal, code):
    stay, physician = hug.stay(), hug.physician()
    hug.designate(stay, physician)
    document = hug.send(stay)

    hug.designate(stay, physician, **{"authorized": True, **withdrawal})

    assert visible(physician) == set()
    assert delivery_of(document, physician).revoked_reason == code
    assert_explained(document, physician, "revoked", code)
    event = AuditEvent.select().where(AuditEvent.action == "delivery.revoke").get()
    assert event.actor_role == "dpi"  # the revocation is the DPI's doing, and says so

    hug.designate(stay, physician, authorized=True)

    assert_explained(document, physician, "available", None)


def test_a_recalled_document_leaves_mes_documents(hug):
    stay, physician, other = hug.stay(), hug.physician(), hug.physician(account=None)
    hug.designate(stay, physician)
    hug.designate(stay, other)
    document = hug.send(stay)

    assert documents.recall_document(document, actor=DPI) == 2
    assert documents.recall_document(document, actor=DPI) == 0

    assert visible(physician) == set()
    assert_explained(document, physician, "revoked", "revoked")
    assert_explained(document, other, "revoked", "revoked")
    hug.designate(stay, physician, authorized=True)  # nothing brings it back
    assert state_of(document, physician) == "revoked"


def test_a_recall_refused_to_a_physician(hug, refused_cleanly):
    document = hug.send(hug.stay())
    with refused_cleanly("forbidden"):
        documents.recall_document(document, actor=Actor(Role.PHYSICIAN, 1))


def test_a_type_made_communicable_later_releases_its_documents(hug, make_account):
    stay, physician = hug.stay(), hug.physician()
    hug.designate(stay, physician)
    document = hug.send(stay, loinc=PROGRESS_NOTE)
    admin = Actor(Role.ADMINISTRATOR, make_account(Role.ADMINISTRATOR).id, ip="10.0.0.9")

    moved = documents.set_type_communicable(DocumentType.get(loinc=PROGRESS_NOTE), True, actor=admin)

    assert moved == 1
    assert_explained(document, physician, "available", None)
    event = AuditEvent.select().where(AuditEvent.action == "document_type.communicable").get()
    assert (event.actor_id, event.ip) == (admin.account_id, "10.0.0.9")


def test_a_type_made_non_communicable_recalls_nothing_already_sent(hug, make_account):
    stay, physician = hug.stay(), hug.physician()
    hug.designate(stay, physician)
    sent = hug.send(stay, loinc=LAB_REPORT)
    admin = Actor(Role.ADMINISTRATOR, make_account(Role.ADMINISTRATOR).id)

    assert documents.set_type_communicable(DocumentType.get(loinc=LAB_REPORT), False, actor=admin) == 0
    later = hug.send(stay, loinc=LAB_REPORT)

    assert visible(physician) == {sent.id}
    assert_explained(sent, physician, "available", None)
    assert_explained(later, physician, "withheld", "not-communicable")


def test_the_catalogue_is_edited_by_administrators_only(hug, refused_cleanly):
    with refused_cleanly("forbidden"):
        documents.set_type_communicable(DocumentType.get(loinc=PROGRESS_NOTE), True, actor=Actor(Role.CLINICIAN, 1))


def test_add_document_type(hug, make_account):
    admin = Actor(Role.ADMINISTRATOR, make_account(Role.ADMINISTRATOR).id)
    added = documents.add_document_type(
        loinc="57133-1", name_fr="Note de transfert", name_en="Referral note", communicable=True, actor=admin
    )
    assert (added.loinc, added.communicable) == ("57133-1", True)
    assert AuditEvent.select().where(AuditEvent.action == "document_type.add").count() == 1
    stay, physician = hug.stay(), hug.physician()
    hug.designate(stay, physician)
    assert_explained(hug.send(stay, loinc="57133-1"), physician, "available", None)


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"loinc": "57133"}, "bad-loinc"),
        ({"loinc": "123456-7"}, "bad-loinc"),
        ({"loinc": "ABC-1"}, "bad-loinc"),
        ({"name_fr": " "}, "name-required"),
        ({"name_en": ""}, "name-required"),
        ({"loinc": DISCHARGE_SUMMARY}, "type-exists"),
    ],
)
def test_add_document_type_refusals(hug, refused_cleanly, fields, code):
    arguments = {"loinc": "57133-1", "name_fr": "Note", "name_en": "Note", "communicable": False}
    with refused_cleanly(code):
        documents.add_document_type(**{**arguments, **fields}, actor=Actor(Role.ADMINISTRATOR, 1))


# -- manual sends ---------------------------------------------------------------------------------------------------
@pytest.fixture
def clinician_actor(clinician):
    return Actor(Role.CLINICIAN, clinician.id, ip="10.0.0.7")


def test_a_manual_send_reaches_that_physician_only(hug, clinician_actor):
    stay = hug.stay()
    document = hug.send(stay)
    physician, bystander = hug.physician(), hug.physician()

    delivery = documents.authorize_manual_send(
        document=document,
        physician=physician,
        patient_agreed_at=utcnow(),
        note="Accord oral du patient",
        actor=clinician_actor,
    )

    assert (delivery.state, delivery.physician_id) == ("available", physician.id)
    assert ManualAuthorization.select().count() == 1
    assert_explained(document, physician, "available", None)
    assert_explained(document, bystander, "none", "not-designated")
    again = documents.authorize_manual_send(
        document=document, physician=physician, patient_agreed_at=utcnow(), note="", actor=clinician_actor
    )
    assert again.id == delivery.id and ManualAuthorization.select().count() == 1


def test_a_manual_send_reinstates_a_delivery_revoked_for_lack_of_authorization(hug, clinician_actor):
    stay, physician = hug.stay(), hug.physician()
    hug.designate(stay, physician)
    document = hug.send(stay)
    hug.designate(stay, physician, authorized=False)
    assert state_of(document, physician) == "revoked"

    documents.authorize_manual_send(
        document=document, physician=physician, patient_agreed_at=utcnow(), note="", actor=clinician_actor
    )

    assert_explained(document, physician, "available", None)


@pytest.mark.parametrize(
    ("arrange", "code"),
    [
        (lambda hug, stay: hug.send(stay, status="preliminary", pdf=None), "not-final"),
        (lambda hug, stay: hug.send(stay, loinc=PROGRESS_NOTE), "not-communicable"),
        (
            lambda hug, stay: Document.get_by_id(
                hug.send(stay, replaces=hug.send(stay, value="OLD"), value="NEW").replaces_id
            ),
            "superseded",
        ),
    ],
    ids=["not-final", "not-communicable", "superseded"],
)
def test_manual_send_refusals(hug, refused_cleanly, clinician_actor, arrange, code):
    document, physician = arrange(hug, hug.stay()), hug.physician()
    with refused_cleanly(code):
        documents.authorize_manual_send(
            document=document, physician=physician, patient_agreed_at=utcnow(), note="", actor=clinician_actor
        )


def test_manual_send_refused_to_the_dpi_and_for_a_future_agreement(hug, refused_cleanly, clinician_actor):
    document, physician = hug.send(hug.stay()), hug.physician()
    with refused_cleanly("forbidden"):
        documents.authorize_manual_send(
            document=document, physician=physician, patient_agreed_at=utcnow(), note="", actor=DPI
        )
    with refused_cleanly("agreement-in-future"):
        documents.authorize_manual_send(
            document=document,
            physician=physician,
            patient_agreed_at=utcnow() + dt.timedelta(days=1),
            note="",
            actor=clinician_actor,
        )


# -- explain(): the rules in their order, and always what the machine says --------------------------------------------
@pytest.mark.parametrize(
    ("notification", "code"),
    [
        ({"notification_mode": NotificationMode.NONE}, "notifications-off"),
        ({"email_bounced_at": dt.datetime(2026, 1, 1)}, "bounced"),
        ({}, None),
    ],
    ids=["notifications-off", "bounced", "wanted"],
)
def test_available_but_not_notified_says_why(hug, notification, code):
    stay, physician = hug.stay(), hug.physician(**notification)
    hug.designate(stay, physician)
    document = hug.send(stay)
    assert_explained(document, physician, "available", code)


def test_notified_and_consulted_documents_have_no_reason(hug):
    stay, physician = hug.stay(), hug.physician()
    hug.designate(stay, physician)
    document = hug.send(stay)
    delivery = engine.fire(DELIVERY, delivery_of(document, physician), "notify", SYSTEM)
    assert_explained(document, physician, "notified", None)
    account = Account.get(Account.physician == physician.id)
    engine.fire(DELIVERY, delivery, "consult", Actor(Role.PHYSICIAN, account.id))
    assert_explained(document, physician, "consulted", None)


@pytest.mark.parametrize(
    ("arrange", "code"),
    [
        (lambda hug, stay: hug.send(stay, status="preliminary", pdf=None, loinc=PROGRESS_NOTE), "not-final"),
        (lambda hug, stay: hug.send(stay, loinc=PROGRESS_NOTE), "not-communicable"),
    ],
    ids=["not-final-first", "not-communicable-before-not-designated"],
)
def test_the_document_facts_come_first(hug, arrange, code):
    document, physician = arrange(hug, hug.stay()), hug.physician(account=None)
    assert reason_of(document, physician) == code
    assert documents.delivery_status(document, physician.gln) == [RecipientStatus(physician.gln, "none", code)]


def test_the_order_follows_the_delivery_path(hug):
    """Designated without authorization, no account, and a type made non-communicable after classification: the
    delivery waits for the authorization (the type no longer matters for it), then for the account."""
    stay, physician = hug.stay(), hug.physician(account=None)
    hug.designate(stay, physician, authorized=False)
    document = hug.send(stay, loinc=LAB_REPORT)
    documents.set_type_communicable(DocumentType.get(loinc=LAB_REPORT), False, actor=SYSTEM)
    assert_explained(document, physician, "communicable", "not-authorized")

    hug.designate(stay, physician, authorized=True)

    assert_explained(document, physician, "consented", "no-account")


# -- delivery_status() ----------------------------------------------------------------------------------------------
def test_delivery_status_lists_every_recipient(hug, clinician_actor):
    stay = hug.stay()
    reached = hug.physician(gln=gln_with_check_digit("760100000001"))
    waiting = hug.physician(account=None, gln=gln_with_check_digit("760100000002"))
    unauthorized = hug.physician(gln=gln_with_check_digit("760100000003"))
    manual = hug.physician(gln=gln_with_check_digit("760100000004"))
    withdrawn = hug.physician(gln=gln_with_check_digit("760100000005"))
    hug.physician(gln=gln_with_check_digit("760100000006"))  # known to the portal, not a recipient
    hug.designate(stay, reached)
    hug.designate(stay, waiting)
    hug.designate(stay, unauthorized, authorized=False)
    hug.designate(stay, withdrawn)
    document = hug.send(stay)
    hug.designate(stay, withdrawn, active=False)
    documents.authorize_manual_send(
        document=document, physician=manual, patient_agreed_at=utcnow(), note="", actor=clinician_actor
    )

    assert documents.delivery_status(Document.get_by_id(document.id)) == [
        RecipientStatus(reached.gln, "available", None),
        RecipientStatus(waiting.gln, "consented", "no-account"),
        RecipientStatus(unauthorized.gln, "communicable", "not-authorized"),
        RecipientStatus(manual.gln, "available", None),
        RecipientStatus(withdrawn.gln, "revoked", "not-designated"),
    ]


def test_delivery_status_for_a_gln_unknown_to_the_portal(hug):
    document = hug.send(hug.stay())
    gln = gln_with_check_digit("760199999999")
    assert documents.delivery_status(document, gln) == [RecipientStatus(gln, "none", "not-designated")]
    draft = hug.send(hug.stay(), status="preliminary", pdf=None)
    assert documents.delivery_status(draft, gln) == [RecipientStatus(gln, "none", "not-final")]


def test_explain_writes_nothing(hug):
    stay, physician = hug.stay(), hug.physician(account=None)
    hug.designate(stay, physician, authorized=False)
    document = hug.send(stay, loinc=PROGRESS_NOTE)
    before = written()
    documents.explain(document, physician)
    documents.delivery_status(document)
    assert written() == before
