"""The audit trail (append-only, SHA-256 hash chain) and the transition log of every workflow."""

from __future__ import annotations

from peewee import JOIN, AutoField, CharField, DateTimeField, IntegerField, TextField

from .db import BaseModel, utcnow


class AuditEvent(BaseModel):
    """One audited fact. `hash` = SHA-256(prev_hash ‖ canonical serialization); see security/audit.py."""

    id = AutoField()
    at = DateTimeField(default=utcnow, index=True)
    actor_id = IntegerField(null=True)
    actor_role = CharField()
    ip = CharField(null=True)
    action = CharField(index=True)
    outcome = CharField(default="success")
    object_type = CharField(null=True)
    object_id = CharField(null=True, index=True)
    details = TextField(default="{}")  # canonical JSON; never secrets, never patient names
    prev_hash = CharField(max_length=64)
    hash = CharField(max_length=64, unique=True)

    @classmethod
    def of_client_documents(
        cls,
        client: str,
        actions,
        *,
        document_id: int | None = None,
        patient_id: int | None = None,
        event_hash: str | None = None,
        since=None,
        before=None,
        limit: int = 50,
        offset: int = 0,
    ) -> list:
        """The events with one of `actions` about the documents the DPI client `client` sent, and about their
        deliveries, oldest first, in one query. Each row carries `row.document` (its patient joined) and, for an
        event about a delivery, `row.delivery` (its physician joined); `since` ≤ `at` < `before` when given;
        `event_hash`: only that event (how the FHIR API names one), if the client may see it."""
        from .documents import Delivery, Document  # documents.py imports this module
        from .patients import Patient
        from .physicians import Physician

        about_delivery = (cls.object_type == "delivery") & (cls.object_id == Delivery.id.cast("TEXT"))
        about_document = ((cls.object_type == "document") & (cls.object_id == Document.id.cast("TEXT"))) | (
            Document.id == Delivery.document
        )
        query = (
            cls.select(cls, Delivery, Physician, Document, Patient)
            .join(Delivery, JOIN.LEFT_OUTER, on=about_delivery, attr="delivery")
            .join(Physician, JOIN.LEFT_OUTER, on=Delivery.physician)
            .switch(cls)
            .join(Document, on=about_document, attr="document")
            .join(Patient, on=Document.patient)
            .where((Document.dpi_client == client) & cls.action.in_(list(actions)))
        )
        if document_id is not None:
            query = query.where(Document.id == document_id)
        if patient_id is not None:
            query = query.where(Document.patient == patient_id)
        if event_hash is not None:
            query = query.where(cls.hash == event_hash)
        if since is not None:
            query = query.where(cls.at >= since)
        if before is not None:
            query = query.where(cls.at < before)
        return list(query.order_by(cls.at, cls.id).limit(limit).offset(offset))


class AuditHead(BaseModel):
    """A single row naming the last link, so that deleting the newest events is detected too."""

    id = IntegerField(primary_key=True)
    last_id = IntegerField(default=0)
    last_hash = CharField(max_length=64)


class TransitionLog(BaseModel):
    """One row per fired trigger, written by workflows/engine.py in the same transaction as the state change."""

    workflow = CharField()
    object_id = IntegerField()
    trigger = CharField()
    source = CharField()
    dest = CharField()
    actor_id = IntegerField(null=True)
    actor_role = CharField()
    at = DateTimeField(default=utcnow)
    note = TextField(null=True)

    class Meta:
        indexes = ((("workflow", "object_id"), False),)
