"""Accounts (one person each), their server-side sessions and their one-time-code challenges."""

from __future__ import annotations

from enum import StrEnum

from peewee import BlobField, BooleanField, CharField, DateTimeField, ForeignKeyField, IntegerField, TextField

from .db import BaseModel, public_id, utcnow
from .physicians import Physician


class Role(StrEnum):
    """Who acts. The first four are account roles; the others are actors without an account role."""

    PHYSICIAN = "physician"
    VALIDATOR = "validator"
    ADMINISTRATOR = "administrator"
    CLINICIAN = "clinician"
    APPLICANT = "applicant"  # a person on the public enrolment pages, known by reference + e-mail
    SYSTEM = "system"  # jobs and automatic triggers
    DPI = "dpi"  # the patient record, through the FHIR API


ACCOUNT_ROLES = (Role.PHYSICIAN, Role.VALIDATOR, Role.ADMINISTRATOR, Role.CLINICIAN)


class Account(BaseModel):
    """A login. State is owned by workflows/account.py; only workflows/engine.py writes it."""

    public_id = CharField(unique=True, default=public_id)
    username = CharField(unique=True)
    email = CharField(index=True)
    full_name = CharField(default="")
    role = CharField(choices=[(r.value, r.value) for r in ACCOUNT_ROLES])  # the primary role
    # Hospital staff may hold several roles (e.g. the e-health service both validates and administers), which is
    # what makes the four-eyes rule meaningful; a physician account never holds another role.
    extra_roles = CharField(default="")
    state = CharField(index=True)
    version = IntegerField(default=1)
    state_changed_at = DateTimeField(default=utcnow)
    physician = ForeignKeyField(Physician, null=True, unique=True, backref="accounts")
    password_hash = CharField(null=True)
    password_is_temporary = BooleanField(default=False)
    temporary_password_expires_at = DateTimeField(null=True)
    password_changed_at = DateTimeField(null=True)
    mobile = CharField(null=True)  # E.164, verified at the desk
    failed_attempts = IntegerField(default=0)
    next_attempt_at = DateTimeField(null=True)  # back-off
    hin_issuer = CharField(null=True)
    hin_subject = CharField(null=True)
    language = CharField(null=True)
    created_at = DateTimeField(default=utcnow)
    last_login_at = DateTimeField(null=True)

    class Meta:
        indexes = ((("hin_issuer", "hin_subject"), True),)

    @property
    def roles(self) -> frozenset[str]:
        extra = {r for r in self.extra_roles.split(",") if r} if self.role != Role.PHYSICIAN else set()
        return frozenset({self.role, *extra})

    def has_role(self, role: str) -> bool:
        return str(role) in self.roles


class Session(BaseModel):
    """A server-side session; the cookie carries a random token whose SHA-256 is `token_hash`."""

    token_hash = CharField(unique=True)
    account = ForeignKeyField(Account, backref="sessions", on_delete="CASCADE")
    created_at = DateTimeField(default=utcnow)
    last_seen_at = DateTimeField(default=utcnow)
    revoked_at = DateTimeField(null=True)
    ip = CharField(null=True)
    user_agent = CharField(null=True)
    auth_method = CharField(default="password")  # password+sms | hin


class CodeChallenge(BaseModel):
    """One one-time code: hashed, single use (consumed by compare-and-set), tied to the attempt that asked."""

    public_id = CharField(unique=True, default=public_id)
    purpose = CharField()  # login | enrolment-control
    account = ForeignKeyField(Account, null=True, backref="challenges", on_delete="CASCADE")
    attempt_id = CharField(index=True)  # the login attempt or enrolment application it belongs to
    code_hash = CharField()
    created_at = DateTimeField(default=utcnow)
    expires_at = DateTimeField(index=True)
    consumed_at = DateTimeField(null=True)
    failures = IntegerField(default=0)


class TotpCredential(BaseModel):
    """An authenticator app a physician added in "Mon profil" (optional second method beside SMS)."""

    account = ForeignKeyField(Account, backref="totp_credentials", on_delete="CASCADE")
    secret_encrypted = BlobField()
    label = CharField(default="")
    last_timecode = IntegerField(null=True)  # the last accepted time step: a code is never accepted twice
    created_at = DateTimeField(default=utcnow)
    confirmed_at = DateTimeField(null=True)


class SupportMessage(BaseModel):
    """A message sent from the "Aide" page to the support mailbox."""

    account = ForeignKeyField(Account, null=True, backref="support_messages")
    subject = CharField()
    body = TextField()
    created_at = DateTimeField(default=utcnow)
