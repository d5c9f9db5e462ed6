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


def require_service(problem: str | None) -> None:
    """A service or tool the test needs (PostgreSQL, Chromium, nginx, Redis, systemd-analyze…): where `problem`
    says it is missing, skip naming it; under MYHUG_REQUIRE_SERVICES=1 (CI, which installs them all) fail instead."""
    if problem is None:
        return
    if required():
        pytest.fail(f"{problem}; MYHUG_REQUIRE_SERVICES=1 forbids skipping", pytrace=False)
    pytest.skip(problem)


def require() -> None:
    require_service(unreachable_reason())


_claims: list = []  # the connections holding our claim on a database name, open for the life of the process


@cache
def test_database_url() -> str:
    """A database of our own beside the one named (`<name>_myhug_<worker>`, or `…_2`, `…_3` while another test run
    on this machine uses that one), created if missing.

    Two test runs at once (a developer's and CI's, or helpers working side by side) must never share a database:
    each claims its name with a session-level advisory lock held until the process exits.
    """
    import psycopg2

    parts = urlparse(base_url())
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    base = f"{parts.path.lstrip('/') or 'postgres'}_myhug_{worker}"
    conn = psycopg2.connect(base_url())
    conn.autocommit = True
    with conn.cursor() as cur:
        for n in range(1, 100):
            name = base if n == 1 else f"{base}_{n}"
            cur.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (name,))
            if cur.fetchone()[0]:
                break
        else:
            raise RuntimeError(f"99 test runs at once use {base}")
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if cur.fetchone() is None:
            cur.execute(f'CREATE DATABASE "{name}"')
    _claims.append(conn)
    return urlunparse(parts._replace(path=f"/{name}"))
