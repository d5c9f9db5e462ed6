"""The printable enrolment form: A4, section 1 filled in, section 2 blank, French accents and names intact."""

from __future__ import annotations

import io

import pytest
from pypdf import PdfReader

from models import EnrollmentApplication
from tests.conftest import section_one
from web import form_pdf
from web.form_pdf import application_form_pdf, latin1

A4 = (595.28, 841.89)  # points


def text_of(data: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


@pytest.fixture
def application(database):
    """Section 1 with the characters French text and foreign names bring (not saved: the PDF needs no row)."""
    return EnrollmentApplication(
        reference="MH-7KQ2-9XWD",
        **section_one(
            last_name="Dvořák-Lœwe",
            first_name="Éloïse Françoise",
            practice_address="Rue de l’Hôpital 4, « Cabinet du Rhône »\n1204 Genève",
        ),
    )


def test_the_form_is_one_a4_page_with_section_one_filled_in(application):
    data = application_form_pdf(application)
    assert data.startswith(b"%PDF")
    reader = PdfReader(io.BytesIO(data))
    assert len(reader.pages) == 1
    box = reader.pages[0].mediabox
    assert (round(float(box.width), 1), round(float(box.height), 1)) == (round(A4[0], 1), round(A4[1], 1))
    text = text_of(data)
    for expected in (
        "HUG – Hôpitaux universitaires de Genève",
        "MH-7KQ2-9XWD",
        "Éloïse Françoise",
        "17.05.1978",
        application.gln,
        "Médecine interne générale, Cardiologie",
        "Rue de l’Hôpital 4, « Cabinet du Rhône »",
        "+41 79 123 45 67",
        "claire.dupont@example.ch",
        "Section 2",
        "Secrétariat de l’AMG",
        "Passeport",
        "Date d’expiration",
        "SMS de contrôle",
        "Appel de contrôle",
        "Nom du validateur",
        "Signature",
    ):
        assert expected in text, expected
    if form_pdf._Form("x").unicode:
        assert "Dvořák-Lœwe" in text  # a Unicode font draws any name as typed


def test_without_a_unicode_font_the_core_font_keeps_french_accents(application, monkeypatch):
    monkeypatch.setattr(form_pdf, "FONT_CANDIDATES", ())
    text = text_of(application_form_pdf(application))
    assert "Éloïse Françoise" in text and "Genève" in text and "« Cabinet du Rhône »" in text
    assert "Dvorák-Loewe" in text  # ř and œ are outside Latin-1: approximated, never a crash
    assert "Rue de l'Hôpital" in text


@pytest.mark.parametrize(
    ("typed", "drawn"),
    [
        ("é è à ç ô « »", "é è à ç ô « »"),
        ("l’œil – cœur…", "l'oeil - coeur..."),
        ("Łódź", "Lódz"),
        ("日本", "??"),
    ],
)
def test_latin1_keeps_french_and_approximates_the_rest(typed, drawn):
    assert latin1(typed) == drawn
    latin1(typed).encode("latin-1")
