"""Demo data for `make run`: staff and physician logins, patients, stays, documents and applications in progress.

Idempotent: a second run finds the data and only prints the logins again. Refused in production.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re

from models import (
    Account,
    Delivery,
    Designation,
    Document,
    DocumentType,
    EnrollmentApplication,
    NotificationMode,
    OutboxMessage,
    Patient,
    Physician,
    PhysicianSpecialty,
    Role,
    Specialty,
    Stay,
    db,
    gln_with_check_digit,
    utcnow,
)
from security.encryption import BlobStore, keyring
from security.passwords import hash_password
from workflows import ACCOUNT, DELIVERY, ENROLLMENT, SYSTEM, Actor, engine
from workflows.delivery import advance

DEMO_PASSWORD = "Rhône-Salève-2026"  # development only; printed by `flask demo`
DPI_SYSTEM = "urn:oid:2.16.756.5.30.1.127.3.10.3"  # the DPI's patient identifier namespace (demo)

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


def minimal_pdf(text: str) -> bytes:
    """A one-page PDF with one line of text (demo documents; real ones come from the DPI)."""
    content = f"BT /F1 14 Tf 72 760 Td ({text}) Tj ET".encode("latin-1", "replace")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
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
    physician = Physician.create(
        gln=gln_with_check_digit(twelve),
        first_name=first,
        last_name=last,
        email=f"{first.lower()}@demo.myhug.ch",
        mobile=f"+4179000000{n}",
        practice_address=f"Rue du Rhône {10 + n}, 1204 Genève",
        notification_mode=mode,
        date_of_birth=dt.date(1975, 3, n + 1),
    )
    for code in specialties:
        PhysicianSpecialty.create(physician=physician, specialty=Specialty.get(Specialty.code == code))
    return physician


def _document(store, patient, stay, loinc, title, n) -> Document:
    pdf = minimal_pdf(title)
    document = Document.create(
        dpi_system="urn:oid:2.16.756.5.30.1.127.3.10.1",
        dpi_value=f"DOC-DEMO-{n:04d}",
        patient=patient,
        stay=stay,
        type=DocumentType.get(DocumentType.loinc == loinc),
        title=title,
        author="Dr Denis Clinicien",
        sha256=hashlib.sha256(pdf).hexdigest(),
        size_bytes=len(pdf),
        dpi_client="demo",
    )
    document.blob_id = store.put(pdf, f"document:{document.public_id}")
    document.save()
    return document


def _deliver(document, physician) -> Delivery:
    delivery = Delivery(document=document, physician=physician)
    engine.create(DELIVERY, delivery, "create", SYSTEM)
    return advance(delivery)


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
    with db.atomic():
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

        # Two patients, three stays; designations per stay, as the DPI would send them.
        martin = Patient.create(
            dpi_system=DPI_SYSTEM,
            dpi_value="P-100234",
            family_name="Martin",
            given_name="Jeanne",
            birth_date=dt.date(1948, 2, 11),
        )
        rossi = Patient.create(
            dpi_system=DPI_SYSTEM,
            dpi_value="P-100871",
            family_name="Rossi",
            given_name="Luca",
            birth_date=dt.date(2015, 9, 30),
        )
        now = utcnow()
        stay1 = Stay.create(
            dpi_system=DPI_SYSTEM,
            dpi_value="S-2026-1001",
            patient=martin,
            started_at=now - dt.timedelta(days=12),
            ended_at=now - dt.timedelta(days=3),
        )
        stay2 = Stay.create(
            dpi_system=DPI_SYSTEM,
            dpi_value="S-2026-1002",
            patient=martin,
            kind="ambulatory",
            started_at=now - dt.timedelta(days=2),
        )
        stay3 = Stay.create(
            dpi_system=DPI_SYSTEM,
            dpi_value="S-2026-1003",
            patient=rossi,
            started_at=now - dt.timedelta(days=6),
            ended_at=now - dt.timedelta(days=1),
        )
        Designation.create(stay=stay1, physician=physicians["cdupont"], authorized=True)
        Designation.create(stay=stay2, physician=physicians["cdupont"], authorized=False)  # not authorized
        Designation.create(stay=stay3, physician=physicians["mfavre"], authorized=True)

        docs = [
            (martin, stay1, "18842-5", "Lettre de sortie – Cardiologie", physicians["cdupont"]),
            (martin, stay1, "11502-2", "Résultats de laboratoire", physicians["cdupont"]),
            (martin, stay1, "34109-9", "Note interne", physicians["cdupont"]),  # withheld: not communicable
            (martin, stay2, "11488-4", "Compte rendu de consultation", physicians["cdupont"]),  # waits: no consent
            (rossi, stay3, "18842-5", "Lettre de sortie – Pédiatrie", physicians["mfavre"]),
        ]
        for n, (patient, stay, loinc, title, physician) in enumerate(docs, start=1):
            _deliver(_document(store, patient, stay, loinc, title, n), physician)

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
