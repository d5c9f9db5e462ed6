"""Physicians (one GLN each), their FMH specialties and their "Mon profil" preferences."""

from __future__ import annotations

from enum import StrEnum

from peewee import JOIN, CharField, DateField, DateTimeField, ForeignKeyField, TextField, fn

from .db import BaseModel, db, public_id, utcnow


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
    email_bounce_reason = CharField(null=True)  # the mail server's permanent refusal (SMTP 5xx), as it answered
    last_digest_at = DateTimeField(null=True)  # when the last daily digest was queued for this physician
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

    # -- notifications (workflows/notices.py) -------------------------------------------------------------------
    @classmethod
    def record_bounce(cls, physician_id: int, reason: str, now) -> None:
        """The mail server refused the address for good (SMTP 5xx): no notification is queued until it is cleared."""
        cls.update(email_bounced_at=now, email_bounce_reason=reason[:200]).where(cls.id == physician_id).execute()

    @classmethod
    def clear_bounce(cls, physician_id: int) -> bool:
        """The physician (or an administrator) says the address works again; False if there was no bounce."""
        cleared = (
            cls.update(email_bounced_at=None, email_bounce_reason=None)
            .where((cls.id == physician_id) & cls.email_bounced_at.is_null(False))
            .execute()
        )
        return cleared == 1

    @classmethod
    def take_digest(cls, physician_id: int, due_at, now) -> bool:
        """Compare-and-set: True once per digest instant `due_at` (two runs at once: one gets it)."""
        stamped = (
            cls.update(last_digest_at=now)
            .where((cls.id == physician_id) & (cls.last_digest_at.is_null() | (cls.last_digest_at < due_at)))
            .execute()
        )
        return stamped == 1

    @classmethod
    def by_public_id(cls, value: str) -> Physician | None:
        return cls.get_or_none(cls.public_id == value)

    def save_preferences(
        self,
        *,
        notification_mode: str,
        patients_filter: str,
        documents_filter: str,
        landing_page: str,
        specialties,
    ) -> dict:
        """Write the choices of "Mon profil" (settings 1–5) in one transaction, compared with what is stored, and
        return what changed: setting names with their old and new values, specialty codes added and removed; never
        who the physician is (the caller puts it on the audit trail). A value outside its choices or an unknown
        specialty code raises ValueError before anything is written."""
        chosen = {
            "notification_mode": NotificationMode(notification_mode).value,
            "patients_filter": PatientsFilter(patients_filter).value,
            "documents_filter": DocumentsFilter(documents_filter).value,
            "landing_page": LandingPage(landing_page).value,
        }
        wanted = set(specialties)
        known = {s.code: s.id for s in Specialty.select().where(Specialty.code.in_(list(wanted)))} if wanted else {}
        if set(known) != wanted:
            raise ValueError(f"unknown specialty codes: {', '.join(sorted(wanted - set(known)))}")
        with db.atomic():
            stored = type(self).get_by_id(self.id)
            changes: dict = {
                field: {"from": getattr(stored, field), "to": value}
                for field, value in chosen.items()
                if getattr(stored, field) != value
            }
            if changes:
                type(self).update({field: change["to"] for field, change in changes.items()}).where(
                    type(self).id == self.id
                ).execute()
            held = {s.code for s in stored.specialties()}
            added, removed = sorted(wanted - held), sorted(held - wanted)
            if removed:
                gone = Specialty.select(Specialty.id).where(Specialty.code.in_(removed))
                PhysicianSpecialty.delete().where(
                    (PhysicianSpecialty.physician == self.id) & PhysicianSpecialty.specialty.in_(gone)
                ).execute()
            if added:
                rows = [{"physician": self.id, "specialty": known[code]} for code in added]
                # The same choice saved twice at once (two tabs) adds each specialty once.
                PhysicianSpecialty.insert_many(rows).on_conflict_ignore().execute()
            if added or removed:
                changes["specialties"] = {"added": added, "removed": removed}
        for field, value in chosen.items():
            setattr(self, field, value)
        return changes

    @classmethod
    def by_glns(cls, glns) -> dict[str, Physician]:
        """GLN → physician, for those of `glns` the portal knows, in one query."""
        wanted = list(glns)
        return {p.gln: p for p in cls.select().where(cls.gln.in_(wanted))} if wanted else {}

    @classmethod
    def search(cls, text: str = "", specialty: str | None = None, limit: int = 50):
        """Physicians (each one person with one GLN: there is no other kind of row here) whose name or GLN contain
        every word of `text`, holding the specialty coded `specialty` if given, by name; at most `limit` rows.

        One query: each row carries `account_state`, the state of the physician's myHUG account (None without one).
        """
        from .accounts import Account  # accounts.py imports this module

        query = cls.select(cls, Account.state.alias("account_state")).join(
            Account, JOIN.LEFT_OUTER, on=(Account.physician == cls.id)
        )
        for word in text.split():
            query = query.where(cls.last_name.contains(word) | cls.first_name.contains(word) | cls.gln.contains(word))
        if specialty:
            holders = PhysicianSpecialty.select(PhysicianSpecialty.physician).join(Specialty)
            query = query.where(cls.id.in_(holders.where(Specialty.code == specialty)))
        return query.order_by(fn.LOWER(cls.last_name), fn.LOWER(cls.first_name), cls.id).limit(limit).objects()

    @classmethod
    def directory(cls, text: str = "", *, gln: str | None = None, specialty: str | None = None, limit=50, offset=0):
        """The authorized recipients hospital staff pick from (the FHIR directory): physicians whose myHUG account
        is active, whose first or last name contains every word of `text`, with this GLN and holding the specialty
        coded `specialty` when given, by name; one query. Names match case-insensitively; on PostgreSQL accents are
        ignored too ("Benoit" finds "Benoît"), on SQLite only ASCII letters fold case (LIKE)."""
        from .accounts import Account  # accounts.py imports this module
        from .db import is_postgres

        query = cls.select().join(Account, on=(Account.physician == cls.id)).where(Account.state == "active")
        folded = is_postgres()
        for word in text.split():
            if folded:
                needle = _fold(word)
                query = query.where(
                    fn.TRANSLATE(fn.LOWER(cls.last_name), _ACCENTED, _PLAIN).contains(needle)
                    | fn.TRANSLATE(fn.LOWER(cls.first_name), _ACCENTED, _PLAIN).contains(needle)
                )
            else:
                query = query.where(cls.last_name.contains(word) | cls.first_name.contains(word))
        if gln is not None:
            query = query.where(cls.gln == gln)
        if specialty:
            holders = PhysicianSpecialty.select(PhysicianSpecialty.physician).join(Specialty)
            query = query.where(cls.id.in_(holders.where(Specialty.code == specialty)))
        query = query.order_by(fn.LOWER(cls.last_name), fn.LOWER(cls.first_name), cls.id)
        return list(query.limit(limit).offset(offset))

    @classmethod
    def specialties_of(cls, physician_ids) -> dict[int, list[Specialty]]:
        """physician id → their specialties, for a whole page of physicians in one query."""
        ids = list(physician_ids)
        if not ids:
            return {}
        rows = (
            PhysicianSpecialty.select(PhysicianSpecialty.physician, Specialty)
            .join(Specialty)
            .where(PhysicianSpecialty.physician.in_(ids))
            .order_by(Specialty.name_fr)
        )
        found: dict[int, list[Specialty]] = {i: [] for i in ids}
        for link in rows:
            found[link.physician_id].append(link.specialty)
        return found

    @classmethod
    def account_states(cls, physician_ids) -> dict[int, str]:
        """physician id → the state of their myHUG account, for those who have one, in one query."""
        from .accounts import Account  # accounts.py imports this module

        ids = list(physician_ids)
        if not ids:
            return {}
        query = Account.select(Account.physician, Account.state).where(Account.physician.in_(ids)).tuples()
        return dict(query)


# Letters folded for the directory's accent-insensitive search on PostgreSQL (translate(), no extension needed).
# Upper case too: LOWER() leaves non-ASCII letters as they are under a C locale.
_ACCENTED = "àáâãäåāçćčèéêëēėęìíîïīñńòóôõöøōùúûüūýÿžšłÀÁÂÃÄÅĀÇĆČÈÉÊËĒĖĘÌÍÎÏĪÑŃÒÓÔÕÖØŌÙÚÛÜŪÝŸŽŠŁ"
_PLAIN = "aaaaaaaccceeeeeeeiiiiinnooooooouuuuuyyzslaaaaaaaccceeeeeeeiiiiinnooooooouuuuuyyzsl"


def _fold(text: str) -> str:
    """Lower case, without the accents _ACCENTED lists (as the database folds the names)."""
    return text.lower().translate(str.maketrans(_ACCENTED, _PLAIN))


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
