"""The outbox: every e-mail and SMS is a row written in the same transaction as the change that caused it."""

from __future__ import annotations

from peewee import CharField, DateTimeField, IntegerField, TextField

from .db import BaseModel, utcnow


class OutboxStatus:
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    DEAD = "dead"
    # A notification whose documents all left "available" (opened, revoked) before it could be sent: not sent.
    CANCELLED = "cancelled"


class OutboxMessage(BaseModel):
    channel = CharField()  # email | sms
    template = CharField()  # the notify_* function that wrote it
    recipient = CharField()
    subject = CharField(default="")
    body = TextField()
    status = CharField(default=OutboxStatus.PENDING, index=True)  # not a workflow state: the dispatcher owns it
    attempts = IntegerField(default=0)
    next_attempt_at = DateTimeField(default=utcnow, index=True)
    claimed_by = CharField(null=True)
    claimed_until = DateTimeField(null=True)
    last_error = TextField(null=True)
    related_type = CharField(null=True)
    related_id = IntegerField(null=True)
    created_at = DateTimeField(default=utcnow)
    sent_at = DateTimeField(null=True)

    @classmethod
    def due(cls, now):
        return cls.select().where((cls.status == OutboxStatus.PENDING) & (cls.next_attempt_at <= now)).order_by(cls.id)
