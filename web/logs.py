"""Log lines: JSON objects (one a line, on stderr) or text, each carrying the id of the request that wrote it."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import secrets
import sys
import traceback
from contextvars import ContextVar, Token

REQUEST_ID_HEADER = "X-Request-ID"
# What a request id from outside may look like: nginx's $request_id (32 hex digits), a UUID, a load balancer's
# token. Anything else (too long, quotes, spaces, line breaks) would let a client forge or break log lines.
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{7,63}")
# The fields of the access line (web/observability.py passes them as `extra`), in the order they are written.
ACCESS_FIELDS = ("method", "path", "route", "status", "duration_ms", "remote_addr", "role")
HANDLER_NAME = "myhug"
# Libraries that narrate at INFO what is no operator's business (transitions: every callback of every transition).
CHATTY_LOGGERS = ("transitions",)

_request_id: ContextVar[str | None] = ContextVar("myhug_request_id", default=None)


def accept_request_id(incoming: str | None) -> str:
    """The caller's id when it is a safe short token (so nginx's log and ours share it), else a new one."""
    if incoming and _SAFE_REQUEST_ID.fullmatch(incoming):
        return incoming
    return new_request_id()


def new_request_id() -> str:
    return secrets.token_hex(16)  # 128 bits, written like nginx's $request_id


def bind_request_id(request_id: str) -> Token:
    """Every line logged from here on in this context (this request) carries `request_id`."""
    return _request_id.set(request_id)


def unbind_request_id(token: Token) -> None:
    _request_id.reset(token)


def current_request_id() -> str | None:
    return _request_id.get()


class RequestIdFilter(logging.Filter):
    """Puts the current request's id on each record, whichever logger wrote it (workflows know nothing of Flask)."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = _request_id.get()
        if request_id is not None and not hasattr(record, "request_id"):
            record.request_id = request_id
        return True


class DevServerRequestLineFilter(logging.Filter):
    """Drops the development server's own request lines: ours replace them, and theirs carry the query string."""

    def filter(self, record: logging.LogRecord) -> bool:
        # werkzeug.serving writes them as `… - - [date] "%s" %s %s` with the request line as the first argument.
        return not (record.name == "werkzeug" and isinstance(record.msg, str) and record.msg.endswith('"%s" %s %s'))


class JsonFormatter(logging.Formatter):
    """One JSON object per line. An exception appears as its type and stack, never its message: messages carry
    data (PostgreSQL's unique violation quotes the duplicate value, an e-mail address for instance)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            entry["request_id"] = request_id
        for name in ACCESS_FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info and record.exc_info[1] is not None:
            entry["exception"] = exception_without_message(record.exc_info[1])
        return json.dumps(entry, ensure_ascii=False, default=str)


def exception_without_message(exc: BaseException) -> dict:
    """The type and stack of an exception, and the types of those it was raised from; none of their messages."""
    raised_from, seen = [], {id(exc)}
    inner = exc.__cause__ or exc.__context__
    while inner is not None and id(inner) not in seen:
        seen.add(id(inner))
        raised_from.append(type(inner).__qualname__)
        inner = inner.__cause__ or inner.__context__
    return {
        "type": type(exc).__qualname__,
        "raised_from": raised_from,
        "stack": "".join(traceback.format_tb(exc.__traceback__)),
    }


class TextFormatter(logging.Formatter):
    """For people reading a terminal (development): the time, level, logger, request id and message."""

    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s", defaults={"request_id": "-"}
        )


class StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is when a line is written: gunicorn and the tests replace it."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self):  # StreamHandler writes to self.stream
        return sys.stderr


def configure_logging(log_format: str, level: str) -> None:
    """Make the root logger write every line through one handler of ours, in `log_format` ("json" or "text").

    Called by each create_app: replaces the handler an earlier call installed rather than adding a second one.
    Loggers that keep their own handlers (gunicorn's) are left alone.
    """
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(handler)
    handler = StderrHandler()
    handler.set_name(HANDLER_NAME)
    handler.addFilter(RequestIdFilter())
    handler.addFilter(DevServerRequestLineFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    for name in CHATTY_LOGGERS:
        chatty = logging.getLogger(name)
        if chatty.level == logging.NOTSET:  # a level someone chose stays
            chatty.setLevel(logging.WARNING)
