"""A real OpenID Connect provider for the HIN tests: oidc-provider-mock served on 127.0.0.1 in a thread.

It records what the portal sent it (to check PKCE) and can rewrite the ID token it issues, signed with its own
key or another one, to play a provider that lies (PITFALLS: "OpenID Connect (HIN) tests"). Always 127.0.0.1,
never localhost: the mock takes its issuer from the Host header.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import flask
import oidc_provider_mock
import pytest
import requests
from joserfc import jwt
from joserfc.jwk import RSAKey
from werkzeug.serving import make_server

from gateways import hin

CLIENT_ID = "myhug-test"
CLIENT_SECRET = "not-a-real-secret"
TIMEOUT = 10


class Provider:
    """The mock provider, its address (`issuer`), what it received (`received`), and how it may lie (`rewrite`)."""

    def __init__(self, **options):
        self.app = oidc_provider_mock.app(require_nonce=True, **options)
        self.received: list[tuple[str, dict]] = []
        # rewrite(claims) → claims: applied to every ID token the token endpoint issues, re-signed with `signing_key`
        # (None: the provider's own key, so the signature is good and only the claims lie).
        self.rewrite: Callable[[dict], dict] | None = None
        self.signing_key: RSAKey | None = None
        self.app.before_request(self._record)
        self.app.after_request(self._resign)
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.issuer = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=10)
        self.server.server_close()

    # -- people ----------------------------------------------------------------------------------------------
    def set_user(self, sub: str, **claims) -> None:
        """What the provider says about `sub` from now on (standard and HIN claims alike)."""
        response = requests.put(f"{self.issuer}/users/{sub}", json=claims, timeout=TIMEOUT)
        assert response.status_code == 204, response.text

    def log_in(self, authorize_url: str, sub: str) -> str:
        """The person `sub` logs in at the provider: returns where the provider sends the browser back to."""
        assert authorize_url.startswith(self.issuer + "/"), authorize_url
        response = requests.post(authorize_url, data={"sub": sub}, allow_redirects=False, timeout=TIMEOUT)
        assert response.status_code == 302, response.text
        return response.headers["Location"]

    def requests_to(self, path: str) -> list[dict]:
        return [values for seen, values in self.received if seen == path]

    # -- hooks on the provider app ---------------------------------------------------------------------------
    def _record(self):
        self.received.append((flask.request.path, {**flask.request.args, **flask.request.form}))

    def _resign(self, response):
        if flask.request.path != "/oauth2/token" or response.status_code != 200 or self.rewrite is None:
            return response
        body = response.get_json()
        header, payload, _signature = body["id_token"].split(".")
        header = json.loads(_b64decode(header))
        claims = self.rewrite(json.loads(_b64decode(payload)))
        own = RSAKey.import_key(flask.g.oidc_provider_mock_storage.jwk.as_dict(is_private=True))
        body["id_token"] = jwt.encode(header, claims, self.signing_key or own)
        response.set_data(json.dumps(body))
        return response


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def query_of(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def foreign_key() -> RSAKey:
    return RSAKey.generate_key(2048, private=True)


@pytest.fixture
def make_provider():
    """make_provider(**oidc_provider_mock.app options) → a running Provider, stopped after the test."""
    started: list[Provider] = []

    def make(**options) -> Provider:
        provider = Provider(**options)
        started.append(provider)
        return provider

    yield make
    for provider in started:
        provider.close()
    hin.forget_providers()


@pytest.fixture
def provider(make_provider) -> Provider:
    return make_provider()


def hin_settings(provider: Provider) -> dict:
    """The configuration a hospital sets (MYHUG_HIN_*), as the app factory's test_config takes it."""
    return {"HIN_ISSUER": provider.issuer, "HIN_CLIENT_ID": CLIENT_ID, "HIN_CLIENT_SECRET": CLIENT_SECRET}
