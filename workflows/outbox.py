"""Sending what the outbox holds. Rows are written with the change that caused them; this module delivers them.

`send_sms_now` sends one login or control code at once (the person is waiting). `dispatch_due` sends every due
message; several dispatchers may run at once (processes, nodes):

- A run first puts back to pending every row left `sending` past its lease `claimed_until`: the dispatcher that
  claimed it died mid-send.
- It then claims due rows in batches. On PostgreSQL one short transaction takes a batch with
  `SELECT … FOR UPDATE SKIP LOCKED` (dispatchers skip each other's rows instead of queueing behind them), moves it
  to `sending` with `claimed_by`, a lease and one more attempt, and commits before anything is sent. On SQLite (one
  writer at a time, no row locks) each row is claimed by its own conditional UPDATE from pending.
- Every later mark (sent, failed, cancelled) is conditional on the row still being this run's claim, so a run that
  outlived its lease changes nothing another run has taken over; and a message is only handed to the server while
  at least `SEND_MARGIN` of its lease remains (longer than one send may last), so a lease never ends mid-send.
- A failure is retried with exponential back-off and jitter; after MAX_ATTEMPTS, or at once on a permanent refusal
  (SMTP 5xx), the row is parked as dead with its last error, for an administrator to see (web/admin_outbox.py).
- All e-mails of a run share one SMTP connection (gateways.mail.one_connection).

Each message goes out once, with one exception in normal operation: a dispatcher that dies after the server
accepted a message but before its own commit leaves the row `sending`, and once the lease has run out the row is
sent again. That is the right side to err on. The alternative, never retrying an interrupted row, would lose it
silently: a physician never told that a document waits, a new account holder without a password. A duplicate costs
one e-mail too many, and it can only follow a crash. (A `sent` follow-up that raises rolls back the sent mark and
the message is retried too: that is a bug in the follow-up, logged as one, never the normal path.)

Bodies that hold a secret (SECRET_TEMPLATES: codes, temporary passwords, links carrying a token) are erased as soon
as the row leaves the queue (sent, dead or cancelled): the outbox is not a second store of secrets. Such a dead
message therefore cannot be sent again; its recipient asks for a new code or password instead.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import random
import secrets
import socket
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from peewee import Case

from gateways import mail
from gateways.mail import MailError
from gateways.sms import SmsError
from models import OutboxMessage, OutboxStatus, db, is_postgres, utcnow

from .engine import CHANGED_MEANWHILE, N_, WRONG_STATE, Reason, TransitionRefused


@dataclass(frozen=True)
class FollowUp:
    """What a kind of message (its `related_type`) needs done around its sending, registered by the module that
    queues it (workflows/notices.py for "notification"):

    - `still_wanted(message)`: asked right before sending; falsy → the message is CANCELLED, not sent; else what
      it read is handed to `sent` (the rows a notice announces: read once per message, not twice);
    - `sent(message, wanted)`: in the same transaction that records the server's acceptance (deliveries →
      notified), with what `still_wanted` returned;
    - `refused(message, error)`: after a permanent refusal (SMTP 5xx: a hard bounce), in the transaction that
      parks the message as dead.
    """

    still_wanted: Callable[[OutboxMessage], object] = lambda message: True
    sent: Callable[[OutboxMessage, object], None] = lambda message, wanted: None
    refused: Callable[[OutboxMessage, str], None] = lambda message, error: None


FOLLOW_UPS: dict[str, FollowUp] = {}
_NOTHING = FollowUp()


def follow_up(message: OutboxMessage) -> FollowUp:
    return FOLLOW_UPS.get(message.related_type or "", _NOTHING)


# The templates of web/templates/email|sms whose body holds a secret: the login and control codes (SMS), the
# temporary password, and the e-mail confirmation link (its token proves the applicant owns the address).
SECRET_TEMPLATES = frozenset({"login_code", "control_code", "temporary_password", "enrollment_received"})

MAX_ATTEMPTS = 8
FIRST_RETRY = dt.timedelta(seconds=30)
LONGEST_RETRY = dt.timedelta(hours=2)
LEASE = dt.timedelta(minutes=5)
# Longer than one send may last (gateways.mail.SMTP_TIMEOUT_SECONDS, the SMS gateway's MYHUG_SMS_TIMEOUT).
SEND_MARGIN = dt.timedelta(minutes=1)
BATCH = 50  # rows claimed at a time: a batch must be sent well within one lease
INTERRUPTED = "interrupted while sending (the dispatcher stopped before recording the outcome)"

log = logging.getLogger(__name__)


def holds_secret(message: OutboxMessage) -> bool:
    return message.template in SECRET_TEMPLATES


def worker_name() -> str:
    """host:pid:random, new for every run: `claimed_by` tells one claimer from any other, even in one process."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def _keeps_bodies(backend) -> bool:
    """The development backends send nothing: the row itself is the SMS or the e-mail, read on /dev/sms or
    /dev/mail (never production)."""
    return getattr(backend, "name", None) == "outbox"


# -- claiming --------------------------------------------------------------------------------------------------
def claim(message: OutboxMessage, worker: str, now: dt.datetime | None = None) -> bool:
    """Conditional UPDATE pending → sending with a lease: of several claimers, exactly one gets the row. The row
    must also still have the attempts it was loaded with, so that the copy in memory stays exact."""
    now = now or utcnow()
    until = now + LEASE
    claimed = (
        OutboxMessage.update(
            status=OutboxStatus.SENDING, claimed_by=worker, claimed_until=until, attempts=OutboxMessage.attempts + 1
        )
        .where(
            (OutboxMessage.id == message.id)
            & (OutboxMessage.status == OutboxStatus.PENDING)
            & (OutboxMessage.attempts == message.attempts)
        )
        .execute()
    )
    if claimed:
        message.status, message.claimed_by, message.claimed_until = OutboxStatus.SENDING, worker, until
        message.attempts += 1
    return claimed == 1


def _claim_locked(worker: str, size: int, now: dt.datetime) -> list[OutboxMessage]:
    """PostgreSQL: lock a batch of due rows (skipping those another dispatcher holds), mark them, commit."""
    with db.atomic():
        ids = [row.id for row in OutboxMessage.claimable(now, size)]
        if not ids:
            return []
        OutboxMessage.update(
            status=OutboxStatus.SENDING,
            claimed_by=worker,
            claimed_until=now + LEASE,
            attempts=OutboxMessage.attempts + 1,
        ).where(OutboxMessage.id.in_(ids)).execute()
    return list(OutboxMessage.select().where(OutboxMessage.id.in_(ids)).order_by(OutboxMessage.id))


def claim_batch(worker: str, size: int, now: dt.datetime | None = None) -> tuple[list[OutboxMessage], int]:
    """Up to `size` due rows claimed by `worker`, and how many due rows another claimer took first."""
    now = now or utcnow()
    if is_postgres():
        return _claim_locked(worker, size, now), 0
    due = list(OutboxMessage.due(now).limit(size))
    claimed = [message for message in due if claim(message, worker, now)]
    return claimed, len(due) - len(claimed)


def release_expired_leases(now: dt.datetime | None = None) -> int:
    """Rows left `sending` past their lease go back to pending, or to dead if that was their last attempt (a message
    that stops every dispatcher which tries it must not stop them for ever). Returns how many."""
    now = now or utcnow()
    expired = OutboxMessage.lease_expired(now)
    erased = Case(None, [(OutboxMessage.template.in_(SECRET_TEMPLATES), "")], OutboxMessage.body)
    with db.atomic():
        dead = (
            OutboxMessage.update(status=OutboxStatus.DEAD, last_error=INTERRUPTED, body=erased)
            .where(expired & (OutboxMessage.attempts >= MAX_ATTEMPTS))
            .execute()
        )
        back = (
            OutboxMessage.update(
                status=OutboxStatus.PENDING, claimed_by=None, claimed_until=None, last_error=INTERRUPTED
            )
            .where(expired)
            .execute()
        )
    if dead or back:
        log.warning("outbox: %d interrupted message(s) back in the queue, %d dead", back, dead)
    return dead + back


# -- marking the outcome (only the row's claimer may) ----------------------------------------------------------
def _claimed_by(message: OutboxMessage, worker: str):
    return (
        (OutboxMessage.id == message.id)
        & (OutboxMessage.status == OutboxStatus.SENDING)
        & (OutboxMessage.claimed_by == worker)
    )


def _leaving(message: OutboxMessage, *, keep_body: bool = False, **columns) -> dict:
    """The columns of a row that leaves the queue for good: a secret body is erased at the same time."""
    if holds_secret(message) and not keep_body:
        columns["body"] = ""
    return columns


def mark_sent(message: OutboxMessage, worker: str, *, keep_body: bool = False) -> bool:
    columns = _leaving(message, keep_body=keep_body, status=OutboxStatus.SENT, sent_at=utcnow(), last_error=None)
    return OutboxMessage.update(**columns).where(_claimed_by(message, worker)).execute() == 1


def mark_dead(message: OutboxMessage, worker: str, error: str) -> bool:
    columns = _leaving(message, status=OutboxStatus.DEAD, last_error=error[:500])
    return OutboxMessage.update(**columns).where(_claimed_by(message, worker)).execute() == 1


def mark_cancelled(message: OutboxMessage, worker: str) -> bool:
    columns = _leaving(message, status=OutboxStatus.CANCELLED)
    return OutboxMessage.update(**columns).where(_claimed_by(message, worker)).execute() == 1


def retry_delay(attempts: int) -> dt.timedelta:
    """30 s, 1 min, 2 min … up to 2 h, each ±20 % so that retries of a batch do not all fall at once."""
    base = min(LONGEST_RETRY, FIRST_RETRY * 2 ** max(0, attempts - 1))
    return base * random.uniform(0.8, 1.2)


def mark_failed(message: OutboxMessage, worker: str, error: str, *, permanent: bool) -> str | None:
    """Back to pending for a later try, or dead for good; returns which (None: the claim was lost meanwhile)."""
    if permanent or message.attempts >= MAX_ATTEMPTS:
        return OutboxStatus.DEAD if mark_dead(message, worker, error) else None
    retried = (
        OutboxMessage.update(
            status=OutboxStatus.PENDING,
            last_error=error[:500],
            next_attempt_at=utcnow() + retry_delay(message.attempts),
            claimed_by=None,
            claimed_until=None,
        )
        .where(_claimed_by(message, worker))
        .execute()
    )
    return OutboxStatus.PENDING if retried else None


def give_back(message: OutboxMessage, worker: str) -> None:
    """Unclaim a row not tried (too little of its lease left): pending again, its attempt not counted."""
    OutboxMessage.update(
        status=OutboxStatus.PENDING, claimed_by=None, claimed_until=None, attempts=OutboxMessage.attempts - 1
    ).where(_claimed_by(message, worker)).execute()


# -- sending -----------------------------------------------------------------------------------------------------
def send_sms_now(message: OutboxMessage, backend) -> bool:
    """Send one SMS at once. A failure is final for that row (a code that arrives late is useless: the user asks
    for a new one); the error is recorded and logged without the text."""
    worker = f"immediate:{worker_name()}"
    if message.channel != "sms" or not claim(message, worker):
        return False
    try:
        backend.send(message.recipient, message.body)
    except SmsError as exc:
        mark_dead(message, worker, str(exc))
        log.warning("SMS %s (%s) not sent: %s", message.id, message.template, exc)
        return False
    mark_sent(message, worker, keep_body=_keeps_bodies(backend))
    return True


_OUTCOME = {OutboxStatus.PENDING: "retry", OutboxStatus.DEAD: "dead", None: "skipped"}


def _failed(message: OutboxMessage, worker: str, after: FollowUp, exc: MailError | SmsError) -> str:
    permanent = getattr(exc, "permanent", False)
    with db.atomic():
        status = mark_failed(message, worker, str(exc), permanent=permanent)
        if status == OutboxStatus.DEAD and permanent:
            after.refused(message, str(exc))
    log.warning("outbox %s (%s) not sent: %s", message.id, message.template, exc)
    return _OUTCOME[status]


def _accepted(message: OutboxMessage, worker: str, after: FollowUp, wanted, *, keep_body: bool) -> str:
    """The server took the message: mark it sent and run its follow-up in one transaction."""
    try:
        with db.atomic():
            if not mark_sent(message, worker, keep_body=keep_body):
                return "skipped"  # our lease ran out and another run holds the row now
            after.sent(message, wanted)
    except Exception:
        log.exception("outbox %s (%s): the follow-up of a sent message failed; retried", message.id, message.template)
        return _OUTCOME[mark_failed(message, worker, "sent, but its follow-up failed", permanent=False)]
    return "sent"


def _deliver(message: OutboxMessage, worker: str, send_email, sms_backend) -> str:
    """One claimed message: still wanted? hand it over, record the outcome. Returns the outcome's counter key."""
    if utcnow() + SEND_MARGIN >= message.claimed_until:
        give_back(message, worker)
        return "skipped"
    after = follow_up(message)
    wanted = after.still_wanted(message)
    if not wanted:
        return "cancelled" if mark_cancelled(message, worker) else "skipped"
    try:
        if message.channel == "email":
            send_email(message.recipient, message.subject, message.body)
        else:
            sms_backend.send(message.recipient, message.body)
    except (MailError, SmsError) as exc:
        return _failed(message, worker, after, exc)
    except Exception as exc:  # a message that breaks the sending code: parked for a person, the run goes on
        log.exception("outbox %s (%s): unexpected error while sending", message.id, message.template)
        return "dead" if mark_dead(message, worker, f"unexpected error: {type(exc).__name__}") else "skipped"
    keep_body = _keeps_bodies(sms_backend if message.channel == "sms" else send_email)
    return _accepted(message, worker, after, wanted, keep_body=keep_body)


def dispatch_due(*, send_email, sms_backend, worker: str | None = None, limit: int = 500) -> Counter:
    """Send what is due now, at most `limit` rows; returns counts by outcome (sent, retry, dead, cancelled, skipped:
    claimed by another, or given back unsent)."""
    worker = worker or worker_name()
    counts: Counter = Counter()
    release_expired_leases()
    with mail.one_connection():
        while counts.total() < limit:
            batch, taken = claim_batch(worker, min(BATCH, limit - counts.total()))
            if taken:
                counts["skipped"] += taken
            elif not batch:
                break
            for message in batch:
                counts[_deliver(message, worker, send_email, sms_backend)] += 1
    return counts


# -- an administrator's resend -----------------------------------------------------------------------------------
NOT_DEAD = Reason(WRONG_STATE, N_("Only a message that could not be delivered can be sent again."))
SECRET_ERASED = Reason(
    "secret-erased",
    N_(
        "This message held a code, a temporary password or a personal link, erased once it failed: it cannot be "
        "sent again. The recipient asks for a new code or a new password instead."
    ),
)


def why_not_resend(message: OutboxMessage) -> Reason | None:
    """None if an administrator may send this message again, else why not."""
    if message.status != OutboxStatus.DEAD:
        return NOT_DEAD
    if holds_secret(message):
        return SECRET_ERASED
    return None


def resend(message: OutboxMessage) -> None:
    """A dead message goes back to the queue as if new: pending, no attempts, due now. Raises TransitionRefused."""
    reason = why_not_resend(message)
    if reason is not None:
        raise TransitionRefused(reason)
    queued = (
        OutboxMessage.update(
            status=OutboxStatus.PENDING, attempts=0, next_attempt_at=utcnow(), claimed_by=None, claimed_until=None
        )
        .where((OutboxMessage.id == message.id) & (OutboxMessage.status == OutboxStatus.DEAD))
        .execute()
    )
    if not queued:
        raise TransitionRefused(CHANGED_MEANWHILE)
