"""Error pages in the site's layout, and the one mapping from a refused workflow action to an HTTP answer."""

from __future__ import annotations

from flask import Flask, render_template
from flask_babel import gettext as _
from flask_babel import lazy_gettext
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from workflows import TransitionRefused
from workflows.engine import CONFLICT, FORBIDDEN, WRONG_STATE

# code → (title, explanation); lazy so that each is translated in the language of the request that shows it.
MESSAGES = {
    400: (lazy_gettext("Bad request"), lazy_gettext("The request could not be understood. Go back and try again.")),
    403: (lazy_gettext("Access refused"), lazy_gettext("You do not have access to this page.")),
    404: (
        lazy_gettext("Page not found"),
        lazy_gettext(
            "This page does not exist or no longer exists. Check the address, or start again from the home page."
        ),
    ),
    405: (lazy_gettext("Method not allowed"), lazy_gettext("This address cannot be used this way.")),
    409: (lazy_gettext("Action refused"), lazy_gettext("This action cannot be done now.")),
    413: (lazy_gettext("Too large"), lazy_gettext("What you sent is larger than allowed.")),
    422: (lazy_gettext("Action refused"), lazy_gettext("This action cannot be done now.")),
    429: (lazy_gettext("Too many requests"), lazy_gettext("Too many attempts: wait a few minutes, then try again.")),
    500: (
        lazy_gettext("Internal error"),
        lazy_gettext("Something went wrong on our side. The problem has been recorded; please try again later."),
    ),
}


def status_for(refused: TransitionRefused) -> int:
    """409 for a state that moved on (or a concurrent change), 403 for a role, 422 for any other unmet rule."""
    code = refused.reason.code
    if code in (CONFLICT, WRONG_STATE):
        return 409
    if code == FORBIDDEN:
        return 403
    return 422


def render_error(status: int, message: str | None = None):
    title, explanation = MESSAGES.get(status, MESSAGES[500 if status >= 500 else 400])
    return render_template("error.html", status=status, title=title, message=message or explanation), status


def handle_http_error(error: HTTPException):
    return render_error(error.code or 500)


def handle_csrf_error(_error: CSRFError):
    return render_error(400, _("The form has expired or did not come from this site. Reload the page and try again."))


def handle_transition_refused(refused: TransitionRefused):
    # Reason texts are message ids marked with N_() in workflows/: translated here, when they are shown.
    return render_error(status_for(refused), _(refused.reason.text))


def handle_internal_error(_error: InternalServerError):
    return render_error(500)


def init_app(app: Flask) -> None:
    app.register_error_handler(CSRFError, handle_csrf_error)
    app.register_error_handler(TransitionRefused, handle_transition_refused)
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(InternalServerError, handle_internal_error)
