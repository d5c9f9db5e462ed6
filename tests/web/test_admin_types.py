"""The catalogue of document types in the admin area: administrators only, one POST per change (CSRF), audited,
and the deliveries of a reclassified type follow (workflows/documents.py)."""

from __future__ import annotations

import re

import pytest
from markupsafe import escape

from models import AuditEvent, Delivery, DocumentType, Role
from models.documents import SEED_DOCUMENT_TYPES
from tests.conftest import _empty_tables
from workflows import Actor, documents

from .conftest import csrf_token_in

PATH = "/admin/types-de-documents"
EN = {"Accept-Language": "en"}
ADMIN_IP = "10.20.30.40"
PROGRESS_NOTE = "11506-3"
DPI = Actor(Role.DPI)
PDF = b"%PDF-1.4\n1 0 obj\n<< >>\nendobj\n%%EOF\n"


@pytest.fixture(autouse=True)
def catalogue(database):
    """Reference data survives between tests: every change is undone."""
    yield
    _empty_tables(database)
    DocumentType.delete().where(DocumentType.loinc.not_in([t[0] for t in SEED_DOCUMENT_TYPES])).execute()
    for loinc, _fr, _en, communicable in SEED_DOCUMENT_TYPES:
        DocumentType.update(communicable=communicable).where(DocumentType.loinc == loinc).execute()


def page(client, path: str = PATH, **kwargs) -> str:
    response = client.get(path, **kwargs)
    assert response.status_code == 200, (path, response.status_code)
    return response.get_data(as_text=True)


def post(client, path: str, **form):
    token = csrf_token_in(client.get(PATH).data)
    return client.post(path, data={"csrf_token": token, **form}, headers=EN, environ_base={"REMOTE_ADDR": ADMIN_IP})


def communicable(loinc: str) -> bool:
    return DocumentType.get(DocumentType.loinc == loinc).communicable


# -- who may come in --------------------------------------------------------------------------------------------
def test_administrators_see_the_catalogue_in_the_menu(client, login_as):
    login_as(Role.ADMINISTRATOR)
    html = page(client, "/", headers=EN)
    assert f'href="{PATH}"' in html and "Document types" in html
    html = page(client, headers=EN)
    for loinc, name_fr, name_en, flag in SEED_DOCUMENT_TYPES:
        row = re.search(rf'<tr id="type-{loinc}">(.*?)</tr>', html, re.S).group(1)
        assert str(escape(name_fr)) in row and name_en in row and ("Yes" if flag else "No") in row
        assert ("Make non-communicable" if flag else "Make communicable") in row


@pytest.mark.parametrize("role", [Role.PHYSICIAN, Role.VALIDATOR, Role.CLINICIAN])
def test_other_roles_are_refused_and_see_no_link(client, login_as, role):
    login_as(role)
    assert PATH not in page(client, "/")
    assert client.get(PATH).status_code == 403
    token = csrf_token_in(client.get("/").data)
    response = client.post(f"{PATH}/{PROGRESS_NOTE}/communicable", data={"csrf_token": token, "communicable": "yes"})
    assert response.status_code == 403
    assert client.post(PATH, data={"csrf_token": token, "loinc": "57133-1"}).status_code == 403
    assert communicable(PROGRESS_NOTE) is False


def test_anonymous_visitors_are_sent_to_the_login(client, database):
    response = client.get(PATH)
    assert response.status_code in (302, 303) and "/login" in response.headers["Location"]


# -- the communicable switch --------------------------------------------------------------------------------------
def test_making_a_type_communicable_releases_its_withheld_documents(client, login_as, make_physician, make_account):
    admin = login_as(Role.ADMINISTRATOR)
    physician = make_physician()
    make_account(Role.PHYSICIAN, physician=physician)
    patient = documents.record_patient(system="urn:p", value="P1", family_name="M", given_name="J", birth_date=None)
    stay = documents.record_stay(
        system="urn:s", value="S1", patient=patient, kind="inpatient", started_at=None, ended_at=None
    )
    documents.record_designation(stay=stay, physician=physician, authorized=True, actor=DPI)
    document, _ = documents.receive_document(
        dpi_system="urn:d",
        dpi_value="D1",
        patient=patient,
        stay=stay,
        type_code=PROGRESS_NOTE,
        title="Note",
        author="Dr",
        status="final",
        pdf=PDF,
        actor=DPI,
    )
    assert Delivery.get(Delivery.document == document.id).state == "withheld"

    response = post(client, f"{PATH}/{PROGRESS_NOTE}/communicable", communicable="yes")

    assert (response.status_code, response.headers["Location"]) == (303, f"{PATH}#type-{PROGRESS_NOTE}")
    assert communicable(PROGRESS_NOTE) is True
    assert Delivery.get(Delivery.document == document.id).state == "available"
    event = AuditEvent.select().where(AuditEvent.action == "document_type.communicable").get()
    assert (event.actor_id, event.ip, event.actor_role) == (admin.id, ADMIN_IP, "administrator")
    html = page(client, headers=EN)
    assert "Progress note" in html and "1 waiting document went on its way" in html


def test_making_a_type_non_communicable(client, login_as):
    login_as(Role.ADMINISTRATOR)
    response = post(client, f"{PATH}/18842-5/communicable", communicable="no")
    assert response.status_code == 303
    assert communicable("18842-5") is False
    assert "is no longer communicable" in page(client, headers=EN)


def test_the_switch_needs_the_csrf_token_a_known_type_and_a_choice(client, login_as):
    login_as(Role.ADMINISTRATOR)
    assert client.post(f"{PATH}/{PROGRESS_NOTE}/communicable", data={"communicable": "yes"}).status_code == 400
    assert post(client, f"{PATH}/{PROGRESS_NOTE}/communicable", communicable="maybe").status_code == 400
    assert post(client, f"{PATH}/99999-9/communicable", communicable="yes").status_code == 404
    assert communicable(PROGRESS_NOTE) is False
    assert AuditEvent.select().where(AuditEvent.action.startswith("document_type")).count() == 0


# -- adding a type ---------------------------------------------------------------------------------------------------
def test_adding_a_type(client, login_as):
    login_as(Role.ADMINISTRATOR)
    response = post(client, PATH, loinc="57133-1", name_fr="Note de transfert", name_en="Referral note")
    assert (response.status_code, response.headers["Location"]) == (303, f"{PATH}#type-57133-1")
    added = DocumentType.get(DocumentType.loinc == "57133-1")
    assert (added.name_fr, added.name_en, added.communicable) == ("Note de transfert", "Referral note", False)
    assert AuditEvent.select().where(AuditEvent.action == "document_type.add").count() == 1
    html = page(client, headers=EN)
    assert 'id="type-57133-1"' in html and "was added to the catalogue" in html


def test_adding_a_communicable_type(client, login_as):
    login_as(Role.ADMINISTRATOR)
    post(client, PATH, loinc="57133-1", name_fr="Note de transfert", name_en="Referral note", communicable="yes")
    assert communicable("57133-1") is True


@pytest.mark.parametrize(
    ("form", "invalid"),
    [
        ({"loinc": "57133", "name_fr": "N", "name_en": "N"}, ["loinc"]),
        ({"loinc": "18842-5", "name_fr": "N", "name_en": "N"}, ["loinc"]),
        ({"loinc": "57133-1", "name_fr": "", "name_en": "N"}, ["name_fr"]),
        ({"loinc": "57133-1", "name_fr": " ", "name_en": ""}, ["name_fr", "name_en"]),
    ],
    ids=["bad-code", "existing-code", "no-french-name", "no-names"],
)
def test_a_refused_type_shows_the_form_again_with_its_errors(client, login_as, form, invalid):
    login_as(Role.ADMINISTRATOR)
    before = (DocumentType.select().count(), AuditEvent.select().count())

    response = post(client, PATH, **form)

    assert response.status_code == 422
    html = response.get_data(as_text=True)
    for name in invalid:
        field = re.search(rf'<input id="{name}"[^>]*>', html).group(0)
        assert 'aria-invalid="true"' in field and f"{name}-error" in field
        assert f'id="{name}-error"' in html
    assert html.count('aria-invalid="true"') == len(invalid)
    assert 'role="alert"' in html
    assert f'value="{form["loinc"]}"' in html  # what was typed comes back
    assert (DocumentType.select().count(), AuditEvent.select().count()) == before


def test_the_page_is_french_first(client, login_as):
    login_as(Role.ADMINISTRATOR)
    html = page(client)
    assert '<html lang="fr">' in html
    assert 'lang="fr"' in re.search(r'<td lang="fr"[^>]*>Lettre de sortie</td>', html).group(0)
