"""The clinic (issue 5): hospital staff find a patient's stays, record or revoke designations per stay, search
physicians, send a document manually with the patient's explicit agreement, and see why a document did not reach
someone. Data is made through workflows/documents.py, as the DPI would; every change the pages make goes through it.
"""

from __future__ import annotations

import datetime as dt
import re
from contextlib import contextmanager

import pytest

from models import (
    Account,
    AuditEvent,
    Delivery,
    Designation,
    ManualAuthorization,
    Physician,
    PhysicianSpecialty,
    Role,
    Specialty,
    TransitionLog,
    gln_with_check_digit,
)
from tests.conftest import statements
from workflows import Actor, documents

from .conftest import csrf_token_in

DPI = Actor(Role.DPI, ip="127.0.0.1")
DISCHARGE_SUMMARY = "18842-5"  # seeded communicable
PROGRESS_NOTE = "11506-3"  # seeded not communicable
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
EN = {"Accept-Language": "en"}
EXPLANATION = re.compile(r'id="explanation" role="status">\s*<p class="notice [^"]+"[^>]*data-reason="([\w-]+)"')


# -- data, as the DPI sends it -------------------------------------------------------------------------------------
class Hospital:
    """Patients, stays, physicians and documents recorded through the service layer."""

    def __init__(self, make_account):
        self.make_account = make_account
        self.n = 0

    def _next(self) -> int:
        self.n += 1
        return self.n

    def patient(self, family_name="Martin", given_name="Louise", value=None):
        n = self._next()
        return documents.record_patient(
            system="urn:oid:2.16.756.5.30.1.145.1.1",
            value=value or f"P{n:06d}",
            family_name=family_name,
            given_name=given_name,
            birth_date=dt.date(1950, 3, 14),
        )

    def stay(self, patient=None, kind="inpatient", started=dt.datetime(2025, 2, 1, 8, 0)):
        n = self._next()
        return documents.record_stay(
            system="urn:oid:2.16.756.5.30.1.145.1.2",
            value=f"S{n:06d}",
            patient=patient or self.patient(),
            kind=kind,
            started_at=started,
            ended_at=None,
        )

    def physician(self, last_name=None, first_name="Anne", specialties=("cardiology",), account="active", gln=None):
        """A physician (one GLN) with these specialties; account: "active", "pending", … or None (no account)."""
        n = self._next()
        physician = documents.record_practitioner(
            gln=gln or gln_with_check_digit(f"7601{n:08d}"),
            family_name=last_name or f"Médecin{n}",
            given_name=first_name,
            email=f"dr{n}@example.ch",
        )
        # What the physician completes in "Mon profil" (the DPI sends neither): an account needs it to be active.
        Physician.update(practice_address="Rue du Rhône 1, 1204 Genève").where(Physician.id == physician.id).execute()
        physician = Physician.get_by_id(physician.id)
        for code in specialties:
            PhysicianSpecialty.create(physician=physician, specialty=Specialty.get(code=code))
        if account is not None:
            self.make_account(Role.PHYSICIAN, physician=physician, state=account)
        return physician

    def document(self, stay, loinc=DISCHARGE_SUMMARY, status="final", title=None):
        n = self._next()
        document, _created = documents.receive_document(
            dpi_system="urn:oid:2.16.756.5.30.1.145.1.3",
            dpi_value=f"D{n:06d}",
            patient=stay.patient,
            stay=stay,
            type_code=loinc,
            title=title or f"Lettre de sortie {n}",
            author="Dr House",
            status=status,
            pdf=PDF if status == "final" else None,
            actor=DPI,
        )
        return document

    def designate(self, stay, physician, authorized=True):
        return documents.record_designation(stay=stay, physician=physician, authorized=authorized, actor=DPI)


@pytest.fixture
def hospital(app, make_account):
    return Hospital(make_account)  # `app` first: create_app configures the document store


@pytest.fixture
def clinician(login_as):
    return login_as(Role.CLINICIAN, username="claire.clinician")


def delivery_of(document, physician) -> Delivery | None:
    return Delivery.get_or_none((Delivery.document == document.id) & (Delivery.physician == physician.id))


def written() -> tuple:
    """Every table a change in the clinic may write to."""
    tables = (Designation, ManualAuthorization, Delivery, TransitionLog, AuditEvent)
    counts = [model.select().count() for model in tables]
    return (*counts, list(Designation.select(Designation.authorized, Designation.revoked_at).tuples()))


@contextmanager
def nothing_written():
    before = written()
    yield
    assert written() == before


def post_form(client, page: str, action: str, data: dict, headers=None):
    token = csrf_token_in(client.get(page).data)
    return client.post(action, data={"csrf_token": token, **data}, headers=headers or {})


def designation_post(client, stay, physician, **fields):
    return post_form(
        client,
        f"/clinique/sejours/{stay.public_id}",
        f"/clinique/sejours/{stay.public_id}/designations",
        {"physician": physician.public_id, **fields},
        headers=EN,
    )


def manual_send_post(client, document, physician, **fields):
    return post_form(
        client,
        f"/clinique/documents/{document.public_id}",
        f"/clinique/documents/{document.public_id}/envoi-manuel",
        {"physician": physician.public_id, **fields},
        headers=EN,
    )


# -- access ------------------------------------------------------------------------------------------------------
@pytest.fixture
def paths(hospital):
    stay = hospital.stay()
    document = hospital.document(stay)
    physician = hospital.physician()
    return [
        "/clinique",
        "/clinique?q=Martin",
        f"/clinique/patients/{stay.patient.public_id}",
        f"/clinique/sejours/{stay.public_id}",
        f"/clinique/sejours/{stay.public_id}?medecin={physician.public_id}",
        "/clinique/medecins?q=Anne",
        f"/clinique/documents/{document.public_id}",
        f"/clinique/documents/{document.public_id}?medecin={physician.public_id}",
    ]


def test_clinicians_reach_every_page(client, clinician, paths):
    for path in paths:
        page = client.get(path)
        assert page.status_code == 200, path
        assert page.headers["Cache-Control"] == "no-store"
        ids = re.findall(r' id="([^"]+)"', page.text)
        assert len(ids) == len(set(ids)), path  # labels and aria-describedby point at one element each
        assert "style=" not in page.text and "<script" not in page.text  # the CSP allows neither


# Administrators hold no clinical right (security.permissions.can_record_designations: clinicians only); a member of
# the e-health service who also works as a clinician holds the role as an extra one.
@pytest.mark.parametrize("role", [Role.PHYSICIAN, Role.VALIDATOR, Role.ADMINISTRATOR])
def test_other_roles_are_refused(client, login_as, paths, role):
    login_as(role)
    for path in paths:
        assert client.get(path).status_code == 403, path


def test_an_administrator_who_is_also_a_clinician_gets_in(client, login_as, paths):
    login_as(Role.ADMINISTRATOR, extra_roles="clinician")
    assert client.get(paths[0]).status_code == 200


def test_anonymous_visitors_go_to_the_login_page(client, paths):
    for path in paths:
        page = client.get(path)
        assert page.status_code == 302 and page.headers["Location"].startswith("/login?next=/clinique"), path


def test_clinicians_land_on_the_clinic_and_see_it_in_the_menu(client, clinician):
    from web.auth import landing_url

    with client.application.test_request_context():
        assert landing_url(Account.get_by_id(clinician.id)) == "/clinique"
    html = client.get("/clinique", headers=EN).get_data(as_text=True)
    assert '<a href="/clinique" aria-current="page">Clinic</a>' in html


@pytest.mark.parametrize("role", [Role.PHYSICIAN, Role.VALIDATOR, Role.ADMINISTRATOR])
def test_other_roles_cannot_post(client, login_as, hospital, role):
    stay = hospital.stay()
    document = hospital.document(stay)
    physician = hospital.physician()
    login_as(role)
    token = csrf_token_in(client.get("/").data)
    with nothing_written():
        answer = client.post(
            f"/clinique/sejours/{stay.public_id}/designations",
            data={"csrf_token": token, "physician": physician.public_id, "authorized": "yes", "confirm": "yes"},
        )
        assert answer.status_code == 403
        answer = client.post(
            f"/clinique/documents/{document.public_id}/envoi-manuel",
            data={"csrf_token": token, "physician": physician.public_id, "agreed": "yes"},
        )
        assert answer.status_code == 403


def test_unknown_ids_give_404(client, clinician, hospital):
    stay = hospital.stay()
    for path in (
        "/clinique/patients/nobody",
        "/clinique/sejours/nothing",
        "/clinique/documents/nothing",
        f"/clinique/sejours/{stay.public_id}?medecin=nobody",
        "/clinique/medecins?sejour=nothing",
    ):
        assert client.get(path).status_code == 404, path


# -- finding a patient -------------------------------------------------------------------------------------------
def test_patients_are_found_by_name_or_dpi_number(client, clinician, hospital):
    louise = hospital.patient("Martin", "Louise", value="DPI-778812")
    paul = hospital.patient("Martinez", "Paul")
    hospital.patient("Rossi", "Marco")

    def found(text) -> set[str]:
        html = client.get("/clinique", query_string={"q": text}).get_data(as_text=True)
        return set(re.findall(r'<tr id="patient-([\w-]+)"', html))

    assert found("martin") == {louise.public_id, paul.public_id}
    assert found("Martin Louise") == {louise.public_id}
    assert found("778812") == {louise.public_id}
    assert found("Dupont") == set()
    assert found("") == set()  # nothing is listed before a search


def test_a_search_shows_at_most_50_patients_in_a_constant_number_of_queries(client, clinician, hospital):
    hospital.patient("Favre", "Un")
    with statements() as few:
        client.get("/clinique?q=Favre")
    for n in range(55):
        hospital.patient("Favre", f"Patient{n}")
    with statements() as many:
        html = client.get("/clinique?q=Favre", headers=EN).get_data(as_text=True)
    assert len(re.findall(r'<tr id="patient-', html)) == 50
    assert "Only the first 50 are shown" in html
    assert len(many) == len(few)


# -- a patient's stays -------------------------------------------------------------------------------------------
def test_the_patient_page_shows_stays_newest_first_with_designations_and_documents(client, clinician, hospital):
    patient = hospital.patient()
    old = hospital.stay(patient, started=dt.datetime(2024, 5, 1))
    new = hospital.stay(patient, kind="ambulatory", started=dt.datetime(2025, 2, 1))
    dupont = hospital.physician("Dupont", "Claire", specialties=("cardiology", "general-internal-medicine"))
    favre = hospital.physician("Favre", "Marc", specialties=("neurology",), account=None)
    hospital.designate(old, dupont, authorized=True)
    hospital.designate(new, favre, authorized=False)
    letter = hospital.document(old, title="Lettre de sortie – cardiologie")
    note = hospital.document(new, loinc=PROGRESS_NOTE, title="Note de suivi du 3 février")

    html = client.get(f"/clinique/patients/{patient.public_id}", headers=EN).get_data(as_text=True)
    assert html.index(f'id="stay-{new.public_id}"') < html.index(f'id="stay-{old.public_id}"')
    assert "Ambulatory care episode" in html and "Hospital stay" in html
    old_part = html[html.index(f'id="stay-{old.public_id}"') :]
    new_part = html[html.index(f'id="stay-{new.public_id}"') : html.index(f'id="stay-{old.public_id}"')]
    assert "Claire Dupont" in old_part and dupont.gln in old_part and "Cardiology" in old_part
    assert "General internal medicine" in old_part and "Authorized" in old_part
    assert f'href="/clinique/documents/{letter.public_id}"' in old_part
    assert "Marc Favre" in new_part and "Not authorized" in new_part and "No myHUG account" in new_part
    assert f'href="/clinique/documents/{note.public_id}"' in new_part and "Progress note" in new_part
    assert "Patient record (DPI)" in html  # who recorded the designations
    assert "for each new one" in html  # designations are per stay: the page says so


def test_the_patient_page_runs_a_constant_number_of_queries(client, clinician, hospital):
    patient = hospital.patient()
    stay = hospital.stay(patient)
    hospital.designate(stay, hospital.physician())
    hospital.document(stay)
    with statements() as few:
        assert client.get(f"/clinique/patients/{patient.public_id}").status_code == 200
    for n in range(4):
        stay = hospital.stay(patient, started=dt.datetime(2023, 1, n + 1))
        for _ in range(2):
            hospital.designate(stay, hospital.physician(specialties=("neurology", "cardiology")))
            hospital.document(stay)
    with statements() as many:
        assert client.get(f"/clinique/patients/{patient.public_id}").status_code == 200
    assert len(many) == len(few)


# -- designations --------------------------------------------------------------------------------------------------
def test_a_designation_releases_the_documents_waiting_for_that_stay(client, clinician, hospital):
    stay = hospital.stay()
    document = hospital.document(stay)  # arrived before anyone was designated: it waits, for nobody yet
    physician = hospital.physician()
    assert delivery_of(document, physician) is None

    page = client.get(f"/clinique/sejours/{stay.public_id}?medecin={physician.public_id}", headers=EN)
    html = page.get_data(as_text=True)
    assert 'id="record-form"' in html and physician.gln in html and "Active myHUG account" in html
    answer = designation_post(client, stay, physician, authorized="yes", confirm="yes")
    assert answer.status_code == 303 and answer.headers["Location"] == f"/clinique/sejours/{stay.public_id}"

    designation = Designation.current(stay.id, physician.id)
    assert designation.authorized and designation.source == "clinic" and designation.recorded_by_id == clinician.id
    assert delivery_of(document, physician).state == "available"
    event = AuditEvent.select().where(AuditEvent.action == "designation.record").get()
    assert (event.actor_id, event.actor_role, event.ip) == (clinician.id, "clinician", "127.0.0.1")
    log = TransitionLog.select().where(TransitionLog.workflow == "delivery").order_by(TransitionLog.id.desc()).first()
    assert log.dest == "available"
    html = client.get(answer.headers["Location"], headers=EN).get_data(as_text=True)
    assert "is designated for this stay, with the authorization" in html
    assert "Claire.Clinician" in html  # recorded by


def test_a_designation_for_another_stay_releases_nothing(client, clinician, hospital):
    patient = hospital.patient()
    stay, other = hospital.stay(patient), hospital.stay(patient)
    document = hospital.document(stay)
    physician = hospital.physician()
    assert designation_post(client, other, physician, authorized="yes", confirm="yes").status_code == 303
    assert Designation.current(other.id, physician.id) is not None
    assert delivery_of(document, physician) is None
    html = client.get(f"/clinique/documents/{document.public_id}?medecin={physician.public_id}", headers=EN)
    assert 'data-reason="not-designated"' in html.get_data(as_text=True)


def test_a_designation_without_the_authorization_sends_nothing(client, clinician, hospital):
    stay = hospital.stay()
    document = hospital.document(stay)
    physician = hospital.physician()
    assert designation_post(client, stay, physician, confirm="yes").status_code == 303
    assert not Designation.current(stay.id, physician.id).authorized
    assert delivery_of(document, physician).state == "communicable"  # known recipient, waiting for the consent


def test_withdrawing_the_authorization_revokes_the_delivery(client, clinician, hospital):
    stay = hospital.stay()
    physician = hospital.physician()
    hospital.designate(stay, physician, authorized=True)
    document = hospital.document(stay)
    assert delivery_of(document, physician).state == "available"

    html = client.get(f"/clinique/sejours/{stay.public_id}", headers=EN).get_data(as_text=True)
    assert "Withdraw the authorization" in html and "Revoke the designation" in html
    answer = designation_post(client, stay, physician, withdraw="yes", confirm="yes")
    assert answer.status_code == 303
    delivery = delivery_of(document, physician)
    assert delivery.state == "revoked" and delivery.revoked_reason == "not-authorized"
    assert Designation.current(stay.id, physician.id) is not None  # still designated, no longer authorized

    html = client.get(f"/clinique/documents/{document.public_id}", headers=EN).get_data(as_text=True)
    row = html[html.index(f'id="recipient-{physician.gln}"') :]
    row = row[: row.index("</tr>")]
    assert "Revoked" in row and "The patient did not authorize sending documents electronically." in row
    history = html[html.index(f'id="history-{physician.gln}"') :]
    assert "Put in “Mes documents”" in history and "Revoke" in history
    assert "Claire.Clinician (Clinician)" in history  # the clinician's withdrawal revoked it
    french = client.get(f"/clinique/documents/{document.public_id}").get_data(as_text=True)
    assert "Le patient n’a pas autorisé l’envoi électronique de documents." in french


def test_revoking_the_designation_revokes_the_delivery(client, clinician, hospital):
    stay = hospital.stay()
    physician = hospital.physician()
    hospital.designate(stay, physician, authorized=True)
    document = hospital.document(stay)
    assert designation_post(client, stay, physician, active="no", confirm="yes").status_code == 303
    assert Designation.current(stay.id, physician.id) is None
    delivery = delivery_of(document, physician)
    assert delivery.state == "revoked" and delivery.revoked_reason == "not-designated"
    html = client.get(f"/clinique/sejours/{stay.public_id}", headers=EN).get_data(as_text=True)
    assert "Revoked on" in html and "Withdrawn by the patient" in html
    html = client.get(f"/clinique/documents/{document.public_id}", headers=EN).get_data(as_text=True)
    assert "The patient did not designate this physician for this stay." in html


@pytest.mark.parametrize(
    "fields",
    [
        {"authorized": "yes"},  # the designation not confirmed
        {"active": "no"},  # the withdrawal not confirmed
        {"withdraw": "yes"},
    ],
)
def test_an_unconfirmed_designation_form_writes_nothing(client, clinician, hospital, fields):
    stay = hospital.stay()
    physician = hospital.physician()
    hospital.designate(stay, physician, authorized=True)
    hospital.document(stay)
    with nothing_written():
        answer = designation_post(client, stay, physician, **fields)
    assert answer.status_code == 422
    html = answer.get_data(as_text=True)
    assert "Action refused:" in html and 'aria-invalid="true"' in html


def test_a_designation_without_a_physician_writes_nothing(client, clinician, hospital):
    stay = hospital.stay()
    token = csrf_token_in(client.get(f"/clinique/sejours/{stay.public_id}").data)
    with nothing_written():
        answer = client.post(
            f"/clinique/sejours/{stay.public_id}/designations",
            data={"csrf_token": token, "physician": "nobody", "confirm": "yes", "authorized": "yes"},
            headers=EN,
        )
    assert answer.status_code == 422 and "Choose the physician first." in answer.get_data(as_text=True)


def test_a_post_without_the_csrf_token_writes_nothing(client, clinician, hospital):
    stay = hospital.stay()
    physician = hospital.physician()
    with nothing_written():
        answer = client.post(
            f"/clinique/sejours/{stay.public_id}/designations",
            data={"physician": physician.public_id, "confirm": "yes", "authorized": "yes"},
        )
    assert answer.status_code == 400


# -- the physician directory ---------------------------------------------------------------------------------------
def test_the_directory_lists_only_physicians_with_specialties_and_account(client, clinician, hospital, make_account):
    cardio = hospital.physician("Rochat", "Anne", specialties=("cardiology",))
    neuro = hospital.physician("Rochat", "Bruno", specialties=("neurology",), account=None)
    make_account(Role.CLINICIAN, username="rochat.secretariat")  # staff, not a physician: never a recipient
    make_account(Role.ADMINISTRATOR, username="rochat.admin")

    html = client.get("/clinique/medecins?q=rochat", headers=EN).get_data(as_text=True)
    rows = dict(re.findall(r'<tr id="physician-([\w-]+)">(.*?)</tr>', html, re.S))
    assert set(rows) == {cardio.public_id, neuro.public_id}
    assert "Cardiology" in rows[cardio.public_id] and "Active myHUG account" in rows[cardio.public_id]
    assert "Neurology" in rows[neuro.public_id] and "No myHUG account" in rows[neuro.public_id]
    assert "rochat.secretariat" not in html.lower() and "rochat.admin" not in html.lower()

    by_specialty = client.get("/clinique/medecins?q=rochat&specialite=neurology").get_data(as_text=True)
    assert re.findall(r'<tr id="physician-([\w-]+)">', by_specialty) == [neuro.public_id]
    by_gln = client.get(f"/clinique/medecins?q={cardio.gln[-6:]}").get_data(as_text=True)
    assert re.findall(r'<tr id="physician-([\w-]+)">', by_gln) == [cardio.public_id]
    only_specialty = client.get("/clinique/medecins?specialite=cardiology").get_data(as_text=True)
    assert re.findall(r'<tr id="physician-([\w-]+)">', only_specialty) == [cardio.public_id]
    assert '<tr id="physician-' not in client.get("/clinique/medecins").text  # nothing before a search


def test_the_directory_links_back_to_the_stay_or_the_document(client, clinician, hospital):
    stay = hospital.stay()
    document = hospital.document(stay)
    physician = hospital.physician("Zufferey", "Luc")
    html = client.get(f"/clinique/medecins?q=Zufferey&sejour={stay.public_id}").get_data(as_text=True)
    assert f'href="/clinique/sejours/{stay.public_id}?medecin={physician.public_id}#record"' in html
    html = client.get(f"/clinique/medecins?q=Zufferey&document={document.public_id}").get_data(as_text=True)
    assert f'href="/clinique/documents/{document.public_id}?medecin={physician.public_id}#explainer"' in html
    stay_page = client.get(f"/clinique/sejours/{stay.public_id}").get_data(as_text=True)
    assert f'name="sejour" value="{stay.public_id}"' in stay_page  # its search comes back to the stay


def test_physician_search_runs_a_constant_number_of_queries(client, clinician, hospital):
    hospital.physician("Vuilleumier")
    with statements() as few:
        client.get("/clinique/medecins?q=Vuilleumier")
    for _ in range(8):
        hospital.physician("Vuilleumier", specialties=("cardiology", "neurology"))
    with statements() as many:
        client.get("/clinique/medecins?q=Vuilleumier")
    assert len(many) == len(few)


# -- the explainer ---------------------------------------------------------------------------------------------------
def explained(client, document, physician) -> str:
    html = client.get(f"/clinique/documents/{document.public_id}?medecin={physician.public_id}", headers=EN)
    assert html.status_code == 200
    match = EXPLANATION.search(html.text)
    assert match, html.text
    return match.group(1)


def test_the_explainer_names_the_first_unmet_rule(client, clinician, hospital):
    stay = hospital.stay()
    designated = hospital.physician()
    not_authorized = hospital.physician()
    without_account = hospital.physician(account=None)
    stranger = hospital.physician()
    hospital.designate(stay, designated, authorized=True)
    hospital.designate(stay, not_authorized, authorized=False)
    hospital.designate(stay, without_account, authorized=True)
    letter = hospital.document(stay)
    progress_note = hospital.document(stay, loinc=PROGRESS_NOTE)
    draft = hospital.document(stay, status="preliminary")

    assert explained(client, letter, stranger) == "not-designated"
    assert explained(client, letter, not_authorized) == "not-authorized"
    assert explained(client, letter, without_account) == "no-account"
    assert explained(client, progress_note, designated) == "not-communicable"
    assert explained(client, draft, designated) == "not-final"
    assert explained(client, letter, designated) == "reached"

    html = client.get(f"/clinique/documents/{letter.public_id}?medecin={not_authorized.public_id}", headers=EN).text
    assert "It has not reached Anne " in html
    assert "The patient did not authorize sending documents electronically." in html
    html = client.get(f"/clinique/documents/{letter.public_id}?medecin={designated.public_id}", headers=EN).text
    assert f"It reached {designated.display_name} on " in html
    assert 'id="manual-send"' not in html  # nothing to send
    html = client.get(f"/clinique/documents/{draft.public_id}?medecin={designated.public_id}", headers=EN).text
    assert "The document has not been finalized." in html and 'id="manual-send"' not in html
    french = client.get(f"/clinique/documents/{letter.public_id}?medecin={without_account.public_id}").text
    assert "Le médecin n’a pas de compte myHUG." in french


def test_the_document_page_lists_each_recipient_with_state_and_reason(client, clinician, hospital):
    stay = hospital.stay()
    reached = hospital.physician()
    waiting = hospital.physician(account="pending")
    hospital.designate(stay, reached, authorized=True)
    hospital.designate(stay, waiting, authorized=True)
    document = hospital.document(stay)
    html = client.get(f"/clinique/documents/{document.public_id}", headers=EN).text
    rows = dict(re.findall(r'<tr id="recipient-(\d+)"[^>]*>(.*?)</tr>', html, re.S))
    assert set(rows) == {reached.gln, waiting.gln}
    assert "Available in myHUG" in rows[reached.gln]
    assert "Consented, waiting for an active account" in rows[waiting.gln]
    assert "The physician&#39;s myHUG account is not active." in rows[waiting.gln]


# -- the manual send -----------------------------------------------------------------------------------------------
def test_a_manual_send_needs_the_patients_agreement(client, clinician, hospital):
    stay = hospital.stay()
    document = hospital.document(stay)
    physician = hospital.physician()
    page = client.get(f"/clinique/documents/{document.public_id}?medecin={physician.public_id}", headers=EN).text
    assert 'id="manual-send"' in page and 'name="agreed" value="yes" required' in page
    with nothing_written():
        answer = manual_send_post(client, document, physician, note="au téléphone")
    assert answer.status_code == 422
    html = answer.text
    assert "only with the patient&#39;s explicit agreement" in html and 'aria-invalid="true"' in html
    assert "au téléphone" in html  # what was typed is kept


def test_a_manual_send_reaches_a_physician_with_an_active_account(client, clinician, hospital):
    stay = hospital.stay()
    document = hospital.document(stay)
    physician = hospital.physician()
    yesterday = (dt.date.today() - dt.timedelta(days=1)).isoformat()
    answer = manual_send_post(client, document, physician, agreed="yes", agreed_on=yesterday, note="Accord oral")
    assert answer.status_code == 303
    assert answer.headers["Location"] == f"/clinique/documents/{document.public_id}?medecin={physician.public_id}"
    authorization = ManualAuthorization.current(document.id, physician.id)
    assert authorization.recorded_by_id == clinician.id and authorization.note == "Accord oral"
    assert authorization.patient_agreed_at.date() <= dt.date.today()
    assert delivery_of(document, physician).state == "available"
    event = AuditEvent.select().where(AuditEvent.action == "document.manual_send").get()
    assert (event.actor_id, event.object_id) == (clinician.id, str(document.id))
    html = client.get(answer.headers["Location"], headers=EN).text
    assert f"The document is now available to {physician.display_name} in myHUG." in html
    assert 'data-reason="reached"' in html


def test_a_manual_send_to_a_physician_without_an_active_account_waits(client, clinician, hospital):
    stay = hospital.stay()
    document = hospital.document(stay)
    physician = hospital.physician(account=None)
    answer = manual_send_post(client, document, physician, agreed="yes")
    assert answer.status_code == 303
    assert delivery_of(document, physician).state == "consented"
    html = client.get(answer.headers["Location"], headers=EN).text
    assert "as soon as their myHUG account is active" in html


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"agreed_on": (dt.date.today() + dt.timedelta(days=2)).isoformat()}, "cannot be in the future"),
        ({"agreed_on": "hier"}, "Enter the date of the patient&#39;s agreement."),
    ],
)
def test_a_manual_send_with_a_bad_date_writes_nothing(client, clinician, hospital, fields, message):
    stay = hospital.stay()
    document = hospital.document(stay)
    physician = hospital.physician()
    with nothing_written():
        answer = manual_send_post(client, document, physician, agreed="yes", **fields)
    assert answer.status_code == 422 and message in answer.text


def test_a_manual_send_of_a_document_that_may_not_leave_writes_nothing(client, clinician, hospital):
    stay = hospital.stay()
    document = hospital.document(stay, loinc=PROGRESS_NOTE)
    physician = hospital.physician()
    with nothing_written():
        answer = manual_send_post(client, document, physician, agreed="yes")
    assert answer.status_code == 422
    assert "This type of document is not sent outside the hospital." in answer.text


# -- never the PDF ---------------------------------------------------------------------------------------------------
def test_the_clinic_never_shows_the_pdf(client, clinician, hospital):
    stay = hospital.stay()
    physician = hospital.physician()
    hospital.designate(stay, physician)
    document = hospital.document(stay)
    pages = [
        f"/clinique/patients/{stay.patient.public_id}",
        f"/clinique/sejours/{stay.public_id}",
        f"/clinique/documents/{document.public_id}",
        f"/clinique/documents/{document.public_id}?medecin={physician.public_id}",
    ]
    viewed = AuditEvent.select().where(AuditEvent.action.contains("view")).count()
    for path in pages:
        page = client.get(path)
        assert page.mimetype == "text/html"
        html = page.get_data(as_text=True)
        assert "%PDF" not in html and ".pdf" not in html and "application/pdf" not in html
        assert "<iframe" not in html and "<embed" not in html and "<object" not in html
        assert f"/documents/{delivery_of(document, physician).public_id}" not in html  # the physician's page
    assert AuditEvent.select().where(AuditEvent.action.contains("view")).count() == viewed
    routes = [r.rule for r in client.application.url_map.iter_rules() if r.rule.startswith("/clinique")]
    assert not [r for r in routes if "pdf" in r or "telecharg" in r]
