"""Browser tests: the portal served on 127.0.0.1 in a thread, driven by Debian's Chromium through Playwright.

Where Chromium or Playwright is absent the tests skip with the reason; CI sets MYHUG_REQUIRE_SERVICES=1, which
turns that skip into a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from tests import pg
from tests.web.conftest import settings
from web import create_app

CHROMIUM = os.environ.get("MYHUG_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def _unavailable() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (make install installs it)"
    if not shutil.which(CHROMIUM):
        return f"Chromium not found at {CHROMIUM} (apt-get install -y chromium)"
    return None


@pytest.fixture(scope="session")
def browser():
    pg.require_service(_unavailable())
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@contextlib.contextmanager
def serve(app):
    """`app` on a random loopback port, in a thread (peewee gives that thread its own connection)."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_port}"
    server.app = app
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(timeout=10)


@pytest.fixture
def live_server(database, tmp_path):
    with serve(create_app(settings(database, INSTANCE_PATH=str(tmp_path / "instance")))) as server:
        yield server


@pytest.fixture
def page(browser):
    context = browser.new_context(locale="fr-CH", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


def screenshot(page, name: str) -> Path:
    """Saved under docs/screenshots/ for the README."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
