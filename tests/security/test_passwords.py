"""The password policy (DESIGN §6, NIST SP 800-63B-4) and hashing of normalised passwords."""

from __future__ import annotations

import unicodedata

import pytest
from argon2 import PasswordHasher
from babel.messages.extract import extract_from_file

from security import passwords
from security.blocklist import common_passwords
from security.passwords import check_password, hash_password, needs_rehash, verify_password

PHRASE_64 = "Le lac 🌊 gèle en hiver, les cygnes 🦢 restent près du jet d’eau ⛲"


def codes(password: str, **person) -> list[str]:
    return [problem.code for problem in check_password(password, **person)]


@pytest.mark.parametrize(
    ("password", "expected"),
    [
        ("kT9#vq2", ["too-short"]),  # 7
        ("kT9#vq2mW4z", ["too-short"]),  # 11
        ("kT9#vq2mW4zP", []),  # 12
        (PHRASE_64 * 2, []),  # 128
        (PHRASE_64 * 2 + "!", ["too-long"]),  # 129
        (PHRASE_64, []),
        ("🦢🌊⛲🍫🧀🚲🏔🎿🕰🫕🌷🦉", []),  # 12 emoji are 12 characters
        ("🦢🌊⛲🍫🧀🚲🏔🎿🕰🫕🌷", ["too-short"]),
    ],
)
def test_length_counts_characters(password, expected):
    assert codes(password) == expected


def test_the_64_character_phrase_is_64_characters():
    assert len(unicodedata.normalize("NFKC", PHRASE_64)) == 64


def test_length_is_counted_after_nfkc():
    twelve = unicodedata.normalize("NFD", "éléphant ros")  # 12 characters, 14 code points as typed on some systems
    eleven = unicodedata.normalize("NFD", "éléphant ro")
    assert (len(twelve), len(eleven)) == (14, 13)
    assert codes(twelve) == []
    assert codes(eleven) == ["too-short"]
    assert len("ﬁre in hill") == 11
    assert codes("ﬁre in hill") == []  # the ligature becomes "fi": 12 characters, as they are hashed


@pytest.mark.parametrize(
    "password",
    [
        "password1234",
        "Password123!",
        "123456789012",
        "qwertyuiop12",
        "PASSWORD1234",
        "2024sunshine!",
        "P@ssw0rd2026!!",
        "azertyuiop123",
        "Motdepasse2026",
        "Doudou123456",
        "aaaaaaaaaaaa",
        "abcdefghijkl",
        "azeazeazeaze",
    ],
)
def test_common_passwords_are_refused(password):
    assert "common" in codes(password)


@pytest.mark.parametrize(
    "password", ["correct horse battery staple", "Mon chat dort sur le radiateur", "4829 1573 6204 vert", PHRASE_64]
)
def test_uncommon_passwords_pass(password):
    assert codes(password) == []


def test_the_blocklist_works_offline_and_is_large():
    listed = common_passwords()
    assert len(listed) > 30_000
    assert {"password", "123456", "qwertyuiop", "azerty", "doudou"} <= listed


@pytest.mark.parametrize(
    "password",
    [
        "Myhug-Geneve-2026",
        "MYHUG-GENÈVE-2026",
        "hôpitalgenève2026x",
        "HUG-hug-HUG-hug-HUG",
        "hcuge-password-2026",
        "Medecin-Geneva-2026!",
    ],
)
def test_portal_words_do_not_make_a_password_strong(password):
    assert "portal-word" in codes(password)


@pytest.mark.parametrize(
    "password",
    [
        "thug life in the old town",  # "hug" inside a word
        "within the walls of the castle",  # "hin" inside a word
        "I hug the old oak tree every spring",  # the word itself, in a long phrase of one's own
        "myHUG: mon chat dort sur le radiateur",
    ],
)
def test_a_strong_phrase_with_a_portal_word_in_it_passes(password):
    assert codes(password) == []


PERSON = {"username": "amuller", "email": "anne.muller@cabinet-rhone.ch", "names": ("Anne-Sophie", "Müller")}


@pytest.mark.parametrize(
    "password",
    [
        "amuller-is-my-login",  # the username
        "AMULLER-IS-MY-LOGIN",
        "my anne.muller password",  # the e-mail's local part
        "sophie-de-geneve-et-lausanne",  # a part of a compound first name
        "Müller Kaffee am Morgen",  # the surname, as written
        "MULLER KAFFEE AM MORGEN",  # …without its accent, in capitals
        "mu\u0308ller kaffee am morgen",  # …with a decomposed ü
    ],
)
def test_personal_data_is_refused(password):
    assert codes(password, **PERSON) == ["personal"]


def test_short_name_parts_are_ignored():
    assert codes("dr le café du matin est froid", username="dr", names=("Li", "Ng")) == []


def test_several_problems_at_once():
    assert codes("myhug", username="myhug") == ["too-short", "portal-word", "personal"]
    assert codes("password", username="amuller") == ["too-short", "common"]


def test_reasons_are_message_ids_with_stable_codes():
    problems = check_password("short", username="short")
    assert [p.code for p in problems] == ["too-short", "personal"]
    assert all(p.text and p.text == str(p) and p.text.isascii() for p in problems)
    with pytest.raises(AttributeError):
        problems[0].code = "other"  # frozen


def test_reason_texts_are_extracted_for_translation():
    """N_() is one of Babel's default keywords: pybabel extract (babel.cfg) finds these message ids."""
    ids = {message for _line, message, _comments, _context in extract_from_file("python", passwords.__file__)}
    assert {p.text for p in (passwords.TOO_SHORT, passwords.TOO_LONG, passwords.COMMON)} <= ids
    assert {passwords.PORTAL_WORD.text, passwords.PERSONAL.text} <= ids


# -- hashing ----------------------------------------------------------------------------------------------------
COMPOSED = unicodedata.normalize("NFC", "Crème brûlée à l’hôpital")
DECOMPOSED = unicodedata.normalize("NFD", COMPOSED)


def test_composed_and_decomposed_forms_verify_the_same():
    assert COMPOSED != DECOMPOSED
    for typed_first in (COMPOSED, DECOMPOSED):
        stored = hash_password(typed_first)
        assert verify_password(stored, COMPOSED)
        assert verify_password(stored, DECOMPOSED)
        assert not verify_password(stored, "Creme brulee a l’hopital")


def test_full_width_letters_are_the_same_password():
    stored = hash_password("Ｇｅｎｅｖａ lake view 2031")
    assert verify_password(stored, "Geneva lake view 2031")


def test_a_hash_of_the_raw_form_made_before_normalisation_still_verifies():
    legacy = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(DECOMPOSED)
    assert verify_password(legacy, DECOMPOSED)  # the typed form, as it was hashed
    assert not verify_password(legacy, "something else entirely")


def test_ascii_passwords_hash_as_before():
    raw = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash("Tr4mway-Plainpalais")
    assert verify_password(raw, "Tr4mway-Plainpalais")
    assert verify_password(hash_password("Tr4mway-Plainpalais"), "Tr4mway-Plainpalais")


class CountingHasher:
    """Stands in for argon2's hasher: records which forms of the password were hashed or verified."""

    def __init__(self):
        self.calls = []

    def hash(self, password):
        self.calls.append(password)
        return "$argon2id$fake"

    def verify(self, _hash, password):
        self.calls.append(password)
        raise passwords.VerificationError


@pytest.mark.parametrize("password", ["plain ascii", DECOMPOSED])
def test_no_hash_costs_as_many_hashes_as_a_wrong_password(monkeypatch, password):
    """DESIGN §6: an unknown user (no hash) costs what a wrong password costs, also when NFKC changes the password."""
    without, wrong = CountingHasher(), CountingHasher()
    monkeypatch.setattr(passwords, "_hasher", without)
    assert not verify_password(None, password)
    monkeypatch.setattr(passwords, "_hasher", wrong)
    assert not verify_password("$argon2id$stored", password)
    assert without.calls == wrong.calls


def test_wrong_and_empty_hashes_are_refused():
    assert not verify_password(None, "anything at all")
    assert not verify_password("", "anything at all")
    assert not verify_password("not-a-hash", "anything at all")


def test_needs_rehash_follows_the_configured_cost():
    stored = hash_password("Tr4mway-Plainpalais")
    assert not needs_rehash(stored)
    old = PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1).hash("Tr4mway-Plainpalais")
    assert needs_rehash(old)
