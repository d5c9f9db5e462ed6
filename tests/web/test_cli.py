"""The `flask --app web …` commands, through Flask's CLI runner."""

from __future__ import annotations

import re

import models
from models import Account, AuditEvent, Role
from security.passwords import verify_password
from web import create_app

from .conftest import settings


def test_init_db_is_idempotent(app):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["init-db"])
    assert result.exit_code == 0, result.output
    assert "already up to date" in result.output


def test_init_db_creates_a_fresh_database(tmp_path):
    previous = models.db.obj
    url = f"sqlite:///{tmp_path / 'new' / 'myhug.sqlite3'}"
    try:
        app = create_app({"TESTING": True, "DATABASE_URL": url, "SECRET_KEY": "s" * 32, "INSTANCE_PATH": str(tmp_path)})
        runner = app.test_cli_runner()
        first = runner.invoke(args=["init-db"])
        assert first.exit_code == 0, first.output
        assert "applied migration: baseline" in first.output
        second = runner.invoke(args=["init-db"])
        assert "already up to date" in second.output
        assert models.Specialty.select().count() > 0
    finally:
        if not models.db.is_closed():
            models.db.close()
        if previous is not None:
            models.db.initialize(previous)


def test_create_user_prints_a_password_that_verifies_once(app):
    runner = app.test_cli_runner()
    result = runner.invoke(
        args=["create-user", "jdoe", "--email", "jdoe@hcuge.ch", "--role", "clinician", "--name", "Jane Doe"]
    )
    assert result.exit_code == 0, result.output
    password = re.search(r"temporary password: (\S+)", result.output).group(1)
    account = Account.get(Account.username == "jdoe")
    assert (account.state, account.role, account.full_name) == ("pending", "clinician", "Jane Doe")
    assert verify_password(account.password_hash, password)
    assert password not in account.password_hash
    assert "shown once" in result.output
    again = runner.invoke(args=["create-user", "jdoe", "--email", "x@hcuge.ch", "--role", "clinician"])
    assert again.exit_code != 0 and "taken" in again.output


def test_create_user_for_a_physician_needs_the_gln(app, make_physician):
    runner = app.test_cli_runner()
    refused = runner.invoke(args=["create-user", "drnone", "--email", "d@example.ch", "--role", "physician"])
    assert refused.exit_code != 0
    assert "one physician" in refused.output
    physician = make_physician()
    args = ["create-user", "drwho", "--email", "d@example.ch", "--role", "physician", "--physician-gln", physician.gln]
    result = runner.invoke(args=args)
    assert result.exit_code == 0, result.output
    assert Account.get(Account.username == "drwho").physician_id == physician.id
    unknown = runner.invoke(args=["create-user", "drx", *args[2:-1], "7601000000000"])
    assert unknown.exit_code != 0 and "no physician" in unknown.output


def test_audit_verify_detects_an_edit(app, make_account):
    make_account(Role.CLINICIAN)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 0, result.output
    assert "intact" in result.output
    victim = AuditEvent.select().order_by(AuditEvent.id).first()
    models.db.execute_sql(f"UPDATE audit_event SET action='x' WHERE id={int(victim.id)}")
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 1
    assert f"broken at event {victim.id}" in result.output


def test_demo_is_refused_in_production(app):
    app.config["MYHUG_ENV"] = "production"
    result = app.test_cli_runner().invoke(args=["demo"])
    assert result.exit_code != 0
    assert "never loaded in production" in result.output
    assert Account.select().count() == 0


def test_demo_with_the_real_demo_data(app, tmp_path):
    app.config["BLOB_DIR"] = str(tmp_path / "blobs")
    runner = app.test_cli_runner()
    result = runner.invoke(args=["demo"])
    assert result.exit_code == 0, result.output
    assert "admin" in result.output and "Rhône-Salève-2026" in result.output
    assert runner.invoke(args=["demo"]).exit_code == 0  # a second run loads nothing twice
    assert runner.invoke(args=["audit", "verify"]).exit_code == 0


def test_settings_helper_is_complete(database):
    assert {"DATABASE", "DATABASE_URL", "SECRET_KEY", "DATA_KEY", "TESTING"} <= set(settings(database))
