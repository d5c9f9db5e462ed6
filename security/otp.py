"""One-time codes: a 6-digit code per challenge from a fresh random secret (pyotp), stored as an HMAC."""

from __future__ import annotations

import hashlib
import hmac

import pyotp

from .encryption import keyring

CODE_DIGITS = 6


def new_code() -> str:
    """A 6-digit code derived from a fresh 160-bit random secret, so no two challenges share a sequence."""
    return pyotp.HOTP(pyotp.random_base32(), digits=CODE_DIGITS).at(0)


def code_digest(challenge_id: str, code: str) -> str:
    """Keyed with the data key: a stolen database does not give 6-digit codes away by brute force."""
    message = f"{challenge_id}:{code.strip()}".encode()
    return hmac.new(keyring.require(), message, hashlib.sha256).hexdigest()


def code_matches(challenge_id: str, code: str, digest: str) -> bool:
    return hmac.compare_digest(code_digest(challenge_id, code or ""), digest)
