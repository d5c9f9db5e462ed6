"""E-mail through SMTP with Flask-Mail (MYHUG_MAIL_*). Errors say whether trying again can help (4xx, network)
or not (5xx: the address or the message is refused for good).

`send` opens a connection per message, unless it runs inside `one_connection()`: then every message of the block
goes through one SMTP connection, opened at the first message and dropped after a failure (the next message
reconnects). The outbox dispatcher wraps each run in it: one handshake (and one TLS negotiation) per run instead
of one per message.
"""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar

from flask import current_app
from flask_mail import Connection, Mail, Message

mail = Mail()

# Flask-Mail opens smtplib without a timeout: a server that accepts the TCP connection and then says nothing would
# hold the dispatcher, and its lease on the messages it claimed (workflows/outbox.py), for ever.
SMTP_TIMEOUT_SECONDS = 30


class MailError(Exception):
    def __init__(self, text: str, *, permanent: bool):
        super().__init__(text)
        self.permanent = permanent


class _TimedConnection(Connection):
    """Flask-Mail's connection, with a socket timeout (the rest of `configure_host` is Flask-Mail's own)."""

    def configure_host(self) -> smtplib.SMTP:
        settings = self.mail
        smtp = smtplib.SMTP_SSL if settings.use_ssl else smtplib.SMTP
        host = smtp(settings.server, settings.port, timeout=SMTP_TIMEOUT_SECONDS)
        host.set_debuglevel(int(settings.debug))
        if settings.use_tls:
            host.starttls()
        if settings.username and settings.password:
            host.login(settings.username, settings.password)
        return host


class _Session:
    """One SMTP connection kept open across messages; opened lazily, dropped after any failure."""

    def __init__(self) -> None:
        self.connection: Connection | None = None

    def send(self, message: Message) -> None:
        if self.connection is None:
            self.connection = _connect().__enter__()
        try:
            self.connection.send(message)
        except BaseException:
            self.drop()
            raise

    def drop(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None and connection.host is not None:
            # The server may be gone already (that is often why we drop it): closing must not raise.
            with suppress(smtplib.SMTPException, OSError):
                connection.host.quit()
            connection.host.close()


def _connect() -> _TimedConnection:
    return _TimedConnection(current_app.extensions["mail"])


_session: ContextVar[_Session | None] = ContextVar("smtp_session", default=None)


@contextmanager
def one_connection() -> Iterator[None]:
    """Within this block `send` reuses one SMTP connection; it is closed when the block ends. Opening it needs an
    application context, but only when a message is actually sent (a block that sends nothing connects to nothing).
    """
    session = _Session()
    token = _session.set(session)
    try:
        yield
    finally:
        _session.reset(token)
        session.drop()


def _smtp_code(exc: Exception) -> int | None:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        return max(codes) if codes else None
    return getattr(exc, "smtp_code", None)


def send(to: str, subject: str, body: str) -> None:
    """Hand one plain-text message to the SMTP server (needs an application context)."""
    message = Message(subject=subject, recipients=[to], body=body)
    session = _session.get()
    try:
        if session is None:
            with _connect() as connection:
                connection.send(message)
        else:
            session.send(message)
    except smtplib.SMTPException as exc:
        code = _smtp_code(exc)
        raise MailError(f"SMTP {code or type(exc).__name__}", permanent=bool(code and code >= 500)) from None
    except OSError as exc:  # refused connection, timeout, DNS
        raise MailError(f"SMTP server unreachable: {type(exc).__name__}", permanent=False) from None


def kept_in_outbox(to: str, subject: str, body: str) -> None:
    """MYHUG_MAIL_BACKEND=outbox (development without a mail server): nothing leaves the machine; the outbox row is
    the e-mail, kept whole and read on /dev/mail."""


kept_in_outbox.name = "outbox"  # type: ignore[attr-defined]  (what the dispatcher asks: keep the bodies)


def sender_from_config(config):
    """The function the dispatcher hands e-mails to, per MYHUG_MAIL_BACKEND."""
    name = config.get("MAIL_BACKEND", "smtp")
    if name == "smtp":
        return send
    if name == "outbox":
        return kept_in_outbox
    raise ValueError(f"MYHUG_MAIL_BACKEND must be smtp or outbox, not {name!r}")
