"""One-time codes: SMS challenge codes, and authenticator-app codes (TOTP) accepted once per time step."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import threading
from urllib.parse import parse_qs, unquote, urlsplit

import pyotp
import pytest
import time_machine

from models import Role, TotpCredential, utcnow
from security import otp
from security.encryption import DecryptionError, decrypt_field, encrypt_field
from tests.conftest import TEST_DATA_KEY

T0 = dt.datetime(2031, 3, 3, 8, 0, 10, tzinfo=dt.UTC)  # 10 s into a time step
STEP = int(T0.timestamp()) // 30
SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def code_at(secret: str, step: int) -> str:
    return pyotp.TOTP(secret).at(step * 30)


@pytest.fixture
def frozen():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


# -- SMS codes (unchanged) ----------------------------------------------------------------------------------
def test_sms_codes_are_six_digits_and_stored_as_a_keyed_digest():
    code = otp.new_code()
    assert len(code) == 6 and code.isdigit()
    digest = otp.code_digest("challenge-1", code)
    assert code not in digest
    assert otp.code_matches("challenge-1", f" {code} ", digest)
    assert not otp.code_matches("challenge-2", code, digest)
    assert not otp.code_matches("challenge-1", "", digest)


# -- TOTP, pure ---------------------------------------------------------------------------------------------
def test_new_secrets_have_160_random_bits():
    secrets = {otp.new_totp_secret() for _ in range(50)}
    assert len(secrets) == 50
    assert all(len(s) == 32 and set(s) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for s in secrets)  # 32 × 5 bits


def test_provisioning_uri_names_the_issuer_and_the_account():
    uri = otp.provisioning_uri(SECRET, "dr.müller")
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    assert unquote(parts.path) == "/myHUG HUG:dr.müller"
    query = parse_qs(parts.query)
    assert query["secret"] == [SECRET] and query["issuer"] == ["myHUG HUG"]
    assert "Other issuer:x" in unquote(otp.provisioning_uri(SECRET, "x", issuer="Other issuer"))


@pytest.mark.parametrize(("offset", "accepted"), [(-2, False), (-1, True), (0, True), (1, True), (2, False)])
def test_codes_of_the_current_step_and_its_neighbours_are_accepted(frozen, offset, accepted):
    matched = otp.totp_matches(SECRET, code_at(SECRET, STEP + offset), None)
    assert matched == (STEP + offset if accepted else None)


def test_a_step_already_used_or_older_is_refused(frozen):
    assert otp.totp_matches(SECRET, code_at(SECRET, STEP), STEP) is None  # replay
    assert otp.totp_matches(SECRET, code_at(SECRET, STEP - 1), STEP) is None  # older than the last one
    assert otp.totp_matches(SECRET, code_at(SECRET, STEP + 1), STEP) == STEP + 1  # a newer one still works


def test_the_window_moves_with_time(frozen):
    code = code_at(SECRET, STEP)
    frozen.shift(dt.timedelta(seconds=30))
    assert otp.totp_matches(SECRET, code, None) == STEP  # now the previous step
    frozen.shift(dt.timedelta(seconds=30))
    assert otp.totp_matches(SECRET, code, None) is None


@pytest.mark.parametrize("typed", ["{a} {b}", " {a}{b} ", "{a}\u00a0{b}"])
def test_spaces_in_a_typed_code_are_ignored(frozen, typed):
    code = code_at(SECRET, STEP)
    assert otp.totp_matches(SECRET, typed.format(a=code[:3], b=code[3:]), None) == STEP


@pytest.mark.parametrize("typed", ["", "12345", "1234567", "abcdef", "١٢٣٤٥٦", None])
def test_malformed_codes_never_match(frozen, typed):
    assert otp.totp_matches(SECRET, typed, None) is None


# -- TOTP, stored ---------------------------------------------------------------------------------------------
@pytest.fixture
def credential(make_account):
    """An account's authenticator app, confirmed (no code used yet)."""

    def make(**fields) -> TotpCredential:
        account = make_account(Role.CLINICIAN)
        row = otp.add_totp_credential(account)
        TotpCredential.update(confirmed_at=utcnow(), **fields).where(TotpCredential.id == row.id).execute()
        return TotpCredential.get_by_id(row.id)

    return make


def test_the_secret_is_stored_encrypted_and_bound_to_its_row(make_account):
    account = make_account(Role.CLINICIAN)
    row = otp.add_totp_credential(account)
    secret = otp.totp_secret(row)
    assert len(secret) == 32
    assert secret.encode() not in bytes(row.secret_encrypted)
    assert decrypt_field(row.secret_encrypted, f"totp:{row.id}") == secret
    with pytest.raises(DecryptionError):
        decrypt_field(row.secret_encrypted, f"totp:{row.id + 1}")


def test_adding_again_replaces_the_pending_credential(make_account):
    account = make_account(Role.CLINICIAN)
    first_secret = otp.totp_secret(otp.add_totp_credential(account))
    second = otp.add_totp_credential(account)
    assert otp.pending_credential(account).id == second.id
    assert TotpCredential.select().where(TotpCredential.account == account.id).count() == 1
    assert otp.totp_secret(second) != first_secret  # a fresh secret: the first QR code is worthless
    assert otp.active_credential(account) is None


def test_confirming_needs_a_current_code_and_uses_it_up(make_account, frozen):
    account = make_account(Role.CLINICIAN)
    pending = otp.add_totp_credential(account)
    secret = otp.totp_secret(pending)
    assert not otp.confirm_totp(pending, code_at(secret, STEP - 2))
    assert otp.active_credential(account) is None
    assert otp.confirm_totp(pending, code_at(secret, STEP))
    active = otp.active_credential(account)
    assert active.id == pending.id and active.confirmed_at is not None and active.last_timecode == STEP
    assert not otp.consume_totp(active, code_at(secret, STEP))  # the confirmation code does not log in


def test_a_second_active_credential_is_impossible(make_account, frozen):
    account = make_account(Role.CLINICIAN)
    first = otp.add_totp_credential(account)
    # A second pending one, as if added from another tab before the first was confirmed.
    second = TotpCredential.create(account=account.id, secret_encrypted=b"")
    second.secret_encrypted = encrypt_field(SECRET, f"totp:{second.id}")
    second.save()
    assert otp.confirm_totp(first, code_at(otp.totp_secret(first), STEP))
    assert not otp.confirm_totp(second, code_at(SECRET, STEP))  # a good code, but the account has an app already
    confirmed = TotpCredential.select().where(TotpCredential.confirmed_at.is_null(False))
    assert [c.id for c in confirmed] == [first.id]
    assert otp.active_credential(account).id == first.id


def test_consuming_a_code_once(credential, frozen):
    row = credential()
    secret = otp.totp_secret(row)
    assert otp.consume_totp(row, code_at(secret, STEP))
    assert TotpCredential.get_by_id(row.id).last_timecode == STEP
    assert not otp.consume_totp(row, code_at(secret, STEP))  # replay, same object
    assert not otp.consume_totp(TotpCredential.get_by_id(row.id), code_at(secret, STEP))  # replay, fresh load
    assert not otp.consume_totp(row, code_at(secret, STEP - 1))  # older than the one used
    assert otp.consume_totp(row, code_at(secret, STEP + 1))  # the next one works


def test_an_older_code_after_a_newer_one_is_refused_even_with_a_stale_object(credential, frozen):
    row = credential()
    secret = otp.totp_secret(row)
    stale = TotpCredential.get_by_id(row.id)  # loaded before the newer code was used: last_timecode None
    assert otp.consume_totp(row, code_at(secret, STEP + 1))
    assert not otp.consume_totp(stale, code_at(secret, STEP))  # the database's compare-and-set refuses it


def test_unconfirmed_or_missing_credentials_accept_nothing(make_account, frozen):
    pending = otp.add_totp_credential(make_account(Role.CLINICIAN))
    assert not otp.consume_totp(pending, code_at(otp.totp_secret(pending), STEP))
    assert not otp.consume_totp(None, "123456")


def test_removing_forgets_every_credential(credential, make_account):
    row = credential()
    account = row.account
    otp.add_totp_credential(account)  # a pending one beside the active one
    assert otp.remove_totp_credentials(account) == 2
    assert otp.active_credential(account) is None and otp.pending_credential(account) is None


def test_two_threads_submitting_the_same_code_get_one_success(credential, frozen):
    row = credential()
    code = code_at(otp.totp_secret(row), STEP)
    database = TotpCredential._meta.database
    barrier, results = threading.Barrier(2), []

    def submit():
        # Each thread has its own connection (peewee's are per thread) and its own copy of the row.
        mine = TotpCredential.get_by_id(row.id)
        barrier.wait(timeout=30)
        try:
            results.append(otp.consume_totp(mine, code))
        finally:
            database.close()

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(results) == [False, True]


def consume_in_child(url: str, key: bytes, credential_id: int, code: str, barrier, results) -> None:
    """Run in a spawned process: load the credential, wait for the other process, submit the same code."""
    import models
    from security import encryption

    encryption.configure(key)
    models.init_database(url).connect(reuse_if_open=True)
    try:
        credential = TotpCredential.get_by_id(credential_id)
        barrier.wait(timeout=30)
        results.put("accepted" if otp.consume_totp(credential, code) else "refused")
    except Exception as exc:  # reported, so the test shows it instead of hanging
        results.put(f"error: {exc!r}")


@pytest.mark.slow
def test_two_processes_submitting_the_same_code_get_one_success(credential, database):
    """Real time here (a frozen clock does not cross processes): the ±1 step window covers the few seconds."""
    row = credential()
    code = pyotp.TOTP(otp.totp_secret(row)).now()
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    database.close()
    workers = [
        ctx.Process(target=consume_in_child, args=(database.url, TEST_DATA_KEY, row.id, code, barrier, results))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    outcomes = sorted(results.get(timeout=120) for _ in workers)
    for worker in workers:
        worker.join(timeout=30)
    database.connect(reuse_if_open=True)
    assert outcomes == ["accepted", "refused"]
    assert TotpCredential.get_by_id(row.id).last_timecode is not None
