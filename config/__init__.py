"""Settings: one Config per environment, read from MYHUG_* environment variables when asked (never at import)."""

from __future__ import annotations

import base64
import ipaddress
import os
import secrets
from pathlib import Path


class ConfigError(RuntimeError):
    """The environment does not allow the portal to start safely."""


def _flag(value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _networks(text: str, name: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Comma-separated addresses or CIDR blocks (`10.0.0.0/8,::1`); a typo must stop the start, not open a door."""
    try:
        return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from exc


def _proxies(text: str) -> int:
    """How many reverse proxies stand in front of the app (0, 1 or 2): each one appends to X-Forwarded-For."""
    if text.strip() not in {"0", "1", "2"}:
        raise ConfigError(f"MYHUG_TRUSTED_PROXIES must be 0, 1 or 2 (the proxies in front of the app), not {text!r}")
    return int(text)


def _one_of(value: str, choices: tuple[str, ...], name: str) -> str:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


def decode_data_key(text: str) -> bytes:
    """A data key is 32 random bytes written as URL-safe base64 (as `secrets.token_urlsafe(32)` makes)."""
    try:
        key = base64.urlsafe_b64decode(text.strip() + "=" * (-len(text.strip()) % 4))
    except ValueError as exc:
        raise ConfigError("MYHUG_DATA_KEY is not URL-safe base64") from exc
    if len(key) != 32:
        raise ConfigError("MYHUG_DATA_KEY must encode exactly 32 bytes (AES-256)")
    return key


def _instance_secret(instance_path: Path, name: str, make) -> str:
    """Development only: keep a generated secret in instance/ so restarts keep sessions and data readable."""
    instance_path.mkdir(parents=True, exist_ok=True)
    path = instance_path / name
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(make())
    return path.read_text().strip()


class Config:
    """Values shared by every environment; `load` reads the environment into a mapping for Flask."""

    ENV_NAME = "base"
    REQUIRED: tuple[str, ...] = ()
    SESSION_COOKIE_SECURE = True
    TESTING = False
    DEBUG = False
    LOG_FORMAT = "json"  # what a log collector reads; development prints text for people

    @classmethod
    def load(cls, environ: dict[str, str] | None = None, instance_path: str | Path = "instance") -> dict:
        env = dict(os.environ if environ is None else environ)
        instance = Path(instance_path)
        missing = [name for name in cls.REQUIRED if not env.get(name)]
        if missing:
            raise ConfigError(f"{cls.ENV_NAME} refuses to start: set {', '.join(missing)}")

        def get(name: str, default: str | None = None) -> str | None:
            value = env.get(f"MYHUG_{name}")
            return default if value in (None, "") else value

        hin = {name: get(name) for name in ("HIN_ISSUER", "HIN_CLIENT_ID", "HIN_CLIENT_SECRET")}
        if any(hin.values()) and not all(hin.values()):
            unset = ", ".join(f"MYHUG_{name}" for name, value in hin.items() if not value)
            raise ConfigError(f"HIN login is half configured: set {unset} too, or none of the three")
        secret_key = get("SECRET_KEY") or cls.default_secret(instance)
        data_key = get("DATA_KEY") or cls.default_data_key(instance)
        return {
            "MYHUG_ENV": cls.ENV_NAME,
            "TESTING": cls.TESTING,
            "DEBUG": cls.DEBUG,
            "SECRET_KEY": secret_key,
            "DATA_KEY": decode_data_key(data_key),
            "DATABASE_URL": get("DATABASE_URL") or cls.default_database_url(instance),
            # PostgreSQL: how long a connection is kept and reused by its process (models/db.py); 0 opens one per
            # request.
            "DATABASE_POOL_SECONDS": int(get("DATABASE_POOL_SECONDS", "300")),
            "BLOB_DIR": get("BLOB_DIR") or str(instance / "blobs"),
            "PUBLIC_URL": get("PUBLIC_URL", "http://127.0.0.1:5000"),
            # Mail (Flask-Mail reads MAIL_*).
            "MAIL_SERVER": get("MAIL_SERVER", "127.0.0.1"),
            "MAIL_PORT": int(get("MAIL_PORT", "25")),
            "MAIL_USE_TLS": _flag(get("MAIL_USE_TLS")),
            "MAIL_USERNAME": get("MAIL_USERNAME"),
            "MAIL_PASSWORD": get("MAIL_PASSWORD"),
            "MAIL_DEFAULT_SENDER": get("MAIL_SENDER", "myHUG <myhug@hcuge.ch>"),
            # smtp: to MAIL_SERVER; outbox (development without a mail server): nothing leaves the machine, the
            # outbox row is the e-mail, read on /dev/mail.
            "MAIL_BACKEND": get("MAIL_BACKEND", cls.default_mail_backend(get("MAIL_SERVER"))),
            "SUPPORT_EMAIL": get("SUPPORT_EMAIL", "myhug@hcuge.ch"),
            # SMS gateway (DESIGN §5).
            "SMS_BACKEND": get("SMS_BACKEND", cls.default_sms_backend()),
            "SMS_URL": get("SMS_URL"),
            "SMS_TOKEN": get("SMS_TOKEN"),
            # HIN identity provider (DESIGN §5).
            "HIN_ISSUER": get("HIN_ISSUER"),
            "HIN_CLIENT_ID": get("HIN_CLIENT_ID"),
            "HIN_CLIENT_SECRET": get("HIN_CLIENT_SECRET"),
            "HIN_GLN_CLAIM": get("HIN_GLN_CLAIM", "gln"),
            "HIN_IDENTITY_TYPE_CLAIM": get("HIN_IDENTITY_TYPE_CLAIM", "hin_identity_type"),
            "SMS_TIMEOUT": float(get("SMS_TIMEOUT", "5")),
            "RATELIMIT_STORAGE_URI": get("RATELIMIT_STORAGE_URI", "memory://"),
            # Behind nginx (docs/deploy.md): the client address and scheme come from the last N X-Forwarded-* hops;
            # 0 (default) ignores those headers, which anyone could send to an app reached directly.
            "TRUSTED_PROXIES": _proxies(get("TRUSTED_PROXIES", "0")),
            # Per client address (DESIGN §6); "N per minute;M per hour" in the limits library's notation.
            "LOGIN_RATE_LIMIT": get("LOGIN_RATE_LIMIT", "20 per minute;200 per hour"),
            "SMS_RATE_LIMIT": get("SMS_RATE_LIMIT", "30 per hour"),
            "ENROLMENT_RATE_LIMIT": get("ENROLMENT_RATE_LIMIT", "10 per hour"),
            "HELP_MESSAGE_RATE_LIMIT": get("HELP_MESSAGE_RATE_LIMIT", "5 per hour"),
            # Per DPI client (its bearer token).
            "FHIR_RATE_LIMIT": get("FHIR_RATE_LIMIT", "6000 per minute"),
            "ENROLMENT_TRACKING_RATE_LIMIT": get("ENROLMENT_TRACKING_RATE_LIMIT", "10 per 15 minutes"),
            # Sessions (DESIGN §6).
            "SESSION_IDLE_MINUTES": int(get("SESSION_IDLE_MINUTES", "30")),
            "SESSION_ABSOLUTE_HOURS": int(get("SESSION_ABSOLUTE_HOURS", "12")),
            "SESSION_COOKIE_SECURE": _flag(get("COOKIE_SECURE"), cls.SESSION_COOKIE_SECURE),
            "SESSION_COOKIE_HTTPONLY": True,
            "SESSION_COOKIE_SAMESITE": "Lax",
            # Notifications of new documents (issue 6): "each" batches what arrives within this window into one
            # e-mail; "digest" sends once a day at this hour, Geneva time.
            "NOTIFY_BATCH_SECONDS": int(get("NOTIFY_BATCH_SECONDS", "120")),
            "DIGEST_HOUR": int(get("DIGEST_HOUR", "7")),
            # Workflow timings.
            "ENROLLMENT_EXPIRY_DAYS": int(get("ENROLLMENT_EXPIRY_DAYS", "60")),
            "TEMPORARY_PASSWORD_HOURS": min(72, int(get("TEMPORARY_PASSWORD_HOURS", "72"))),
            # A delivery unchanged this long in finalized, communicable, consented or withheld counts as stuck on
            # the administrators' workflows page.
            "STUCK_AFTER_HOURS": int(get("STUCK_AFTER_HOURS", "24")),
            "MAX_UPLOAD_BYTES": int(get("MAX_UPLOAD_BYTES", str(10 * 1024 * 1024))),
            "MAX_CONTENT_LENGTH": int(get("MAX_UPLOAD_BYTES", str(10 * 1024 * 1024))) + 64 * 1024,
            # A document's PDF from the DPI (DESIGN §6: files are size-limited); 20 MiB unless configured.
            "MAX_DOCUMENT_BYTES": int(get("MAX_DOCUMENT_BYTES", str(20 * 1024 * 1024))),
            # Languages: French first (the procedure's language), English second.
            "LANGUAGES": ["fr", "en"],
            "BABEL_DEFAULT_LOCALE": "fr",
            "BABEL_DEFAULT_TIMEZONE": "Europe/Zurich",
            # The scheduler (jobs/runner.py): how often a standby asks for the leader lock; whether the development
            # server runs the jobs in a thread of its own process (`make run`).
            "JOBS_STANDBY_POLL_SECONDS": float(get("JOBS_STANDBY_POLL_SECONDS", "5")),
            "JOBS_IN_PROCESS": _flag(get("JOBS_IN_PROCESS")),
            # Housekeeping keeps sent and cancelled messages this long (dead ones wait for an administrator).
            "OUTBOX_RETENTION_DAYS": int(get("OUTBOX_RETENTION_DAYS", "90")),
            # Operations (web/observability.py): the log lines' format and level; who may read /metrics.
            "LOG_FORMAT": _one_of(get("LOG_FORMAT", cls.LOG_FORMAT), ("json", "text"), "MYHUG_LOG_FORMAT"),
            "LOG_LEVEL": _one_of(
                get("LOG_LEVEL", "INFO").upper(), ("DEBUG", "INFO", "WARNING", "ERROR"), "MYHUG_LOG_LEVEL"
            ),
            "METRICS_ALLOW": _networks(get("METRICS_ALLOW", "127.0.0.1,::1"), "MYHUG_METRICS_ALLOW"),
        }

    @classmethod
    def default_secret(cls, instance: Path) -> str:
        raise ConfigError(f"{cls.ENV_NAME} refuses to start: set MYHUG_SECRET_KEY")

    @classmethod
    def default_data_key(cls, instance: Path) -> str:
        raise ConfigError(f"{cls.ENV_NAME} refuses to start: set MYHUG_DATA_KEY")

    @classmethod
    def default_database_url(cls, instance: Path) -> str:
        raise ConfigError(f"{cls.ENV_NAME} refuses to start: set MYHUG_DATABASE_URL")

    @classmethod
    def default_sms_backend(cls) -> str:
        return "http"

    @classmethod
    def default_mail_backend(cls, mail_server: str | None) -> str:
        return "smtp"


class DevelopmentConfig(Config):
    """`make run`: everything embedded; secrets generated once and kept under instance/."""

    ENV_NAME = "development"
    SESSION_COOKIE_SECURE = False
    DEBUG = False
    LOG_FORMAT = "text"

    @classmethod
    def default_secret(cls, instance: Path) -> str:
        return _instance_secret(instance, "secret_key", lambda: secrets.token_urlsafe(48))

    @classmethod
    def default_data_key(cls, instance: Path) -> str:
        return _instance_secret(instance, "data_key", lambda: secrets.token_urlsafe(32))

    @classmethod
    def default_database_url(cls, instance: Path) -> str:
        return f"sqlite:///{(instance / 'myhug.sqlite3').resolve()}"

    @classmethod
    def default_sms_backend(cls) -> str:
        return "outbox"

    @classmethod
    def default_mail_backend(cls, mail_server: str | None) -> str:
        return "smtp" if mail_server else "outbox"  # `make run` on a machine without a mail server


class TestingConfig(DevelopmentConfig):
    """The test suite: like development, in a temporary instance folder, CSRF still on."""

    ENV_NAME = "testing"
    TESTING = True

    @classmethod
    def default_mail_backend(cls, mail_server: str | None) -> str:
        return "smtp"  # the mail tests talk to a real SMTP server on 127.0.0.1


class ProductionConfig(Config):
    """Refuses to start without its secrets: nothing is generated or defaulted. The public address is required
    too: e-mails link to it and HIN sends users back to it."""

    ENV_NAME = "production"
    REQUIRED = ("MYHUG_SECRET_KEY", "MYHUG_DATA_KEY", "MYHUG_DATABASE_URL", "MYHUG_PUBLIC_URL")

    @classmethod
    def load(cls, environ=None, instance_path="instance") -> dict:
        config = super().load(environ, instance_path)
        if not config["PUBLIC_URL"].startswith("https://"):
            raise ConfigError("production refuses to start: MYHUG_PUBLIC_URL must be an https:// address")
        return config


CONFIGS = {c.ENV_NAME: c for c in (DevelopmentConfig, TestingConfig, ProductionConfig)}


def load_config(environ: dict[str, str] | None = None, instance_path: str | Path = "instance") -> dict:
    """Pick the Config named by MYHUG_ENV (development by default) and read the environment with it."""
    env = os.environ if environ is None else environ
    name = env.get("MYHUG_ENV", "development")
    if name not in CONFIGS:
        raise ConfigError(f"MYHUG_ENV must be one of {', '.join(CONFIGS)}, not {name!r}")
    return CONFIGS[name].load(environ, instance_path)
