"""Consistent backups of the database and the encrypted blob store, their verification and their restore.

A backup is one folder, named by the UTC time of its database snapshot:

    myhug-backup-20260303T093000Z/
        manifest.json      what the snapshot held (rows per table, audit head, blobs, SHA-256 of the files), sealed
        database.sqlite3   SQLite: a copy made with the online backup API, in one read transaction
        database.dump      PostgreSQL: `pg_dump --format=custom` under a snapshot exported by our own transaction
        blobs.sha256       one line per blob, in `sha256sum -c` format
        blobs/xx/<id>      the encrypted files the snapshot refers to, laid out as a blob store

Why it is consistent while the portal keeps writing: a blob is renamed into the store before the row naming it
commits, and never changes afterwards; so every blob the snapshot names existed when the snapshot was taken. It may
be deleted afterwards (a preliminary PDF replaced in place, the orphan sweep), so every blob of the store is captured
(hard-linked, or copied across filesystems) *before* the snapshot; those written between that pass and the snapshot
are taken from the store after it, and captured blobs the snapshot does not name are dropped. The manifest's counts,
audit head and blob list are read from the snapshot itself (SQLite: the copy; PostgreSQL: the exporting transaction).

The data key (MYHUG_DATA_KEY) is never part of a backup: without it the documents and the encrypted fields cannot
be read. The manifest carries only a key id derived from it, so a restore can tell that the key it was given is not
the backup's, and a seal (an HMAC under a key derived from it) that detects any edit of the manifest.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, unquote, urlparse, urlunparse

from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from peewee import SqliteDatabase

from models import db, open_database
from security import audit
from security.encryption import BlobStore
from workflows.documents import BLOB_REFERENCES

FORMAT = "myhug-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
BLOB_LIST = "blobs.sha256"
BLOB_FOLDER = "blobs"
DATABASE_FILES = {"sqlite": "database.sqlite3", "postgresql": "database.dump"}
NAME_PREFIX = "myhug-backup-"
PARTIAL_PREFIX = ".partial-"
_TABLES_SQL = {
    "sqlite": "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
    "postgresql": "SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = current_schema() ORDER BY tablename",
}
_CHUNK = 1024 * 1024


class BackupError(Exception):
    """A backup that could not be written, or one that cannot be trusted: `problems` says precisely why."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = problems or []


@dataclass
class Facts:
    """What a database holds, as a backup describes it: read from a snapshot, or from a restored database."""

    schema_version: int
    tables: dict[str, int]
    audit_head: dict
    blob_ids: set[str]


@dataclass
class Created:
    path: Path
    manifest: dict
    linked: bool  # the blobs are hard links into the live store (same filesystem): copy the folder elsewhere


@dataclass
class Checked:
    """The outcome of checking a backup folder; `problems` is empty when it can be trusted."""

    manifest: dict | None
    problems: list[str]
    blobs: dict[str, str] = field(default_factory=dict)  # blob id → SHA-256, from the blob list
    audit: audit.Verification | None = None  # SQLite only: the chain walked inside the backup's own file


@dataclass
class Restored:
    manifest: dict
    facts: Facts
    audit: audit.Verification


# -- keys ---------------------------------------------------------------------------------------------------------
def _derived(key: bytes, purpose: bytes, length: int = 32) -> bytes:
    """A key for one purpose only, derived from the data key (the data key itself never signs anything)."""
    return HKDF(algorithm=SHA256(), length=length, salt=None, info=b"myhug " + purpose).derive(key)


def data_key_id(key: bytes) -> str:
    """A short public name of the data key: tells two keys apart, reveals nothing of either."""
    return _derived(key, b"data key id", 8).hex()


def seal(manifest: dict, key: bytes) -> str:
    body = {name: value for name, value in manifest.items() if name != "seal"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(_derived(key, b"backup manifest seal"), canonical, hashlib.sha256).hexdigest()


# -- files --------------------------------------------------------------------------------------------------------
def file_digest(path: Path) -> tuple[str, int]:
    """SHA-256 and size of a file, read in chunks."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _blob_path(root: Path, blob_id: str) -> Path:
    return root / blob_id[:2] / blob_id


def _blob_files(root: Path) -> Iterator[Path]:
    """Every file under a blob store's shard folders (to drop the captured blobs the snapshot does not name)."""
    if root.is_dir():
        for shard in root.iterdir():
            if shard.is_dir():
                yield from shard.iterdir()


class BlobCapture:
    """The blobs of one backup, gathered into its folder: hard links while the store is on the same filesystem
    (blobs never change, so a link is as good as a copy until the folder is moved elsewhere), copies otherwise."""

    def __init__(self, store_root: str | Path, folder: Path, key: bytes):
        self.store = BlobStore(store_root, key)
        self.folder = folder
        self.linking = True
        self.links = 0

    def take(self, blob_id: str) -> bool:
        """Capture one blob; False if the store does not have it (any more), or if the id is not a blob id."""
        if not blob_id.isalnum():
            return False
        source, target = _blob_path(self.store.root, blob_id), _blob_path(self.folder, blob_id)
        if target.exists():
            return True
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            if self.linking:
                try:
                    os.link(source, target)
                    self.links += 1
                    return True
                except OSError as exc:
                    if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                        raise
                    self.linking = False  # another filesystem (or links refused): copy from now on
            shutil.copyfile(source, target)
        except FileNotFoundError:
            return False
        return True

    def before_snapshot(self) -> None:
        """Every complete blob of the store, so that one deleted after the snapshot is still here."""
        for stored in self.store.listing():
            if stored.complete:
                self.take(stored.blob_id)

    def after_snapshot(self, blob_ids: set[str]) -> dict[str, tuple[str, int]]:
        """Exactly the blobs the snapshot names, each with its SHA-256 and size; a missing one fails the backup."""
        missing = sorted(blob_id for blob_id in blob_ids if not self.take(blob_id))
        if missing:
            raise BackupError(
                f"{len(missing)} file(s) the database refers to are missing from the blob store {self.store.root}",
                [f"blob {blob_id} is referred to by the database but is not in the blob store" for blob_id in missing],
            )
        for path in _blob_files(self.folder):
            if path.name not in blob_ids:
                path.unlink()
        return {blob_id: file_digest(_blob_path(self.folder, blob_id)) for blob_id in sorted(blob_ids)}


# -- database snapshots -------------------------------------------------------------------------------------------
def backend_of(url: str) -> str:
    scheme = urlparse(url).scheme
    if scheme == "sqlite":
        return "sqlite"
    if scheme in ("postgres", "postgresql"):
        return "postgresql"
    raise BackupError(f"unsupported database URL scheme {scheme!r}: use sqlite:/// or postgresql://")


def sqlite_path(url: str) -> Path:
    path = url[len("sqlite:///") :]
    if not path or path == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up or restored")
    return Path(path)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def read_facts(connection, backend: str) -> Facts:
    """Rows per table, schema version, audit head and blob references, through one DB-API connection (inside a
    snapshot transaction when the database is live)."""
    cursor = connection.cursor()
    cursor.execute(_TABLES_SQL[backend])
    names = [name for (name,) in cursor.fetchall()]
    tables = {}
    for name in names:
        cursor.execute(f"SELECT COUNT(*) FROM {_quoted(name)}")  # noqa: S608  (a name from the catalogue)
        tables[name] = cursor.fetchone()[0]
    version = 0
    if "schema_version" in tables:
        cursor.execute("SELECT MAX(version) FROM schema_version")
        version = cursor.fetchone()[0] or 0
    head = {"id": 0, "hash": audit.GENESIS}
    if "audit_head" in tables:
        cursor.execute("SELECT last_id, last_hash FROM audit_head WHERE id = 1")
        row = cursor.fetchone()
        if row is not None:
            head = {"id": row[0], "hash": row[1]}
    blob_ids: set[str] = set()
    for column in BLOB_REFERENCES:
        table, name = column.model._meta.table_name, column.column_name
        if table in tables:
            cursor.execute(f"SELECT {_quoted(name)} FROM {_quoted(table)} WHERE {_quoted(name)} IS NOT NULL")  # noqa: S608
            blob_ids.update(value for (value,) in cursor.fetchall())
    cursor.close()
    return Facts(version, tables, head, blob_ids)


def _snapshot_sqlite(url: str, target: Path) -> Facts:
    """The online backup API copies the whole file in one step, inside one read transaction: WAL writers go on,
    and what is copied is the database as of that transaction's start. The copy is made self-contained
    (rollback journal) so that one file is the whole database."""
    source_path = sqlite_path(url)
    try:
        source = sqlite3.connect(f"file:{source_path}?mode=rw", uri=True, timeout=30)  # never creates it
    except sqlite3.OperationalError as exc:
        raise BackupError(f"cannot open the SQLite database {source_path}: {exc}") from exc
    copy = sqlite3.connect(target)
    try:
        source.backup(copy)
        copy.execute("PRAGMA journal_mode = DELETE")
        return read_facts(copy, "sqlite")
    finally:
        copy.close()
        source.close()


def libpq(url: str) -> tuple[str, dict[str, str]]:
    """The URL for pg_dump/pg_restore without its password, and an environment carrying it (PGPASSWORD): a
    command line is visible to every user of the machine, the environment is not."""
    parts = urlparse(url.replace("postgres://", "postgresql://", 1))
    env = dict(os.environ)
    if parts.password is None:
        return urlunparse(parts), env
    env["PGPASSWORD"] = unquote(parts.password)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    user = quote(unquote(parts.username or ""), safe="")
    netloc = f"{user}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunparse(parts._replace(netloc=netloc)), env


def _postgres(url: str):
    """A psycopg2 connection of our own (the backup's snapshot, the restore's checks), not the models' one."""
    import psycopg2

    try:
        return psycopg2.connect(url.replace("postgres://", "postgresql://", 1))
    except psycopg2.Error as exc:
        raise BackupError(f"cannot connect to PostgreSQL: {str(exc).strip().splitlines()[0]}") from exc


def _reader(url: str, backend: str):
    """A DB-API connection to read a database's facts: SQLite read-only, PostgreSQL as `_postgres`."""
    if backend == "sqlite":
        return sqlite3.connect(f"file:{sqlite_path(url)}?mode=ro", uri=True)
    return _postgres(url)


def _facts_at(url: str, backend: str) -> Facts:
    connection = _reader(url, backend)
    try:
        return read_facts(connection, backend)
    finally:
        connection.close()


def _run(tool: str, arguments: list[str], env: dict[str, str]) -> None:
    executable = shutil.which(tool)
    if executable is None:
        raise BackupError(f"{tool} is not installed (PostgreSQL client tools are needed)")
    # A list, no shell: the arguments are our options, a file path and a URL, never interpreted by a shell.
    result = subprocess.run([executable, *arguments], env=env, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        detail = result.stderr.strip().splitlines()[-5:]
        raise BackupError(f"{tool} failed (exit code {result.returncode})", detail)


def _snapshot_postgres(url: str, target: Path) -> Facts:
    """pg_dump reads under the snapshot our REPEATABLE READ transaction exports, and the facts are read in that
    same transaction: the dump and the manifest describe one instant."""
    dsn, env = libpq(url)
    connection = _postgres(url)
    try:
        connection.set_session(isolation_level="REPEATABLE READ", readonly=True)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_export_snapshot()")
            snapshot = cursor.fetchone()[0]
        _run(
            "pg_dump",
            ["--format=custom", f"--snapshot={snapshot}", "--no-password", f"--file={target}", f"--dbname={dsn}"],
            env,
        )
        return read_facts(connection, "postgresql")
    finally:
        connection.rollback()
        connection.close()


def snapshot_database(url: str, target: Path) -> Facts:
    if backend_of(url) == "sqlite":
        return _snapshot_sqlite(url, target)
    return _snapshot_postgres(url, target)


# -- create -------------------------------------------------------------------------------------------------------
def _timestamp(moment: datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%SZ")


def _manifest(backend: str, created_at: datetime, facts: Facts, database: Path, blobs: dict, key: bytes) -> dict:
    digest, size = file_digest(database)
    blob_list = database.parent / BLOB_LIST
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created_at": created_at.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "backend": backend,
        "schema_version": facts.schema_version,
        "database": {"file": database.name, "sha256": digest, "bytes": size},
        "tables": facts.tables,
        "audit_head": facts.audit_head,
        "blobs": {
            "count": len(blobs),
            "bytes": sum(size for _digest, size in blobs.values()),
            "list": BLOB_LIST,
            "list_sha256": file_digest(blob_list)[0],
        },
        "data_key_id": data_key_id(key),
    }
    manifest["seal"] = seal(manifest, key)
    return manifest


def _write_blob_list(folder: Path, blobs: dict[str, tuple[str, int]]) -> None:
    with open(folder / BLOB_LIST, "w", encoding="ascii") as handle:
        for blob_id, (digest, _size) in blobs.items():
            handle.write(f"{digest}  {BLOB_FOLDER}/{blob_id[:2]}/{blob_id}\n")


def _write_json(path: Path, value: dict) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _publish(partial: Path, dest: Path, created_at: datetime) -> Path:
    """Rename the finished folder to its final name (a suffix if a backup of the same second exists)."""
    base = f"{NAME_PREFIX}{_timestamp(created_at)}"
    for n in range(1, 100):
        final = dest / (base if n == 1 else f"{base}-{n}")
        if not final.exists():
            os.rename(partial, final)
            return final
    raise BackupError(f"too many backups named {base} in {dest}")


def create_backup(dest: str | Path, *, database_url: str, blob_dir: str | Path, key: bytes) -> Created:
    """Write a backup folder under `dest`. It is assembled in `dest/.partial-…` (owner-only: the database holds
    patient data) and renamed when complete; on any failure the partial folder is removed and BackupError raised."""
    backend = backend_of(database_url)
    dest = Path(dest)
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = dest / f"{PARTIAL_PREFIX}{secrets.token_hex(6)}"
    partial.mkdir(mode=0o700)
    try:
        capture = BlobCapture(blob_dir, partial / BLOB_FOLDER, key)
        capture.before_snapshot()
        created_at = datetime.now(UTC)
        database = partial / DATABASE_FILES[backend]
        facts = snapshot_database(database_url, database)
        blobs = capture.after_snapshot(facts.blob_ids)
        _write_blob_list(partial, blobs)
        manifest = _manifest(backend, created_at, facts, database, blobs, key)
        _write_json(partial / MANIFEST, manifest)
        os.sync()  # everything on disk before the folder takes its final name
        return Created(_publish(partial, dest, created_at), manifest, capture.links > 0)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


# -- verify -------------------------------------------------------------------------------------------------------
def _read_manifest(folder: Path) -> tuple[dict | None, list[str]]:
    path = folder / MANIFEST
    if not path.is_file():
        return None, [f"{path} is missing: this is not a myHUG backup, or an unfinished one"]
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        return None, [f"{MANIFEST} is not valid JSON ({exc})"]
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return None, [f"{MANIFEST} is not a myHUG backup manifest"]
    if manifest.get("format_version") != FORMAT_VERSION:
        return None, [f"backup format version {manifest.get('format_version')!r} is not supported ({FORMAT_VERSION})"]
    return manifest, []


def _key_problem(manifest: dict, key: bytes) -> str | None:
    if manifest.get("data_key_id") == data_key_id(key):
        return None
    return (
        f"this backup was made with another data key (key id {manifest.get('data_key_id')}, the configured key has "
        f"id {data_key_id(key)}): set MYHUG_DATA_KEY to the key of this backup"
    )


def _check_file(folder: Path, name: str, expected_sha256: str, expected_bytes: int | None = None) -> list[str]:
    path = folder / name
    if not path.is_file():
        return [f"{name} is missing"]
    digest, size = file_digest(path)
    if expected_bytes is not None and size != expected_bytes:
        return [f"{name} has {size} bytes, the manifest says {expected_bytes}: the file was changed or truncated"]
    if digest != expected_sha256:
        return [f"{name} does not match the SHA-256 in the manifest: the file was changed or damaged"]
    return []


_LIST_LINE = re.compile(r"([0-9a-f]{64})  " + BLOB_FOLDER + r"/([A-Za-z0-9]{2})/([A-Za-z0-9]+)")


def _read_blob_list(folder: Path) -> tuple[dict[str, str], list[str]]:
    """blob id → SHA-256 from blobs.sha256; a line that is not `<sha256>  blobs/xx/xx…` is a problem (and is never
    turned into a path)."""
    blobs, problems = {}, []
    with open(folder / BLOB_LIST, encoding="ascii", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            match = _LIST_LINE.fullmatch(line.rstrip("\n"))
            if match is None or not match.group(3).startswith(match.group(2)):
                problems.append(f"{BLOB_LIST} line {number} is not a blob entry")
                continue
            blobs[match.group(3)] = match.group(1)
    return blobs, problems


def _check_blobs(folder: Path, manifest: dict) -> tuple[dict[str, str], list[str]]:
    expected = manifest.get("blobs") or {}
    problems = _check_file(folder, BLOB_LIST, str(expected.get("list_sha256")))
    if not (folder / BLOB_LIST).is_file():
        return {}, problems
    blobs, line_problems = _read_blob_list(folder)
    problems += line_problems
    if len(blobs) != expected.get("count"):
        problems.append(f"{BLOB_LIST} lists {len(blobs)} blobs, the manifest says {expected.get('count')}")
    total = 0
    for blob_id, digest in blobs.items():
        path = _blob_path(folder / BLOB_FOLDER, blob_id)
        if not path.is_file():
            problems.append(f"blob {blob_id} is listed but missing from the backup ({BLOB_FOLDER}/{blob_id[:2]}/)")
            continue
        actual, size = file_digest(path)
        if actual != digest:
            problems.append(f"blob {blob_id} does not match its SHA-256: the file was changed or damaged")
        total += size
    if not problems and total != expected.get("bytes"):
        problems.append(f"the blobs hold {total} bytes, the manifest says {expected.get('bytes')}")
    return blobs, problems


def compare(manifest: dict, facts: Facts, listed: set[str], where: str) -> list[str]:
    """Where `facts` (read from `where`) differ from what the manifest and the blob list say."""
    problems = []
    if facts.schema_version != manifest.get("schema_version"):
        problems.append(
            f"{where} is at schema version {facts.schema_version}, the manifest says {manifest.get('schema_version')}"
        )
    expected_tables = manifest.get("tables") or {}
    for table in sorted(set(expected_tables) | set(facts.tables)):
        if table not in facts.tables:
            problems.append(f"table {table}: in the manifest, not in {where}")
        elif table not in expected_tables:
            problems.append(f"table {table}: in {where}, not in the manifest")
        elif facts.tables[table] != expected_tables[table]:
            problems.append(
                f"table {table}: the manifest says {expected_tables[table]} rows, {where} holds {facts.tables[table]}"
            )
    if facts.audit_head != manifest.get("audit_head"):
        problems.append(
            f"the audit head of {where} is event {facts.audit_head['id']}, the manifest says "
            f"{(manifest.get('audit_head') or {}).get('id')}"
        )
    problems += [f"blob {b} is referred to by {where} but not in the backup" for b in sorted(facts.blob_ids - listed)]
    problems += [f"blob {b} is in the backup but {where} does not refer to it" for b in sorted(listed - facts.blob_ids)]
    return problems


@contextmanager
def bound_to(database) -> Iterator[None]:
    """Point the models at another database for a block (a backup's file, a restored database), then back."""
    previous = db.obj
    db.initialize(database)
    try:
        database.connect(reuse_if_open=True)
        yield
    finally:
        if not database.is_closed():
            database.close()
        db.initialize(previous)


def _check_sqlite_file(path: Path, manifest: dict, listed: set[str]) -> tuple[list[str], audit.Verification]:
    """A SQLite backup can be read in place (read-only, never modified): its facts and its audit chain."""
    uri = f"file:{path}?mode=ro&immutable=1"
    connection = sqlite3.connect(uri, uri=True)
    try:
        problems = compare(manifest, read_facts(connection, "sqlite"), listed, "the database file")
    finally:
        connection.close()
    with bound_to(SqliteDatabase(uri, uri=True)):
        verification = audit.verify()
    if not verification.ok:
        problems.append(f"the backup's {verification}")
    return problems, verification


def verify_backup(folder: str | Path, key: bytes) -> Checked:
    """Check a backup without restoring it: manifest (format, key, seal), database file and blobs against their
    SHA-256, every listed blob present; for SQLite also the counts, the blob references and the audit chain
    inside the file. PostgreSQL dumps are checked that far at restore."""
    folder = Path(folder)
    manifest, problems = _read_manifest(folder)
    if manifest is None:
        return Checked(None, problems)
    key_problem = _key_problem(manifest, key)
    if key_problem is not None:  # the seal cannot be checked either: nothing more to say
        return Checked(manifest, [key_problem])
    if not hmac.compare_digest(str(manifest.get("seal", "")), seal(manifest, key)):
        problems.append(f"{MANIFEST} was edited after the backup was written: its seal does not match")
    database = manifest.get("database") or {}
    backend = manifest.get("backend")
    if DATABASE_FILES.get(backend) != database.get("file"):
        return Checked(manifest, [*problems, f"the manifest names no database file for backend {backend!r}"])
    database_problems = _check_file(folder, database["file"], str(database.get("sha256")), database.get("bytes"))
    problems += database_problems
    blobs, blob_problems = _check_blobs(folder, manifest)
    problems += blob_problems
    verification = None
    if backend == "sqlite" and not database_problems:
        sqlite_problems, verification = _check_sqlite_file(folder / database["file"], manifest, set(blobs))
        problems += sqlite_problems
    return Checked(manifest, problems, blobs, verification)


# -- restore ------------------------------------------------------------------------------------------------------
def _target_tables(url: str, backend: str) -> list[str]:
    if backend == "sqlite" and not sqlite_path(url).exists():
        return []
    connection = _reader(url, backend)
    try:
        cursor = connection.cursor()
        cursor.execute(_TABLES_SQL[backend])
        return [name for (name,) in cursor.fetchall()]
    finally:
        connection.close()


def _restore_sqlite(source: Path, url: str, replaced: list[str]) -> None:
    """Copy the file in under a temporary name, then rename it: never half a database under the target's name.
    A replaced database (whatever its `replaced` tables) goes whole; its WAL and shared-memory files go first:
    replayed onto the new file they would corrupt it."""
    target = sqlite_path(url)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f"{target.name}.restoring-{secrets.token_hex(4)}")
    try:
        shutil.copyfile(source, temporary)
        for suffix in ("-wal", "-shm"):
            target.with_name(target.name + suffix).unlink(missing_ok=True)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def _drop_postgres_tables(url: str, tables: list[str]) -> None:
    connection = _postgres(url)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE {', '.join(_quoted(t) for t in tables)} CASCADE")
    finally:
        connection.close()


def _restore_postgres(source: Path, url: str, replaced: list[str]) -> None:
    """pg_restore in one transaction, objects owned by the restoring role (the target's owner may differ)."""
    if replaced:
        _drop_postgres_tables(url, replaced)
    dsn, env = libpq(url)
    _run(
        "pg_restore",
        ["--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction", "--no-password",
         f"--dbname={dsn}", str(source)],
        env,
    )  # fmt: skip


def _copy_hashing(source: Path, target: Path) -> str:
    """Copy a blob under a temporary name then rename it (as the store writes), returning the SHA-256 of what
    was written."""
    digest = hashlib.sha256()
    temporary = target.with_suffix(".tmp")
    with open(source, "rb") as reader, open(temporary, "wb") as writer:
        while chunk := reader.read(_CHUNK):
            digest.update(chunk)
            writer.write(chunk)
    os.replace(temporary, target)
    return digest.hexdigest()


def _target_problems(url: str, backend: str, blob_dir: Path) -> tuple[list[str], list[str]]:
    """The target database's tables, and why the targets are not empty (what --force would replace)."""
    tables = _target_tables(url, backend)
    problems = [f"the target database is not empty ({len(tables)} tables)"] if tables else []
    if blob_dir.is_dir() and any(blob_dir.iterdir()):
        problems.append(f"the blob folder {blob_dir} is not empty")
    return tables, problems


def _restore_blobs(folder: Path, blobs: dict[str, str], blob_dir: Path) -> list[str]:
    problems = []
    for blob_id, expected in blobs.items():
        target = _blob_path(blob_dir, blob_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        if _copy_hashing(_blob_path(folder / BLOB_FOLDER, blob_id), target) != expected:
            problems.append(f"blob {blob_id} does not match its SHA-256: the file was changed or damaged")
    return problems


def restore_backup(
    folder: str | Path, *, database_url: str, blob_dir: str | Path, key: bytes, force: bool = False
) -> Restored:
    """Check the whole backup first (every file read: a restore is rare, and a refusal must come before anything is
    written), restore its database into an empty one and its blobs into an empty folder, then check the result:
    every count, the audit head and chain (`audit verify`), every blob reference, each blob's SHA-256 as copied.
    BackupError if the backup is refused (nothing written) or if the restored data do not match it."""
    folder, blob_dir = Path(folder), Path(blob_dir)
    checked = verify_backup(folder, key)
    if checked.problems:
        raise BackupError("the backup is refused, nothing was restored", checked.problems)
    manifest = checked.manifest
    backend = backend_of(database_url)
    if backend != manifest["backend"]:
        raise BackupError(f"this is a {manifest['backend']} backup: it cannot be restored into {backend}")
    tables, not_empty = _target_problems(database_url, backend, blob_dir)
    if not_empty and not force:
        raise BackupError("a restore goes into an empty database and blob folder (or use --force)", not_empty)
    source = folder / manifest["database"]["file"]
    (_restore_sqlite if backend == "sqlite" else _restore_postgres)(source, database_url, tables)
    problems = _restore_blobs(folder, checked.blobs, blob_dir)
    facts = _facts_at(database_url, backend)
    problems += compare(manifest, facts, set(checked.blobs), "the restored database")
    with bound_to(open_database(database_url)):
        verification = audit.verify()
    if not verification.ok:
        problems.append(f"the restored database's {verification}")
    if problems:
        raise BackupError("the restored data do not match the backup: do not use them", problems)
    return Restored(manifest, facts, verification)
