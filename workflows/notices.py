"""Telling physicians that documents wait in "Mes documents" (DESIGN §4.2: available → notified).

A notice is an outbox e-mail (`related_type` "notification", `related_id` the physician); the deliveries it
announces point to it (`Delivery.notification_id`). They move to `notified` only once the mail server accepted it:
the outbox's FollowUp `sent` hook fires `notify` in the transaction that records the acceptance. The e-mail says
how many documents wait and where, nothing else (no patient, no title, no link token).

Per the physician's profile:
- "each": one e-mail per batch — once the oldest unannounced delivery is older than the batch window, one e-mail
  announces everything that arrived until then (twenty documents within two minutes: one e-mail);
- "digest": one e-mail a day at the digest hour (Geneva time) for everything unannounced;
- "none": nothing; the deliveries stay `available` and the explainer says `notifications-off`.

A hard bounce (SMTP 5xx) is recorded on the physician with the server's answer; no notice is queued for them until
the address is confirmed again, and the explainer says `bounced`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from zoneinfo import ZoneInfo

from models import Delivery, NotificationMode, OutboxMessage, Physician, db, utcnow

from . import engine, notifications, outbox
from .delivery import DELIVERY
from .engine import SYSTEM, TransitionRefused

ZURICH = ZoneInfo("Europe/Zurich")
CHUNK = 500  # physicians handled per query page; deliveries per bulk firing


class _Raced(Exception):
    """Another run announced some of these deliveries meanwhile: this physician's notice is rolled back."""


def queue_new_document_notices(now: dt.datetime, window: dt.timedelta) -> int:
    """Mode "each": one notice per physician whose oldest unannounced delivery is older than `window`."""
    due = Delivery.physicians_to_notify(NotificationMode.EACH, arrived_before=now - window)
    return _queue_for(_ids(due), now, digest_due_at=None)


def digest_instant(now: dt.datetime, hour: int) -> dt.datetime | None:
    """Today's digest time (naive UTC) if it has passed in Geneva, else None (no digest before the hour)."""
    local = now.replace(tzinfo=dt.UTC).astimezone(ZURICH)
    due = local.replace(hour=hour, minute=0, second=0, microsecond=0)
    if local < due:
        return None
    return due.astimezone(dt.UTC).replace(tzinfo=None)


def queue_digests(now: dt.datetime, hour: int) -> int:
    """Mode "digest": once the day's digest hour has passed, one notice per physician for all that waits."""
    due_at = digest_instant(now, hour)
    if due_at is None:
        return 0
    due = Delivery.physicians_to_notify(NotificationMode.DIGEST, arrived_before=now)
    return _queue_for(_ids(due), now, digest_due_at=due_at)


def _ids(query) -> list[int]:
    return [physician_id for (physician_id,) in query]


def _queue_for(physician_ids: list[int], now: dt.datetime, *, digest_due_at: dt.datetime | None) -> int:
    queued = 0
    for start in range(0, len(physician_ids), CHUNK):
        physicians = Physician.select().where(Physician.id.in_(physician_ids[start : start + CHUNK]))
        for physician in physicians:
            with contextlib.suppress(_Raced):
                queued += _queue_one(physician, now, digest_due_at)
    return queued


def _queue_one(physician: Physician, now: dt.datetime, digest_due_at: dt.datetime | None) -> int:
    """One physician's notice and the deliveries pointing to it, in one transaction; 0 if there is nothing."""
    with db.atomic():
        if digest_due_at is not None and not Physician.take_digest(physician.id, digest_due_at, now):
            return 0  # today's digest was taken by another run
        count = Delivery.count_unannounced(physician.id, arrived_before=now)
        if count == 0:
            return 0
        message = notifications.notify_documents_waiting(physician, count, digest=digest_due_at is not None)
        if Delivery.announce(physician.id, message.id, arrived_before=now) != count:
            raise _Raced  # the message and the digest stamp roll back; the other run's notice stands
    return 1


# -- what the dispatcher does around sending a notice (workflows/outbox.py FollowUp) ------------------------------
def _still_wanted(message: OutboxMessage) -> list[Delivery]:
    """The deliveries it announces still waiting in "Mes documents": none (cancelled) if every document was opened
    or revoked meanwhile. The dispatcher hands them to `_accepted`."""
    return Delivery.announced_by(message.id)


def _accepted(message: OutboxMessage, deliveries: list[Delivery]) -> None:
    """The mail server took the notice: its deliveries move to `notified` (one write for all of them). They were
    read before the send; if one was opened or revoked since, `fire_many`'s compare-and-set refuses and they are
    fired one by one instead."""
    for start in range(0, len(deliveries), CHUNK):
        chunk = deliveries[start : start + CHUNK]
        try:
            engine.fire_many(DELIVERY, chunk, "notify", SYSTEM)
        except TransitionRefused:
            for delivery in chunk:
                with contextlib.suppress(TransitionRefused):
                    engine.fire(DELIVERY, Delivery.get_by_id(delivery.id), "notify", SYSTEM)


def _bounced(message: OutboxMessage, error: str) -> None:
    """A permanent refusal: the address is marked bounced and its deliveries are free to be announced again once
    it works (they stay in "Mes documents" meanwhile)."""
    Physician.record_bounce(message.related_id, error, utcnow())
    Delivery.detach_from(message.id)


outbox.FOLLOW_UPS["notification"] = outbox.FollowUp(still_wanted=_still_wanted, sent=_accepted, refused=_bounced)
