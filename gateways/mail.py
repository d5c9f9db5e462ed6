"""E-mail through SMTP with Flask-Mail (MYHUG_MAIL_*). Errors say whether trying again can help (4xx, network)
or not (5xx: the address or the message is refused for good)."""

from __future__ import annotations

import smtplib

from flask_mail import Mail, Message

mail = Mail()


class MailError(Exception):
    def __init__(self, text: str, *, permanent: bool):
        super().__init__(text)
        self.permanent = permanent


def _smtp_code(exc: Exception) -> int | None:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        return max(codes) if codes else None
    return getattr(exc, "smtp_code", None)


def send(to: str, subject: str, body: str) -> None:
    """Hand one plain-text message to the SMTP server (needs an application context)."""
    try:
        mail.send(Message(subject=subject, recipients=[to], body=body))
    except smtplib.SMTPException as exc:
        code = _smtp_code(exc)
        raise MailError(f"SMTP {code or type(exc).__name__}", permanent=bool(code and code >= 500)) from None
    except OSError as exc:  # refused connection, timeout, DNS
        raise MailError(f"SMTP server unreachable: {type(exc).__name__}", permanent=False) from None
