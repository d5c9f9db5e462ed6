"""Documents from the DPI, the document type catalogue, and deliveries (one document on its way to one physician)."""

from __future__ import annotations

from peewee import (
    BooleanField,
    Case,
    CharField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    TextField,
)

from .accounts import Account
from .db import BaseModel, public_id, utcnow
from .patients import Patient, Stay
from .physicians import Physician


class DocumentType(BaseModel):
    """A LOINC-coded document type; only "communicable" types ever leave the hospital."""

    loinc = CharField(unique=True)
    name_fr = CharField()
    name_en = CharField()
    communicable = BooleanField(default=False)


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

    class Meta:
        indexes = (
            (("document", "physician"), True),
            (("physician", "state"), False),
        )

    VISIBLE_STATES = ("available", "notified", "consulted")

    @classmethod
    def visible_to(cls, physician_id: int):
        """What "Mes documents" may show: the physician's own deliveries that reached their space."""
        return cls.select().where((cls.physician == physician_id) & (cls.state.in_(cls.VISIBLE_STATES)))

    @classmethod
    def inbox(cls, physician_id: int):
        """The "Mes documents" list in one query: unread first, then the newest; document, patient, type joined."""
        unread = Case(None, [(cls.consulted_at.is_null(), 0)], 1)
        return (
            cls.select(cls, Document, Patient, DocumentType)
            .join(Document)
            .join(Patient, on=(Document.patient == Patient.id))
            .switch(Document)
            .join(DocumentType, on=(Document.type == DocumentType.id))
            .where((cls.physician == physician_id) & (cls.state.in_(cls.VISIBLE_STATES)))
            .order_by(unread, cls.available_at.desc(), cls.id.desc())
        )
