"""Configuration: read from MYHUG_* variables; production refuses to start without its secrets."""

from __future__ import annotations

import secrets
import stat

import pytest

from config import ConfigError, decode_data_key, load_config

GOOD_KEY = secrets.token_urlsafe(32)


PRODUCTION = {
    "MYHUG_ENV": "production",
    "MYHUG_SECRET_KEY": "s" * 64,
    "MYHUG_DATA_KEY": GOOD_KEY,
    "MYHUG_DATABASE_URL": "postgresql://myhug@db/myhug",
    "MYHUG_PUBLIC_URL": "https://www.myhug.ch",
}


@pytest.mark.parametrize("missing", ["MYHUG_SECRET_KEY", "MYHUG_DATA_KEY", "MYHUG_DATABASE_URL", "MYHUG_PUBLIC_URL"])
def test_production_names_what_is_missing(tmp_path, missing):
    env = dict(PRODUCTION)
    del env[missing]
    with pytest.raises(ConfigError, match=missing):
        load_config(env, tmp_path)
    assert not any(tmp_path.iterdir())  # nothing generated in production


def test_production_with_its_secrets(tmp_path):
    env = {**PRODUCTION, "MYHUG_SMS_BACKEND": "http"}
    config = load_config(env, tmp_path)
    assert config["SESSION_COOKIE_SECURE"] is True
    assert config["DATABASE_URL"] == "postgresql://myhug@db/myhug"
    assert len(config["DATA_KEY"]) == 32
    assert config["SMS_BACKEND"] == "http"


def test_development_generates_and_keeps_its_secrets(tmp_path):
    first = load_config({}, tmp_path)
    second = load_config({}, tmp_path)
    assert first["SECRET_KEY"] == second["SECRET_KEY"] and len(first["SECRET_KEY"]) >= 48
    assert first["DATA_KEY"] == second["DATA_KEY"]
    assert first["DATABASE_URL"].startswith("sqlite:///") and first["SMS_BACKEND"] == "outbox"
    for name in ("secret_key", "data_key"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    assert first["SESSION_COOKIE_SECURE"] is False


def test_environment_overrides_defaults(tmp_path):
    config = load_config({"MYHUG_SESSION_IDLE_MINUTES": "15", "MYHUG_TEMPORARY_PASSWORD_HOURS": "200"}, tmp_path)
    assert config["SESSION_IDLE_MINUTES"] == 15
    assert config["TEMPORARY_PASSWORD_HOURS"] == 72  # never beyond the procedure's 72 h


@pytest.mark.parametrize("bad", ["short", "!!!not base64!!!", "c2l4dGVlbi1ieXRlcy1rZXk"])  # the last: 16 bytes
def test_bad_data_key_is_refused(bad):
    with pytest.raises(ConfigError):
        decode_data_key(bad)


def test_unknown_environment_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="MYHUG_ENV"):
        load_config({"MYHUG_ENV": "staging"}, tmp_path)


def test_production_needs_an_https_public_address(tmp_path):
    with pytest.raises(ConfigError, match="https"):
        load_config({**PRODUCTION, "MYHUG_PUBLIC_URL": "http://www.myhug.ch"}, tmp_path)


@pytest.mark.parametrize("unset", ["MYHUG_HIN_ISSUER", "MYHUG_HIN_CLIENT_ID", "MYHUG_HIN_CLIENT_SECRET"])
def test_half_configured_hin_is_refused(tmp_path, unset):
    hin = {"MYHUG_HIN_ISSUER": "https://oidc.hin.ch/", "MYHUG_HIN_CLIENT_ID": "myhug", "MYHUG_HIN_CLIENT_SECRET": "s"}
    del hin[unset]
    with pytest.raises(ConfigError, match=unset):
        load_config(hin, tmp_path)


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({}, "outbox"),  # `make run` on a machine without a mail server: e-mails read on /dev/mail
        ({"MYHUG_MAIL_SERVER": "smtp.hcuge.ch"}, "smtp"),
        ({"MYHUG_MAIL_BACKEND": "smtp"}, "smtp"),
        ({"MYHUG_ENV": "testing"}, "smtp"),  # the mail tests talk to a real SMTP server
    ],
)
def test_mail_backend_defaults(tmp_path, environment, expected):
    assert load_config(environment, tmp_path)["MAIL_BACKEND"] == expected


def test_production_sends_mail_by_smtp(tmp_path):
    assert load_config(PRODUCTION, tmp_path)["MAIL_BACKEND"] == "smtp"
