"""Sending what the outbox holds. Rows are written with the change that caused them; this module delivers them.

`send_sms_now` sends one login code at once (the login does not wait for the scheduler). `dispatch_due` sends every
due message: claimed by compare-and-set (one dispatcher per row), retried with exponential back-off and jitter,
parked as dead with the last error after MAX_ATTEMPTS or at once on a permanent refusal (SMTP 5xx).
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from gateways.mail import MailError
from gateways.sms import SmsError
from models import OutboxMessage, OutboxStatus, db, utcnow


@dataclass(frozen=True)
class FollowUp:
    """What a kind of message (its `related_type`) needs done around its sending, registered by the module that
    queues it (workflows/notify.py for "notification"):

    - `still_wanted(message)`: asked right before sending; False → the message is CANCELLED, not sent;
    - `sent(message)`: in the same transaction that records the server's acceptance (deliveries → notified);
    - `refused(message, error)`: after a permanent refusal (SMTP 5xx: a hard bounce), in the transaction that
      parks the message as dead.
    """

    still_wanted: Callable[[OutboxMessage], bool] = lambda message: True
    sent: Callable[[OutboxMessage], None] = lambda message: None
    refused: Callable[[OutboxMessage, str], None] = lambda message, error: None


FOLLOW_UPS: dict[str, FollowUp] = {}
_NOTHING = FollowUp()


def follow_up(message: OutboxMessage) -> FollowUp:
    return FOLLOW_UPS.get(message.related_type or "", _NOTHING)


MAX_ATTEMPTS = 8
FIRST_RETRY = dt.timedelta(seconds=30)
LONGEST_RETRY = dt.timedelta(hours=2)

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


def mark_cancelled(message: OutboxMessage) -> None:
    OutboxMessage.update(status=OutboxStatus.CANCELLED).where(OutboxMessage.id == message.id).execute()


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


def retry_delay(attempts: int) -> dt.timedelta:
    """30 s, 1 min, 2 min … up to 2 h, each ±20 % so that retries of a batch do not all fall at once."""
    base = min(LONGEST_RETRY, FIRST_RETRY * 2 ** max(0, attempts - 1))
    return base * random.uniform(0.8, 1.2)


def mark_failed(message: OutboxMessage, error: str, *, permanent: bool) -> str:
    """Back to pending for a later try, or dead for good; returns which."""
    attempts = OutboxMessage.get_by_id(message.id).attempts
    if permanent or attempts >= MAX_ATTEMPTS:
        mark_dead(message, error)
        return OutboxStatus.DEAD
    OutboxMessage.update(
        status=OutboxStatus.PENDING, last_error=error[:500], next_attempt_at=utcnow() + retry_delay(attempts)
    ).where(OutboxMessage.id == message.id).execute()
    return OutboxStatus.PENDING


def dispatch_due(*, send_email, sms_backend, worker: str = "dispatcher", limit: int = 500) -> Counter:
    """Send what is due now; returns counts by outcome (sent, retry, dead, cancelled, skipped: claimed by another)."""
    counts: Counter = Counter()
    for message in list(OutboxMessage.due(utcnow()).limit(limit)):
        if not claim(message, worker):
            counts["skipped"] += 1
            continue
        after = follow_up(message)
        if not after.still_wanted(message):
            mark_cancelled(message)
            counts["cancelled"] += 1
            continue
        try:
            if message.channel == "email":
                send_email(message.recipient, message.subject, message.body)
            else:
                sms_backend.send(message.recipient, message.body)
        except (MailError, SmsError) as exc:
            permanent = getattr(exc, "permanent", False)
            with db.atomic():
                outcome = mark_failed(message, str(exc), permanent=permanent)
                if outcome == OutboxStatus.DEAD and permanent:
                    after.refused(message, str(exc))
            counts["dead" if outcome == OutboxStatus.DEAD else "retry"] += 1
            log.warning("outbox %s (%s) not sent: %s", message.id, message.template, exc)
            continue
        with db.atomic():
            mark_sent(message)
            after.sent(message)
        counts["sent"] += 1
    return counts
