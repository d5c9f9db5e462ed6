"""Password hashing (argon2id) and temporary passwords."""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# argon2-cffi's defaults are RFC 9106's second recommendation: argon2id, t=3, m=64 MiB, p=4.
_hasher = PasswordHasher()


def configure(*, time_cost: int, memory_cost: int, parallelism: int) -> None:
    """Change the cost (the test suite lowers it; hashes made with other parameters still verify)."""
    global _hasher
    _hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism)


def parameters() -> dict:
    return {"time_cost": _hasher.time_cost, "memory_cost_kib": _hasher.memory_cost, "parallelism": _hasher.parallelism}


# No 0/O/1/l/I: a temporary password is read from an e-mail and typed by hand.
_ALPHABET = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        _hasher.hash(password)  # same cost whether or not there is a hash to check (DESIGN §6: same timing)
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


def temporary_password(length: int = 16) -> str:
    """16 characters from a 56-letter alphabet: about 93 bits from the operating system's random source."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))
