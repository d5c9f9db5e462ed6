"""`flask --app web backup …`: create a consistent backup, verify one, restore one into an empty database."""

from __future__ import annotations

import time

import click
from flask import current_app
from flask.cli import AppGroup

from jobs import backup
from models import schema

backup_group = AppGroup("backup", help="Consistent backups of the database and the encrypted files; check; restore.")

KEY_WARNING = (
    "The data key (MYHUG_DATA_KEY) is NOT in this backup: without it the documents and the encrypted fields "
    "cannot be read. Keep the key separately from the backups, and both safe."
)


def _fail(error: backup.BackupError) -> None:
    """Every problem on its own line on stderr, then exit code 1."""
    click.echo(f"Error: {error}", err=True)
    for problem in error.problems:
        click.echo(f"  - {problem}", err=True)
    raise SystemExit(1)


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _describe(manifest: dict) -> list[str]:
    tables = manifest["tables"]
    return [
        f"  taken at      {manifest['created_at']} ({manifest['backend']}, "
        f"schema version {manifest['schema_version']})",
        f"  database      {manifest['database']['file']}, {_size(manifest['database']['bytes'])}, "
        f"{sum(tables.values())} rows in {len(tables)} tables",
        f"  audit trail   head at event {manifest['audit_head']['id']}",
        f"  blobs         {manifest['blobs']['count']} files, {_size(manifest['blobs']['bytes'])}",
    ]


@backup_group.command("create")
@click.argument("dest_dir", type=click.Path(file_okay=False))
def create(dest_dir: str) -> None:
    """Write a backup folder (named by its UTC time) under DEST_DIR: database snapshot, the encrypted files it
    refers to, and a sealed manifest. The portal may keep running."""
    config = current_app.config
    started = time.monotonic()
    try:
        created = backup.create_backup(
            dest_dir, database_url=config["DATABASE_URL"], blob_dir=config["BLOB_DIR"], key=config["DATA_KEY"]
        )
    except backup.BackupError as error:
        _fail(error)
    click.echo(f"backup written: {created.path} in {time.monotonic() - started:.2f} s")
    for line in _describe(created.manifest):
        click.echo(line)
    if created.linked:
        click.echo("The files are hard links into the blob store (same filesystem): copy the folder to other storage.")
    click.echo(KEY_WARNING)


@backup_group.command("verify")
@click.argument("backup_dir", type=click.Path(exists=True, file_okay=False))
def verify(backup_dir: str) -> None:
    """Check a backup without restoring it: manifest seal and key, SHA-256 of every file, every blob present
    (SQLite: also the row counts and the audit chain inside the file). Exit code 1 on any problem."""
    checked = backup.verify_backup(backup_dir, current_app.config["DATA_KEY"])
    if checked.problems:
        _fail(backup.BackupError(f"the backup {backup_dir} cannot be trusted", checked.problems))
    click.echo(f"backup intact: {backup_dir}")
    for line in _describe(checked.manifest):
        click.echo(line)
    if checked.audit is not None:
        click.echo(f"  {checked.audit}")
    else:
        click.echo("  (a PostgreSQL dump's counts and audit chain are checked when it is restored)")


@backup_group.command("restore")
@click.argument("backup_dir", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--database-url",
    required=True,
    envvar="MYHUG_RESTORE_DATABASE_URL",
    help="The EMPTY database to restore into (sqlite:/// or postgresql://); or MYHUG_RESTORE_DATABASE_URL, which "
    "keeps a password off the command line.",
)
@click.option("--blob-dir", required=True, type=click.Path(file_okay=False), help="The EMPTY folder for the files.")
@click.option("--force", is_flag=True, help="Replace a non-empty database (its tables are dropped) and blob folder.")
def restore(backup_dir: str, database_url: str, blob_dir: str, force: bool) -> None:
    """Restore a backup, then check the result against its manifest and walk the audit chain (`audit verify`).
    Stop the portal first when replacing its database with --force."""
    started = time.monotonic()
    try:
        restored = backup.restore_backup(
            backup_dir, database_url=database_url, blob_dir=blob_dir, key=current_app.config["DATA_KEY"], force=force
        )
    except backup.BackupError as error:
        _fail(error)
    click.echo(f"restored in {time.monotonic() - started:.2f} s; counts, blobs and audit head match the manifest")
    for line in _describe(restored.manifest):
        click.echo(line)
    click.echo(f"  {restored.audit}")
    latest = schema.MIGRATIONS[-1][0]
    if restored.facts.schema_version < latest:
        click.echo(
            f"The backup's schema version {restored.facts.schema_version} is older than this code's ({latest}): "
            "run `flask --app web init-db` against it before starting the portal."
        )
    click.echo("Start the portal with the data key this backup was made with (MYHUG_DATA_KEY).")
