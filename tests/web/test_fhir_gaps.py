"""The last gaps of the FHIR API (issue 5): no contact data in the directory, one AuditEvent by id, the local code
systems served as CodeSystem resources."""

from __future__ import annotations

import pytest

from models import Physician, PhysicianSpecialty, Role, Specialty

from . import test_fhir
from .test_fhir import FHIR_JSON, GLN, example, post_example

api, token = test_fhir.api, test_fhir.token  # the fixtures of test_fhir.py: a client "dpi-hug" and its calls

GLN_SYSTEM = "urn:oid:2.51.1.3"


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
