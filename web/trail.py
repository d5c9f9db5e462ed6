"""Audit events for what an account does through the web: the account, its role, the client's address."""

from __future__ import annotations

import datetime as dt

from flask import request

from models import Account
from security import audit


def record_account_event(
    action: str,
    account: Account | None,
    *,
    outcome: str = "success",
    at: dt.datetime | None = None,
    about: tuple[str, object] | None = None,
    **details,
) -> None:
    """`account` acted from this request's address. The event is about `about` = (object type, id) when given
    (an application whose ID copy was opened), else about the account itself.

    Never pass a password, a code or an unknown username in `details`: people type passwords there."""
    object_type, object_id = about or (("account", account.id) if account else (None, None))
    audit.record(
        action,
        actor_id=account.id if account else None,
        actor_role=account.role if account else "anonymous",
        ip=request.remote_addr,
        outcome=outcome,
        object_type=object_type,
        object_id=object_id,
        details=details,
        at=at,
    )
