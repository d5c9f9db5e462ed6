"""SMS gateway: `outbox` (development: the message stays in the database, readable on /dev/sms) or `http`.

The `http` backend POSTs `{"to": "+41…", "text": "…"}` to MYHUG_SMS_URL with `Authorization: Bearer
MYHUG_SMS_TOKEN` (DESIGN §5). Errors never carry the message text: it may hold a code.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request

log = logging.getLogger(__name__)


class SmsError(Exception):
    """The gateway did not accept the message (unreachable, timeout, refused)."""


class OutboxBackend:
    """Nothing leaves the machine: the outbox row itself is the message, shown on the development page."""

    name = "outbox"

    def send(self, to: str, text: str) -> None:
        return None


class HttpBackend:
    name = "http"

    def __init__(self, url: str, token: str, timeout: float = 5.0):
        if not url or not token:
            raise ValueError("the http SMS backend needs MYHUG_SMS_URL and MYHUG_SMS_TOKEN")
        if not url.startswith(("https://", "http://")):
            raise ValueError("MYHUG_SMS_URL must be an http(s) URL")
        self.url, self.token, self.timeout = url, token, timeout

    def send(self, to: str, text: str) -> None:
        request = urllib.request.Request(  # noqa: S310 (the scheme is checked in __init__)
            self.url,
            data=json.dumps({"to": to, "text": text}).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                status = response.status
        except urllib.error.HTTPError as exc:
            raise SmsError(f"gateway answered HTTP {exc.code}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise SmsError(f"gateway unreachable: {type(reason).__name__}") from None
        if not 200 <= status < 300:
            raise SmsError(f"gateway answered HTTP {status}")


def backend_from_config(config) -> OutboxBackend | HttpBackend:
    name = config.get("SMS_BACKEND", "outbox")
    if name == "outbox":
        return OutboxBackend()
    if name == "http":
        return HttpBackend(config.get("SMS_URL"), config.get("SMS_TOKEN"), float(config.get("SMS_TIMEOUT", 5)))
    raise ValueError(f"MYHUG_SMS_BACKEND must be outbox or http, not {name!r}")
