"""`flask --app web …` commands: init-db, demo, create-user, audit verify, jobs run/run-once, dpi (clients, import)."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

from jobs.runner import Runner
from jobs.tasks import run_once
from models import ACCOUNT_ROLES, Account, DpiClient, Physician, db, schema
from security import audit
from workflows import ACCOUNT, SYSTEM, TransitionRefused, engine

from . import cli_backup, fhir
from . import demo as demo_data


@contextmanager
def app_database() -> Iterator[object]:
    """The database create_app pointed the models at, connected for one command (closed after if opened here)."""
    opened = db.connect(reuse_if_open=True)
    try:
        yield db.obj
    finally:
        if opened and not db.is_closed():
            db.close()


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            click.echo("  ".join("-" * width for width in widths))


@click.command("init-db")
@with_appcontext
def init_db() -> None:
    """Create or upgrade the schema and seed the reference data (idempotent)."""
    with app_database():
        applied = schema.upgrade()
        version = schema.current_version()
    for name in applied:
        click.echo(f"applied migration: {name}")
    if not applied:
        click.echo(f"database already up to date (schema version {version})")
    else:
        click.echo(f"database ready (schema version {version})")


@click.command("demo")
@with_appcontext
def demo() -> None:
    """Load the demonstration data and print the demo logins (refused in production)."""
    if current_app.config["MYHUG_ENV"] == "production":
        raise click.ClickException("demo data and their published passwords are never loaded in production")
    with app_database():
        logins = demo_data.load(current_app.config["BLOB_DIR"])
    click.echo("Demo logins (development only):")
    print_table(("username", "password", "role", "who"), logins)


@click.command("create-user")
@click.argument("username")
@click.option("--email", required=True, help="Where the temporary password is also e-mailed.")
@click.option("--role", required=True, type=click.Choice([str(r) for r in ACCOUNT_ROLES]))
@click.option("--name", "full_name", default="", help="Full name, as shown in the portal.")
@click.option("--physician-gln", default=None, help="For a physician: the GLN of their physician record.")
@with_appcontext
def create_user(username: str, email: str, role: str, full_name: str, physician_gln: str | None) -> None:
    """Create a login with a one-time temporary password (printed once)."""
    with app_database():
        if Account.select().where(Account.username == username).exists():
            raise click.ClickException(f"the username {username!r} is taken")
        physician = None
        if physician_gln:
            physician = Physician.get_or_none(Physician.gln == physician_gln)
            if physician is None:
                raise click.ClickException(f"no physician with GLN {physician_gln}")
        account = Account(username=username, email=email, role=role, full_name=full_name, physician=physician)
        try:
            engine.create(ACCOUNT, account, "issue_login", SYSTEM)
        except TransitionRefused as refused:
            raise click.ClickException(refused.reason.text) from refused
    click.echo(f"created {role} {username} (state {account.state})")
    click.echo(f"temporary password: {account.issued_password}")
    click.echo(
        "This password is shown once and is not stored in clear: give it to its holder now. "
        f"It was also e-mailed to {email} (outbox) and must be replaced at the first login."
    )


audit_group = AppGroup("audit", help="The audit trail.")


@audit_group.command("verify")
def audit_verify() -> None:
    """Walk the hash chain; exit code 1 if an event was edited, deleted or reordered."""
    with app_database():
        result = audit.verify()
    click.echo(str(result))
    if not result.ok:
        raise SystemExit(1)


jobs_group = AppGroup("jobs", help="The scheduled jobs: outbox dispatch, reminders, expiries.")


@jobs_group.command("run-once")
@with_appcontext
def jobs_run_once() -> None:
    """Run every due job once, then exit (cron, tests, or a manual catch-up)."""
    with app_database():
        results = run_once(current_app)
    for name, count in results.items():
        click.echo(f"{name}: {count}")


@jobs_group.command("run")
@click.option("--node", default=None, help="This process's name in the job history (default: host:pid).")
@click.option(
    "--standby-poll",
    type=click.FloatRange(min=0.1),
    default=None,
    help="Seconds between a standby's attempts to become leader (default: MYHUG_JOBS_STANDBY_POLL_SECONDS, 5).",
)
@with_appcontext
def jobs_run(node: str | None, standby_poll: float | None) -> None:
    """Run the scheduler until SIGTERM: one leader across processes and nodes fires the jobs, the others wait."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    poll = current_app.config["JOBS_STANDBY_POLL_SECONDS"] if standby_poll is None else standby_poll
    Runner(current_app._get_current_object(), node=node, standby_poll=poll).run_forever()


dpi_group = AppGroup("dpi", help="The DPI's access to the FHIR API: clients and their tokens; importing Bundles.")


@dpi_group.command("create-client")
@click.argument("name")
def dpi_create_client(name: str) -> None:
    """Create a DPI client and print its bearer token, once (only its SHA-256 is stored)."""
    with app_database():
        try:
            token = fhir.create_client(name)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(f"created DPI client {name.strip()}")
    click.echo(f"bearer token: {token}")
    click.echo("This token is shown once and is not stored in clear: configure the DPI with it now.")


@dpi_group.command("revoke-client")
@click.argument("name")
def dpi_revoke_client(name: str) -> None:
    """Revoke a DPI client's token: its next request is refused (401)."""
    with app_database():
        try:
            revoked = fhir.revoke_client(name)
        except LookupError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(f"revoked DPI client {name}" if revoked else f"DPI client {name} was already revoked")


@dpi_group.command("list-clients")
def dpi_list_clients() -> None:
    """The DPI clients, whether they are revoked and when each last called (to the minute)."""
    with app_database():
        rows = [
            (
                c.name,
                f"{c.created_at:%Y-%m-%d %H:%M}",
                f"{c.revoked_at:%Y-%m-%d %H:%M}" if c.revoked_at else "-",
                f"{c.last_call_at:%Y-%m-%d %H:%M}" if c.last_call_at else "-",
            )
            for c in DpiClient.select().order_by(DpiClient.name)
        ]
    print_table(("name", "created (UTC)", "revoked (UTC)", "last call (UTC)"), rows)


@dpi_group.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--client", "client_name", required=True, help="The DPI client the documents are recorded for.")
@with_appcontext
def dpi_import(files: tuple[str, ...], client_name: str) -> None:
    """Write FHIR transaction Bundles (JSON files) as POST /fhir would, each file whole or not at all."""
    failed = []
    with app_database():
        client = DpiClient.get_or_none(DpiClient.name == client_name)
        if client is None or client.revoked_at is not None:
            raise click.ClickException(f"no active DPI client named {client_name!r}")
        with click.progressbar(files, label="Importing", item_show_func=lambda f: f) as bar:
            for path in bar:
                try:
                    with open(path, "rb") as handle:
                        fhir.apply_transaction(fhir.parse_json(handle.read()), fhir.writer(client.name))
                except fhir.FhirError as error:
                    failed.append((path, error))
    for path, error in failed:
        click.echo(f"{path}: refused ({error.status})", err=True)
        for issue in error.issues:
            click.echo(f"  {issue.expression or '-'}: {issue.diagnostics}", err=True)
    click.echo(f"imported {len(files) - len(failed)} of {len(files)} files")
    if failed:
        raise SystemExit(1)


def init_app(app: Flask) -> None:
    for command in (init_db, demo, create_user, audit_group, jobs_group, dpi_group, cli_backup.backup_group):
        app.cli.add_command(command)
