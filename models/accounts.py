"""Accounts (one person each), their server-side sessions and their one-time-code challenges."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from peewee import (
    JOIN,
    BlobField,
    BooleanField,
    CharField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    TextField,
    Value,
    fn,
)

from .audit import TransitionLog
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
    temporary_password_reminded_at = DateTimeField(null=True)  # the reminder before it expires, sent once
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

    @classmethod
    def temporary_passwords_to_remind(cls, now, ahead):
        """Pending accounts whose unused temporary password expires within `ahead` and was not reminded yet."""
        return cls.select().where(
            (cls.state == "pending")
            & (cls.password_is_temporary == True)  # noqa: E712 (SQL, not Python)
            & (cls.temporary_password_expires_at > now)
            & (cls.temporary_password_expires_at <= now + ahead)
            & cls.temporary_password_reminded_at.is_null()
        )

    @classmethod
    def by_hin_identity(cls, issuer: str, subject: str):
        return cls.get_or_none((cls.hin_issuer == issuer) & (cls.hin_subject == subject))

    @classmethod
    def with_email(cls, email: str):
        """Any account using this address, whatever the case it was typed in."""
        return cls.select().where(fn.LOWER(cls.email) == email.strip().lower()).first()

    @classmethod
    def free_username(cls, base: str) -> str:
        """`base` if nobody has it, else the first free `base2`, `base3`, … (usernames are never reused)."""
        taken = {a.username for a in cls.select(cls.username).where(cls.username.startswith(base))}
        if base not in taken:
            return base
        return next(f"{base}{n}" for n in range(2, len(taken) + 3) if f"{base}{n}" not in taken)

    @property
    def roles(self) -> frozenset[str]:
        extra = {r for r in self.extra_roles.split(",") if r} if self.role != Role.PHYSICIAN else set()
        return frozenset({self.role, *extra})

    def has_role(self, role: str) -> bool:
        return str(role) in self.roles

    # -- named queries (the admin area's account list and page) --------------------------------------------
    @classmethod
    def search(cls, text: str = "", *, role: str | None = None, state: str | None = None):
        """Accounts whose name, username, e-mail or GLN contain every word of `text`, sorted by name.

        The physician is joined (one query for a whole page, whatever it shows of them). Each word may match a
        different column ("anne 7601" finds Anne whose GLN contains 7601); matching ignores ASCII case.
        """
        query = cls.select(cls, Physician).join(Physician, JOIN.LEFT_OUTER, on=(cls.physician == Physician.id))
        for word in text.split():
            query = query.where(
                cls.full_name.contains(word)
                | cls.username.contains(word)
                | cls.email.contains(word)
                | Physician.gln.contains(word)
                | Physician.last_name.contains(word)
                | Physician.first_name.contains(word)
            )
        if role:
            # extra_roles is "validator,administrator": compare whole names; a physician never holds another role.
            in_extra = Value(",").concat(cls.extra_roles).concat(",").contains(f",{role},")
            query = query.where((cls.role == role) | ((cls.role != Role.PHYSICIAN) & in_extra))
        if state:
            query = query.where(cls.state == state)
        name = fn.LOWER(fn.COALESCE(fn.NULLIF(cls.full_name, ""), cls.username))
        return query.order_by(name, cls.username, cls.id)

    @classmethod
    def by_public_id(cls, value: str) -> Account | None:
        """The account named in a URL, its physician joined; None when there is none."""
        return (
            cls.select(cls, Physician)
            .join(Physician, JOIN.LEFT_OUTER, on=(cls.physician == Physician.id))
            .where(cls.public_id == value)
            .first()
        )

    @classmethod
    def state_history(cls, account_id: int):
        """The account workflow's transition log for one account, oldest first; `row.actor` is who fired it
        (an Account, or None for the system)."""
        actor = cls.alias()
        return (
            TransitionLog.select(TransitionLog, actor.id, actor.public_id, actor.username, actor.full_name)
            .join(actor, JOIN.LEFT_OUTER, on=(TransitionLog.actor_id == actor.id), attr="actor")
            .where((TransitionLog.workflow == "account") & (TransitionLog.object_id == account_id))
            .order_by(TransitionLog.at, TransitionLog.id)
        )


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

    @classmethod
    def count_live(cls, account_id: int, *, idle_since: dt.datetime, started_since: dt.datetime) -> int:
        """Sessions of an account that are neither revoked nor past their idle or absolute lifetime."""
        return (
            cls.select()
            .where(
                (cls.account == account_id)
                & cls.revoked_at.is_null()
                & (cls.last_seen_at > idle_since)
                & (cls.created_at > started_since)
            )
            .count()
        )

    @classmethod
    def delete_ended_before(cls, cutoff: dt.datetime, *, idle: dt.timedelta, absolute: dt.timedelta) -> int:
        """Delete the sessions that ended before `cutoff` — revoked, idle too long or too old (security/sessions.py
        refuses them all the same) — and return how many."""
        ended = (cls.revoked_at < cutoff) | (cls.last_seen_at < cutoff - idle) | (cls.created_at < cutoff - absolute)
        return cls.delete().where(ended).execute()


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

    LOGIN_PURPOSES = ("login", "login-app")  # a code sent by SMS; an attempt answered by the authenticator app

    @classmethod
    def latest_of_attempt(cls, attempt_id: str):
        """The challenge that counts for a login attempt: the newest (a resend makes the earlier ones void)."""
        return (
            cls.select()
            .where((cls.attempt_id == attempt_id) & cls.purpose.in_(cls.LOGIN_PURPOSES))
            .order_by(cls.id.desc())
            .first()
        )

    @classmethod
    def delete_expired_before(cls, cutoff: dt.datetime) -> int:
        """Delete the challenges (used or not) that expired before `cutoff`; how many. The per-hour sending limits
        count challenges of the last hour only, so a cutoff a day back changes no limit."""
        return cls.delete().where(cls.expires_at < cutoff).execute()


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
