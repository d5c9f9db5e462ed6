"""The outbox: every e-mail and SMS is a row written in the same transaction as the change that caused it."""

from __future__ import annotations

from peewee import CharField, DateTimeField, IntegerField, TextField, fn

from .db import BaseModel, utcnow


class OutboxStatus:
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    DEAD = "dead"
    # A notification whose documents all left "available" (opened, revoked) before it could be sent: not sent.
    CANCELLED = "cancelled"
    ALL = (PENDING, SENDING, SENT, DEAD, CANCELLED)


class OutboxMessage(BaseModel):
    CHANNELS = ("email", "sms")

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

    @classmethod
    def delete_finished_before(cls, cutoff) -> int:
        """Delete the messages sent or cancelled before `cutoff` (a cancelled one at its creation); how many. Dead
        letters stay until an administrator acts on them; pending and sending ones are still on their way."""
        finished = cls.status.in_([OutboxStatus.SENT, OutboxStatus.CANCELLED])
        return cls.delete().where(finished & (fn.COALESCE(cls.sent_at, cls.created_at) < cutoff)).execute()

    @classmethod
    def claimable(cls, now, size: int):
        """The ids of up to `size` due rows, locked until the caller's transaction ends; rows that another
        transaction holds are skipped, not waited for (PostgreSQL only: SQLite has no row locks)."""
        return cls.due(now).columns(cls.id).limit(size).for_update(skip_locked=True)

    @classmethod
    def lease_expired(cls, now):
        """The condition of a row left `sending` after its claimer's lease ran out (or without a lease at all)."""
        return (cls.status == OutboxStatus.SENDING) & (cls.claimed_until.is_null() | (cls.claimed_until <= now))

    @classmethod
    def counts_by_status(cls) -> dict[str, int]:
        """How many rows are in each status (one GROUP BY); statuses without rows are absent."""
        return dict(cls.select(cls.status, fn.COUNT(cls.id)).group_by(cls.status).tuples())

    @classmethod
    def listing(cls, *, status: str | None = None, channel: str | None = None, template: str | None = None):
        """The administrators' list, the newest first, filtered by whichever of status, channel, template is given."""
        query = cls.select().order_by(cls.id.desc())
        if status:
            query = query.where(cls.status == status)
        if channel:
            query = query.where(cls.channel == channel)
        if template:
            query = query.where(cls.template == template)
        return query

    @classmethod
    def templates(cls) -> list[str]:
        """Every template that has written a row, by name (the list's filter offers these)."""
        return [name for (name,) in cls.select(cls.template).distinct().order_by(cls.template).tuples()]
