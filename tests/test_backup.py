"""`flask backup create | verify | restore`: a consistent snapshot of the database and the encrypted blob store,
restored into a fresh database that `audit verify` accepts, on SQLite and PostgreSQL (jobs/backup.py)."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import multiprocessing
import secrets
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import pytest

import models
from jobs import backup
from models import AuditHead, Document, DocumentStatus, EnrollmentApplication, Role, StayKind, schema, utcnow
from security import audit
from security.encryption import BlobStore, keyring
from tests import pg
from tests.conftest import TEST_DATA_KEY
from tests.web.conftest import settings
from web import create_app, demo
from workflows import Actor, documents

LOAD_SYSTEM = "urn:oid:2.16.756.5.30.1.145.1.9"


@pytest.fixture
def blob_dir(tmp_path):
    return tmp_path / "blobs"


@pytest.fixture
def app(database, tmp_path, blob_dir):
    return create_app(settings(database, INSTANCE_PATH=str(tmp_path / "instance"), BLOB_DIR=str(blob_dir)))


@pytest.fixture
def cli(app):
    """cli("backup", "create", DEST) → click's Result (exit code, stdout, stderr)."""
    runner = app.test_cli_runner()
    return lambda *args: runner.invoke(args=[str(arg) for arg in args])


@pytest.fixture
def demo_data(app, blob_dir):
    """The demo's staff, physicians, patients, documents with their PDFs and an ID copy, through the service layer."""
    with app.app_context():
        demo.load(str(blob_dir))


@pytest.fixture
def fresh_database(database, tmp_path):
    """fresh_database() → the URL of a new, empty database on the backend under test (PostgreSQL: a scratch
    database beside the test one, dropped afterwards)."""
    created: list[str] = []
    numbers = itertools.count(1)

    def make() -> str:
        if not models.is_postgres():
            return f"sqlite:///{tmp_path / f'restored-{next(numbers)}.sqlite3'}"
        parts = urlparse(pg.test_database_url())
        name = f"{parts.path.lstrip('/')}_restore_{secrets.token_hex(4)}"
        _admin(f'CREATE DATABASE "{name}"')
        created.append(name)
        return urlunparse(parts._replace(path=f"/{name}"))

    yield make
    for name in created:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _admin(sql: str) -> None:
    import psycopg2

    connection = psycopg2.connect(pg.base_url())
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
    finally:
        connection.close()


def _only_backup(dest: Path) -> Path:
    """The one backup folder under `dest` (and no unfinished one beside it)."""
    entries = list(dest.iterdir())
    assert [e.name.startswith(backup.NAME_PREFIX) for e in entries] == [True], entries
    return entries[0]


def _manifest(folder: Path) -> dict:
    return json.loads((folder / backup.MANIFEST).read_text())


def _edit_manifest(folder: Path, change) -> None:
    manifest = _manifest(folder)
    change(manifest)
    (folder / backup.MANIFEST).write_text(json.dumps(manifest))


def _live_counts() -> dict[str, int]:
    connection = models.db.connection()
    return backup.read_facts(connection, "postgresql" if models.is_postgres() else "sqlite").tables


# -- a full round trip --------------------------------------------------------------------------------------------
def test_backup_and_restore_round_trip(cli, demo_data, blob_dir, tmp_path, fresh_database):
    dest = tmp_path / "backups"
    created = cli("backup", "create", dest)
    assert created.exit_code == 0, created.output
    folder = _only_backup(dest)
    manifest = _manifest(folder)

    # The manifest describes the database as it is (nothing changed since).
    assert manifest["backend"] == ("postgresql" if models.is_postgres() else "sqlite")
    assert manifest["schema_version"] == schema.MIGRATIONS[-1][0]
    assert manifest["tables"] == _live_counts()
    head = AuditHead.get_by_id(1)
    assert manifest["audit_head"] == {"id": head.last_id, "hash": head.last_hash}
    referenced = {d.blob_id for d in Document.select()} | {
        a.id_copy_blob for a in EnrollmentApplication.select() if a.id_copy_blob
    }
    assert manifest["blobs"]["count"] == len(referenced) == 6
    assert {p.name for p in (folder / backup.BLOB_FOLDER).glob("*/*")} == referenced
    assert folder.name == backup.NAME_PREFIX + manifest["created_at"][:19].replace("-", "").replace(":", "") + "Z"
    some = next(iter(referenced))
    assert (folder / backup.BLOB_FOLDER / some[:2] / some).stat().st_ino == (blob_dir / some[:2] / some).stat().st_ino
    assert "hard links" in created.output  # same filesystem here: linked, and the operator is told to copy it away
    assert "MYHUG_DATA_KEY" in created.output and "NOT in this backup" in created.output

    target, target_blobs = fresh_database(), tmp_path / "restored-blobs"
    restored = cli("backup", "restore", folder, "--database-url", target, "--blob-dir", target_blobs)
    assert restored.exit_code == 0, restored.output
    assert f"audit trail intact: {head.last_id} events" in restored.output

    letter = Document.get(Document.title == "Lettre de sortie – Cardiologie")
    with backup.bound_to(models.open_database(target)):
        assert audit.verify().ok
        assert _live_counts() == manifest["tables"]
        copy = Document.get(Document.title == "Lettre de sortie – Cardiologie")
        pdf = BlobStore(target_blobs, keyring.require()).get(copy.blob_id, documents.blob_context(copy))
    assert pdf == demo.minimal_pdf(letter.title)
    assert hashlib.sha256(pdf).hexdigest() == copy.sha256


def test_nothing_secret_or_about_patients_in_the_manifest_or_the_output(cli, demo_data, tmp_path):
    created = cli("backup", "create", tmp_path / "backups")
    folder = _only_backup(tmp_path / "backups")
    verified = cli("backup", "verify", folder)
    assert created.exit_code == verified.exit_code == 0
    text = (folder / backup.MANIFEST).read_text() + created.output + verified.output
    key = keyring.require()
    for secret in (key.hex(), base64.urlsafe_b64encode(key).decode().rstrip("="), base64.b64encode(key).decode()):
        assert secret not in text
    for name in ("Martin", "Jeanne", "Rossi", "Dupont", "Lettre de sortie", "P-100234"):
        assert name not in text


# -- consistency under load ---------------------------------------------------------------------------------------
def keep_receiving_documents(url: str, key: bytes, blob_dir: str, written, stop, results) -> None:
    """Child process: the DPI sends documents through the service layer until told to stop. Every other one
    arrives preliminary and has its PDF replaced in place (its first file deleted): the case where a blob the
    snapshot names disappears from the store before it is copied."""
    try:
        from security import encryption

        encryption.configure(key)
        models.init_database(url).connect(reuse_if_open=True)
        documents.configure(blob_dir)
        dpi = Actor(Role.DPI)
        patient = documents.record_patient(
            system=LOAD_SYSTEM, value="P-LOAD", family_name="Charge", given_name="Test", birth_date=None
        )
        stay = documents.record_stay(
            system=LOAD_SYSTEM, value="S-LOAD", patient=patient, kind=StayKind.INPATIENT, started_at=utcnow(),
            ended_at=None,
        )  # fmt: skip
        physician = documents.record_practitioner(
            gln=models.gln_with_check_digit("760100000777"), family_name="Charge", given_name="Anne"
        )
        documents.record_designation(stay=stay, physician=physician, authorized=True, actor=dpi)
        n = 0
        while not stop.is_set():
            n += 1

            def receive(status, text, n=n):
                documents.receive_document(
                    dpi_system=LOAD_SYSTEM, dpi_value=f"LOAD-{n:05d}", patient=patient, stay=stay,
                    type_code="18842-5", title=f"Charge {n}", author="Dr Charge", status=status,
                    pdf=demo.minimal_pdf(text), actor=dpi,
                )  # fmt: skip

            if n % 2:
                receive(DocumentStatus.FINAL, f"Document {n}")
            else:
                receive(DocumentStatus.PRELIMINARY, f"Draft {n}")
                receive(DocumentStatus.PRELIMINARY, f"Draft {n}, corrected")
            with written.get_lock():
                written.value = n
        results.put("done")
    except Exception as exc:  # reported, so that the test shows it instead of hanging
        results.put(f"error: {exc!r}")


def _wait_for(condition, limit: float = 120) -> None:
    """Poll until `condition()` holds; the limit only keeps a broken child from hanging the run."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "the writer process made no progress"
        time.sleep(0.05)


def test_backup_taken_while_documents_keep_arriving_is_consistent(cli, database, blob_dir, tmp_path, fresh_database):
    ctx = multiprocessing.get_context("spawn")
    written, stop, results = ctx.Value("i", 0), ctx.Event(), ctx.Queue()
    worker = ctx.Process(
        target=keep_receiving_documents, args=(database.url, TEST_DATA_KEY, str(blob_dir), written, stop, results)
    )
    worker.start()
    try:
        _wait_for(lambda: written.value >= 6 or not worker.is_alive())
        created = cli("backup", "create", tmp_path / "backups")
        after_backup = written.value
        _wait_for(lambda: written.value >= after_backup + 4 or not worker.is_alive())  # it kept writing meanwhile
    finally:
        stop.set()
        worker.join(timeout=60)
    assert results.get(timeout=60) == "done"
    assert created.exit_code == 0, created.output
    folder = _only_backup(tmp_path / "backups")
    manifest = _manifest(folder)
    assert 0 < manifest["tables"]["document"] < Document.select().count()  # a snapshot from the middle of the load

    target, target_blobs = fresh_database(), tmp_path / "restored-blobs"
    restored = cli("backup", "restore", folder, "--database-url", target, "--blob-dir", target_blobs)
    assert restored.exit_code == 0, restored.output
    with backup.bound_to(models.open_database(target)):
        assert audit.verify().ok
        assert _live_counts() == manifest["tables"]
        store = BlobStore(target_blobs, keyring.require())
        for document in Document.select():
            pdf = store.get(document.blob_id, documents.blob_context(document))
            assert hashlib.sha256(pdf).hexdigest() == document.sha256


def test_a_blob_deleted_after_the_snapshot_is_still_in_the_backup(database, blob_dir, tmp_path):
    """A preliminary PDF replaced in place becomes an orphan, which the sweep deletes: if that happens between the
    snapshot and the copy, the copy made before the snapshot is what the backup keeps."""
    documents.configure(str(blob_dir))
    dpi = Actor(Role.DPI)
    patient = documents.record_patient(system=LOAD_SYSTEM, value="P1", family_name="A", given_name="B", birth_date=None)
    stay = documents.record_stay(
        system=LOAD_SYSTEM, value="S1", patient=patient, kind=StayKind.INPATIENT, started_at=utcnow(), ended_at=None
    )

    def receive(text: str) -> Document:
        document, _ = documents.receive_document(
            dpi_system=LOAD_SYSTEM, dpi_value="D1", patient=patient, stay=stay, type_code="18842-5", title="Draft",
            author="Dr B", status=DocumentStatus.PRELIMINARY, pdf=demo.minimal_pdf(text), actor=dpi,
        )  # fmt: skip
        return document

    draft = receive("first draft").blob_id
    folder = tmp_path / "partial"
    capture = backup.BlobCapture(blob_dir, folder / backup.BLOB_FOLDER, keyring.require())
    capture.before_snapshot()
    facts = backup.snapshot_database(database.url, folder / "database")
    corrected = receive("corrected draft").blob_id  # after the snapshot: the first draft's file is an orphan now
    documents.sweep_orphan_blobs(blob_dir=str(blob_dir), now=utcnow() + documents.ORPHAN_MIN_AGE * 2)
    assert not (blob_dir / draft[:2] / draft).exists()

    blobs = capture.after_snapshot(facts.blob_ids)
    assert list(blobs) == [draft] and corrected not in facts.blob_ids
    assert blobs[draft] == backup.file_digest(folder / backup.BLOB_FOLDER / draft[:2] / draft)
    # Without the capture before the snapshot, that blob would be lost: the backup refuses to be written.
    late = backup.BlobCapture(blob_dir, tmp_path / "late" / backup.BLOB_FOLDER, keyring.require())
    with pytest.raises(backup.BackupError) as refused:
        late.after_snapshot(facts.blob_ids)
    assert refused.value.problems == [f"blob {draft} is referred to by the database but is not in the blob store"]


# -- failures and refusals ----------------------------------------------------------------------------------------
def test_a_blob_missing_from_the_store_fails_the_backup_and_leaves_nothing(cli, demo_data, blob_dir, tmp_path):
    lost = Document.get(Document.title == "Résultats de laboratoire").blob_id
    (blob_dir / lost[:2] / lost).unlink()
    dest = tmp_path / "backups"
    result = cli("backup", "create", dest)
    assert result.exit_code == 1
    assert f"blob {lost} is referred to by the database but is not in the blob store" in result.output
    assert list(dest.iterdir()) == []  # neither a backup under its final name nor the unfinished folder


def test_restore_refuses_a_non_empty_database_or_blob_folder(cli, demo_data, tmp_path, fresh_database, database):
    cli("backup", "create", tmp_path / "backups")
    folder = _only_backup(tmp_path / "backups")
    before = _live_counts()
    into_live = cli("backup", "restore", folder, "--database-url", database.url, "--blob-dir", tmp_path / "new")
    assert into_live.exit_code == 1
    assert "the target database is not empty" in into_live.output
    assert _live_counts() == before and not (tmp_path / "new").exists()

    used = tmp_path / "used-blobs"
    (used / "ab").mkdir(parents=True)
    (used / "ab" / "ab12").write_bytes(b"x")
    target = fresh_database()
    into_used = cli("backup", "restore", folder, "--database-url", target, "--blob-dir", used)
    assert into_used.exit_code == 1
    assert f"the blob folder {used} is not empty" in into_used.output
    with backup.bound_to(models.open_database(target)):
        assert _live_counts() == {}  # nothing was written

    forced = cli("backup", "restore", folder, "--database-url", target, "--blob-dir", used, "--force")
    assert forced.exit_code == 0, forced.output
    again = cli("backup", "restore", folder, "--database-url", target, "--blob-dir", used, "--force")
    assert again.exit_code == 0, again.output  # a non-empty target replaced
    with backup.bound_to(models.open_database(target)):
        assert _live_counts() == _manifest(folder)["tables"]


def _edit_count(folder: Path) -> str:
    _edit_manifest(folder, lambda m: m["tables"].update(document=m["tables"]["document"] + 1))
    return f"{backup.MANIFEST} was edited after the backup was written: its seal does not match"


def _remove_blob(folder: Path) -> str:
    blob = next((folder / backup.BLOB_FOLDER).glob("*/*"))
    blob.unlink()
    return f"blob {blob.name} is listed but missing from the backup"


def _change_database_file(folder: Path) -> str:
    name = _manifest(folder)["database"]["file"]
    path = folder / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return f"{name} does not match the SHA-256 in the manifest: the file was changed or damaged"


def _change_blob(folder: Path) -> str:
    blob = next((folder / backup.BLOB_FOLDER).glob("*/*"))
    blob.write_bytes(blob.read_bytes()[:-1] + b"\x00")
    return f"blob {blob.name} does not match its SHA-256: the file was changed or damaged"


@pytest.mark.parametrize("tamper", [_edit_count, _remove_blob, _change_database_file, _change_blob])
def test_a_tampered_backup_is_refused_by_verify_and_restore(cli, demo_data, tmp_path, fresh_database, tamper):
    cli("backup", "create", tmp_path / "backups")
    folder = _only_backup(tmp_path / "backups")
    assert cli("backup", "verify", folder).exit_code == 0
    problem = tamper(folder)

    verified = cli("backup", "verify", folder)
    assert verified.exit_code == 1
    assert f"- {problem}" in verified.output

    target, target_blobs = fresh_database(), tmp_path / "restored-blobs"
    restored = cli("backup", "restore", folder, "--database-url", target, "--blob-dir", target_blobs)
    assert restored.exit_code == 1
    assert "the backup is refused, nothing was restored" in restored.output
    assert f"- {problem}" in restored.output
    with backup.bound_to(models.open_database(target)):
        assert _live_counts() == {}
    assert not target_blobs.exists()


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_an_edited_count_is_named_precisely_where_the_file_can_be_read(cli, demo_data, tmp_path):
    """A SQLite backup is read in place, so `verify` names the table whose count the manifest misstates (a
    PostgreSQL dump is only read by restoring it: there the seal catches the edit)."""
    cli("backup", "create", tmp_path / "backups")
    folder = _only_backup(tmp_path / "backups")
    documents_count = _manifest(folder)["tables"]["document"]
    _edit_count(folder)
    verified = cli("backup", "verify", folder)
    assert (
        f"table document: the manifest says {documents_count + 1} rows, the database file holds {documents_count}"
        in (verified.output)
    )


def test_a_backup_made_with_another_data_key_is_named_as_such(cli, demo_data, tmp_path):
    cli("backup", "create", tmp_path / "backups")
    folder = _only_backup(tmp_path / "backups")
    checked = backup.verify_backup(folder, secrets.token_bytes(32))
    assert len(checked.problems) == 1
    assert checked.problems[0].startswith("this backup was made with another data key")
    assert backup.verify_backup(folder, keyring.require()).problems == []


def test_the_password_of_a_postgresql_url_stays_off_the_command_line():
    dsn, env = backup.libpq("postgresql://myhug:s%40cret@db.example:5433/myhug?sslmode=require")
    assert dsn == "postgresql://myhug@db.example:5433/myhug?sslmode=require"
    assert env["PGPASSWORD"] == "s@cret"


def test_the_restore_checks_its_result_against_the_manifest(cli, demo_data, tmp_path, fresh_database):
    """A manifest edited and sealed again with the key (a bug, or someone holding the key) is still caught: by the
    counts inside a SQLite file at once, by the restored database's counts for a PostgreSQL dump."""
    cli("backup", "create", tmp_path / "backups")
    folder = _only_backup(tmp_path / "backups")
    count = _manifest(folder)["tables"]["document"]

    def misstate(manifest):
        manifest["tables"]["document"] += 1
        manifest["seal"] = backup.seal(manifest, keyring.require())

    _edit_manifest(folder, misstate)
    target = fresh_database()
    restored = cli("backup", "restore", folder, "--database-url", target, "--blob-dir", tmp_path / "restored-blobs")
    assert restored.exit_code == 1
    where = "the restored database" if models.is_postgres() else "the database file"
    assert f"- table document: the manifest says {count + 1} rows, {where} holds {count}" in restored.output


def test_a_restore_whose_audit_chain_does_not_hold_is_refused(cli, demo_data, tmp_path, fresh_database):
    """The backup is faithful to what it copied: an audit event edited in the live database before the backup is
    reported by the restore's `audit verify` (and, for SQLite, already by `backup verify`)."""
    models.AuditEvent.update(outcome="edited").where(models.AuditEvent.id == 3).execute()
    cli("backup", "create", tmp_path / "backups")
    folder = _only_backup(tmp_path / "backups")
    restored = cli("backup", "restore", folder, "--database-url", fresh_database(), "--blob-dir", tmp_path / "b")
    assert restored.exit_code == 1
    assert "audit trail broken at event 3: its content was changed after it was written" in restored.output
