"""Enrolment applications: section 1 (the applicant's) and section 2 (the validator's evidence)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from peewee import (
    JOIN,
    BlobField,
    Case,
    CharField,
    DateField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    TextField,
    fn,
)

from .accounts import Account
from .audit import AuditEvent, TransitionLog
from .db import BaseModel, db, is_postgres, utcnow
from .outbox import OutboxMessage

# Desks are in Geneva: a desk's day is a day in this zone (stored times are naive UTC, see db.utcnow).
DESK_ZONE = ZoneInfo("Europe/Zurich")


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

    @classmethod
    def by_reference_and_email(cls, reference: str, email: str) -> EnrollmentApplication | None:
        """The application an applicant proves with its reference and their e-mail address (case-insensitive)."""
        reference, email = (reference or "").strip().upper(), (email or "").strip().lower()
        if not reference or not email:
            return None
        return cls.get_or_none((cls.reference == reference) & (fn.LOWER(cls.email) == email))

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

    # -- the validation desk's queries (steps 2–5) -------------------------------------------------------------------
    # What the desk still has to do: from the applicant's arrival (e-mail confirmed) to the transmission.
    DESK_STATES = ("submitted", "presented", "identity_verified", "phone_verified", "signed")

    @classmethod
    def desk_queue(cls, search: str = "", *, today: dt.date | None = None):
        """The desk's work list in one query: today's appointments first (by time), then the others oldest first.

        Each row carries `appointment_at` and `appointment_desk`: its earliest live booking today (a day in Geneva),
        or None. Without `search`, submitted applications count only once their e-mail is confirmed (step 2 waits
        for it); a search for an applicant who stands at the desk also finds one who has not confirmed it yet, so the
        validator can tell them why. Each word of `search` must match the name, first name, reference, GLN or
        e-mail (ASCII case ignored).
        """
        today = today or dt.datetime.now(DESK_ZONE).date()
        start, end = (
            dt.datetime.combine(d, dt.time(), DESK_ZONE).astimezone(dt.UTC).replace(tzinfo=None)
            for d in (today, today + dt.timedelta(days=1))
        )
        arrived = cls.state == cls.DESK_STATES[0]
        if not search.split():
            arrived &= cls.email_confirmed_at.is_null(False)
        at_desk = arrived | cls.state.in_(cls.DESK_STATES[1:])
        starts_at = fn.MIN(AppointmentSlot.starts_at)
        query = (
            cls.select(cls, starts_at.alias("appointment_at"), fn.MIN(AppointmentSlot.desk).alias("appointment_desk"))
            .join(
                Appointment,
                JOIN.LEFT_OUTER,
                on=(Appointment.application == cls.id) & Appointment.cancelled_at.is_null(),
            )
            .join(
                AppointmentSlot,
                JOIN.LEFT_OUTER,
                on=(Appointment.slot == AppointmentSlot.id)
                & (AppointmentSlot.starts_at >= start)
                & (AppointmentSlot.starts_at < end),
            )
            .where(at_desk)
        )
        for word in search.split():
            query = query.where(
                cls.last_name.contains(word)
                | cls.first_name.contains(word)
                | cls.reference.contains(word)
                | cls.gln.contains(word)
                | cls.email.contains(word)
            )
        # GROUP BY the primary key: both backends then accept the row's other columns beside the aggregates.
        booked_first = Case(None, [(starts_at.is_null(), 1)], 0)
        return query.group_by(cls.id).order_by(booked_first, starts_at, cls.created_at, cls.id).objects()

    @classmethod
    def unsent_control_sms(cls, application_id: int) -> OutboxMessage | None:
        """The newest control SMS of an application still waiting in the outbox (the desk sends it at once)."""
        return (
            OutboxMessage.select()
            .where(
                (OutboxMessage.related_type == "enrollment")
                & (OutboxMessage.related_id == application_id)
                & (OutboxMessage.template == "control_code")
                & (OutboxMessage.status == "pending")
            )
            .order_by(OutboxMessage.id.desc())
            .first()
        )

    # -- administrators' queries (step 6 and the application's file) ---------------------------------------------
    @classmethod
    def by_reference(cls, reference: str) -> EnrollmentApplication | None:
        return cls.get_or_none(cls.reference == reference)

    @classmethod
    def admin_queue(cls):
        """Applications transmitted to the e-health service and waiting for their login, the longest wait first."""
        return cls.select().where(cls.state == "transmitted").order_by(cls.state_changed_at, cls.id)

    @classmethod
    def admin_search(cls, text: str = "", *, state: str | None = None):
        """Every application whose name, reference, GLN or e-mail contains each word of `text`, newest first."""
        query = cls.select()
        for word in text.split():
            query = query.where(
                cls.last_name.contains(word)
                | cls.first_name.contains(word)
                | cls.reference.contains(word)
                | cls.gln.contains(word)
                | cls.email.contains(word)
            )
        if state:
            query = query.where(cls.state == state)
        return query.order_by(cls.created_at.desc(), cls.id.desc())

    @classmethod
    def accounts_involved(cls, application: EnrollmentApplication) -> dict[int, Account]:
        """The staff who handled it and the login it led to, by id, in one query."""
        ids = application.desk_staff_ids() | {
            i for i in (application.account_created_by_id, application.account_id) if i is not None
        }
        return {a.id: a for a in Account.select().where(Account.id.in_(ids))} if ids else {}

    @classmethod
    def history(cls, application: EnrollmentApplication) -> tuple[list[TransitionLog], list[AuditEvent]]:
        """The enrolment workflow's transitions of this application and the audit events about it, oldest first.

        Each row's `actor` is the Account who acted (None for the applicant or the system). Audit events are all
        those about the application (object "enrollment", this id): the engine's, and the facts recorded through
        the web (the ID copy viewed, an appointment booked).
        """
        actor = Account.alias()
        transitions = (
            TransitionLog.select(TransitionLog, actor.id, actor.public_id, actor.username, actor.full_name)
            .join(actor, JOIN.LEFT_OUTER, on=(TransitionLog.actor_id == actor.id), attr="actor")
            .where((TransitionLog.workflow == "enrollment") & (TransitionLog.object_id == application.id))
            .order_by(TransitionLog.at, TransitionLog.id)
        )
        actor = Account.alias()
        about = (AuditEvent.object_type == "enrollment") & (AuditEvent.object_id == str(application.id))
        events = (
            AuditEvent.select(AuditEvent, actor.id, actor.public_id, actor.username, actor.full_name)
            .join(actor, JOIN.LEFT_OUTER, on=(AuditEvent.actor_id == actor.id), attr="actor")
            .where(about)
            .order_by(AuditEvent.at, AuditEvent.id)
        )
        return list(transitions), list(events)

    @classmethod
    def messages_to_applicant(cls, application: EnrollmentApplication):
        """The e-mails and SMS written to the applicant about it (and the e-mails of its login): never the body,
        which may hold a temporary password or a control code."""
        about = (OutboxMessage.related_type == "enrollment") & (OutboxMessage.related_id == application.id)
        if application.account_id is not None:
            about |= (
                (OutboxMessage.related_type == "account")
                & (OutboxMessage.related_id == application.account_id)
                & (OutboxMessage.channel == "email")
            )
        return (
            OutboxMessage.select(
                OutboxMessage.id,
                OutboxMessage.channel,
                OutboxMessage.template,
                OutboxMessage.recipient,
                OutboxMessage.status,
                OutboxMessage.created_at,
                OutboxMessage.sent_at,
            )
            .where(about)
            .order_by(OutboxMessage.created_at, OutboxMessage.id)
        )


class AppointmentSlot(BaseModel):
    """An opening at a desk where applicants can present themselves (seed: "prendre rendez-vous")."""

    desk = CharField()
    starts_at = DateTimeField(index=True)
    ends_at = DateTimeField()
    capacity = IntegerField(default=1)
    published_by = ForeignKeyField(Account, null=True, backref="+")

    @classmethod
    def upcoming(cls, now: dt.datetime, desk: str | None = None):
        """Slots that have not ended yet, soonest first, each with `taken`: the seats held by a booking."""
        held = (
            Appointment.holding()
            .select(Appointment.slot, fn.COUNT(Appointment.id).alias("n"))
            .group_by(Appointment.slot)
            .alias("held")
        )
        query = (
            cls.select(cls, fn.COALESCE(held.c.n, 0).alias("taken"))
            .join(held, JOIN.LEFT_OUTER, on=(held.c.slot_id == cls.id))
            .where(cls.ends_at > now)
            .order_by(cls.starts_at, cls.desk, cls.id)
        )
        return query.where(cls.desk == desk) if desk else query

    @classmethod
    def bookable(cls, now: dt.datetime, desk: str | None = None) -> list[AppointmentSlot]:
        """Future slots with a free seat: what the applicant may choose (booking counts again under a lock)."""
        return [slot for slot in cls.upcoming(now, desk).where(cls.starts_at > now) if slot.taken < slot.capacity]

    @classmethod
    def publish(cls, desk: str, times, capacity: int, by: Account | None) -> int:
        """Open a slot for each (starts_at, ends_at), skipping those already open then at that desk: how many new."""
        created = 0
        with db.atomic():
            for starts_at, ends_at in times:
                if not cls.select().where((cls.desk == desk) & (cls.starts_at == starts_at)).exists():
                    cls.create(desk=desk, starts_at=starts_at, ends_at=ends_at, capacity=capacity, published_by=by)
                    created += 1
        return created

    @classmethod
    def lock(cls, slot_id: int) -> AppointmentSlot | None:
        """Read a slot and hold it until the transaction ends, so that its seats are counted by one writer at a time.

        PostgreSQL: SELECT … FOR UPDATE. SQLite: a write transaction holds the database's one write lock from its
        BEGIN (IMMEDIATE, see db.open_database), and peewee refuses FOR UPDATE there.
        """
        query = cls.select().where(cls.id == slot_id)
        return (query.for_update() if is_postgres() else query).first()

    @classmethod
    def withdraw_if_unbooked(cls, slot_id: int) -> bool:
        """Delete a slot that no booking holds (cancelled or lapsed bookings go with it); False if one holds it."""
        with db.atomic():
            if cls.lock(slot_id) is None or Appointment.holding().where(Appointment.slot == slot_id).exists():
                return False
            Appointment.delete().where(Appointment.slot == slot_id).execute()
            return cls.delete().where(cls.id == slot_id).execute() == 1


class Appointment(BaseModel):
    """An applicant's booking of a slot; moving it cancels this one and books another."""

    slot = ForeignKeyField(AppointmentSlot, backref="appointments")
    application = ForeignKeyField(EnrollmentApplication, backref="appointments")
    booked_at = DateTimeField(default=utcnow)
    cancelled_at = DateTimeField(null=True)
    reminder_sent_at = DateTimeField(null=True)

    # A booking holds a seat while it is not cancelled and its application still waits for the desk visit
    # (workflows.enrollment.EnrollmentState.SUBMITTED): a withdrawn, rejected, expired or presented application
    # frees its seat without anyone having to cancel the booking.
    HOLDING_STATE = "submitted"

    @classmethod
    def holding(cls):
        return (
            cls.select()
            .join(EnrollmentApplication)
            .where(cls.cancelled_at.is_null() & (EnrollmentApplication.state == cls.HOLDING_STATE))
        )

    @classmethod
    def held_in(cls, slot_ids) -> dict[int, list[Appointment]]:
        """The bookings holding a seat in each of `slot_ids`, with their application, by slot id."""
        bookings: dict[int, list[Appointment]] = {}
        if slot_ids:
            query = cls.holding().select(cls, EnrollmentApplication).where(cls.slot.in_(list(slot_ids)))
            for appointment in query.order_by(cls.booked_at, cls.id):
                bookings.setdefault(appointment.slot_id, []).append(appointment)
        return bookings

    @classmethod
    def current_for(cls, application: EnrollmentApplication) -> Appointment | None:
        """The application's booking that is not cancelled (at most one: booking another cancels it)."""
        return (
            cls.select(cls, AppointmentSlot)
            .join(AppointmentSlot)
            .where((cls.application == application.id) & cls.cancelled_at.is_null())
            .order_by(cls.id.desc())
            .first()
        )

    @classmethod
    def book(cls, application: EnrollmentApplication, slot_id: int, now: dt.datetime) -> Appointment | None:
        """Book `slot_id` for `application` and cancel its previous booking (a move): all or nothing.

        The seats are counted while the slot is locked, so two applicants never take its last seat together.
        None if the slot does not exist, has started, or is full.
        """
        with db.atomic():
            slot = AppointmentSlot.lock(slot_id)
            if slot is None or slot.starts_at <= now:
                return None
            others = cls.holding().where((cls.slot == slot.id) & (cls.application != application.id)).count()
            if others >= slot.capacity:
                return None
            cls.cancel_for(application, now)
            appointment = cls.create(slot=slot, application=application, booked_at=now)
        return appointment

    @classmethod
    def cancel_for(cls, application: EnrollmentApplication, now: dt.datetime) -> int:
        """Cancel the application's live booking (compare-and-set: cancelled once); how many were cancelled."""
        return (
            cls.update(cancelled_at=now)
            .where((cls.application == application.id) & cls.cancelled_at.is_null())
            .execute()
        )

    @classmethod
    def for_day(cls, desk: str, day: dt.date):
        """The live bookings at `desk` on `day` (a day in Geneva), in time order, with their slot and application.

        Bookings of applications that moved on stay listed (their state says so); cancelled ones do not.
        """
        start, end = (
            dt.datetime.combine(d, dt.time(), DESK_ZONE).astimezone(dt.UTC).replace(tzinfo=None)
            for d in (day, day + dt.timedelta(days=1))
        )
        return (
            cls.select(cls, AppointmentSlot, EnrollmentApplication)
            .join(AppointmentSlot)
            .switch(cls)
            .join(EnrollmentApplication)
            .where(
                (AppointmentSlot.desk == desk)
                & (AppointmentSlot.starts_at >= start)
                & (AppointmentSlot.starts_at < end)
                & cls.cancelled_at.is_null()
            )
            .order_by(AppointmentSlot.starts_at, cls.id)
        )

    @classmethod
    def reminders_due(cls, now: dt.datetime, ahead: dt.timedelta = dt.timedelta(hours=24)):
        """Held bookings whose slot starts within `ahead` and that have not been reminded yet."""
        return (
            cls.holding()
            .switch(cls)
            .join(AppointmentSlot)
            .where(
                cls.reminder_sent_at.is_null()
                & (AppointmentSlot.starts_at > now)
                & (AppointmentSlot.starts_at <= now + ahead)
            )
            .order_by(AppointmentSlot.starts_at, cls.id)
        )

    @classmethod
    def mark_reminded(cls, appointment_id: int, now: dt.datetime) -> bool:
        """Compare-and-set: True for the one caller that stamps the reminder, False if it was stamped already."""
        stamped = (
            cls.update(reminder_sent_at=now)
            .where((cls.id == appointment_id) & cls.reminder_sent_at.is_null())
            .execute()
        )
        return stamped == 1
