"""Patients, their stays or ambulatory episodes, and who they designated to receive documents for each."""

from __future__ import annotations

from peewee import BooleanField, CharField, DateField, DateTimeField, ForeignKeyField, TextField

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
