"""Machine clients of the FHIR API (the DPI): one bearer token each, stored as a SHA-256 digest."""

from __future__ import annotations

from peewee import CharField, DateTimeField

from .db import BaseModel, utcnow


class DpiClient(BaseModel):
    name = CharField(unique=True)
    token_hash = CharField(unique=True)
    created_at = DateTimeField(default=utcnow)
    revoked_at = DateTimeField(null=True)
    last_call_at = DateTimeField(null=True)

    @classmethod
    def listing(cls):
        """Every client, by name, revoked ones included (the operations dashboard shows when each last called)."""
        return cls.select().order_by(cls.name)
