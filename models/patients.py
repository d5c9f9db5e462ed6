"""Patients, their stays or ambulatory episodes, and who they designated to receive documents for each."""

from __future__ import annotations

from peewee import JOIN, BooleanField, CharField, DateField, DateTimeField, ForeignKeyField, TextField, fn

from .accounts import Account
from .db import BaseModel, public_id, utcnow
from .physicians import Physician


class Patient(BaseModel):
    public_id = CharField(unique=True, default=public_id)
    dpi_system = CharField()
    dpi_value = CharField()
    family_name = CharField()
    given_name = CharField()
    birth_date = DateField(null=True)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("dpi_system", "dpi_value"), True),)

    @classmethod
    def by_public_id(cls, value: str) -> Patient | None:
        return cls.get_or_none(cls.public_id == value)

    @classmethod
    def search(cls, text: str, limit: int = 50):
        """Patients whose family name, given name or DPI identifier contain every word of `text`, by name: one
        query, at most `limit` rows (the clinic asks for one more to say that there are more)."""
        query = cls.select()
        for word in text.split():
            query = query.where(
                cls.family_name.contains(word) | cls.given_name.contains(word) | cls.dpi_value.contains(word)
            )
        return query.order_by(fn.LOWER(cls.family_name), fn.LOWER(cls.given_name), cls.id).limit(limit)


class StayKind:
    INPATIENT = "inpatient"  # séjour hospitalier
    AMBULATORY = "ambulatory"  # prise en charge ambulatoire (épisode)
    CHOICES = (INPATIENT, AMBULATORY)


class Stay(BaseModel):
    """A hospital stay or an ambulatory episode (FHIR Encounter); designations never carry over between them."""

    public_id = CharField(unique=True, default=public_id)
    dpi_system = CharField()
    dpi_value = CharField()
    patient = ForeignKeyField(Patient, backref="stays")
    kind = CharField(default=StayKind.INPATIENT)
    started_at = DateTimeField(null=True)
    ended_at = DateTimeField(null=True)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("dpi_system", "dpi_value"), True),)

    @classmethod
    def by_public_id(cls, value: str) -> Stay | None:
        """The stay named in a URL, its patient joined."""
        return cls.select(cls, Patient).join(Patient).where(cls.public_id == value).first()

    @classmethod
    def of_patient(cls, patient_id: int):
        """The patient's stays and ambulatory episodes, the newest first (by start, else by arrival in the portal)."""
        newest = fn.COALESCE(cls.started_at, cls.created_at)
        return cls.select().where(cls.patient == patient_id).order_by(newest.desc(), cls.id.desc())


class Designation(BaseModel):
    """For one stay: the patient designated this physician, and did or did not authorize electronic sending."""

    stay = ForeignKeyField(Stay, backref="designations")
    physician = ForeignKeyField(Physician, backref="designations")
    authorized = BooleanField(default=False)
    source = CharField(default="dpi")  # dpi (FHIR Consent) | clinic (recorded in the portal)
    dpi_consent_id = CharField(null=True, index=True)
    recorded_by = ForeignKeyField(Account, null=True, backref="+")
    recorded_at = DateTimeField(default=utcnow)
    revoked_at = DateTimeField(null=True)
    revocation_reason = TextField(null=True)

    class Meta:
        indexes = ((("stay", "physician"), True),)

    @classmethod
    def current(cls, stay_id: int, physician_id: int):
        """The designation in force for (stay, physician), or None."""
        return cls.get_or_none((cls.stay == stay_id) & (cls.physician == physician_id) & cls.revoked_at.is_null())

    @classmethod
    def in_force(cls, stay_id: int):
        """The designations of a stay not withdrawn, authorized or not."""
        return cls.select().where((cls.stay == stay_id) & cls.revoked_at.is_null())

    @classmethod
    def of_stays(cls, stay_ids):
        """Every designation of these stays, revoked ones included, oldest first, in one query: `physician` and
        `recorded_by` (the clinician, or None when it came from the DPI) are joined."""
        recorder = Account.alias()
        return (
            cls.select(cls, Physician, recorder.id, recorder.username, recorder.full_name)
            .join(Physician, on=(cls.physician == Physician.id))
            .switch(cls)
            .join(recorder, JOIN.LEFT_OUTER, on=(cls.recorded_by == recorder.id), attr="recorded_by")
            .where(cls.stay.in_(list(stay_ids)))
            .order_by(cls.recorded_at, cls.id)
        )
