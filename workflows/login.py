"""The password + SMS code login (DESIGN §6) as domain rules: failures, back-off, lock, codes, first password.

Views call these functions and only translate their outcome into pages. Nothing here knows about HTTP.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass

from models import Account, CodeChallenge, EnrollmentApplication, db, utcnow
from security import otp, passwords, sessions

from . import engine, notifications
from .account import ACCOUNT, AccountState
from .engine import N_, SYSTEM, Actor, Reason, TransitionRefused
from .enrollment import ENROLLMENT, EnrollmentState

CODE_MINUTES = 5  # an SMS code lives 5 minutes
ATTEMPT_MINUTES = 10  # password step → code step within 10 minutes
CODES_PER_HOUR = 5  # SMS codes per account per hour
LOCK_AFTER = 10  # consecutive failures (passwords and codes together, across resends)
MAX_BACKOFF = dt.timedelta(minutes=15)
LOGIN_STATES = sessions.LIVE_STATES


def backoff(failures: int) -> dt.timedelta:
    """Wait imposed after `failures` consecutive failures: none for the first two typos, then 15 s doubling to
    15 min (the 9th failure); the 10th locks the account."""
    if failures < 3:
        return dt.timedelta(0)
    return min(MAX_BACKOFF, dt.timedelta(seconds=15 * 2 ** (failures - 3)))


@dataclass(frozen=True)
class Outcome:
    """What a login step gives the view: the account when the step passed, else the internal reason (audited,
    never shown: the user always reads the same sentence)."""

    account: Account | None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None


def _fresh(account_id: int) -> Account:
    return Account.get_by_id(account_id)


def record_failure(account: Account, now: dt.datetime) -> Account:
    """One more consecutive failure: back-off grows, the 10th locks the account through its workflow."""
    Account.update(failed_attempts=Account.failed_attempts + 1).where(Account.id == account.id).execute()
    account = _fresh(account.id)
    Account.update(next_attempt_at=now + backoff(account.failed_attempts)).where(Account.id == account.id).execute()
    if account.failed_attempts >= LOCK_AFTER and account.state in (AccountState.ACTIVE, AccountState.PENDING):
        # A concurrent failure may have locked it first: locked either way.
        with contextlib.suppress(TransitionRefused):
            engine.fire(ACCOUNT, account, "lock", SYSTEM)
    return _fresh(account.id)


def check_password(username: str, password: str) -> Outcome:
    """Step 1. The same work (one argon2 hash) whatever the outcome: unknown user, wrong password, locked account,
    back-off and expired temporary password are told apart only in the audit trail."""
    now = utcnow()
    account = Account.get_or_none(Account.username == username)
    waiting = account is not None and account.next_attempt_at is not None and account.next_attempt_at > now
    matches = passwords.verify_password(account.password_hash if account else None, password)
    if account is None:
        return Outcome(None, "unknown-user")
    if waiting:
        return Outcome(account, "backoff")  # not counted: back-off must not grow by itself
    if account.state not in LOGIN_STATES:
        return Outcome(account, f"account-{account.state}")
    if not matches:
        return Outcome(record_failure(account, now), "wrong-password")
    if account.password_is_temporary and (
        account.temporary_password_expires_at is None or account.temporary_password_expires_at <= now
    ):
        return Outcome(record_failure(account, now), "temporary-password-expired")
    if passwords.needs_rehash(account.password_hash):
        Account.update(password_hash=passwords.hash_password(password)).where(Account.id == account.id).execute()
    return Outcome(account)


def mobile_of(account: Account) -> str | None:
    if account.mobile:
        return account.mobile
    if account.physician_id is not None and account.physician.mobile:
        return account.physician.mobile
    return None


def uses_authenticator_app(account: Account) -> bool:
    return otp.active_credential(account) is not None


def codes_sent_last_hour(account: Account, now: dt.datetime) -> int:
    return (
        CodeChallenge.select()
        .where(
            (CodeChallenge.purpose == "login")
            & (CodeChallenge.account == account.id)
            & (CodeChallenge.created_at > now - dt.timedelta(hours=1))
        )
        .count()
    )


def issue_code(account: Account, attempt_id: str):
    """A fresh challenge for this attempt (earlier ones of the attempt stop working); returns (challenge, sms) or
    raises TransitionRefused when the account already had its 5 codes this hour."""
    now = utcnow()
    mobile = mobile_of(account)
    if mobile is None:
        raise TransitionRefused(Reason("no-mobile", N_("No mobile number is registered for this account.")))
    with db.atomic():
        if codes_sent_last_hour(account, now) >= CODES_PER_HOUR:
            raise TransitionRefused(
                Reason("too-many-codes", N_("Too many codes were sent in the last hour: try again later."))
            )
        CodeChallenge.update(expires_at=now).where(
            (CodeChallenge.attempt_id == attempt_id) & CodeChallenge.consumed_at.is_null()
        ).execute()
        code = otp.new_code()
        challenge = CodeChallenge(
            purpose="login",
            account=account.id,
            attempt_id=attempt_id,
            created_at=now,
            expires_at=now + dt.timedelta(minutes=CODE_MINUTES),
        )
        challenge.code_hash = otp.code_digest(challenge.public_id, code)
        challenge.save(force_insert=True)
        message = notifications.notify_login_code(account, mobile, code, CODE_MINUTES)
    return challenge, message


def open_app_attempt(account: Account, attempt_id: str) -> CodeChallenge:
    """The account has an authenticator app: the attempt waits for its code and sends no SMS (one can still be
    asked for with `issue_code`). The challenge holds no code; it ties the attempt to the account and its time."""
    now = utcnow()
    return CodeChallenge.create(
        purpose="login-app",
        account=account.id,
        attempt_id=attempt_id,
        code_hash="",
        created_at=now,
        expires_at=now + dt.timedelta(minutes=ATTEMPT_MINUTES),
    )


def cancel_code(challenge: CodeChallenge) -> None:
    """The SMS could not be sent: its code must not work later."""
    CodeChallenge.update(expires_at=utcnow()).where(CodeChallenge.id == challenge.id).execute()


def check_code(attempt_id: str, submitted: str) -> Outcome:
    """Step 2: the latest SMS code of this attempt or a code of the account's authenticator app; the attempt is
    consumed by compare-and-set (single use even under two simultaneous submissions). A wrong code counts as a
    failure of the account, whichever way it came."""
    challenge = CodeChallenge.latest_of_attempt(attempt_id)
    if challenge is None:
        return Outcome(None, "no-challenge")
    now = utcnow()
    account = _fresh(challenge.account_id)
    if account.state not in LOGIN_STATES:
        return Outcome(account, f"account-{account.state}")
    if account.next_attempt_at is not None and account.next_attempt_at > now:
        return Outcome(account, "backoff")
    submitted = "".join((submitted or "").split())
    if challenge.consumed_at is not None:
        return Outcome(account, "code-used")
    if challenge.expires_at <= now:
        return Outcome(account, "code-expired")
    by_sms = challenge.purpose == "login" and otp.code_matches(challenge.public_id, submitted, challenge.code_hash)
    # The authenticator app's code works in any attempt of an account that has one (single use per time step).
    if not by_sms and not otp.consume_totp(otp.active_credential(account), submitted):
        CodeChallenge.update(failures=CodeChallenge.failures + 1).where(CodeChallenge.id == challenge.id).execute()
        return Outcome(record_failure(account, now), "wrong-code")
    consumed = (
        CodeChallenge.update(consumed_at=now)
        .where(
            (CodeChallenge.id == challenge.id) & CodeChallenge.consumed_at.is_null() & (CodeChallenge.expires_at > now)
        )
        .execute()
    )
    if consumed != 1:
        return Outcome(account, "code-used")
    return Outcome(account)


def record_success(account: Account) -> None:
    """A complete login resets the failure count (DESIGN §6)."""
    Account.update(failed_attempts=0, next_attempt_at=None, last_login_at=utcnow()).where(
        Account.id == account.id
    ).execute()


def set_own_password(account: Account, new_password: str, keep_session_id: int | None) -> Account:
    """The holder chooses a password: stored hashed, the temporary one forgotten, every other session ended; a
    pending account then becomes active and completes its enrolment (step 7) when its profile allows it.

    The caller has checked the policy (security.passwords.check_password) and, outside the first login, the
    current password.
    """
    actor = Actor(account.role, account.id)
    with db.atomic():
        Account.update(
            password_hash=passwords.hash_password(new_password),
            password_is_temporary=False,
            temporary_password_expires_at=None,
            password_changed_at=utcnow(),
        ).where(Account.id == account.id).execute()
        sessions.end_all(account.id, except_session_id=keep_session_id)
        account = _fresh(account.id)
        if account.state == AccountState.PENDING and engine.may(ACCOUNT, account, "activate", actor) is None:
            engine.fire(ACCOUNT, account, "activate", actor)
            application = EnrollmentApplication.get_or_none(
                (EnrollmentApplication.account == account.id)
                & (EnrollmentApplication.state == EnrollmentState.ACCOUNT_CREATED)
            )
            if application is not None:
                engine.fire(ENROLLMENT, application, "complete", actor)
    return _fresh(account.id)
