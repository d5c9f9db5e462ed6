"""Enrolment applications: section 1 (the applicant's) and section 2 (the validator's evidence)."""

from __future__ import annotations

from peewee import BlobField, CharField, DateField, DateTimeField, ForeignKeyField, IntegerField, TextField

from .accounts import Account
from .db import BaseModel, utcnow


class Desk:
    """Where the applicant may present themselves (seed, step 2)."""

    AMG = "amg"
    EHEALTH = "ehealth"
    CHOICES = (AMG, EHEALTH)


class IdDocumentType:
    PASSPORT = "passport"
    IDENTITY_CARD = "identity_card"
    RESIDENCE_PERMIT = "residence_permit"
    DRIVING_LICENCE = "driving_licence"
    CHOICES = (PASSPORT, IDENTITY_CARD, RESIDENCE_PERMIT, DRIVING_LICENCE)


class EnrollmentApplication(BaseModel):
    """One application for a password + SMS account. State is owned by workflows/enrollment.py."""

    reference = CharField(unique=True)  # tracking reference given to the applicant, e.g. MH-7KQ2-9XWD
    state = CharField(index=True)
    version = IntegerField(default=1)
    state_changed_at = DateTimeField(default=utcnow, index=True)
    created_at = DateTimeField(default=utcnow)
    # Section 1: every field mandatory.
    last_name = CharField()
    first_name = CharField()
    date_of_birth = DateField()
    gln = CharField(max_length=13, index=True)
    specialty_codes = TextField()  # comma-separated Specialty.code
    practice_address = TextField()
    mobile = CharField()  # E.164
    email = CharField()
    email_token_hash = CharField(null=True)
    email_confirmed_at = DateTimeField(null=True)
    # Section 2: evidence recorded at the desk.
    desk = CharField(null=True)
    presented_at = DateTimeField(null=True)
    presented_by = ForeignKeyField(Account, null=True, backref="+")
    id_type = CharField(null=True)
    id_number_encrypted = BlobField(null=True)
    id_expiry = DateField(null=True)
    id_copy_blob = CharField(null=True)
    id_copy_mime = CharField(null=True)
    identity_verified_by = ForeignKeyField(Account, null=True, backref="+")
    identity_verified_at = DateTimeField(null=True)
    phone_check_method = CharField(null=True)  # sms | call
    phone_verified_by = ForeignKeyField(Account, null=True, backref="+")
    phone_verified_at = DateTimeField(null=True)
    signed_by = ForeignKeyField(Account, null=True, backref="+")
    signed_at = DateTimeField(null=True)
    transmitted_by = ForeignKeyField(Account, null=True, backref="+")
    transmitted_at = DateTimeField(null=True)
    # Step 6 and exits.
    account = ForeignKeyField(Account, null=True, backref="applications")
    account_created_by = ForeignKeyField(Account, null=True, backref="+")
    account_created_at = DateTimeField(null=True)
    completed_at = DateTimeField(null=True)
    closed_reason = TextField(null=True)  # rejection reason, withdrawal or expiry note

    @property
    def specialty_list(self) -> list[str]:
        return [c for c in (self.specialty_codes or "").split(",") if c]

    def desk_staff_ids(self) -> set[int]:
        """Accounts that acted at the desk on this application (for the four-eyes rule)."""
        fields = (
            self.presented_by_id,
            self.identity_verified_by_id,
            self.phone_verified_by_id,
            self.signed_by_id,
            self.transmitted_by_id,
        )
        return {f for f in fields if f is not None}


class AppointmentSlot(BaseModel):
    """An opening at a desk where applicants can present themselves (seed: "prendre rendez-vous")."""

    desk = CharField()
    starts_at = DateTimeField(index=True)
    ends_at = DateTimeField()
    capacity = IntegerField(default=1)
    published_by = ForeignKeyField(Account, null=True, backref="+")


class Appointment(BaseModel):
    """An applicant's booking of a slot; moving it cancels this one and books another."""

    slot = ForeignKeyField(AppointmentSlot, backref="appointments")
    application = ForeignKeyField(EnrollmentApplication, backref="appointments")
    booked_at = DateTimeField(default=utcnow)
    cancelled_at = DateTimeField(null=True)
    reminder_sent_at = DateTimeField(null=True)
