"""The PostgreSQL used by the tests: reachable → a dedicated database per test worker; absent → a clear skip."""

from __future__ import annotations

import os
from functools import cache
from urllib.parse import urlparse, urlunparse

import pytest

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


def required() -> bool:
    """CI sets MYHUG_REQUIRE_SERVICES=1: then a missing PostgreSQL fails the run instead of skipping."""
    return os.environ.get("MYHUG_REQUIRE_SERVICES") == "1"


def base_url() -> str:
    return os.environ.get("MYHUG_TEST_DATABASE_URL") or DEFAULT_URL


@cache
def unreachable_reason() -> str | None:
    import psycopg2

    try:
        psycopg2.connect(base_url(), connect_timeout=3).close()
    except psycopg2.Error as exc:
        return f"PostgreSQL not reachable at {base_url()} ({str(exc).strip().splitlines()[0]})"
    return None


def require() -> None:
    reason = unreachable_reason()
    if reason is None:
        return
    if required():
        pytest.fail(f"{reason}; MYHUG_REQUIRE_SERVICES=1 forbids skipping", pytrace=False)
    pytest.skip(reason)


@cache
def test_database_url() -> str:
    """A database of our own beside the one named (`<name>_myhug_<worker>`), created if missing."""
    import psycopg2

    parts = urlparse(base_url())
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"{parts.path.lstrip('/') or 'postgres'}_myhug_{worker}"
    conn = psycopg2.connect(base_url())
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if cur.fetchone() is None:
            cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return urlunparse(parts._replace(path=f"/{name}"))
