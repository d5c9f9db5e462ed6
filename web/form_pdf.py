"""The printable enrolment form (DESIGN §4.1): section 1 as the applicant filled it, section 2 blank for the desk.

The applicant prints it from the tracking page and the desk from the application's page; both call
`application_form_pdf(application)`. The form is the HUG's paper procedure, so it is in French whatever the
language of the page that offers it. fpdf2 is pure Python: no browser and no system tool renders it.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from pathlib import Path

import phonenumbers
from fpdf import FPDF
from fpdf.enums import XPos, YPos

from models import Desk, EnrollmentApplication, IdDocumentType, Specialty, utcnow
from models.enrollment import DESK_ZONE

# A Unicode TrueType font when the machine has one (Debian's fonts-dejavu-core): names from anywhere print as
# typed. Without it, the PDF core font Helvetica, which knows only Latin-1 (see `latin1`).
FONT_CANDIDATES = (
    (
        Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
        Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"),
    ),
    (
        Path("/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf"),
        Path("/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf"),
    ),
)

DESK_NAMES = {
    Desk.AMG: "Secrétariat de l’AMG",
    Desk.EHEALTH: "Service de cybersanté & télémédecine (HUG)",
}
ID_TYPE_NAMES = {
    IdDocumentType.PASSPORT: "Passeport",
    IdDocumentType.IDENTITY_CARD: "Carte d’identité",
    IdDocumentType.RESIDENCE_PERMIT: "Permis de séjour",
    IdDocumentType.DRIVING_LICENCE: "Permis de conduire",
}
# Typographic characters outside Latin-1 that French text uses, and their plain equivalents.
_PLAIN = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "–": "-", "—": "-", "…": "...", "\u202f": " "})
_SPELLED = {"œ": "oe", "Œ": "OE", "€": "EUR", "Ł": "L", "ł": "l", "Đ": "D", "đ": "d", "ı": "i"}

BLUE = (11, 79, 138)
GREY = (85, 98, 112)
LABEL_WIDTH = 52


def latin1(text: str) -> str:
    """`text` in what the core fonts can draw: Latin-1 (all French accents, « »), the rest approximated."""
    text = text.translate(_PLAIN)
    out = []
    for char in text:
        if ord(char) < 256:
            out.append(char)
        elif char in _SPELLED:
            out.append(_SPELLED[char])
        else:  # e.g. ř → r: the letter without its accent rather than a question mark
            base = unicodedata.normalize("NFKD", char).encode("latin-1", "ignore").decode("latin-1")
            out.append(base or "?")
    return "".join(out)


class _Form(FPDF):
    def __init__(self, reference: str):
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.reference = reference
        self.set_margins(18, 16, 18)
        self.set_auto_page_break(auto=True, margin=18)
        self.unicode = False
        for regular, bold in FONT_CANDIDATES:
            if regular.is_file() and bold.is_file():
                self.add_font("Form", "", str(regular))
                self.add_font("Form", "B", str(bold))
                self.family, self.unicode = "Form", True
                break
        else:
            self.family = "Helvetica"

    def text_for(self, text: str) -> str:
        return text if self.unicode else latin1(text)

    def font(self, size: float, bold: bool = False, color=(0, 0, 0)) -> None:
        self.set_font(self.family, "B" if bold else "", size)
        self.set_text_color(*color)

    def write_cell(self, width, height, text, **kwargs) -> None:
        self.cell(width, height, self.text_for(text), **kwargs)

    def write_lines(self, width, height, text, **kwargs) -> None:
        self.multi_cell(width, height, self.text_for(text), **kwargs)

    def footer(self) -> None:
        self.set_y(-13)
        self.font(8, color=GREY)
        self.write_cell(0, 5, f"myHUG – Hôpitaux universitaires de Genève – demande {self.reference}", align="L")
        self.write_cell(0, 5, f"Page {self.page_no()}/{{nb}}", align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def display_mobile(number: str) -> str:
    """+41791234567 as people read it: +41 79 123 45 67 (as stored if it does not parse)."""
    try:
        return phonenumbers.format_number(
            phonenumbers.parse(number, None), phonenumbers.PhoneNumberFormat.INTERNATIONAL
        )
    except phonenumbers.NumberParseException:
        return number


def _local_date(value: dt.datetime | None) -> str:
    """A stored (naive UTC) time as the date it was in Geneva."""
    if value is None:
        return ""
    return value.replace(tzinfo=dt.UTC).astimezone(DESK_ZONE).strftime("%d.%m.%Y")


def _specialties(application: EnrollmentApplication) -> str:
    codes = application.specialty_list
    names = dict(Specialty.select(Specialty.code, Specialty.name_fr).where(Specialty.code.in_(codes)).tuples())
    return ", ".join(names.get(code, code) for code in codes)


def _heading(pdf: _Form, reference: str) -> None:
    pdf.font(15, bold=True, color=BLUE)
    pdf.write_cell(0, 8, "HUG – Hôpitaux universitaires de Genève", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.font(13, bold=True)
    pdf.write_cell(110, 8, "myHUG – Formulaire d’inscription")
    pdf.font(11, bold=True)
    pdf.write_cell(0, 8, f"Référence : {reference}", border=1, align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(1)
    pdf.font(10, color=GREY)
    pdf.write_lines(
        0,
        5,
        "Création d’un compte avec authentification par code SMS. Présentez ce formulaire au secrétariat de "
        "l’AMG ou au service de cybersanté & télémédecine des HUG, avec votre téléphone mobile et une pièce "
        "d’identité valable.",
        align="L",
        new_x=XPos.LMARGIN,
        new_y=YPos.NEXT,
    )
    pdf.ln(3)


def _section_title(pdf: _Form, title: str) -> None:
    pdf.ln(1.5)
    pdf.set_fill_color(232, 240, 248)
    pdf.font(11.5, bold=True, color=BLUE)
    pdf.write_cell(0, 7.5, title, fill=True, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(1.5)


def _row(pdf: _Form, label: str, value: str) -> None:
    pdf.font(10, bold=True)
    y = pdf.get_y()
    pdf.write_cell(LABEL_WIDTH, 5.5, label)
    pdf.set_xy(pdf.l_margin + LABEL_WIDTH, y)
    pdf.font(10)
    pdf.write_lines(0, 5.5, value or " ", border="B", align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(1.2)


def _blank(pdf: _Form, label: str, width: float = 0) -> None:
    """A label and an empty underlined field for the validator's pen."""
    pdf.font(10, bold=True)
    pdf.write_cell(LABEL_WIDTH, 7, label)
    pdf.write_cell(width, 7, "", border="B", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(1.2)


def _choices(pdf: _Form, label: str, choices: list[str]) -> None:
    """Tick boxes, as many on a line as fit."""
    pdf.font(10, bold=True)
    pdf.write_cell(LABEL_WIDTH, 7, label)
    pdf.font(10)
    right = pdf.w - pdf.r_margin
    for choice in choices:
        width = pdf.get_string_width(pdf.text_for(choice)) + 12
        if pdf.get_x() + width > right:
            pdf.ln(6)
            pdf.set_x(pdf.l_margin + LABEL_WIDTH)
        pdf.rect(pdf.get_x() + 1, pdf.get_y() + 1, 4, 4)
        pdf.set_x(pdf.get_x() + 6)
        pdf.write_cell(width - 6, 6, choice)
    pdf.ln(7.2)


def application_form_pdf(application: EnrollmentApplication) -> bytes:
    """The enrolment form of `application` as a PDF: A4, section 1 filled in, section 2 to fill in and sign."""
    pdf = _Form(application.reference)
    pdf.set_title(f"myHUG – formulaire d’inscription {application.reference}")
    pdf.set_author("Hôpitaux universitaires de Genève – myHUG")
    pdf.set_creator("myHUG")
    pdf.set_lang("fr-CH")
    pdf.alias_nb_pages()
    pdf.add_page()
    _heading(pdf, application.reference)

    _section_title(pdf, "Section 1 – Le demandeur (tous les champs sont obligatoires)")
    _row(pdf, "Nom", application.last_name)
    _row(pdf, "Prénom", application.first_name)
    _row(pdf, "Date de naissance", application.date_of_birth.strftime("%d.%m.%Y"))
    _row(pdf, "GLN", application.gln)
    _row(pdf, "Spécialité(s)", _specialties(application))
    _row(pdf, "Adresse du cabinet", application.practice_address)
    _row(pdf, "Téléphone mobile", display_mobile(application.mobile))
    _row(pdf, "Adresse e-mail", application.email)
    _row(pdf, "Demande déposée le", _local_date(application.created_at))
    pdf.font(9, color=GREY)
    pdf.write_lines(
        0,
        5,
        "Le demandeur certifie l’exactitude des informations ci-dessus. Le compte myHUG est strictement "
        "personnel : pas de compte de secrétariat ou de cabinet.",
        align="L",
        new_x=XPos.LMARGIN,
        new_y=YPos.NEXT,
    )
    pdf.ln(2)
    _blank(pdf, "Signature du demandeur", 70)

    _section_title(pdf, "Section 2 – Validation (à remplir par la personne en charge de la validation)")
    _choices(pdf, "Lieu de validation", [DESK_NAMES[d] for d in Desk.CHOICES])
    _choices(pdf, "Pièce d’identité", [ID_TYPE_NAMES[t] for t in IdDocumentType.CHOICES])
    _blank(pdf, "Numéro de la pièce")
    _blank(pdf, "Date d’expiration", 50)
    _choices(pdf, "Copie de la pièce", ["Copie conservée"])
    _choices(pdf, "Contrôle du mobile", ["SMS de contrôle (code relu par le demandeur)", "Appel de contrôle"])
    _blank(pdf, "Nom du validateur")
    _blank(pdf, "Date", 50)
    pdf.font(10, bold=True)
    pdf.write_cell(LABEL_WIDTH, 7, "Signature")
    pdf.rect(pdf.get_x(), pdf.get_y(), 80, 22)
    pdf.set_y(pdf.get_y() + 25)
    pdf.font(9, color=GREY)
    pdf.write_lines(
        0,
        5,
        "Transmettre ce formulaire signé et la copie de la pièce d’identité au service de cybersanté & "
        "télémédecine des HUG, qui crée le login et envoie un mot de passe provisoire par e-mail au demandeur. "
        f"Imprimé le {_local_date(utcnow())}.",
        align="L",
        new_x=XPos.LMARGIN,
        new_y=YPos.NEXT,
    )
    return bytes(pdf.output())
