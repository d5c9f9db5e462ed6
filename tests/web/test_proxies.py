"""MYHUG_TRUSTED_PROXIES: behind nginx the client address is the one nginx saw; without a proxy, nobody can claim one.

The address matters because the login rate limits count per address and the audit trail records it.
"""

from __future__ import annotations

import pytest
from flask import request

from config import ConfigError, load_config
from models import AuditEvent
from web import create_app

from .conftest import settings
from .test_auth import submit_password

NGINX = {"REMOTE_ADDR": "127.0.0.1"}  # the socket's peer when nginx forwards a request on the same machine


def proxied_client(database, tmp_path, proxies: int, **overrides):
    app = create_app(settings(database, INSTANCE_PATH=str(tmp_path / "instance"), TRUSTED_PROXIES=proxies, **overrides))
    return app.test_client()


def from_address(client, address: str):
    """Requests as nginx forwards them for a browser at `address` (it appends the peer to X-Forwarded-For). Over
    https, Flask-WTF also wants the same-origin Referer that browsers send (Referrer-Policy: same-origin)."""
    client.environ_base.update(
        NGINX, HTTP_X_FORWARDED_FOR=address, HTTP_X_FORWARDED_PROTO="https", HTTP_REFERER="https://localhost/login"
    )
    return client


@pytest.mark.parametrize(("proxies", "recorded"), [(1, "203.0.113.5"), (0, "127.0.0.1")])
def test_the_audit_trail_records_the_address_nginx_saw_only_when_told_to_trust_it(
    database, tmp_path, proxies, recorded
):
    client = from_address(proxied_client(database, tmp_path, proxies), "203.0.113.5")
    submit_password(client, "nobody", "not the password")
    event = AuditEvent.select().where(AuditEvent.action == "login.failure").order_by(AuditEvent.id.desc()).get()
    assert event.ip == recorded


def test_a_spoofed_header_before_nginx_does_not_change_the_address(database, tmp_path):
    """nginx appends the real peer: only the last hop counts, whatever the browser wrote before it."""
    client = from_address(proxied_client(database, tmp_path, 1), "198.51.100.66, 203.0.113.5")
    submit_password(client, "nobody", "not the password")
    event = AuditEvent.select().where(AuditEvent.action == "login.failure").get()
    assert event.ip == "203.0.113.5"


@pytest.mark.parametrize(("proxies", "second_address_codes"), [(1, [200]), (0, [429])])
def test_login_limits_count_per_browser_behind_nginx(database, tmp_path, proxies, second_address_codes):
    """With the proxy trusted, one browser's failures do not lock out every other one behind the same nginx."""
    client = proxied_client(database, tmp_path, proxies, LOGIN_RATE_LIMIT="2 per minute")
    from_address(client, "203.0.113.5")
    assert [submit_password(client, "nobody", "wrong").status_code for _ in range(3)] == [200, 200, 429]
    from_address(client, "203.0.113.6")
    assert [submit_password(client, "nobody", "wrong").status_code] == second_address_codes


def test_the_scheme_is_the_one_nginx_terminated(database, tmp_path):
    """nginx speaks plain HTTP to gunicorn; the app must still know the browser used https (request.is_secure)."""
    client = from_address(proxied_client(database, tmp_path, 1), "203.0.113.5")
    seen = []
    client.application.before_request(lambda: seen.append(request.scheme))
    client.get("/healthz")
    assert seen == ["https"]


@pytest.mark.parametrize("value", ["-1", "3", "yes", "1.5"])
def test_a_wrong_number_of_proxies_stops_the_start(value):
    with pytest.raises(ConfigError, match="MYHUG_TRUSTED_PROXIES"):
        load_config({"MYHUG_ENV": "testing", "MYHUG_TRUSTED_PROXIES": value}, instance_path="/nonexistent")


def test_no_proxy_is_trusted_unless_configured():
    assert load_config({"MYHUG_ENV": "testing"}, instance_path="/tmp/myhug-proxies")["TRUSTED_PROXIES"] == 0
