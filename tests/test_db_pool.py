"""MYHUG_DATABASE_POOL_SECONDS: on PostgreSQL a process keeps its connections and lends them again (models/db.py)."""

from __future__ import annotations

import psycopg2
import pytest

from config import load_config
from models import open_database
from tests import pg

pytestmark = pytest.mark.postgres


def backend_pid(database) -> int:
    return database.execute_sql("SELECT pg_backend_pid()").fetchone()[0]


def reconnected_pid(database) -> tuple[int, int]:
    """The server process behind a connection, then behind the next one after closing it."""
    database.connect()
    first = backend_pid(database)
    database.close()
    database.connect()
    try:
        return first, backend_pid(database)
    finally:
        database.close()


def test_a_pooled_connection_is_reused_after_close():
    pg.require()
    first, second = reconnected_pid(open_database(pg.test_database_url(), pool_seconds=60))
    assert first == second


def test_without_a_pool_each_connection_is_a_new_server_process():
    pg.require()
    first, second = reconnected_pid(open_database(pg.test_database_url()))
    assert first != second


def test_a_pooled_connection_the_server_ended_is_not_lent_again():
    """After a server restart (here: its process terminated) the next request gets a working connection, not an
    error."""
    pg.require()
    database = open_database(pg.test_database_url(), pool_seconds=60)
    database.connect()
    lost = backend_pid(database)
    database.close()
    admin = psycopg2.connect(pg.test_database_url())
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", (lost,))
    admin.close()
    database.connect()
    try:
        assert backend_pid(database) != lost
    finally:
        database.close()


def test_the_pool_is_on_by_default_and_can_be_turned_off(tmp_path):
    assert load_config({"MYHUG_ENV": "testing"}, instance_path=tmp_path)["DATABASE_POOL_SECONDS"] == 300
    environ = {"MYHUG_ENV": "testing", "MYHUG_DATABASE_POOL_SECONDS": "0"}
    assert load_config(environ, instance_path=tmp_path)["DATABASE_POOL_SECONDS"] == 0
