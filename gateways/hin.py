"""The HIN identity provider: an OpenID Connect client (authorization code flow, PKCE, state, nonce) on Authlib.

Framework-free on purpose: `start` returns the address to send the browser to and the attempt the caller keeps
(web/hin.py keeps it in the signed session and hands it back exactly once); `finish` checks the provider's answer
against that attempt and returns who logged in, or raises `HinError` with a stable code. Nothing secret or
identifying is logged: no token, no code, no claim value.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

import requests
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.requests_client import OAuth2Session
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

logger = logging.getLogger(__name__)

SCOPE = "openid profile email"
TIMEOUT = (5, 10)  # seconds to connect, seconds to read: every call to HIN, so a slow provider never hangs a worker
ATTEMPT_SECONDS = 10 * 60  # a login started and not finished within 10 minutes must start again
LEEWAY_SECONDS = 120  # clock skew allowed on exp/iat (Authlib's default)
METADATA_SECONDS = 60 * 60  # discovery document and keys are fetched again after an hour, or on an unknown key id
# Asymmetric signatures only: never "none", never an HMAC keyed with something the provider publishes.
SIGNING_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")

# HinError codes.
NOT_CONFIGURED = "not-configured"
UNREACHABLE = "provider-unreachable"  # network error, timeout, 5xx, or a discovery document we cannot trust
PROVIDER_REFUSED = "provider-refused"  # the provider answered the callback or the code exchange with an error
DENIED = "denied"  # the person cancelled or was refused at HIN
ATTEMPT_INVALID = "attempt-invalid"  # no such attempt, forged or replayed state, or too old
TOKEN_INVALID = "token-invalid"  # signature, issuer, audience, expiry, nonce: the ID token is not for us, now


class HinError(Exception):
    """The HIN login cannot go on; `code` is one of the constants above (never a message from the provider)."""

    def __init__(self, code: str, detail: str = ""):
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Settings:
    """What a hospital configures (MYHUG_HIN_*); `from_config` gives None while HIN login is not configured."""

    issuer: str
    client_id: str
    client_secret: str
    gln_claim: str = "gln"
    identity_type_claim: str = "hin_identity_type"

    @classmethod
    def from_config(cls, config: Mapping) -> Settings | None:
        issuer = config.get("HIN_ISSUER")
        if not issuer:
            return None
        if not config.get("HIN_CLIENT_ID") or not config.get("HIN_CLIENT_SECRET"):
            # Half a configuration is a deployment mistake: say so in the log, and offer no HIN login.
            logger.error("MYHUG_HIN_ISSUER is set but MYHUG_HIN_CLIENT_ID or MYHUG_HIN_CLIENT_SECRET is not")
            return None
        return cls(
            issuer=issuer,  # exactly as the provider writes it in `iss`: compared character for character
            client_id=config["HIN_CLIENT_ID"],
            client_secret=config["HIN_CLIENT_SECRET"],
            gln_claim=config.get("HIN_GLN_CLAIM") or "gln",
            identity_type_claim=config.get("HIN_IDENTITY_TYPE_CLAIM") or "hin_identity_type",
        )


@dataclass(frozen=True)
class Identity:
    """Who HIN says logged in: keyed on (issuer, subject); the rest are claims, checked by the caller."""

    issuer: str
    subject: str
    identity_type: str | None  # "personal" | "team" | None when HIN said nothing
    gln: str | None
    given_name: str = ""
    family_name: str = ""
    email: str = ""

    @property
    def full_name(self) -> str:
        return " ".join(part for part in (self.given_name, self.family_name) if part)


# -- the provider's discovery document and keys, cached per issuer ----------------------------------------------
class _Provider:
    def __init__(self, issuer: str):
        self.issuer = issuer
        self.lock = threading.Lock()
        self.metadata: dict | None = None
        self.metadata_at = 0.0
        self.keys: KeySet | None = None
        self.keys_at = 0.0

    def discover(self) -> dict:
        with self.lock:
            if self.metadata is None or time.monotonic() - self.metadata_at > METADATA_SECONDS:
                metadata = _get_json(f"{self.issuer.rstrip('/')}/.well-known/openid-configuration")
                # OpenID Connect Discovery §4.3: the document must name the issuer we asked, exactly.
                if metadata.get("issuer") != self.issuer:
                    raise HinError(UNREACHABLE, "the discovery document names another issuer")
                for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                    if not isinstance(metadata.get(name), str):
                        raise HinError(UNREACHABLE, f"the discovery document has no {name}")
                self.metadata, self.metadata_at = metadata, time.monotonic()
                self.keys = None
            return self.metadata

    def key_set(self, *, refresh: bool = False) -> KeySet:
        metadata = self.discover()
        with self.lock:
            if refresh or self.keys is None or time.monotonic() - self.keys_at > METADATA_SECONDS:
                try:
                    self.keys = KeySet.import_key_set(_get_json(metadata["jwks_uri"]))
                except (JoseError, ValueError, TypeError, KeyError) as exc:
                    raise HinError(UNREACHABLE, "the provider's keys cannot be read") from exc
                self.keys_at = time.monotonic()
            return self.keys


_providers: dict[str, _Provider] = {}
_providers_lock = threading.Lock()


def _provider(issuer: str) -> _Provider:
    with _providers_lock:
        return _providers.setdefault(issuer, _Provider(issuer))


def forget_providers() -> None:
    """Drop every cached discovery document and key set (tests; a key rotation is handled without it)."""
    with _providers_lock:
        _providers.clear()


def _get_json(url: str) -> dict:
    try:
        response = requests.get(url, timeout=TIMEOUT, headers={"Accept": "application/json"})
        response.raise_for_status()
        data = response.json()
    except (requests.RequestException, ValueError) as exc:
        logger.warning("HIN: %s did not answer usable JSON (%s)", url, type(exc).__name__)
        raise HinError(UNREACHABLE, type(exc).__name__) from exc
    if not isinstance(data, dict):
        raise HinError(UNREACHABLE, "not a JSON object")
    return data


def _session(settings: Settings, redirect_uri: str, token: dict | None = None) -> OAuth2Session:
    return OAuth2Session(
        client_id=settings.client_id,
        client_secret=settings.client_secret,
        scope=SCOPE,
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        token=token,
        default_timeout=TIMEOUT,
    )


# -- the two halves of a login ----------------------------------------------------------------------------------
def start(settings: Settings, redirect_uri: str) -> tuple[str, dict]:
    """(the provider's authorization URL, the attempt to keep until the callback): fresh state, nonce and verifier."""
    metadata = _provider(settings.issuer).discover()
    attempt = {
        "state": secrets.token_urlsafe(32),
        "nonce": secrets.token_urlsafe(32),
        "verifier": secrets.token_urlsafe(64),  # PKCE code_verifier: 86 characters, within RFC 7636's 43..128
        "redirect_uri": redirect_uri,
        "issuer": settings.issuer,
        "started": int(time.time()),
    }
    with _session(settings, redirect_uri) as client:
        url, _state = client.create_authorization_url(
            metadata["authorization_endpoint"],
            state=attempt["state"],
            code_verifier=attempt["verifier"],
            nonce=attempt["nonce"],
        )
    return url, attempt


def finish(settings: Settings, attempt: Mapping, answer: Mapping[str, str]) -> Identity:
    """Check the provider's answer (the callback's query string) against `attempt`, redeem the code, verify the ID
    token, and return the identity. The caller has already removed `attempt` from where it kept it."""
    state = answer.get("state") or ""
    if not hmac.compare_digest(state.encode(), str(attempt.get("state", "")).encode()):
        raise HinError(ATTEMPT_INVALID, "state does not match")
    if attempt.get("issuer") != settings.issuer:
        raise HinError(ATTEMPT_INVALID, "started against another issuer")
    if not isinstance(attempt.get("started"), int) or time.time() - attempt["started"] > ATTEMPT_SECONDS:
        raise HinError(ATTEMPT_INVALID, "attempt too old")
    if answer.get("error"):
        code = DENIED if answer.get("error") in ("access_denied", "login_required", "consent_required") else None
        raise HinError(code or PROVIDER_REFUSED, "error in the authorization response")
    # RFC 9207: when the provider names itself in the answer, it must be the one we sent the browser to (mix-up).
    if answer.get("iss") and answer.get("iss") != settings.issuer:
        raise HinError(TOKEN_INVALID, "authorization response from another issuer")
    if not answer.get("code"):
        raise HinError(PROVIDER_REFUSED, "no code in the authorization response")

    provider = _provider(settings.issuer)
    metadata = provider.discover()
    token = _redeem(settings, metadata, attempt, answer["code"])
    claims = _verified_id_token(settings, provider, metadata, token, attempt["nonce"])
    gln = claims.get(settings.gln_claim)
    identity_type = claims.get(settings.identity_type_claim)
    if (gln is None or identity_type is None) and metadata.get("userinfo_endpoint"):
        # Some providers put only the standard claims in the ID token; the rest is at userinfo, for this subject.
        info = _userinfo(settings, metadata, attempt, token)
        if info.get("sub") != claims["sub"]:
            raise HinError(TOKEN_INVALID, "userinfo is about another subject")
        gln = gln if gln is not None else info.get(settings.gln_claim)
        identity_type = identity_type if identity_type is not None else info.get(settings.identity_type_claim)
        claims = {**info, **claims}
    if len(claims["sub"]) > 255:  # OpenID Connect Core 2: at most 255 ASCII characters; our column holds no more
        raise HinError(TOKEN_INVALID, "subject too long")
    email = _text(claims.get("email"))
    return Identity(
        issuer=settings.issuer,
        subject=claims["sub"],
        identity_type=_text(identity_type).lower() or None,
        gln=_text(gln) or None,
        given_name=_text(claims.get("given_name"))[:255],
        family_name=_text(claims.get("family_name"))[:255],
        email=email if "@" in email and len(email) <= 254 else "",  # a cut address would be someone else's
    )


def _redeem(settings: Settings, metadata: dict, attempt: Mapping, code: str) -> dict:
    redirect_uri = attempt["redirect_uri"]
    try:
        with _session(settings, redirect_uri) as client:
            token = client.fetch_token(
                metadata["token_endpoint"],
                grant_type="authorization_code",
                code=code,
                code_verifier=attempt["verifier"],
                redirect_uri=redirect_uri,
            )
    except requests.RequestException as exc:
        logger.warning("HIN: the token endpoint could not be reached (%s)", type(exc).__name__)
        raise HinError(UNREACHABLE, type(exc).__name__) from exc
    except (AuthlibBaseError, ValueError) as exc:
        # The provider's error code only (invalid_grant for a code used twice, …): never its description.
        logger.warning("HIN: the token endpoint refused the code (%s)", getattr(exc, "error", type(exc).__name__))
        raise HinError(PROVIDER_REFUSED, "code refused") from exc
    if not token.get("id_token") or not token.get("access_token"):
        raise HinError(TOKEN_INVALID, "no ID token")
    return dict(token)


def _verified_id_token(settings: Settings, provider: _Provider, metadata: dict, token: dict, nonce: str) -> dict:
    """Signature (provider's keys, asymmetric algorithms), then iss, aud (us, and only us), exp, iat, nonce, at_hash."""
    offered = metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
    algorithms = [alg for alg in SIGNING_ALGORITHMS if alg in offered]
    try:
        try:
            decoded = jwt.decode(token["id_token"], provider.key_set(), algorithms=algorithms)
        except InvalidKeyIdError:
            # The provider rotated its keys since we cached them. The token came straight from its token
            # endpoint (never from the browser), so fetching the keys again cannot be triggered at will.
            decoded = jwt.decode(token["id_token"], provider.key_set(refresh=True), algorithms=algorithms)
        claims = CodeIDToken(
            decoded.claims,
            decoded.header,
            _claims_options(settings, nonce),
            {"nonce": nonce, "client_id": settings.client_id, "access_token": token["access_token"]},
        )
        claims.validate(leeway=LEEWAY_SECONDS)
    except (JoseError, AuthlibBaseError, ValueError) as exc:
        # Which check failed (its class and, for a claim, the claim's name) helps the operator; values never.
        logger.warning("HIN: ID token refused (%s %s)", type(exc).__name__, getattr(exc, "claim", "") or "")
        raise HinError(TOKEN_INVALID, type(exc).__name__) from exc
    return dict(claims)


def _claims_options(settings: Settings, nonce: str) -> dict:
    """Built afresh for every token: Authlib takes the `validate` hooks out of the dict it is given.

    Passing `aud` matters (PITFALLS): without it, Authlib accepted a token for another audience whenever `azp`
    named us. We accept exactly one audience, ours: no other relying party is trusted (OpenID Connect Core 3.1.3.7).
    """
    return {
        "iss": {"essential": True, "value": settings.issuer},
        "sub": {"essential": True},
        "aud": {"essential": True, "values": [settings.client_id], "validate": _only_us(settings.client_id)},
        "exp": {"essential": True},
        "iat": {"essential": True},
        "nonce": {"essential": True, "value": nonce},
    }


def _only_us(client_id: str):
    def validate(_claims, value) -> bool:
        audiences = value if isinstance(value, list) else [value]
        return bool(audiences) and all(audience == client_id for audience in audiences)

    return validate


def _userinfo(settings: Settings, metadata: dict, attempt: Mapping, token: dict) -> dict:
    try:
        with _session(settings, attempt["redirect_uri"], token=token) as client:
            response = client.get(metadata["userinfo_endpoint"], headers={"Accept": "application/json"})
            response.raise_for_status()
            info = response.json()
    except (requests.RequestException, AuthlibBaseError, ValueError) as exc:
        logger.warning("HIN: userinfo could not be read (%s)", type(exc).__name__)
        raise HinError(UNREACHABLE, type(exc).__name__) from exc
    if not isinstance(info, dict):
        raise HinError(TOKEN_INVALID, "userinfo is not a JSON object")
    return info


def _text(value) -> str:
    """A claim as text: strings trimmed, integers written out (a GLN sent as a JSON number), anything else empty."""
    if isinstance(value, bool):
        return ""
    if isinstance(value, int):
        return str(value)
    return value.strip() if isinstance(value, str) else ""
