"""Physicians (one GLN each), their FMH specialties and their "Mon profil" preferences."""

from __future__ import annotations

from enum import StrEnum

from peewee import CharField, DateField, DateTimeField, ForeignKeyField, TextField

from .db import BaseModel, public_id, utcnow


def gln_is_valid(gln: str | None) -> bool:
    """A GLN is 13 digits whose last one is the GS1 check digit (weights 1,3,1,3… from the left)."""
    if not gln or len(gln) != 13 or not gln.isdigit():
        return False
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(gln[:12]))
    return (10 - total % 10) % 10 == int(gln[12])


def gln_with_check_digit(first_twelve: str) -> str:
    """Complete 12 digits into a valid GLN (demo data and tests)."""
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(first_twelve))
    return first_twelve + str((10 - total % 10) % 10)


class NotificationMode(StrEnum):
    """Profile setting 1: how the physician hears of new documents."""

    EACH = "each"
    DIGEST = "digest"
    NONE = "none"


class PatientsFilter(StrEnum):
    """Profile setting 3: which patients "Mes patients" lists."""

    ALL = "all"
    WITH_UNREAD = "with_unread"
    LAST_90_DAYS = "last_90_days"


class DocumentsFilter(StrEnum):
    """Profile setting 4: which documents "Mes documents" lists."""

    ALL = "all"
    UNREAD = "unread"
    LAST_90_DAYS = "last_90_days"


class LandingPage(StrEnum):
    """Profile setting 5: the page shown after login."""

    DOCUMENTS = "documents"
    PATIENTS = "patients"
    PROFILE = "profile"


class Specialty(BaseModel):
    """A specialist title (FMH), shown to hospital staff when they pick a recipient."""

    code = CharField(unique=True)
    name_fr = CharField()
    name_en = CharField()


class Physician(BaseModel):
    """One person with one GLN: never a practice, a secretariat or a generic account."""

    public_id = CharField(unique=True, default=public_id)
    gln = CharField(max_length=13, unique=True)
    last_name = CharField()
    first_name = CharField()
    date_of_birth = DateField(null=True)
    email = CharField()
    mobile = CharField(null=True)  # E.164
    practice_address = TextField(default="")
    notification_mode = CharField(default=NotificationMode.EACH)
    patients_filter = CharField(default=PatientsFilter.ALL)
    documents_filter = CharField(default=DocumentsFilter.ALL)
    landing_page = CharField(default=LandingPage.DOCUMENTS)
    email_bounced_at = DateTimeField(null=True)
    created_at = DateTimeField(default=utcnow)

    @property
    def display_name(self) -> str:
        return f"{self.first_name} {self.last_name}"

    def specialties(self):
        return (
            Specialty.select()
            .join(PhysicianSpecialty)
            .where(PhysicianSpecialty.physician == self)
            .order_by(Specialty.name_fr)
        )


class PhysicianSpecialty(BaseModel):
    physician = ForeignKeyField(Physician, backref="specialty_links", on_delete="CASCADE")
    specialty = ForeignKeyField(Specialty, backref="physician_links")

    class Meta:
        indexes = ((("physician", "specialty"), True),)


# FMH specialist titles (Facharzttitel / titres de spécialiste), in French and English.
FMH_SPECIALTIES = [
    ("allergology", "Allergologie et immunologie clinique", "Allergology and clinical immunology"),
    ("anaesthesiology", "Anesthésiologie", "Anaesthesiology"),
    ("angiology", "Angiologie", "Angiology"),
    ("cardiology", "Cardiologie", "Cardiology"),
    ("surgery", "Chirurgie", "Surgery"),
    ("cardiac-surgery", "Chirurgie cardiaque et vasculaire thoracique", "Cardiac and thoracic vascular surgery"),
    ("hand-surgery", "Chirurgie de la main", "Hand surgery"),
    ("maxillofacial-surgery", "Chirurgie maxillo-faciale", "Oral and maxillofacial surgery"),
    (
        "orthopaedic-surgery",
        "Chirurgie orthopédique et traumatologie de l'appareil locomoteur",
        "Orthopaedic surgery and traumatology of the musculoskeletal system",
    ),
    ("paediatric-surgery", "Chirurgie pédiatrique", "Paediatric surgery"),
    (
        "plastic-surgery",
        "Chirurgie plastique, reconstructive et esthétique",
        "Plastic, reconstructive and aesthetic surgery",
    ),
    ("thoracic-surgery", "Chirurgie thoracique", "Thoracic surgery"),
    ("vascular-surgery", "Chirurgie vasculaire", "Vascular surgery"),
    ("dermatology", "Dermatologie et vénéréologie", "Dermatology and venereology"),
    ("endocrinology", "Endocrinologie et diabétologie", "Endocrinology and diabetology"),
    ("gastroenterology", "Gastroentérologie", "Gastroenterology"),
    ("medical-genetics", "Génétique médicale", "Medical genetics"),
    ("gynaecology", "Gynécologie et obstétrique", "Gynaecology and obstetrics"),
    ("haematology", "Hématologie", "Haematology"),
    ("infectious-diseases", "Infectiologie", "Infectious diseases"),
    ("occupational-medicine", "Médecine du travail", "Occupational medicine"),
    ("intensive-care", "Médecine intensive", "Intensive care medicine"),
    ("general-internal-medicine", "Médecine interne générale", "General internal medicine"),
    ("legal-medicine", "Médecine légale", "Legal medicine"),
    ("nuclear-medicine", "Médecine nucléaire", "Nuclear medicine"),
    ("pharmaceutical-medicine", "Médecine pharmaceutique", "Pharmaceutical medicine"),
    ("physical-medicine", "Médecine physique et réadaptation", "Physical medicine and rehabilitation"),
    ("tropical-medicine", "Médecine tropicale et médecine des voyages", "Tropical and travel medicine"),
    ("practitioner", "Médecin praticien", "Practising doctor"),
    ("nephrology", "Néphrologie", "Nephrology"),
    ("neurosurgery", "Neurochirurgie", "Neurosurgery"),
    ("neurology", "Neurologie", "Neurology"),
    ("medical-oncology", "Oncologie médicale", "Medical oncology"),
    ("ophthalmology", "Ophtalmologie", "Ophthalmology"),
    ("otorhinolaryngology", "Oto-rhino-laryngologie", "Otorhinolaryngology"),
    ("pathology", "Pathologie", "Pathology"),
    ("paediatrics", "Pédiatrie", "Paediatrics"),
    ("clinical-pharmacology", "Pharmacologie et toxicologie cliniques", "Clinical pharmacology and toxicology"),
    ("pneumology", "Pneumologie", "Pulmonology"),
    ("public-health", "Prévention et santé publique", "Prevention and public health"),
    ("psychiatry", "Psychiatrie et psychothérapie", "Psychiatry and psychotherapy"),
    (
        "child-psychiatry",
        "Psychiatrie et psychothérapie d'enfants et d'adolescents",
        "Child and adolescent psychiatry and psychotherapy",
    ),
    ("radiology", "Radiologie", "Radiology"),
    ("radio-oncology", "Radio-oncologie / radiothérapie", "Radiation oncology / radiotherapy"),
    ("rheumatology", "Rhumatologie", "Rheumatology"),
    ("urology", "Urologie", "Urology"),
]
