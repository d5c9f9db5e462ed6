"""Passwords: the policy a new password must meet (DESIGN §6), hashing (argon2id), temporary passwords."""

from __future__ import annotations

import itertools
import re
import secrets
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from .blocklist import common_passwords

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


def normalize(password: str) -> str:
    """NFKC (NIST SP 800-63B-4): "é" typed composed or decomposed, or a full-width "Ａ", is the same password."""
    return unicodedata.normalize("NFKC", password)


def hash_password(password: str) -> str:
    return _hasher.hash(normalize(password))


def verify_password(password_hash: str | None, password: str) -> bool:
    """Checks the NFKC form; if that fails and the typed form differs, the typed form too.

    Hashes made before passwords were normalised hashed the typed form. Until now every stored hash is of a
    temporary password (ASCII, its own NFKC form), so the second check only matters for a hash made elsewhere; it
    costs a second hash only for passwords that NFKC changes, which says nothing about the account.
    """
    normalized = normalize(password)
    candidates = (normalized,) if normalized == password else (normalized, password)
    if not password_hash:
        for candidate in candidates:  # same cost whether or not there is a hash to check (DESIGN §6: same timing)
            _hasher.hash(candidate)
        return False
    return any(_matches(password_hash, candidate) for candidate in candidates)


def _matches(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


def temporary_password(length: int = 16) -> str:
    """16 characters from a 56-letter alphabet: about 93 bits from the operating system's random source."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


# -- the policy for a password someone chooses (DESIGN §6, NIST SP 800-63B-4 §3.1.1.2) ---------------------------
# Length, a blocklist and context words only: no composition rules, no expiry.
MIN_LENGTH = 12
MAX_LENGTH = 128
# The stem of "Password123!" must be this long to count as a listed password plus decoration: shorter list entries
# ("1", "ab") would refuse far too much.
MIN_STEM = 4
# Words of this portal and hospital, folded (no accents, lower case). See `_without_portal_words` for the rule.
PORTAL_WORDS = (
    "myhug",
    "hcuge",
    "hug",
    "hopitaux",
    "hopital",
    "hospital",
    "universitaire",
    "geneve",
    "geneva",
    "genf",
    "hin",
    "medecin",
    "docteur",
)
MIN_NAME_LETTERS = 3
MAX_PERIOD = 4  # "azeazeazeaze" is common; a strong 20-character phrase typed twice is not refused for it
_PORTAL_PATTERN = re.compile("|".join(sorted(PORTAL_WORDS, key=len, reverse=True)))
_LETTERS = re.compile(r"[^\W\d_]+")
# How people dress a letter as a digit or a sign: "p@ssw0rd" is "password".
_UNLEET = str.maketrans("@4310$5!7", "aaeiossit")


def N_(text: str) -> str:
    """Mark a message id for extraction (Babel's default keywords); the web layer translates it when it shows it."""
    return text


@dataclass(frozen=True)
class Problem:
    """Why a password is refused: a stable code and an English message id to translate when shown."""

    code: str
    text: str

    def __str__(self) -> str:
        return self.text


TOO_SHORT = Problem("too-short", N_("Use at least 12 characters."))
TOO_LONG = Problem("too-long", N_("Use at most 128 characters."))
COMMON = Problem("common", N_("This password is among the most common ones: choose another."))
PORTAL_WORD = Problem(
    "portal-word", N_("Words like myHUG, HUG or Geneva make a password easy to guess: add words of your own.")
)
PERSONAL = Problem("personal", N_("Do not use your name, your username or your e-mail address in your password."))


def check_password(password: str, *, username: str = "", email: str = "", names: Iterable[str] = ()) -> list[Problem]:
    """Every reason to refuse `password` as a new password (an empty list: accepted).

    Length counts Unicode code points after NFKC, as stored: an emoji is one character, spaces count.
    """
    normalized = normalize(password)
    problems = []
    if len(normalized) < MIN_LENGTH:
        problems.append(TOO_SHORT)
    if len(normalized) > MAX_LENGTH:
        problems.append(TOO_LONG)
    if is_common(normalized):
        problems.append(COMMON)
    remainder = _without_portal_words(fold(normalized))
    if remainder is not None and (len(remainder) < MIN_LENGTH or is_common(remainder)):
        problems.append(PORTAL_WORD)
    if _contains_personal_data(fold(normalized), username, email, names):
        problems.append(PERSONAL)
    return problems


def fold(text: str) -> str:
    """Lower case without accents, for comparisons: "Genève", "GENEVE" and "geneve" are the same word."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def is_common(password: str) -> bool:
    """In the blocklist (compared folded: lower case, no accents), also once the digits and signs around a listed
    word are taken off.

    "Password123!", "2024sunshine", "qwertyuiop12" and "123456789012" (a listed "123456789" plus digits) are all
    common. A stem must have `MIN_STEM` characters; it is also tried with look-alike digits read as letters.
    Repeated or sequential characters count as common too.
    """
    listed = common_passwords()
    text = fold(password)
    if text in listed or _is_repetitive(text):
        return True
    for base in {text, _strip_decoration_start(text)}:
        stem_end = len(_strip_decoration_end(base))
        for end in range(max(stem_end, MIN_STEM), len(base) + 1):
            stem = base[:end]
            if stem in listed or stem.translate(_UNLEET) in listed:
                return True
    return False


def _is_repetitive(text: str) -> bool:
    """NIST's other example of an expected value: "aaaaaaaaaaaa", "abcdefghijkl", "ababababab", "azeazeazeaze"."""
    steps = {ord(b) - ord(a) for a, b in itertools.pairwise(text)}
    if len(steps) == 1 and abs(steps.pop()) <= 1:
        return True
    return any(text == (text[:period] * (len(text) // period + 1))[: len(text)] for period in range(1, MAX_PERIOD + 1))


def _is_decoration(char: str) -> bool:
    return not char.isalpha()


def _strip_decoration_start(text: str) -> str:
    start = 0
    while start < len(text) and _is_decoration(text[start]):
        start += 1
    return text[start:]


def _strip_decoration_end(text: str) -> str:
    end = len(text)
    while end > 0 and _is_decoration(text[end - 1]):
        end -= 1
    return text[:end]


def _without_portal_words(folded: str) -> str | None:
    """The password without this portal's own words, or None when it has none.

    The rule: such words add nothing an attacker would not try first, so what is left must pass on its own (12
    characters, not common). A substring test would refuse "thug life…" or "within" for "hug"/"hin"; this refuses
    "Myhug-Geneve-2026" ("--2026" is left) but accepts a long passphrase that happens to contain "hug".
    """
    remainder, count = _PORTAL_PATTERN.subn("", folded)
    return remainder if count else None


def _contains_personal_data(folded: str, username: str, email: str, names: Iterable[str]) -> bool:
    """The username, the e-mail's local part or a name (each word of 3 letters or more), anywhere in the password."""
    local_part = email.rpartition("@")[0] if "@" in email else email
    pieces = {fold(username), fold(local_part)}
    for text in (username, local_part, *names):
        pieces.update(_LETTERS.findall(fold(text or "")))
    return any(len(piece) >= MIN_NAME_LETTERS and piece in folded for piece in pieces)
