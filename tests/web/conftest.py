"""Web fixtures: the app on each backend's test database, its client, `login_as(role)`, CSRF tokens from forms."""

from __future__ import annotations

import os
import re
import secrets
import tempfile
from pathlib import Path

import pytest
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from models import Role
from security import encryption, sessions
from web import create_app

ROOT = Path(__file__).resolve().parents[2]
TRANSLATIONS = ROOT / "web" / "translations"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def compile_translations() -> None:
    """What `make translations` does, for a bare `pytest`: .mo files are build products (gitignored)."""
    for po in TRANSLATIONS.glob("*/LC_MESSAGES/messages.po"):
        mo = po.with_suffix(".mo")
        if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue
        with po.open("rb") as handle:
            catalog = read_po(handle, locale=po.parent.parent.name)
        # Written aside then renamed: several pytest-xdist workers may compile at once.
        fd, tmp = tempfile.mkstemp(dir=po.parent, suffix=".mo.tmp")
        with os.fdopen(fd, "wb") as handle:
            write_mo(handle, catalog)
        os.replace(tmp, mo)


@pytest.fixture(scope="session", autouse=True)
def compiled_translations():
    compile_translations()


def settings(database, **overrides) -> dict:
    """A complete test configuration: nothing read from the shell's environment, nothing written to instance/."""
    config = {
        "TESTING": True,
        "DATABASE": database,
        "DATABASE_URL": database.url,
        "SECRET_KEY": secrets.token_urlsafe(32),
        "DATA_KEY": encryption.keyring.require(),
    }
    config.update(overrides)
    return config


@pytest.fixture
def app(database, tmp_path):
    return create_app(settings(database, INSTANCE_PATH=str(tmp_path / "instance")))


@pytest.fixture
def client(app):
    return app.test_client()


def csrf_token_in(html: str | bytes) -> str:
    """The CSRF token of the first form on a page."""
    text = html.decode() if isinstance(html, bytes) else html
    match = _CSRF.search(text)
    assert match, "no CSRF token on this page"
    return match.group(1)


@pytest.fixture
def csrf_token(client):
    """csrf_token(path="/") → the token of the first form on that page, for this client's session."""

    def token(path: str = "/") -> str:
        return csrf_token_in(client.get(path).data)

    return token


@pytest.fixture
def login_as(client, make_account, make_physician):
    """login_as(role, **make_account kwargs) → the account, with a server-side session whose cookie the client holds.

    A physician gets a physician record (one GLN) unless one is given. The token is on `account.session_token`.
    """

    def login(role: str = Role.ADMINISTRATOR, **kwargs):
        if role == Role.PHYSICIAN and kwargs.get("physician") is None:
            kwargs["physician"] = make_physician()
        account = make_account(role, **kwargs)
        token = sessions.start(account, "127.0.0.1", "pytest", "password+sms")
        client.set_cookie(sessions.COOKIE_NAME, token)
        account.session_token = token
        return account

    return login
