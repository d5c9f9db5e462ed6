"""`sweep_orphan_blobs`: blob files no row names are deleted once older than the safety age; nothing referenced,
nothing young, and nothing the store did not write is ever touched."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from peewee import CharField, TextField

from models import Document, EnrollmentApplication, db, schema, utcnow
from workflows import TransitionRefused, documents
from workflows.documents import BLOB_REFERENCES, ORPHAN_MIN_AGE, sweep_orphan_blobs

from . import test_documents
from .test_documents import blobs, pdf_bytes

blob_dir, catalogue, hug = test_documents.blob_dir, test_documents.catalogue, test_documents.hug  # fixtures
NOT_IN_CATALOGUE = "99999-9"


def written_at(path: Path) -> dt.datetime:
    """When the file was written, as the portal keeps time (naive UTC)."""
    return dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).replace(tzinfo=None)


def just_old_enough(path: Path) -> dt.datetime:
    """A `now` at which the file has just passed the safety age (no waiting, no clock involved)."""
    return written_at(path) + ORPHAN_MIN_AGE + dt.timedelta(seconds=1)


def bundle_failing_after_a_pdf(hug, value: str = "DOC-1") -> None:
    """What a transaction Bundle does (web/fhir.py apply_transaction): one transaction around every entry; the
    first document is stored (its PDF with it), a later entry is refused, everything is rolled back."""
    with pytest.raises(TransitionRefused), db.atomic():
        stay = hug.stay()
        hug.send(stay, value=value)
        hug.send(stay, value=f"{value}-bis", loinc=NOT_IN_CATALOGUE)


def test_the_pdf_of_a_bundle_rolled_back_later_is_swept_once_old_enough(hug, blob_dir):
    bundle_failing_after_a_pdf(hug)
    assert Document.select().count() == 0
    [orphan] = blobs(blob_dir)  # receive_document returned: its own clean-up never ran

    young = just_old_enough(orphan) - dt.timedelta(seconds=2)  # a second short of the safety age
    assert sweep_orphan_blobs(now=young) == {"orphan_blobs_deleted": 0, "unfinished_blobs_deleted": 0}
    assert blobs(blob_dir) == [orphan]  # its transaction might still be under way

    assert sweep_orphan_blobs(now=just_old_enough(orphan))["orphan_blobs_deleted"] == 1
    assert blobs(blob_dir) == []


def test_blobs_named_by_a_document_or_an_id_copy_are_kept(hug, blob_dir, submit_application):
    stay = hug.stay()
    kept = hug.send(stay, value="DOC-KEPT")
    # A preliminary PDF replaced inside a Bundle: the old file cannot be deleted before the commit, so it is left.
    with db.atomic():
        hug.send(stay, value="DOC-PRE", status="preliminary", pdf=pdf_bytes("version 1"))
    with db.atomic():
        replaced = hug.send(stay, value="DOC-PRE", status="preliminary", pdf=pdf_bytes("version 2"))
    # The ID copy kept at step 3 of an enrolment (web/desk.py stores it, the application names it).
    application = submit_application()
    copy = documents.blob_store().put(b"%PDF-1.4 copy", f"id-copy:{application.reference}")
    EnrollmentApplication.update(id_copy_blob=copy).where(EnrollmentApplication.id == application.id).execute()
    bundle_failing_after_a_pdf(hug, "DOC-LOST")
    files = blobs(blob_dir)
    assert len(files) == 5

    latest = max(just_old_enough(f) for f in files)
    # batch=2: the listing is checked a few ids at a time, across shard folders.
    assert sweep_orphan_blobs(now=latest, batch=2) == {"orphan_blobs_deleted": 2, "unfinished_blobs_deleted": 0}
    assert {f.name for f in blobs(blob_dir)} == {kept.blob_id, Document.get_by_id(replaced.id).blob_id, copy}
    assert documents.document_pdf(Document.get_by_id(kept.id)).startswith(b"%PDF")
    assert documents.blob_store().get(copy, f"id-copy:{application.reference}") == b"%PDF-1.4 copy"
    assert sweep_orphan_blobs(now=latest)["orphan_blobs_deleted"] == 0  # nothing left to do


def test_unfinished_writes_go_and_files_the_store_did_not_write_stay(hug, blob_dir):
    hug.send(hug.stay())
    [stored] = blobs(blob_dir)
    shard = stored.parent
    unfinished = shard / f"{shard.name}{'0' * 30}.tmp"  # a crash between the write and the rename
    unfinished.write_bytes(b"half")
    strangers = [blob_dir / "README", shard / "notes.txt", shard / "zz-not-a-blob", blob_dir / "abc" / "abcdef"]
    for path in strangers:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"not ours")
    old = dt.datetime.now(dt.UTC).timestamp() - 2 * ORPHAN_MIN_AGE.total_seconds()
    for path in [unfinished, *strangers]:
        os.utime(path, (old, old))

    assert sweep_orphan_blobs(now=just_old_enough(stored)) == {
        "orphan_blobs_deleted": 0,
        "unfinished_blobs_deleted": 1,
    }
    assert not unfinished.exists()
    assert all(path.exists() for path in strangers) and stored.exists()


def test_an_empty_or_missing_store_is_no_error(blob_dir, database):
    assert not blob_dir.exists()
    assert sweep_orphan_blobs(now=utcnow()) == {"orphan_blobs_deleted": 0, "unfinished_blobs_deleted": 0}


def test_every_column_holding_a_blob_id_is_checked():
    """A new column named *blob* (a text holding a blob id) must join BLOB_REFERENCES, or its files would go."""
    columns = {
        (model.__name__, field.name)
        for model in schema.ALL_MODELS
        for field in model._meta.sorted_fields
        if "blob" in field.name and isinstance(field, CharField | TextField)
    }
    assert columns == {(c.model.__name__, c.name) for c in BLOB_REFERENCES}
    assert columns == {("Document", "blob_id"), ("EnrollmentApplication", "id_copy_blob")}
