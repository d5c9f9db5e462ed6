"""The deferred database: one DatabaseProxy, opened from a URL (SQLite by default, PostgreSQL for several nodes)."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence
from urllib.parse import urlparse

from peewee import DatabaseProxy, Model, PostgresqlDatabase, SqliteDatabase, fn
from playhouse.db_url import connect as connect_url

db = DatabaseProxy()


def utcnow() -> dt.datetime:
    """Every stored time is naive UTC (the same on SQLite and PostgreSQL); the UI converts to Europe/Zurich."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def public_id() -> str:
    """Random, unguessable identifier for anything that appears in a URL (DESIGN §6: access): 96 bits, in the
    characters a FHIR id allows ([A-Za-z0-9-.]), so the same id serves the pages and the FHIR API."""
    return secrets.token_urlsafe(12).replace("_", "-")


def open_database(url: str, pool_seconds: int = 0):
    """A peewee Database for `sqlite:///path` or `postgresql://…`.

    `pool_seconds` > 0 (PostgreSQL): a closed connection goes back to a pool of this process and is reused, for at
    most that many seconds after it was opened. A new PostgreSQL connection is a new server process (fork, catalog
    caches filled again): measured on one gunicorn worker, GET /healthz took 5.9 ms with a new connection and 1.2 ms
    on a kept one, a FHIR PUT of a DocumentReference 40 ms and 8 ms (bench/load.py, docs/deploy.md). The pool has no
    upper bound (a gunicorn sync worker needs one connection, the jobs process one per running job) and checks a
    connection before lending it (peewee sends `SELECT 1`), so a restarted server costs no failed request."""
    scheme = urlparse(url).scheme
    if scheme == "sqlite":
        path = url[len("sqlite:///") :] or ":memory:"
        # WAL lets readers run beside the single writer; IMMEDIATE takes the write lock at BEGIN so that
        # read-then-write transactions (the audit chain, compare-and-set) never fail half-way with SQLITE_BUSY.
        return SqliteDatabase(
            path,
            pragmas={
                "journal_mode": "wal",
                "foreign_keys": 1,
                "busy_timeout": 30_000,
                "synchronous": "normal",
            },
            lock_type="IMMEDIATE",
        )
    if scheme in {"postgres", "postgresql"}:
        url = url.replace("postgres://", "postgresql://", 1)
        if pool_seconds > 0:
            pooled = url.replace("postgresql://", "postgresql+pool://", 1)
            return connect_url(pooled, max_connections=None, stale_timeout=pool_seconds)
        return connect_url(url)
    raise ValueError(f"unsupported database URL scheme {scheme!r}: use sqlite:/// or postgresql://")


def init_database(url: str, pool_seconds: int = 0):
    """Point the proxy at the database named by `url` and return it."""
    database = open_database(url, pool_seconds)
    db.initialize(database)
    return database


def is_postgres() -> bool:
    return isinstance(db.obj, PostgresqlDatabase)


def insert_rows(model, columns: Sequence[str], rows: Sequence[Sequence], *, returning_ids: bool = False) -> list[int]:
    """One multi-row INSERT of `rows` (values in `columns` order, each through its field's `db_value`), with the
    SQL written here rather than by peewee, whose per-value SQL building dominated the hot appends (the transition
    log and the audit trail: measured 4× faster for 20 rows). Returns the new ids, in order, if asked."""
    if not rows:
        return []
    fields = [model._meta.fields[name] for name in columns]

    def quote(name: str) -> str:  # SQLite and PostgreSQL quote names alike
        return f'"{name}"'

    placeholders = "(" + ", ".join([db.obj.param] * len(fields)) + ")"
    # Only names from the model and placeholders go into the text; every value is a parameter.
    sql = (
        f"INSERT INTO {quote(model._meta.table_name)} ({', '.join(quote(f.column_name) for f in fields)}) "  # noqa: S608
        f"VALUES {', '.join([placeholders] * len(rows))}"
    )
    params = [field.db_value(value) for row in rows for field, value in zip(fields, row, strict=True)]
    if not returning_ids:
        db.execute_sql(sql, params)
        return []
    if is_postgres():
        return [
            row[0] for row in db.execute_sql(f"{sql} RETURNING {quote(model._meta.primary_key.column_name)}", params)
        ]
    last = db.execute_sql(sql, params).lastrowid  # SQLite numbers one statement's rows consecutively
    return list(range(last - len(rows) + 1, last + 1))


class BaseModel(Model):
    class Meta:
        database = db
        legacy_table_names = False

    @classmethod
    def get_or_none(cls, *query, **filters):
        """As peewee's, but a miss costs one query built once: peewee's raises DoesNotExist internally, and that
        exception's message builds the SQL a second time (measured: a miss cost 1.5× a hit)."""
        select = cls.select()
        if len(query) == 1 and isinstance(query[0], int):
            select = select.where(cls._meta.primary_key == query[0])
        elif query:
            select = select.where(*query)
        if filters:
            select = select.filter(**filters)
        rows = list(select.limit(1))
        return rows[0] if rows else None

    @classmethod
    def count_by_state(cls) -> dict[str, int]:
        """How many rows are in each state (one GROUP BY); states without rows are absent."""
        query = cls.select(cls.state, fn.COUNT(cls.id)).group_by(cls.state).tuples()
        return dict(query)
