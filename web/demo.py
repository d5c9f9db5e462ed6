"""Demo data for `make run`: staff and physician logins, patients, stays, documents and applications in progress.

Idempotent: a second run finds the data and only prints the logins again. Refused in production.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re

from models import (
    Account,
    DocumentStatus,
    EnrollmentApplication,
    NotificationMode,
    OutboxMessage,
    Physician,
    PhysicianSpecialty,
    Role,
    Specialty,
    StayKind,
    db,
    gln_with_check_digit,
    utcnow,
)
from security.encryption import BlobStore, keyring
from security.passwords import hash_password
from workflows import ACCOUNT, ENROLLMENT, SYSTEM, Actor, documents, engine

DEMO_PASSWORD = "Rhône-Salève-2026"  # development only; printed by `flask demo`
DPI_SYSTEM = "urn:oid:2.16.756.5.30.1.127.3.10.3"  # the DPI's patient identifier namespace (demo)
DPI_DOCUMENTS = "urn:oid:2.16.756.5.30.1.127.3.10.1"  # the DPI's document identifier namespace (demo)
DPI_CONSENTS = "urn:oid:2.16.756.5.30.1.127.3.10.4"  # the DPI's consent identifier namespace (demo)
DPI = Actor(Role.DPI)  # the demo's clinical data arrive as the DPI would send them through the FHIR API

STAFF = [
    ("admin", "Alice Administratrice", Role.ADMINISTRATOR, "", "service de cybersanté: crée les logins"),
    ("cyber", "Bruno Cybersanté", Role.VALIDATOR, "administrator", "guichet cybersanté (valide et administre)"),
    ("amg", "Chantal Secrétariat", Role.VALIDATOR, "", "guichet du secrétariat de l'AMG"),
    ("clinicien", "Dr Denis Clinicien", Role.CLINICIAN, "", "médecin des HUG: désignations, envois manuels"),
]
PHYSICIANS = [
    ("cdupont", "Claire", "Dupont", "760100000101", ["general-internal-medicine", "cardiology"], NotificationMode.EACH),
    ("mfavre", "Marc", "Favre", "760100000102", ["paediatrics"], NotificationMode.DIGEST),
]


# Typographic characters outside Latin-1 (which the PDF's WinAnsi font encoding shows), by their plain equivalent.
PLAIN = str.maketrans({"–": "-", "—": "-", "‘": "'", "’": "'", "“": '"', "”": '"', "…": "..."})


def minimal_pdf(text: str) -> bytes:
    """A one-page PDF with one line of text (demo documents; real ones come from the DPI)."""
    text = text.translate(PLAIN).replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    content = f"BT /F1 14 Tf 72 760 Td ({text}) Tj ET".encode("latin-1", "replace")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def _active_account(username, full_name, role, *, extra_roles="", physician=None, mobile=None) -> Account:
    account = Account(
        username=username,
        email=f"{username}@demo.myhug.ch",
        full_name=full_name,
        role=role,
        extra_roles=extra_roles,
        physician=physician,
        mobile=mobile,
    )
    engine.create(ACCOUNT, account, "issue_login", SYSTEM)
    account.password_hash, account.password_is_temporary = hash_password(DEMO_PASSWORD), False
    engine.fire(ACCOUNT, account, "activate", Actor(role, account.id))
    return account


def _physician(first, last, twelve, specialties, mode, n) -> Physician:
    """Known from the DPI's directory by GLN, then the profile the physician gave at enrolment."""
    physician = documents.record_practitioner(
        gln=gln_with_check_digit(twelve), family_name=last, given_name=first, email=f"{first.lower()}@demo.myhug.ch"
    )
    Physician.update(
        mobile=f"+4179000000{n}",
        practice_address=f"Rue du Rhône {10 + n}, 1204 Genève",
        notification_mode=mode,
        date_of_birth=dt.date(1975, 3, n + 1),
    ).where(Physician.id == physician.id).execute()
    for code in specialties:
        PhysicianSpecialty.create(physician=physician, specialty=Specialty.get(Specialty.code == code))
    return Physician.get_by_id(physician.id)


@contextlib.contextmanager
def _document_store(blob_dir: str):
    """The documents' PDFs go to `blob_dir` (the service layer's store) for the time of the load."""
    before = documents.Settings.blob_dir, documents.Settings.max_bytes
    documents.configure(blob_dir, before[1])
    try:
        yield
    finally:
        documents.Settings.blob_dir, documents.Settings.max_bytes = before


def _patient(value, family_name, given_name, birth_date):
    return documents.record_patient(
        system=DPI_SYSTEM, value=value, family_name=family_name, given_name=given_name, birth_date=birth_date
    )


def _stay(value, patient, kind, started_at, ended_at=None):
    return documents.record_stay(
        system=DPI_SYSTEM, value=value, patient=patient, kind=kind, started_at=started_at, ended_at=ended_at
    )


def _receive(n, stay, loinc, title):
    document, _created = documents.receive_document(
        dpi_system=DPI_DOCUMENTS,
        dpi_value=f"DOC-DEMO-{n:04d}",
        patient=stay.patient,
        stay=stay,
        type_code=loinc,
        title=title,
        author="Dr Denis Clinicien",
        status=DocumentStatus.FINAL,
        pdf=minimal_pdf(title),
        client="demo",
        actor=DPI,
    )
    return document


def load(blob_dir: str) -> list[tuple[str, str, str, str]]:
    """Create the demo data once; return (username, password, role, what to try) for every demo login."""
    logins = [(u, DEMO_PASSWORD, str(r) + (f"+{x}" if x else ""), what) for u, _, r, x, what in STAFF]
    logins += [
        (u, DEMO_PASSWORD, "physician", f"Dr {f} {last}, GLN {gln_with_check_digit(g)}")
        for u, f, last, g, _, _ in PHYSICIANS
    ]
    if Account.select().where(Account.username == "admin").exists():
        return logins
    store = BlobStore(blob_dir, keyring.require())
    with db.atomic(), _document_store(blob_dir):
        staff = {
            u: _active_account(u, name, role, extra_roles=x, mobile=f"+4179000010{n}")
            for n, (u, name, role, x, _) in enumerate(STAFF)
        }
        physicians = {}
        for n, (username, first, last, twelve, specialties, mode) in enumerate(PHYSICIANS, start=1):
            physician = _physician(first, last, twelve, specialties, mode, n)
            _active_account(
                username, f"Dr {first} {last}", Role.PHYSICIAN, physician=physician, mobile=physician.mobile
            )
            physicians[username] = physician

        # Two patients, three stays, their designations and documents: what the DPI sends through the FHIR API,
        # through the same service layer, so that every delivery is created and advanced by the delivery machine.
        martin = _patient("P-100234", "Martin", "Jeanne", dt.date(1948, 2, 11))
        rossi = _patient("P-100871", "Rossi", "Luca", dt.date(2015, 9, 30))
        now = utcnow()
        day = dt.timedelta(days=1)
        stay1 = _stay("S-2026-1001", martin, StayKind.INPATIENT, now - 12 * day, now - 3 * day)
        stay2 = _stay("S-2026-1002", martin, StayKind.AMBULATORY, now - 2 * day)
        stay3 = _stay("S-2026-1003", rossi, StayKind.INPATIENT, now - 6 * day, now - day)
        for stay, physician, authorized in (
            (stay1, physicians["cdupont"], True),
            (stay2, physicians["cdupont"], False),  # designated, electronic sending not authorized: its document waits
            (stay3, physicians["mfavre"], True),
        ):
            documents.record_designation(
                stay=stay,
                physician=physician,
                authorized=authorized,
                consent_id=f"{DPI_CONSENTS}|C-{stay.dpi_value}",
                actor=DPI,
            )
        for n, (stay, loinc, title) in enumerate(
            [
                (stay1, "18842-5", "Lettre de sortie – Cardiologie"),
                (stay1, "11502-2", "Résultats de laboratoire"),
                (stay1, "34109-9", "Note interne"),  # withheld: this type is not communicable
                (stay2, "11488-4", "Compte rendu de consultation"),  # waits: sending not authorized for this stay
                (stay3, "18842-5", "Lettre de sortie – Pédiatrie"),
            ],
            start=1,
        ):
            _receive(n, stay, loinc, title)

        # Applications in progress: one waiting for the desk, one transmitted to the administrator.
        _application("Bernard", "Sophie", "760100000201", "dermatology", "+41790000011")
        transmitted = _application("Girard", "Paul", "760100000202", "psychiatry", "+41790000012")
        desk = Actor(Role.VALIDATOR, staff["amg"].id)
        engine.fire(ENROLLMENT, transmitted, "present", desk, desk="amg")
        copy = store.put(minimal_pdf("Copie de la piece d'identite (demo)"), f"id-copy:{transmitted.reference}")
        engine.fire(
            ENROLLMENT,
            transmitted,
            "verify_identity",
            desk,
            id_type="identity_card",
            id_number="C0DEM0123",
            id_expiry=dt.date.today() + dt.timedelta(days=900),
            id_copy_blob=copy,
            id_copy_mime="application/pdf",
        )
        engine.fire(ENROLLMENT, transmitted, "verify_phone", desk, method="call", confirmed=True)
        engine.fire(ENROLLMENT, transmitted, "sign_section_two", desk)
        engine.fire(ENROLLMENT, transmitted, "transmit", desk)
        return logins


def _application(last, first, twelve, specialty, mobile) -> EnrollmentApplication:
    """Section 1 submitted and the e-mail link followed, as the applicant would on the public pages."""
    app = EnrollmentApplication(
        last_name=last,
        first_name=first,
        date_of_birth=dt.date(1982, 6, 4),
        gln=gln_with_check_digit(twelve),
        specialty_codes=specialty,
        practice_address="Place du Molard 3, 1204 Genève",
        mobile=mobile,
        email=f"{first.lower()}.{last.lower()}@demo.myhug.ch",
    )
    applicant = Actor(Role.APPLICANT, proof=None)
    engine.create(ENROLLMENT, app, "submit", applicant)
    mail = OutboxMessage.get((OutboxMessage.template == "enrollment_received") & (OutboxMessage.recipient == app.email))
    token = re.search(r"/confirmer/[^/]+/(\S+)", mail.body).group(1)
    engine.fire(ENROLLMENT, app, "confirm_email", applicant, token=token)
    return app
