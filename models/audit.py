"""The audit trail (append-only, SHA-256 hash chain) and the transition log of every workflow."""

from __future__ import annotations

from peewee import AutoField, CharField, DateTimeField, IntegerField, TextField

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
