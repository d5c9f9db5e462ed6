"""Audit events for what an account does through the web: the account, its role, the client's address."""

from __future__ import annotations

import datetime as dt

from flask import request

from models import Account
from security import audit


def record_account_event(
    action: str, account: Account | None, *, outcome: str = "success", at: dt.datetime | None = None, **details
) -> None:
    """Never pass a password, a code or an unknown username in `details`: people type passwords there."""
    audit.record(
        action,
        actor_id=account.id if account else None,
        actor_role=account.role if account else "anonymous",
        ip=request.remote_addr,
        outcome=outcome,
        object_type="account" if account else None,
        object_id=account.id if account else None,
        details=details,
        at=at,
    )
