"""One-time codes: a 6-digit SMS code per challenge, and the codes of an authenticator app (TOTP, RFC 6238).

SMS: a fresh random secret per challenge (pyotp), stored as an HMAC. Authenticator app: one secret per
`TotpCredential`, stored encrypted; a code is accepted once (the last accepted time step is kept, compare-and-set).
"""

from __future__ import annotations

import hashlib
import hmac
import time

import pyotp
from peewee import fn

from models import Account, TotpCredential, db, is_postgres, utcnow

from .encryption import decrypt_field, encrypt_field, keyring

CODE_DIGITS = 6
TOTP_ISSUER = "myHUG HUG"
TOTP_STEP_SECONDS = 30  # what every authenticator app assumes (RFC 6238's default)
TOTP_WINDOW = 1  # steps accepted before and after the current one: a phone's clock a little off, a slow typist


def new_code() -> str:
    """A 6-digit code derived from a fresh 160-bit random secret, so no two challenges share a sequence."""
    return pyotp.HOTP(pyotp.random_base32(), digits=CODE_DIGITS).at(0)


def code_digest(challenge_id: str, code: str) -> str:
    """Keyed with the data key: a stolen database does not give 6-digit codes away by brute force."""
    message = f"{challenge_id}:{code.strip()}".encode()
    return hmac.new(keyring.require(), message, hashlib.sha256).hexdigest()


def code_matches(challenge_id: str, code: str, digest: str) -> bool:
    return hmac.compare_digest(code_digest(challenge_id, code or ""), digest)


# -- authenticator apps (TOTP) --------------------------------------------------------------------------------
def new_totp_secret() -> str:
    """32 base32 letters: 160 bits from the operating system's random source (RFC 4226's recommended length)."""
    return pyotp.random_base32()


def provisioning_uri(secret: str, account_name: str, issuer: str = TOTP_ISSUER) -> str:
    """The otpauth:// URI an app reads from the QR code (6 digits, 30 s, SHA-1: the parameters every app knows)."""
    return _totp(secret).provisioning_uri(name=account_name, issuer_name=issuer)


def totp_matches(secret: str, code: str, last_timecode: int | None) -> int | None:
    """The time step whose code `code` is (current step ± TOTP_WINDOW), or None.

    A step at or before `last_timecode` never matches: a code seen once, or one older than it, is a replay.
    """
    code = "".join((code or "").split())
    if len(code) != CODE_DIGITS or not (code.isascii() and code.isdigit()):
        return None
    totp = _totp(secret)
    now = totp.timecode(time.time())
    matched = None
    for step in range(now - TOTP_WINDOW, now + TOTP_WINDOW + 1):  # all three compared: no early exit
        fresh = last_timecode is None or step > last_timecode
        if hmac.compare_digest(totp.generate_otp(step), code) and fresh:
            matched = step
    return matched


def _totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret, digits=CODE_DIGITS, interval=TOTP_STEP_SECONDS)


def _secret_context(credential: TotpCredential) -> str:
    # TotpCredential has no public_id: its id binds the ciphertext to its row (moved to another row, it fails).
    return f"totp:{credential.id}"


def totp_secret(credential: TotpCredential) -> str:
    return decrypt_field(credential.secret_encrypted, _secret_context(credential))


def active_credential(account: Account) -> TotpCredential | None:
    """The account's confirmed authenticator app, if it has one (there is at most one)."""
    return (
        TotpCredential.select()
        .where((TotpCredential.account == account.id) & TotpCredential.confirmed_at.is_null(False))
        .order_by(TotpCredential.confirmed_at.desc())
        .first()
    )


def pending_credential(account: Account) -> TotpCredential | None:
    """The app being added: shown as a QR code until a first code confirms it."""
    return (
        TotpCredential.select()
        .where((TotpCredential.account == account.id) & TotpCredential.confirmed_at.is_null())
        .order_by(TotpCredential.id.desc())
        .first()
    )


def add_totp_credential(account: Account) -> TotpCredential:
    """A new unconfirmed credential with a fresh secret; an earlier unconfirmed one is dropped (its QR code too)."""
    with db.atomic():
        _drop_pending(account)
        credential = TotpCredential.create(account=account.id, secret_encrypted=b"")
        # The context needs the row's id, hence the second write (in the same transaction).
        credential.secret_encrypted = encrypt_field(new_totp_secret(), _secret_context(credential))
        credential.save()
    return credential


def confirm_totp(credential: TotpCredential, code: str) -> bool:
    """Make a pending credential the account's active one if `code` is one of its current codes.

    The code is consumed (a login cannot reuse it). Refused when the account already has an active credential: the
    check and the write are one statement, and on PostgreSQL the account row is locked first so that two pending
    credentials confirmed at the same instant cannot both win (SQLite's immediate transactions already serialise).
    """
    step = totp_matches(totp_secret(credential), code, credential.last_timecode)
    if step is None:
        return False
    now = utcnow()
    other_active = TotpCredential.select(TotpCredential.id).where(
        (TotpCredential.account == credential.account_id)
        & TotpCredential.confirmed_at.is_null(False)
        & (TotpCredential.id != credential.id)
    )
    with db.atomic():
        if is_postgres():
            Account.select(Account.id).where(Account.id == credential.account_id).for_update().execute()
        confirmed = (
            TotpCredential.update(confirmed_at=now, last_timecode=step)
            .where(
                (TotpCredential.id == credential.id)
                & TotpCredential.confirmed_at.is_null()
                & _step_is_fresh(step)
                & ~fn.EXISTS(other_active)
            )
            .execute()
        )
    if confirmed:
        credential.confirmed_at, credential.last_timecode = now, step
    return confirmed == 1


def consume_totp(credential: TotpCredential | None, code: str) -> bool:
    """True once per time step: `code` is a current code of this confirmed credential, and nobody used it before.

    Compare-and-set: UPDATE … SET last_timecode = step WHERE id = … AND (last_timecode IS NULL OR last_timecode <
    step). Of two requests carrying the same code at once, exactly one updates the row; the other gets False.
    """
    if credential is None or credential.confirmed_at is None:
        return False
    step = totp_matches(totp_secret(credential), code, credential.last_timecode)
    if step is None:
        return False
    consumed = (
        TotpCredential.update(last_timecode=step)
        .where((TotpCredential.id == credential.id) & TotpCredential.confirmed_at.is_null(False) & _step_is_fresh(step))
        .execute()
    )
    if consumed:
        credential.last_timecode = step
    return consumed == 1


def remove_totp_credentials(account: Account) -> int:
    """Forget every authenticator app of the account (the active one and any pending one); how many were."""
    return TotpCredential.delete().where(TotpCredential.account == account.id).execute()


def drop_pending_credential(account: Account) -> int | None:
    """Forget the app being added, if any (its QR code is then worthless); its id."""
    pending = pending_credential(account)
    _drop_pending(account)
    return pending.id if pending else None


def _drop_pending(account: Account) -> None:
    TotpCredential.delete().where(
        (TotpCredential.account == account.id) & TotpCredential.confirmed_at.is_null()
    ).execute()


def _step_is_fresh(step: int):
    return TotpCredential.last_timecode.is_null() | (TotpCredential.last_timecode < step)
