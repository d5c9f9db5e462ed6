"""The administrators' area: the workflows, drawn with live counts per state (DESIGN §3), and what waits longer
than it should (the outbox's queue and dead letters, deliveries stuck on their way)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from flask import Blueprint, Response, abort, current_app, g, render_template, request, url_for
from flask_babel import gettext as _
from markupsafe import Markup

from models import Delivery, OutboxMessage, OutboxStatus, Role, utcnow
from security.permissions import can_view_workflows
from workflows import WORKFLOWS, diagram
from workflows.engine import Actor, Workflow

from .auth import permission_required
from .clinic import state_label as delivery_state_label
from .templating import role_label

bp = Blueprint("admin", __name__, url_prefix="/admin")


def administrator() -> Actor:
    """The logged-in administrator as the engine sees them, with the request's address (for the audit trail)."""
    return Actor(Role.ADMINISTRATOR, g.account.id, ip=request.remote_addr)


def query_choice(name: str, allowed) -> str | None:
    """A list filter from the query string, only if it is one of `allowed` (anything else: no filter)."""
    value = request.args.get(name) or None
    return value if value in allowed else None


LIST_PAGE_SIZE = 50  # rows per page of the administrators' lists


def list_page(query, endpoint: str, filters: dict, per_page: int = LIST_PAGE_SIZE) -> dict:
    """One page of a filtered list, as the list templates and `_pagination.html` want it: `rows`, `total`, `page`
    (the asked page brought within those that exist), `pages`, `first` (the first row's number), `filters` and
    `page_url(number)` (keeping the filters). Two queries: the count and the page."""
    total = query.count()
    pages = max(1, -(-total // per_page))
    page = min(max(request.args.get("page", 1, type=int) or 1, 1), pages)

    def page_url(number: int) -> str:
        return url_for(endpoint, page=number, **{k: v for k, v in filters.items() if v})

    return {
        "rows": list(query.paginate(page, per_page)),
        "total": total,
        "page": page,
        "pages": pages,
        "first": (page - 1) * per_page + 1,
        "filters": filters,
        "page_url": page_url,
    }


@dataclass(frozen=True)
class TransitionRow:
    trigger: str
    label: str
    sources: tuple[str, ...]
    dest: str
    roles: tuple[str, ...]


@dataclass(frozen=True)
class WorkflowPicture:
    name: str
    svg: Markup
    states: list[tuple[str, int]]
    total: int
    transitions: list[TransitionRow]


def _state_name(workflow: Workflow, state: str) -> str:
    return _("(creation)") if state == workflow.initial else state


def picture(workflow: Workflow) -> WorkflowPicture:
    counts = workflow.model.count_by_state()
    states = [(str(s), counts.get(str(s), 0)) for s in workflow.states if str(s) != workflow.initial]
    transitions = [
        TransitionRow(
            trigger=spec.trigger,
            label=_(spec.label),  # N_() message ids from workflows/
            sources=tuple(_state_name(workflow, s) for s in spec.source),
            dest=spec.dest,
            roles=tuple(sorted(role_label(r) for r in spec.roles)),
        )
        for spec in workflow.transitions
    ]
    # diagram.to_svg returns a standalone <svg> built from our own tables: no script, no style attribute.
    svg = Markup(diagram.to_svg(workflow, counts))  # noqa: S704
    return WorkflowPicture(workflow.name, svg, states, sum(n for _state, n in states), transitions)


STUCK_LISTED = 50  # stuck deliveries listed by name; the counts cover them all


@dataclass(frozen=True)
class Backlog:
    """What waits longer than it should: messages queued or being sent, messages that could not be delivered, and
    deliveries unchanged for `stuck_after_hours` in a state where they wait for a fact outside the portal."""

    queued: int
    dead: int
    stuck_after_hours: int
    stuck_counts: list[tuple[str, int]]
    stuck: list[Delivery]

    @property
    def stuck_total(self) -> int:
        return sum(count for _state, count in self.stuck_counts)


def backlog(now: dt.datetime) -> Backlog:
    hours = current_app.config["STUCK_AFTER_HOURS"]
    unchanged_since = now - dt.timedelta(hours=hours)
    statuses = OutboxMessage.counts_by_status()
    stuck = Delivery.stuck_counts(unchanged_since)
    return Backlog(
        queued=statuses.get(OutboxStatus.PENDING, 0) + statuses.get(OutboxStatus.SENDING, 0),
        dead=statuses.get(OutboxStatus.DEAD, 0),
        stuck_after_hours=hours,
        stuck_counts=[(state, stuck.get(state, 0)) for state in Delivery.STUCK_STATES],
        stuck=list(Delivery.stuck(unchanged_since, STUCK_LISTED)),
    )


@bp.get("/workflows")
@permission_required(can_view_workflows)
def workflows():
    return render_template(
        "admin/workflows.html",
        pictures=[picture(w) for w in WORKFLOWS.values()],
        backlog=backlog(utcnow()),
        delivery_state_label=delivery_state_label,
    )


@bp.get("/workflows/<name>.mmd")
@permission_required(can_view_workflows)
def workflow_mermaid(name: str):
    workflow = WORKFLOWS.get(name)
    if workflow is None:
        abort(404)
    return Response(
        diagram.to_mermaid(workflow),
        mimetype="text/plain",
        headers={"Content-Disposition": f'attachment; filename="{workflow.name}.mmd"'},
    )
