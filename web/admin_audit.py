"""The administrators' journal: search the audit trail (by user, patient, document, dates, action, outcome) and export
that very selection as CSV or as a FHIR Bundle of AuditEvents.

The patient filter takes a patient's public id or DPI identifier and selects the events about that patient's
documents, about the deliveries of those documents and about the designations of that patient's stays (the events
that say who received, read or was allowed to read the patient's documents); the user filter selects what the
matching accounts did and what was done to them (models.AuditEvent.search says exactly how).

An export is streamed in keyset pages (models.AuditEvent.pages): the whole trail never sits in memory. It covers the
events written until the moment it was asked for, counted first, and that request is itself an audit event: who,
which filter, which format, how many rows. Nothing here writes to the trail except through web/trail.py.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from flask import Response, current_app, g, render_template, request, stream_with_context, url_for
from flask_babel import gettext as _

from models import Account, AuditEvent, Delivery, Document, utcnow
from security.permissions import can_read_audit

from .admin import bp, list_page, query_choice
from .audit_labels import action_label, actor_role_label, outcome_label
from .auth import permission_required
from .fhir_directory import audit_event_resource
from .fhir_resources import instant
from .trail import record_account_event

PAGE_SIZE = 50
EXPORT_PAGE_SIZE = 1_000  # events read per query while exporting (tests lower it)
MAX_TEXT = 200
# A cell starting with one of these is a formula to Excel or LibreOffice (OWASP "CSV injection"): it gets a quote.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Who acted, in the FHIR export: the portal's username (the DPI's trace never names staff: web/fhir_directory.py).
ACCOUNT_SYSTEM = "urn:myhug:account"
EXPORT_ACTION = "audit.export"


# -- the filter -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JournalFilter:
    """What the administrator asked for, as typed (dates as Europe/Zurich calendar days, both included)."""

    user: str = ""
    patient: str = ""
    document: str = ""
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    action: str | None = None
    outcome: str | None = None

    def arguments(self) -> dict[str, str]:
        """The filter as query-string arguments (the page links and the export links keep it), empty ones left out."""
        values = {
            "user": self.user,
            "patient": self.patient,
            "document": self.document,
            "from": self.date_from.isoformat() if self.date_from else "",
            "to": self.date_to.isoformat() if self.date_to else "",
            "action": self.action or "",
            "outcome": self.outcome or "",
        }
        return {name: value for name, value in values.items() if value}

    def query(self, up_to_id: int | None = None):
        zone = ZoneInfo(current_app.config["BABEL_DEFAULT_TIMEZONE"])
        return AuditEvent.search(
            user=self.user,
            patient=self.patient or None,
            document=self.document or None,
            since=_utc_midnight(self.date_from, zone) if self.date_from else None,
            before=_utc_midnight(self.date_to + dt.timedelta(days=1), zone) if self.date_to else None,
            action=self.action,
            outcome=self.outcome,
            up_to_id=up_to_id,
        )


def _utc_midnight(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    """The start of `day` in `zone` as the naive UTC time the database stores (summer time included)."""
    return dt.datetime.combine(day, dt.time(), tzinfo=zone).astimezone(dt.UTC).replace(tzinfo=None)


def _date_argument(name: str, problems: list[str]) -> dt.date | None:
    text = request.args.get(name, "").strip()
    if not text:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        problems.append(_("“%(text)s” is not a date (YYYY-MM-DD): that limit is ignored.", text=text[:20]))
        return None


def read_filter(actions: list[str], outcomes: list[str]) -> tuple[JournalFilter, list[str]]:
    """The filter from the query string and what could not be understood; an action or outcome that the trail does
    not hold is no filter (the lists offer only those it holds)."""
    problems: list[str] = []
    journal_filter = JournalFilter(
        user=request.args.get("user", "").strip()[:MAX_TEXT],
        patient=request.args.get("patient", "").strip()[:MAX_TEXT],
        document=request.args.get("document", "").strip()[:MAX_TEXT],
        date_from=_date_argument("from", problems),
        date_to=_date_argument("to", problems),
        action=query_choice("action", actions),
        outcome=query_choice("outcome", outcomes),
    )
    return journal_filter, problems


def actor_of(event: AuditEvent) -> Account | None:
    """The account that acted (joined by the query as `event.actor`), None for the system, the DPI, a visitor."""
    actor = getattr(event, "actor", None)
    return actor if actor is not None and actor.id is not None else None


# -- one row of the page ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JournalRow:
    event: AuditEvent
    actor: Account | None
    action_label: str | None
    object_text: str
    object_url: str | None


def _object_of(event: AuditEvent, found: dict) -> tuple[str, str | None]:
    """What the event is about, as a short text and, where the journal has one, a link."""
    row = found.get((event.object_type, event.object_id))
    if isinstance(row, Account):
        return row.full_name or row.username, url_for(".account", public_id=row.public_id)
    if isinstance(row, Delivery):
        text = _(
            "Delivery of document %(document)s to %(physician)s",
            document=row.document.public_id,
            physician=row.physician.display_name,
        )
        return text, url_for(".audit", document=row.document.public_id)
    if isinstance(row, Document):
        return _("Document %(document)s", document=row.public_id), url_for(".audit", document=row.public_id)
    if event.object_type is None:
        return "—", None
    return f"{event.object_type} {event.object_id or ''}".strip(), None


def journal_rows(events: list[AuditEvent]) -> list[JournalRow]:
    found = AuditEvent.objects_of(events)
    rows = []
    for event in events:
        text, url = _object_of(event, found)
        rows.append(JournalRow(event, actor_of(event), action_label(event.action), text, url))
    return rows


# -- the page -------------------------------------------------------------------------------------------------------
@bp.get("/journal")
@permission_required(can_read_audit)
def audit():
    """The newest events first, 50 a page; a constant number of queries whatever the page size: the choice lists,
    the count, the page, and one look-up per kind of object the page names (accounts, deliveries, documents)."""
    actions, outcomes = AuditEvent.actions(), AuditEvent.outcomes()
    journal_filter, problems = read_filter(actions, outcomes)
    listing = list_page(journal_filter.query(), ".audit", journal_filter.arguments(), PAGE_SIZE)
    listing["rows"] = journal_rows(listing["rows"])
    return render_template(
        "admin/audit.html",
        **listing,
        journal_filter=journal_filter,
        problems=problems,
        actions=[(a, action_label(a)) for a in actions],
        outcomes=[(o, outcome_label(o)) for o in outcomes],
        outcome_label=outcome_label,
        role_label=actor_role_label,
    )


# -- the exports ----------------------------------------------------------------------------------------------------
def _start_export(export_format: str) -> tuple[Iterator[list[AuditEvent]], int]:
    """Fix the selection (the events written until now), count it, record the export, and return its pages."""
    journal_filter, _problems = read_filter(AuditEvent.actions(), AuditEvent.outcomes())
    up_to_id = AuditEvent.last_id()
    query = journal_filter.query(up_to_id)
    count = query.count()
    record_account_event(
        EXPORT_ACTION,
        g.account,
        about=("audit_trail", None),
        format=export_format,
        filters=journal_filter.arguments(),
        rows=count,
        up_to_event=up_to_id,
    )
    return AuditEvent.pages(query, EXPORT_PAGE_SIZE), count


def _filename(extension: str) -> str:
    return f"journal-audit-{utcnow():%Y%m%d-%H%M%S}.{extension}"


def safe_cell(value) -> str:
    """A CSV cell that a spreadsheet shows as text, never runs as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_header() -> list[str]:
    return [
        _("Time (Europe/Zurich)"),
        _("Username"),
        _("Name"),
        _("Role"),
        _("Action"),
        _("Action (label)"),
        _("Object type"),
        _("Object id"),
        _("Outcome"),
        _("IP address"),
        _("Details"),
        _("Event hash"),
    ]


def csv_row(event: AuditEvent, zone: ZoneInfo) -> list[str]:
    actor = actor_of(event)
    local = event.at.replace(tzinfo=dt.UTC).astimezone(zone)
    cells = [
        local.isoformat(timespec="seconds"),
        actor.username if actor else "",
        actor.full_name if actor else "",
        event.actor_role,
        event.action,
        action_label(event.action) or "",
        event.object_type,
        event.object_id,
        event.outcome,
        event.ip,
        event.details,
        event.hash,
    ]
    return [safe_cell(cell) for cell in cells]


def csv_chunks(pages: Iterator[list[AuditEvent]]) -> Iterator[str]:
    """UTF-8 with a byte order mark (Excel then reads the accents right), one chunk per page of events."""
    zone = ZoneInfo(current_app.config["BABEL_DEFAULT_TIMEZONE"])
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(csv_header())
    yield "\ufeff" + buffer.getvalue()
    for events in pages:
        buffer.seek(0)
        buffer.truncate()
        writer.writerows(csv_row(event, zone) for event in events)
        yield buffer.getvalue()


@bp.get("/journal/export.csv")
@permission_required(can_read_audit)
def audit_csv():
    pages, _count = _start_export("csv")
    return Response(
        stream_with_context(csv_chunks(pages)),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{_filename("csv")}"'},
    )


def fhir_resource(event: AuditEvent) -> dict:
    """The event as web/fhir_directory.py writes it for the DPI, plus what only the administrators read: the
    account that acted (username and name, where the DPI's version names staff by role only), the address it acted
    from, and every detail the event holds."""
    resource = audit_event_resource(event)
    agent = resource["agent"][0]
    actor = actor_of(event)
    if actor is not None and "identifier" not in agent["who"]:  # a physician keeps the DPI's Practitioner and GLN
        agent["who"] = {
            "identifier": {"system": ACCOUNT_SYSTEM, "value": actor.username},
            "display": actor.full_name or actor.username,
        }
    elif event.actor_role not in ("system", "dpi", "physician"):
        agent["who"] = {"display": actor_role_label(event.actor_role)}
    if event.ip:
        agent["network"] = {"address": event.ip, "type": "2"}  # 2: IP address
    details = [
        {"type": key, "valueString": value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)}
        for key, value in sorted(json.loads(event.details or "{}").items())
        if value not in (None, "")
    ]
    if details:
        if not resource["entity"]:
            resource["entity"] = [{}]  # an event about nothing in particular (a failed login): its details only
        resource["entity"][0]["detail"] = details
    return resource


def _with_objects(events: list[AuditEvent]) -> list[AuditEvent]:
    """Give each event about a delivery or a document that row (`event.delivery`, `event.document`), as the
    FHIR mapper reads them; one query per kind for the whole page."""
    found = AuditEvent.objects_of(events)
    for event in events:
        row = found.get((event.object_type, event.object_id))
        if isinstance(row, Delivery):
            event.delivery, event.document = row, row.document
        elif isinstance(row, Document):
            event.document = row
    return events


def bundle_chunks(pages: Iterator[list[AuditEvent]], count: int) -> Iterator[str]:
    """A searchset Bundle written as it is read: the opening, one entry per event, the closing."""
    opening = {"resourceType": "Bundle", "type": "searchset", "timestamp": instant(utcnow()), "total": count}
    yield json.dumps(opening, ensure_ascii=False)[:-1]
    written = 0
    for events in pages:
        for event in _with_objects(events):
            entry = {"resource": fhir_resource(event), "search": {"mode": "match"}}
            yield (',"entry":[' if written == 0 else ",") + json.dumps(entry, ensure_ascii=False, separators=(",", ":"))
            written += 1
    yield "]}" if written else "}"  # FHIR allows no empty array: no entry, no "entry"


@bp.get("/journal/export.json")
@permission_required(can_read_audit)
def audit_fhir():
    pages, count = _start_export("fhir")
    return Response(
        stream_with_context(bundle_chunks(pages, count)),
        mimetype="application/fhir+json",
        headers={"Content-Disposition": f'attachment; filename="{_filename("json")}"'},
    )
