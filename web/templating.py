"""What every template may call: the permission predicates, links only to pages that exist, role names."""

from __future__ import annotations

import datetime as dt

from flask import Flask, current_app, url_for
from flask_babel import format_datetime, lazy_gettext
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BuildError

from models import Account, Role
from security import permissions
from security.permissions import PREDICATES

ROLE_LABELS = {
    Role.PHYSICIAN: lazy_gettext("Physician"),
    Role.VALIDATOR: lazy_gettext("Validator"),
    Role.ADMINISTRATOR: lazy_gettext("Administrator"),
    Role.CLINICIAN: lazy_gettext("Clinician"),
    Role.APPLICANT: lazy_gettext("Applicant"),
    Role.SYSTEM: lazy_gettext("System"),
    Role.DPI: lazy_gettext("Patient record (DPI)"),
}


def url_if_exists(endpoint: str, **values) -> str | None:
    """The URL of `endpoint`, or None while that page is not built yet (the navigation shows no broken links)."""
    try:
        return url_for(endpoint, **values)
    except BuildError:
        return None


def link_if_routed(path: str, method: str = "GET") -> str | None:
    """`path` if this application answers it, else None: for the fixed addresses of DESIGN §5 (/login/hin)."""
    try:
        current_app.url_map.bind("localhost").match(path, method=method)
    except HTTPException:  # NotFound, MethodNotAllowed, or a redirect to another form of the path
        return None
    return path


# The main menu: (who sees it, endpoint, label). An entry appears once its page exists (later issues add them).
NAVIGATION = [
    (permissions.is_physician, "physician.documents", lazy_gettext("My documents")),
    (permissions.is_physician, "physician.patients", lazy_gettext("My patients")),
    (permissions.is_physician, "physician.profile", lazy_gettext("My profile")),
    (permissions.is_physician, "help.index", lazy_gettext("Help")),
    (permissions.can_validate_applications, "desk.index", lazy_gettext("Validation desk")),
    (permissions.can_record_designations, "clinic.index", lazy_gettext("Clinic")),
    (permissions.is_administrator, "admin.dashboard", lazy_gettext("Dashboard")),
    (permissions.can_review_applications, "admin.applications", lazy_gettext("Applications")),
    (permissions.can_manage_accounts, "admin.accounts", lazy_gettext("Accounts")),
    (permissions.is_administrator, "admin.document_types", lazy_gettext("Document types")),
    (permissions.is_administrator, "admin.messages", lazy_gettext("Messages")),
    (permissions.can_view_workflows, "admin.workflows", lazy_gettext("Workflows")),
    (permissions.can_read_audit, "admin.audit", lazy_gettext("Audit trail")),
]


def navigation(account: Account | None) -> list[tuple[str, str, str]]:
    """(endpoint, url, label) of each menu entry this account may see and that exists."""
    links = []
    for allowed, endpoint, label in NAVIGATION:
        if allowed(account):
            url = url_if_exists(endpoint)
            if url:
                links.append((endpoint, url, str(label)))
    return links


def role_label(role: str) -> str:
    label = ROLE_LABELS.get(role)
    return str(label) if label is not None else role


def local_datetime(value: dt.datetime | None, style: str = "short") -> str:
    """Stored times are naive UTC; shown in Europe/Zurich (BABEL_DEFAULT_TIMEZONE)."""
    return "" if value is None else format_datetime(value, style)


def init_app(app: Flask) -> None:
    app.jinja_env.trim_blocks = True
    app.jinja_env.lstrip_blocks = True
    app.jinja_env.globals.update(PREDICATES)
    app.jinja_env.globals.update(
        url_if_exists=url_if_exists, link_if_routed=link_if_routed, role_label=role_label, navigation=navigation
    )
    app.context_processor(lambda: {"support_email": current_app.config["SUPPORT_EMAIL"]})
    app.jinja_env.filters["local_datetime"] = local_datetime
