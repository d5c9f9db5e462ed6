"""The audit trail (append-only, SHA-256 hash chain) and the transition log of every workflow."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from peewee import JOIN, AutoField, CharField, DateTimeField, IntegerField, TextField, fn

from .db import BaseModel, is_postgres, utcnow


class AuditEvent(BaseModel):
    """One audited fact. `hash` = SHA-256(prev_hash ‖ canonical serialization); see security/audit.py."""

    id = AutoField()
    at = DateTimeField(default=utcnow, index=True)
    actor_id = IntegerField(null=True, index=True)  # the journal's user filter (migration 4)
    actor_role = CharField()
    ip = CharField(null=True)
    action = CharField()  # indexed with `at`: see Meta
    outcome = CharField(default="success")
    object_type = CharField(null=True)
    object_id = CharField(null=True, index=True)
    details = TextField(default="{}")  # canonical JSON; never secrets, never patient names
    prev_hash = CharField(max_length=64)
    hash = CharField(max_length=64, unique=True)

    class Meta:
        # Migration 4 (models/schema.py). An action or an outcome with `at`: the journal filtered by either reads its
        # page newest first down the index, where an index on the name alone left a sort of every matching event
        # (SQLite: 0.4 s for 20,000 of a million); the lists of names are read from them (see `_distinct`).
        indexes = ((("action", "at"), False), (("outcome", "at"), False))

    @classmethod
    def of_client_documents(
        cls,
        client: str,
        actions,
        *,
        document_id: int | None = None,
        patient_id: int | None = None,
        event_hash: str | None = None,
        since=None,
        before=None,
        limit: int = 50,
        offset: int = 0,
    ) -> list:
        """The events with one of `actions` about the documents the DPI client `client` sent, and about their
        deliveries, oldest first, in one query. Each row carries `row.document` (its patient joined) and, for an
        event about a delivery, `row.delivery` (its physician joined); `since` ≤ `at` < `before` when given;
        `event_hash`: only that event (how the FHIR API names one), if the client may see it."""
        from .documents import Delivery, Document  # documents.py imports this module
        from .patients import Patient
        from .physicians import Physician

        about_delivery = (cls.object_type == "delivery") & (cls.object_id == Delivery.id.cast("TEXT"))
        about_document = ((cls.object_type == "document") & (cls.object_id == Document.id.cast("TEXT"))) | (
            Document.id == Delivery.document
        )
        query = (
            cls.select(cls, Delivery, Physician, Document, Patient)
            .join(Delivery, JOIN.LEFT_OUTER, on=about_delivery, attr="delivery")
            .join(Physician, JOIN.LEFT_OUTER, on=Delivery.physician)
            .switch(cls)
            .join(Document, on=about_document, attr="document")
            .join(Patient, on=Document.patient)
            .where((Document.dpi_client == client) & cls.action.in_(list(actions)))
        )
        if document_id is not None:
            query = query.where(Document.id == document_id)
        if patient_id is not None:
            query = query.where(Document.patient == patient_id)
        if event_hash is not None:
            query = query.where(cls.hash == event_hash)
        if since is not None:
            query = query.where(cls.at >= since)
        if before is not None:
            query = query.where(cls.at < before)
        return list(query.order_by(cls.at, cls.id).limit(limit).offset(offset))

    # -- the administrators' journal and the physician's access history -------------------------------------
    @classmethod
    def search(
        cls,
        *,
        user: str = "",
        patient: str | None = None,
        document: str | None = None,
        since=None,
        before=None,
        action: str | None = None,
        outcome: str | None = None,
        up_to_id: int | None = None,
    ):
        """The trail filtered for the administrators' journal, newest first; `row.actor` is the acting Account
        (None for the system, the DPI, an anonymous visitor), in the same query.

        - `user`: words matched as the account list matches them (name, username, e-mail, GLN); an event counts
          when one of those accounts acted or when it is about one of them (an administrator locked it).
        - `patient`: a patient's public id or DPI identifier value; the events about that patient's documents,
          about their deliveries, and about the designations of that patient's stays.
        - `document`: a document's public id; the events about it and about its deliveries.
        - `since` ≤ `at` < `before`; `up_to_id`: only events written until then (an export's fixed selection).
        Filters that name nothing (an unknown patient) give an empty selection, never the whole trail.

        The accounts, documents, deliveries and designations a filter names are read first (one query each) and
        the trail is then searched for those ids: PostgreSQL uses no index for `x IN (subquery) OR y IN (subquery)`
        (it filters every event through hashed subplans, 0.5–0.9 s on a million events), but a list of values lets
        it combine the indexes on actor_id and object_id, and judge from their statistics whether walking the index
        on `at` is cheaper (a word that names a thousand accounts).
        """
        from .accounts import Account  # accounts.py imports this module
        from .documents import Document
        from .patients import Designation, Patient, Stay

        actor = Account.alias()
        query = cls.select(cls, actor).join(actor, JOIN.LEFT_OUTER, on=(cls.actor_id == actor.id), attr="actor")
        words = user.split()
        if words:
            accounts = _ids(Account.search(" ".join(words)))
            query = query.where(cls.actor_id.in_(accounts) | cls._about("account", accounts))
        if patient is not None:
            patients = _ids(Patient.select().where((Patient.public_id == patient) | (Patient.dpi_value == patient)))
            designations = Designation.select().join(Stay).where(Stay.patient.in_(patients))
            documents = _ids(Document.select().where(Document.patient.in_(patients)))
            query = query.where(cls._about_documents(documents) | cls._about("designation", designations))
        if document is not None:
            query = query.where(cls._about_documents(_ids(Document.select().where(Document.public_id == document))))
        if since is not None:
            query = query.where(cls.at >= since)
        if before is not None:
            query = query.where(cls.at < before)
        if action:
            query = query.where(cls.action == action)
        if outcome:
            query = query.where(cls.outcome == outcome)
        if up_to_id is not None:
            query = query.where(cls.id <= up_to_id)
        return query.order_by(cls.at.desc(), cls.id.desc())

    @classmethod
    def _about_documents(cls, documents: list[int]):
        """Events about these documents and about their deliveries."""
        from .documents import Delivery

        deliveries = Delivery.select().where(Delivery.document.in_(documents))
        return cls._about("document", documents) | cls._about("delivery", deliveries)

    @classmethod
    def _about(cls, object_type: str, ids):
        """Events about the rows `ids` (a list of integer ids, or a query that selects them) of one type; object_id
        holds them as text."""
        ids = _ids(ids)
        if not isinstance(ids, list):  # too many to list: the subquery, its ids as text
            return (cls.object_type == object_type) & cls.object_id.in_(
                ids.select(ids.model._meta.primary_key.cast("TEXT"))
            )
        values = [str(i) for i in ids]
        if not values:  # a constant false (`0 = 1`): SQLite tests it once instead of once for each event
            return cls.object_id.in_(values)
        return (cls.object_type == object_type) & cls.object_id.in_(values)

    @classmethod
    def pages(cls, query, size: int = 1_000) -> Iterator[list[AuditEvent]]:
        """Every row of `query` (one of `search`'s, newest first) in pages of `size` rows, each page read after the
        last row of the previous one (keyset): an export of the whole trail never holds more than one page, on
        PostgreSQL too (whose driver reads a whole result at once), and each page starts down the index on `at`."""
        last = None
        while True:
            page = query
            if last is not None:
                page = page.where((cls.at < last.at) | ((cls.at == last.at) & (cls.id < last.id)))
            rows = list(page.limit(size).iterator())
            if rows:
                yield rows
            if len(rows) < size:
                return
            last = rows[-1]

    @classmethod
    def last_id(cls) -> int:
        """The newest event's id (0 for an empty trail): an export counts and writes the events up to it."""
        return cls.select(fn.MAX(cls.id)).scalar() or 0

    @classmethod
    def actions(cls) -> list[str]:
        """Every action the trail holds, by name (the journal's filter offers these)."""
        return cls._distinct(cls.action)

    @classmethod
    def outcomes(cls) -> list[str]:
        return cls._distinct(cls.outcome)

    @classmethod
    def _distinct(cls, field) -> list[str]:
        """The values of `field` in the trail, sorted, by a loose index scan: each value is found after the previous
        one by one seek into the index that `field` leads, where SELECT DISTINCT reads the whole index or table (on
        a million events: 0.2–1 s, on every page of the journal). Neither SQLite nor PostgreSQL 15 does it alone."""
        table, column = cls._meta.table_name, field.column_name
        # Only names from the model go into the text.
        sql = (
            f'WITH RECURSIVE found(value) AS (SELECT MIN("{column}") FROM "{table}" '  # noqa: S608
            f'UNION ALL SELECT (SELECT MIN("{column}") FROM "{table}" WHERE "{column}" > found.value) '
            "FROM found WHERE found.value IS NOT NULL) "
            "SELECT value FROM found WHERE value IS NOT NULL ORDER BY value"
        )
        return [value for (value,) in cls._meta.database.execute_sql(sql)]

    @classmethod
    def objects_of(cls, events) -> dict[tuple[str, str], object]:
        """What `events` are about, for the accounts, deliveries and documents among them: {(type, id): row}, in one
        query per type present. A delivery comes with its document, the document's patient and the physician; a
        document with its patient (what web/fhir_directory.audit_event_resource reads)."""
        from .accounts import Account
        from .documents import Delivery, Document
        from .patients import Patient
        from .physicians import Physician

        wanted: dict[str, set[int]] = {}
        for event in events:
            if event.object_type in ("account", "delivery", "document") and (event.object_id or "").isdigit():
                wanted.setdefault(event.object_type, set()).add(int(event.object_id))
        found: dict[tuple[str, str], object] = {}
        if "account" in wanted:
            for row in Account.select().where(Account.id.in_(sorted(wanted["account"]))):
                found["account", str(row.id)] = row
        if "delivery" in wanted:
            query = (
                Delivery.select(Delivery, Document, Patient, Physician)
                .join(Document)
                .join(Patient, on=(Document.patient == Patient.id))
                .switch(Delivery)
                .join(Physician, on=(Delivery.physician == Physician.id))
                .where(Delivery.id.in_(sorted(wanted["delivery"])))
            )
            for row in query:
                found["delivery", str(row.id)] = row
        if "document" in wanted:
            query = (
                Document.select(Document, Patient)
                .join(Patient, on=(Document.patient == Patient.id))
                .where(Document.id.in_(sorted(wanted["document"])))
            )
            for row in query:
                found["document", str(row.id)] = row
        return found

    @classmethod
    def about_delivery(cls, delivery_id: int):
        """Everything the trail holds about one delivery, newest first: the physician's access history of their
        copy of a document (another physician's delivery of the same document is another object)."""
        return (
            cls.select()
            .where((cls.object_type == "delivery") & (cls.object_id == str(delivery_id)))
            .order_by(cls.at.desc(), cls.id.desc())
        )

    # -- the operations dashboard ---------------------------------------------------------------------------
    @classmethod
    def recent(cls, actions, *, limit: int, outcome: str | None = None):
        """The newest events with one of `actions` (and `outcome`), the acting account as `row.actor`; the index
        on (`action`, `at`) finds them without reading the rest of the trail."""
        from .accounts import Account

        actor = Account.alias()
        query = (
            cls.select(cls, actor)
            .join(actor, JOIN.LEFT_OUTER, on=(cls.actor_id == actor.id), attr="actor")
            .where(cls.action.in_(list(actions)))
        )
        if outcome is not None:
            query = query.where(cls.outcome == outcome)
        return query.order_by(cls.at.desc(), cls.id.desc()).limit(limit)

    @classmethod
    def per_hour(cls, actions, *, since, outcome: str | None = None) -> dict:
        """{hour (naive UTC datetime, minutes cut): how many events with one of `actions`} since `since`, counted
        by the database in one GROUP BY; hours without any are absent."""
        hour = fn.date_trunc("hour", cls.at) if is_postgres() else fn.strftime("%Y-%m-%d %H:00:00", cls.at)
        query = cls.select(hour.alias("hour"), fn.COUNT(cls.id)).where(
            cls.action.in_(list(actions)) & (cls.at >= since)
        )
        if outcome is not None:
            query = query.where(cls.outcome == outcome)
        counts = {}
        for value, count in query.group_by(hour).tuples():
            at = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)
            counts[at] = count
        return counts


# A filter naming more rows than this keeps them as a subquery: SQLite refuses a statement with more than 32,766
# parameters, each id is passed twice (as actor and as object), and from a list that long no index helps anyway.
LISTED_AT_MOST = 2_000


def _ids(rows):
    """The primary keys of the rows a query selects, read now as a list (a list is taken as it is); where there are
    more than LISTED_AT_MOST, the query selecting them instead."""
    if isinstance(rows, list):
        return rows
    keys = rows.select(rows.model._meta.primary_key).order_by()
    listed = [value for (value,) in keys.limit(LISTED_AT_MOST + 1).tuples()]
    return listed if len(listed) <= LISTED_AT_MOST else keys


class AuditHead(BaseModel):
    """A single row naming the last link, so that deleting the newest events is detected too."""

    id = IntegerField(primary_key=True)
    last_id = IntegerField(default=0)
    last_hash = CharField(max_length=64)


class TransitionLog(BaseModel):
    """One row per fired trigger, written by workflows/engine.py in the same transaction as the state change."""

    workflow = CharField()
    object_id = IntegerField()
    trigger = CharField()
    source = CharField()
    dest = CharField()
    actor_id = IntegerField(null=True)
    actor_role = CharField()
    at = DateTimeField(default=utcnow)
    note = TextField(null=True)

    class Meta:
        indexes = ((("workflow", "object_id"), False),)
