"""Documents from the DPI, the document type catalogue, and deliveries (one document on its way to one physician)."""

from __future__ import annotations

from peewee import (
    JOIN,
    BooleanField,
    Case,
    CharField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    TextField,
    fn,
)

from .accounts import Account
from .audit import TransitionLog
from .db import BaseModel, public_id, utcnow
from .patients import Patient, Stay
from .physicians import Physician


class DocumentType(BaseModel):
    """A LOINC-coded document type; only "communicable" types ever leave the hospital."""

    loinc = CharField(unique=True)
    name_fr = CharField()
    name_en = CharField()
    communicable = BooleanField(default=False)

    @classmethod
    def catalogue(cls):
        """Every type, by LOINC code (the administrators' page)."""
        return cls.select().order_by(cls.loinc)


SEED_DOCUMENT_TYPES = [
    ("18842-5", "Lettre de sortie", "Discharge summary", True),
    ("11504-8", "Rapport opératoire", "Surgical operation note", True),
    ("11488-4", "Compte rendu de consultation", "Consult note", True),
    ("11502-2", "Résultats de laboratoire", "Laboratory report", True),
    ("18748-4", "Rapport d'imagerie", "Diagnostic imaging study", True),
    ("11506-3", "Note de suivi", "Progress note", False),
    ("34109-9", "Note interne", "Note (internal)", False),
]


class DocumentStatus:
    PRELIMINARY = "preliminary"
    FINAL = "final"


class Document(BaseModel):
    """A document as the DPI sent it; its PDF is stored encrypted (AES-GCM) in the blob store."""

    public_id = CharField(unique=True, default=public_id)
    dpi_system = CharField()
    dpi_value = CharField()
    patient = ForeignKeyField(Patient, backref="documents")
    stay = ForeignKeyField(Stay, backref="documents")
    type = ForeignKeyField(DocumentType, backref="documents")
    title = CharField()
    author = CharField(default="")
    status = CharField(default=DocumentStatus.FINAL)
    version_number = IntegerField(default=1)
    replaces = ForeignKeyField("self", null=True, backref="replaced_by")
    superseded_at = DateTimeField(null=True)
    recalled_at = DateTimeField(null=True)
    blob_id = CharField(null=True)
    sha256 = CharField(max_length=64, null=True)
    size_bytes = IntegerField(default=0)
    dpi_client = CharField(null=True)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("dpi_system", "dpi_value"), True),)

    @property
    def is_current(self) -> bool:
        return self.superseded_at is None and self.recalled_at is None

    @classmethod
    def by_dpi_id(cls, system: str, value: str):
        """The document the DPI knows by this identifier, or None."""
        return cls.get_or_none((cls.dpi_system == system) & (cls.dpi_value == value))

    @classmethod
    def of_stay(cls, stay_id: int):
        """Every document of a stay (all versions, any status), oldest first."""
        return cls.select().where(cls.stay == stay_id).order_by(cls.id)

    @classmethod
    def by_public_id(cls, value: str) -> Document | None:
        """The document named in a URL, its type, patient and stay joined."""
        return (
            cls.select(cls, DocumentType, Patient, Stay)
            .join(DocumentType, on=(cls.type == DocumentType.id))
            .switch(cls)
            .join(Patient, on=(cls.patient == Patient.id))
            .switch(cls)
            .join(Stay, on=(cls.stay == Stay.id))
            .where(cls.public_id == value)
            .first()
        )

    @classmethod
    def newer_version(cls, document_id: int) -> Document | None:
        """The version that replaced this one, if any."""
        return cls.select().where(cls.replaces == document_id).order_by(cls.version_number.desc()).first()

    @classmethod
    def of_stays(cls, stay_ids):
        """The documents of these stays, the newest first, their type joined, in one query."""
        return (
            cls.select(cls, DocumentType)
            .join(DocumentType, on=(cls.type == DocumentType.id))
            .where(cls.stay.in_(list(stay_ids)))
            .order_by(cls.created_at.desc(), cls.id.desc())
        )


class ManualAuthorization(BaseModel):
    """A clinician sends one document to a physician by hand, with the patient's explicit agreement recorded."""

    document = ForeignKeyField(Document, backref="manual_authorizations")
    physician = ForeignKeyField(Physician, backref="manual_authorizations")
    recorded_by = ForeignKeyField(Account, backref="+")
    patient_agreed_at = DateTimeField()
    note = TextField(default="")
    recorded_at = DateTimeField(default=utcnow)
    revoked_at = DateTimeField(null=True)

    class Meta:
        indexes = ((("document", "physician"), False),)

    @classmethod
    def current(cls, document_id: int, physician_id: int):
        return cls.get_or_none(
            (cls.document == document_id) & (cls.physician == physician_id) & cls.revoked_at.is_null()
        )

    @classmethod
    def in_force(cls, document_id: int):
        """The manual authorizations not withdrawn for this document."""
        return cls.select().where((cls.document == document_id) & cls.revoked_at.is_null())


class Delivery(BaseModel):
    """One document on its way to one physician. State is owned by workflows/delivery.py."""

    public_id = CharField(unique=True, default=public_id)
    document = ForeignKeyField(Document, backref="deliveries")
    physician = ForeignKeyField(Physician, backref="deliveries")
    state = CharField(index=True)
    version = IntegerField(default=1)
    state_changed_at = DateTimeField(default=utcnow)
    created_at = DateTimeField(default=utcnow)
    available_at = DateTimeField(null=True)
    notified_at = DateTimeField(null=True)
    consulted_at = DateTimeField(null=True)
    revoked_reason = CharField(null=True)  # a DESIGN §5 reason code: revoked, superseded, not-authorized…
    # The outbox e-mail that announces it (queued, not yet accepted by the mail server); `notify` fires on acceptance.
    notification_id = IntegerField(null=True, index=True)

    class Meta:
        indexes = (
            (("document", "physician"), True),
            (("physician", "state"), False),
        )

    VISIBLE_STATES = ("available", "notified", "consulted")

    @classmethod
    def of_document(cls, document_id: int):
        """The document's deliveries, one per recipient, their physician joined, by the physician's name."""
        return (
            cls.select(cls, Physician)
            .join(Physician, on=(cls.physician == Physician.id))
            .where(cls.document == document_id)
            .order_by(Physician.last_name, Physician.first_name, cls.id)
        )

    @classmethod
    def history(cls, delivery_ids):
        """The delivery workflow's transition log of these deliveries, oldest first, in one query; `row.actor` is
        the Account who fired it (None for the system or the DPI)."""
        actor = Account.alias()
        return (
            TransitionLog.select(TransitionLog, actor.id, actor.public_id, actor.username, actor.full_name)
            .join(actor, JOIN.LEFT_OUTER, on=(TransitionLog.actor_id == actor.id), attr="actor")
            .where((TransitionLog.workflow == "delivery") & TransitionLog.object_id.in_(list(delivery_ids)))
            .order_by(TransitionLog.at, TransitionLog.id)
        )

    @classmethod
    def of_document_in(cls, document_id: int, states):
        """The deliveries of one document in these states, by id."""
        where = (cls.document == document_id) & cls.state.in_([str(s) for s in states])
        return cls.select().where(where).order_by(cls.id)

    @classmethod
    def of_physician(cls, physician_id: int, states):
        """The physician's deliveries in these states (e.g. those waiting for their account), by id."""
        return cls.select().where((cls.physician == physician_id) & cls.state.in_([str(s) for s in states]))

    @classmethod
    def of_type(cls, document_type_id: int, states):
        """The deliveries of documents of one type in these states (a type reclassified by an administrator)."""
        return (
            cls.select(cls)
            .join(Document)
            .where((Document.type == document_type_id) & cls.state.in_([str(s) for s in states]))
            .order_by(cls.id)
        )

    # -- notifications (workflows/notices.py) ---------------------------------------------------------------------
    @classmethod
    def unannounced(cls):
        """Deliveries in "Mes documents" that no notification announces yet."""
        return (cls.state == "available") & cls.notification_id.is_null()

    @classmethod
    def physicians_to_notify(cls, mode: str, *, arrived_before):
        """Ids of the physicians with this notification mode, e-mail not bounced, who have an unannounced delivery
        that became available before `arrived_before` (one GROUP BY over the (physician, state) index)."""
        return (
            cls.select(cls.physician)
            .join(Physician, on=(cls.physician == Physician.id))
            .where(cls.unannounced() & (Physician.notification_mode == mode) & Physician.email_bounced_at.is_null())
            .group_by(cls.physician)
            .having(fn.MIN(cls.available_at) <= arrived_before)
            .order_by(cls.physician)
            .tuples()
        )

    @classmethod
    def announce(cls, physician_id: int, notification_id: int, *, arrived_before) -> int:
        """Point the physician's unannounced deliveries (available before `arrived_before`) to a notification;
        returns how many. Run twice at once, the second finds none: `notification_id IS NULL` is re-checked."""
        where = (cls.physician == physician_id) & cls.unannounced() & (cls.available_at <= arrived_before)
        return cls.update(notification_id=notification_id).where(where).execute()

    @classmethod
    def count_unannounced(cls, physician_id: int, *, arrived_before) -> int:
        where = (cls.physician == physician_id) & cls.unannounced() & (cls.available_at <= arrived_before)
        return cls.select().where(where).count()

    @classmethod
    def announced_by(cls, notification_id: int) -> list[Delivery]:
        """The deliveries a notification announces that still wait in "Mes documents", their physician joined.

        The state is checked here, not in SQL: with `state = 'available'` beside it, SQLite may pick the state index
        (a hundred thousand available rows) over the notification's (about twenty) when its statistics were
        gathered before notifications existed — measured at 13 ms a notice instead of 0.05."""
        rows = (
            cls.select(cls, Physician)
            .join(Physician, on=(cls.physician == Physician.id))
            .where(cls.notification_id == notification_id)
            .order_by(cls.id)
        )
        return [row for row in rows if row.state == "available"]

    @classmethod
    def detach_from(cls, notification_id: int) -> int:
        """Forget a notification that will never be delivered (a hard bounce): its deliveries may be announced
        again once the address works."""
        return cls.update(notification_id=None).where(cls.notification_id == notification_id).execute()

    @classmethod
    def visible_to(cls, physician_id: int):
        """What "Mes documents" may show: the physician's own deliveries that reached their space."""
        return cls.select().where((cls.physician == physician_id) & (cls.state.in_(cls.VISIBLE_STATES)))

    # On their way to the physician but not in "Mes documents" yet (withheld and revoked ones never will be).
    WAITING_STATES = ("finalized", "communicable", "consented")
    INBOX_SORTS = ("received", "patient", "type")
    # Where a delivery waits for a fact outside the portal (a designation, an authorization, an account, a type made
    # communicable): one that stays there long is worth an administrator's look.
    STUCK_STATES = (*WAITING_STATES, "withheld")

    @classmethod
    def stuck_counts(cls, unchanged_since) -> dict[str, int]:
        """How many deliveries sit in each of STUCK_STATES unchanged since before `unchanged_since` (one GROUP BY)."""
        query = (
            cls.select(cls.state, fn.COUNT(cls.id))
            .where(cls.state.in_(cls.STUCK_STATES) & (cls.state_changed_at <= unchanged_since))
            .group_by(cls.state)
        )
        return dict(query.tuples())

    @classmethod
    def stuck(cls, unchanged_since, limit: int):
        """Those deliveries, the longest waiting first, with document, type and recipient joined, in one query."""
        return (
            cls.select(cls, Document, DocumentType, Physician)
            .join(Document)
            .join(DocumentType, on=(Document.type == DocumentType.id))
            .switch(cls)
            .join(Physician, on=(cls.physician == Physician.id))
            .where(cls.state.in_(cls.STUCK_STATES) & (cls.state_changed_at <= unchanged_since))
            .order_by(cls.state_changed_at, cls.id)
            .limit(limit)
        )

    @classmethod
    def inbox(
        cls,
        physician_id: int,
        *,
        unread_only: bool = False,
        since=None,
        patient_public_id: str | None = None,
        sort: str = "received",
        language: str = "fr",
    ):
        """The "Mes documents" list in one query, document, patient and type joined.

        `sort`: "received" (unread first, then the newest), "patient" (by name, then unread first and newest) or
        "type" (the type's name in `language`, then the same). Filters: unread only, received since a time, one
        patient (by public id)."""
        unread_first = Case(None, [(cls.consulted_at.is_null(), 0)], 1)
        query = (
            cls.select(cls, Document, Patient, DocumentType)
            .join(Document)
            .join(Patient, on=(Document.patient == Patient.id))
            .switch(Document)
            .join(DocumentType, on=(Document.type == DocumentType.id))
            .where((cls.physician == physician_id) & (cls.state.in_(cls.VISIBLE_STATES)))
        )
        if unread_only:
            query = query.where(cls.consulted_at.is_null())
        if since is not None:
            query = query.where(cls.available_at >= since)
        if patient_public_id:
            query = query.where(Patient.public_id == patient_public_id)
        newest = (unread_first, cls.available_at.desc(), cls.id.desc())
        if sort == "patient":
            return query.order_by(fn.LOWER(Patient.family_name), fn.LOWER(Patient.given_name), Patient.id, *newest)
        if sort == "type":
            name = DocumentType.name_en if language == "en" else DocumentType.name_fr
            return query.order_by(name, DocumentType.id, *newest)
        return query.order_by(*newest)

    @classmethod
    def inbox_page(cls, physician_id: int, page: int, per_page: int, **filters):
        """One page of `inbox(physician_id, **filters)` and the number of rows of all pages: two queries whatever
        the number of rows. `page` is brought within the pages that exist; returns (rows, total, page)."""
        query = cls.inbox(physician_id, **filters)
        total = cls._inbox_count(physician_id, **filters)
        page = min(max(page, 1), max(1, -(-total // per_page)))
        return list(query.paginate(page, per_page)), total, page

    @classmethod
    def _inbox_count(cls, physician_id: int, *, unread_only=False, since=None, patient_public_id=None, **_sort):
        """How many rows `inbox` has, counted on `delivery` alone: its joins are inner joins on required foreign
        keys, so they change no count — except the patient filter, which needs the join."""
        if patient_public_id:
            return (
                cls.inbox(physician_id, unread_only=unread_only, since=since, patient_public_id=patient_public_id)
                .order_by()
                .count()
            )
        query = cls.select(fn.COUNT(cls.id)).where((cls.physician == physician_id) & cls.state.in_(cls.VISIBLE_STATES))
        if unread_only:
            query = query.where(cls.consulted_at.is_null())
        if since is not None:
            query = query.where(cls.available_at >= since)
        return query.scalar()

    @classmethod
    def for_recipient(cls, public_id: str, physician_id: int):
        """The document page's delivery with its document, patient, stay and type, in one query; None unless it is
        this physician's and in their space (another's, withheld, revoked or made up: all alike None)."""
        return (
            cls.select(cls, Document, Patient, Stay, DocumentType)
            .join(Document)
            .join(Patient, on=(Document.patient == Patient.id))
            .switch(Document)
            .join(Stay, on=(Document.stay == Stay.id))
            .switch(Document)
            .join(DocumentType, on=(Document.type == DocumentType.id))
            .where((cls.public_id == public_id) & (cls.physician == physician_id) & cls.state.in_(cls.VISIBLE_STATES))
            .first()
        )

    @classmethod
    def by_public_id(cls, value: str):
        """Whatever delivery has this public id (the audit trail of a refused access names it), or None."""
        return cls.get_or_none(cls.public_id == value)

    @classmethod
    def patients_of(cls, physician_id: int, *, with_unread: bool = False, since=None):
        """ "Mes patients" in one query: each patient with deliveries in this physician's space, with `documents`
        (how many), `unread` (how many not opened yet) and `last_received`; by name."""
        unread = fn.SUM(Case(None, [(cls.consulted_at.is_null(), 1)], 0))
        last_received = fn.MAX(cls.available_at)
        query = (
            Patient.select(
                Patient,
                fn.COUNT(cls.id).alias("documents"),
                unread.alias("unread"),
                last_received.alias("last_received"),
            )
            .join(Document, on=(Document.patient == Patient.id))
            .join(cls, on=(cls.document == Document.id))
            .where((cls.physician == physician_id) & cls.state.in_(cls.VISIBLE_STATES))
            .group_by(Patient.id)
        )
        if with_unread:
            query = query.having(unread > 0)
        if since is not None:
            query = query.having(last_received >= since)
        return query.order_by(fn.LOWER(Patient.family_name), fn.LOWER(Patient.given_name), Patient.id)

    @classmethod
    def counts_by_state(cls, physician_id: int) -> dict[str, int]:
        """How many of this physician's deliveries are in each state, in one query ("Je ne reçois pas de document")."""
        query = cls.select(cls.state, fn.COUNT(cls.id)).where(cls.physician == physician_id).group_by(cls.state)
        return dict(query.tuples())
