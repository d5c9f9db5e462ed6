"""Sending what the outbox holds. Rows are written with the change that caused them; this module delivers them.

Today: one message at once (a login code must not wait for the scheduler). The dispatcher with retries and
back-off for every message is the jobs issue's; it will reuse `claim` and `mark_*`.
"""

from __future__ import annotations

import logging

from gateways.sms import SmsError
from models import OutboxMessage, OutboxStatus, utcnow

log = logging.getLogger(__name__)


def claim(message: OutboxMessage, worker: str) -> bool:
    """Compare-and-set pending → sending: of several dispatchers, exactly one gets the row."""
    claimed = (
        OutboxMessage.update(status=OutboxStatus.SENDING, claimed_by=worker, attempts=OutboxMessage.attempts + 1)
        .where((OutboxMessage.id == message.id) & (OutboxMessage.status == OutboxStatus.PENDING))
        .execute()
    )
    return claimed == 1


def mark_sent(message: OutboxMessage) -> None:
    OutboxMessage.update(status=OutboxStatus.SENT, sent_at=utcnow(), last_error=None).where(
        OutboxMessage.id == message.id
    ).execute()


def mark_dead(message: OutboxMessage, error: str) -> None:
    OutboxMessage.update(status=OutboxStatus.DEAD, last_error=error[:500]).where(
        OutboxMessage.id == message.id
    ).execute()


def send_sms_now(message: OutboxMessage, backend) -> bool:
    """Send one SMS at once. A failure is final for that row (a code that arrives late is useless: the user asks
    for a new one); the error is recorded and logged without the text."""
    if message.channel != "sms" or not claim(message, "immediate"):
        return False
    try:
        backend.send(message.recipient, message.body)
    except SmsError as exc:
        mark_dead(message, str(exc))
        log.warning("SMS %s (%s) not sent: %s", message.id, message.template, exc)
        return False
    mark_sent(message)
    return True
