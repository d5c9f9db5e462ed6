"""The physician's space: "Mes documents", one document (its facts, the PDF inline, the download), "Mes patients"
and "Mon profil" (the six settings of the seed, saved only by « Confirmer »).

A physician reaches only their own deliveries, and only those in their space (available, notified, consulted).
Another physician's delivery, a withheld or revoked one and a made-up id all get the same 404, and each refusal is
an audit event (DESIGN §6: access). Every page here is `no-store`; PDFs are served only once their bytes match the
document's SHA-256.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import quote

from flask import Blueprint, Response, abort, current_app, flash, g, redirect, render_template, request, url_for
from flask_babel import format_date, lazy_gettext
from flask_babel import gettext as _

from models import (
    AuditEvent,
    Delivery,
    DocumentsFilter,
    LandingPage,
    NotificationMode,
    PatientsFilter,
    Physician,
    Role,
    Specialty,
    StayKind,
    utcnow,
)
from security.encryption import DecryptionError
from security.permissions import can_read_own_documents
from workflows import DELIVERY, Actor, DeliveryState, TransitionRefused, fire
from workflows.documents import document_pdf
from workflows.engine import CONFLICT

from .audit_labels import action_label, actor_role_label, outcome_label
from .auth import landing_url, permission_required
from .i18n import current_language, languages, remember_language
from .trail import record_account_event

bp = Blueprint("physician", __name__)

PAGE_SIZE = 25  # "Mes documents"
PATIENTS_PAGE_SIZE = 50
HISTORY_PAGE_SIZE = 50  # a document's access history
RECENT_DAYS = 90  # the "last 90 days" filters of settings 3 and 4
PUBLIC_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

# Audit actions of this space (the engine records `delivery.consult` itself).
OPENED, VIEWED, DOWNLOADED = "document.opened", "document.viewed", "document.downloaded"
ACCESS_DENIED, INTEGRITY_FAILED = "document.access_denied", "document.integrity_failed"
PROFILE_CHANGED = "profile.changed"

# The six settings of "Mon profil" (seed: "Paramétrage du compte"), in their words.
NOTIFICATION_LABELS = {
    NotificationMode.EACH: lazy_gettext("An e-mail for each new document"),
    NotificationMode.DIGEST: lazy_gettext("One e-mail a day listing how many new documents arrived (daily digest)"),
    NotificationMode.NONE: lazy_gettext("No e-mail: I check the portal myself"),
}
PATIENTS_FILTER_LABELS = {
    PatientsFilter.ALL: lazy_gettext("All my patients"),
    PatientsFilter.WITH_UNREAD: lazy_gettext("Only patients with unread documents"),
    PatientsFilter.LAST_90_DAYS: lazy_gettext("Patients with a document received in the last 90 days"),
}
DOCUMENTS_FILTER_LABELS = {
    DocumentsFilter.UNREAD: lazy_gettext("Unread documents only"),
    DocumentsFilter.ALL: lazy_gettext("All documents"),
    DocumentsFilter.LAST_90_DAYS: lazy_gettext("Documents received in the last 90 days"),
}
LANDING_LABELS = {
    LandingPage.DOCUMENTS: lazy_gettext("My documents"),
    LandingPage.PATIENTS: lazy_gettext("My patients"),
    LandingPage.PROFILE: lazy_gettext("My profile"),
}
SORT_LABELS = {
    "received": lazy_gettext("Date received (unread first)"),
    "patient": lazy_gettext("Patient"),
    "type": lazy_gettext("Type of document"),
}
STAY_KIND_LABELS = {
    StayKind.INPATIENT: lazy_gettext("Hospital stay"),
    StayKind.AMBULATORY: lazy_gettext("Ambulatory care"),
}
# The radio settings of the profile form: field → (allowed values, labels).
PROFILE_CHOICES = {
    "notification_mode": NOTIFICATION_LABELS,
    "patients_filter": PATIENTS_FILTER_LABELS,
    "documents_filter": DOCUMENTS_FILTER_LABELS,
    "landing_page": LANDING_LABELS,
}
CONFIRM = "confirm"  # the value of the one « Confirmer » button: nothing is saved without it


# -- shared helpers -------------------------------------------------------------------------------------------------
def _choice(name: str, allowed, default: str) -> str:
    value = request.args.get(name)
    return value if value in {str(a) for a in allowed} else str(default)


def _page_number() -> int:
    return max(request.args.get("page", 1, type=int) or 1, 1)


def _since(choice: str) -> dt.datetime | None:
    recent = choice in (DocumentsFilter.LAST_90_DAYS, PatientsFilter.LAST_90_DAYS)
    return utcnow() - dt.timedelta(days=RECENT_DAYS) if recent else None


def _physician_actor() -> Actor:
    return Actor(Role.PHYSICIAN, g.account.id, ip=request.remote_addr)


def type_name(document_type) -> str:
    return document_type.name_en if current_language() == "en" else document_type.name_fr


def _label(labels: dict, value) -> str:
    label = labels.get(value)
    return str(label) if label is not None else str(value or "")


# -- Mes documents ----------------------------------------------------------------------------------------------------
@bp.get("/documents")
@permission_required(can_read_own_documents)
def documents():
    """Unread first, then the newest; the filter defaults to the profile's setting 4; 25 a page; four queries
    (session, physician, count, page) whatever the number of documents."""
    g.no_store = True
    physician = g.account.physician
    shown = _choice("filtre", DocumentsFilter, physician.documents_filter)
    sort = _choice("tri", Delivery.INBOX_SORTS, "received")
    patient = request.args.get("patient", "")
    patient = patient if PUBLIC_ID.match(patient) else None
    deliveries, total, page = Delivery.inbox_page(
        physician.id,
        _page_number(),
        PAGE_SIZE,
        unread_only=shown == DocumentsFilter.UNREAD,
        since=_since(shown),
        patient_public_id=patient,
        sort=sort,
        language=current_language(),
    )
    pages = max(1, -(-total // PAGE_SIZE))
    query = {"filtre": shown, "tri": sort, "patient": patient}

    def page_url(number: int) -> str:
        return url_for(".documents", page=number, **{k: v for k, v in query.items() if v})

    return render_template(
        "physician/documents.html",
        deliveries=deliveries,
        total=total,
        page=page,
        pages=pages,
        first=(page - 1) * PAGE_SIZE + 1,
        page_url=page_url,
        shown=shown,
        sort=sort,
        patient=patient,
        filter_labels=DOCUMENTS_FILTER_LABELS,
        sort_labels=SORT_LABELS,
        type_name=type_name,
        physician=physician,
    )


# -- one document -------------------------------------------------------------------------------------------------
def _delivery_or_404(public_id: str) -> Delivery:
    """This physician's delivery in their space, or the same 404 for everything else, and an audit event."""
    delivery = Delivery.for_recipient(public_id, g.account.physician_id) if PUBLIC_ID.match(public_id) else None
    if delivery is not None:
        return delivery
    found = Delivery.by_public_id(public_id) if PUBLIC_ID.match(public_id) else None
    if found is None:
        reason = "unknown"
    elif found.physician_id != g.account.physician_id:
        reason = "other-physician"
    else:
        reason = f"state-{found.state}"  # withheld, revoked, or not in the space yet
    record_account_event(
        ACCESS_DENIED,
        g.account,
        outcome="failure",
        about=("delivery", found.id) if found else None,
        requested=public_id[:64],
        reason=reason,
        endpoint=request.endpoint,
    )
    abort(404)


@bp.get("/documents/<public_id>")
@permission_required(can_read_own_documents)
def document(public_id: str):
    """The document's facts, the PDF inline and the download link. The first opening fires `consult`."""
    g.no_store = True
    delivery = _delivery_or_404(public_id)
    if delivery.state in (DeliveryState.AVAILABLE, DeliveryState.NOTIFIED):
        try:
            fire(DELIVERY, delivery, "consult", _physician_actor())
        except TransitionRefused as refused:
            if refused.reason.code != CONFLICT:
                raise
            # Opened at the same moment in another tab: that request recorded the consultation.
    document = delivery.document
    record_account_event(OPENED, g.account, about=("delivery", delivery.id), document=document.public_id)
    return render_template(
        "physician/document.html",
        delivery=delivery,
        document=document,
        patient=document.patient,
        stay=document.stay,
        type_name=type_name(document.type),
        stay_kind=_label(STAY_KIND_LABELS, document.stay.kind),
        stay_start=format_date(document.stay.started_at, "medium") if document.stay.started_at else None,
        stay_end=format_date(document.stay.ended_at, "medium") if document.stay.ended_at else None,
    )


def _verified_bytes(delivery: Delivery) -> bytes:
    """The decrypted PDF, only if it is exactly what the DPI sent (its SHA-256); else a 500 and an alert in the log:
    never a wrong, truncated or altered file."""
    document = delivery.document
    try:
        return document_pdf(document)
    except (LookupError, OSError, DecryptionError, ValueError) as exc:  # no blob, gone, altered, another digest
        problem = f"{type(exc).__name__}: {exc}"
    current_app.logger.critical(
        "ALERT document integrity: the stored PDF of document %s (delivery %s) was not served (%s)",
        document.public_id,
        delivery.public_id,
        problem,
    )
    record_account_event(
        INTEGRITY_FAILED, g.account, outcome="failure", about=("delivery", delivery.id), document=document.public_id
    )
    abort(500)


def _ascii_slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^A-Za-z0-9]+", "-", ascii_text).strip("-").lower()[:60] or "document"


def _filename(delivery: Delivery) -> str:
    """The document's type and date of arrival: never the patient's name (files land in shared folders)."""
    document = delivery.document
    received = (delivery.available_at or document.created_at).strftime("%Y-%m-%d")
    return f"{_ascii_slug(document.type.name_fr)}-{received}-{delivery.public_id[:8]}.pdf"


def _file_response(data: bytes, mimetype: str, disposition: str, filename: str) -> Response:
    """A decrypted file with headers of its own (web/headers.py keeps them): it runs and loads nothing, and only
    our own document page may frame the inline view."""
    framed = disposition == "inline"
    ancestors = "'self'" if framed else "'none'"
    return Response(
        data,
        mimetype=mimetype,
        headers={
            "Content-Disposition": f"{disposition}; filename=\"{filename}\"; filename*=UTF-8''{quote(filename)}",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
            "Pragma": "no-cache",
            "Content-Security-Policy": f"sandbox; default-src 'none'; frame-ancestors {ancestors}",
            "X-Frame-Options": "SAMEORIGIN" if framed else "DENY",
            "Cross-Origin-Resource-Policy": "same-origin",
            "Referrer-Policy": "no-referrer",
        },
    )


@bp.get("/documents/<public_id>/voir")
@permission_required(can_read_own_documents)
def view_pdf(public_id: str):
    """The PDF for the viewer of the document page: inline, only for verified PDFs (DESIGN §6: files)."""
    g.no_store = True
    delivery = _delivery_or_404(public_id)
    data = _verified_bytes(delivery)
    if not data.startswith(b"%PDF-"):
        current_app.logger.error(
            "document %s is not a PDF: not shown inline (the download still works)", delivery.document.public_id
        )
        abort(500)
    record_account_event(VIEWED, g.account, about=("delivery", delivery.id), document=delivery.document.public_id)
    return _file_response(data, "application/pdf", "inline", _filename(delivery))


@bp.get("/documents/<public_id>/telecharger")
@permission_required(can_read_own_documents)
def download(public_id: str):
    """The same verified bytes, always as an attachment."""
    g.no_store = True
    delivery = _delivery_or_404(public_id)
    data = _verified_bytes(delivery)
    mimetype = "application/pdf" if data.startswith(b"%PDF-") else "application/octet-stream"
    record_account_event(DOWNLOADED, g.account, about=("delivery", delivery.id), document=delivery.document.public_id)
    return _file_response(data, mimetype, "attachment", _filename(delivery))


@dataclass(frozen=True)
class AccessEntry:
    at: dt.datetime
    action: str
    label: str
    who: str
    someone_else: bool  # a person other than this physician (an administrator, another physician refused)
    outcome: str


def _access_entry(event: AuditEvent) -> AccessEntry:
    """Who is named by their role only (the system, the hospital's staff, another physician): the physician
    learns that someone else came near their document, not who among the staff."""
    mine = event.actor_id == g.account.id
    return AccessEntry(
        at=event.at,
        action=event.action,
        label=action_label(event.action) or event.action,
        who=_("You") if mine else actor_role_label(event.actor_role),
        someone_else=event.actor_id is not None and not mine,
        outcome=outcome_label(event.outcome),
    )


@bp.get("/documents/<public_id>/historique")
@permission_required(can_read_own_documents)
def access_history(public_id: str):
    """Everything the audit trail holds about this physician's delivery of the document, the newest first: when
    it reached their space, when they were notified, every opening, view and download (theirs, or anyone else's),
    a revocation. Only their delivery: another physician's copy of the same document is not theirs to see, and
    their own is reached under the document page's rule (the same 404 and audit event for anything else).
    Reading this page is not an access to the document and is not recorded."""
    g.no_store = True
    delivery = _delivery_or_404(public_id)
    query = AuditEvent.about_delivery(delivery.id)
    total = query.count()
    pages = max(1, -(-total // HISTORY_PAGE_SIZE))
    page = min(_page_number(), pages)

    def page_url(number: int) -> str:
        return url_for(".access_history", public_id=delivery.public_id, page=number)

    return render_template(
        "physician/access_history.html",
        delivery=delivery,
        document=delivery.document,
        entries=[_access_entry(e) for e in query.paginate(page, HISTORY_PAGE_SIZE)],
        total=total,
        page=page,
        pages=pages,
        page_url=page_url,
    )


# -- Mes patients -----------------------------------------------------------------------------------------------------
@bp.get("/patients")
@permission_required(can_read_own_documents)
def patients():
    """The patients with documents in this physician's space, as setting 3 says (or as chosen on the page)."""
    g.no_store = True
    physician = g.account.physician
    shown = _choice("filtre", PatientsFilter, physician.patients_filter)
    query = Delivery.patients_of(physician.id, with_unread=shown == PatientsFilter.WITH_UNREAD, since=_since(shown))
    total = query.order_by().count()
    pages = max(1, -(-total // PATIENTS_PAGE_SIZE))
    page = min(_page_number(), pages)

    def page_url(number: int) -> str:
        return url_for(".patients", page=number, filtre=shown)

    return render_template(
        "physician/patients.html",
        patients=list(query.paginate(page, PATIENTS_PAGE_SIZE)),
        total=total,
        page=page,
        pages=pages,
        first=(page - 1) * PATIENTS_PAGE_SIZE + 1,
        page_url=page_url,
        shown=shown,
        filter_labels=PATIENTS_FILTER_LABELS,
    )


# -- Mon profil -------------------------------------------------------------------------------------------------------
def _specialty_catalogue() -> list[tuple[str, str]]:
    name = Specialty.name_en if current_language() == "en" else Specialty.name_fr
    return [(s.code, getattr(s, name.name)) for s in Specialty.select().order_by(name)]


def _current_settings(physician) -> dict:
    settings = {field: str(getattr(physician, field)) for field in PROFILE_CHOICES}
    settings["specialties"] = [s.code for s in physician.specialties()]
    return settings


def _read_settings(form, catalogue: list[tuple[str, str]]) -> tuple[dict, dict]:
    """(what was submitted, errors by field): every value must be one the form offers."""
    submitted, errors = {}, {}
    for field, labels in PROFILE_CHOICES.items():
        value = form.get(field, "")
        submitted[field] = value
        if value not in {str(v) for v in labels}:
            errors[field] = _("Choose one of the options.")
    codes = list(dict.fromkeys(form.getlist("specialties")))
    submitted["specialties"] = codes
    known = {code for code, _name in catalogue}
    if not codes:
        errors["specialties"] = _("Tick at least one specialty.")
    elif not set(codes) <= known:
        errors["specialties"] = _("Tick only specialties from the list.")
    return submitted, errors


def _read_language(form, errors: dict) -> str:
    """The portal's language, kept on the account (web/i18n.py): it then wins over the browser's. A form without
    the field (sent before it existed) keeps the language shown."""
    language = form.get("language") or current_language()
    if language not in languages():
        errors["language"] = _("Choose one of the options.")
    return language


def _profile_page(
    physician, settings: dict, language: str, errors: dict, catalogue, status: int = 200, unconfirmed: bool = False
):
    return (
        render_template(
            "physician/profile.html",
            physician=physician,
            account=g.account,
            settings=settings,
            language=language,
            errors=errors,
            catalogue=catalogue,
            choices=PROFILE_CHOICES,
            confirm=CONFIRM,
            unconfirmed=unconfirmed,
        ),
        status,
    )


@bp.post("/profil/adresse-confirmee")
@permission_required(can_read_own_documents)
def email_confirmed():
    """The physician's mail server refused a notification (a hard bounce); they say the address works again (a
    full mailbox emptied, a filter fixed), and notifications resume. If it bounces again, that is recorded again."""
    physician = g.account.physician
    if Physician.clear_bounce(physician.id):
        record_account_event("physician.email_confirmed", g.account, about=("physician", physician.id))
        flash(_("Notifications will be sent to %(email)s again.", email=physician.email), "success")
    return redirect(url_for(".profile"), 303)


@bp.route("/profil", methods=["GET", "POST"])
@permission_required(can_read_own_documents)
def profile():
    """Settings 1–5 and the portal's language in one form, a link to setting 6; nothing is saved until « Confirmer »
    is pressed, which then shows the chosen landing page (seed: "il faut impérativement cliquer sur le bouton
    « Confirmer »")."""
    g.no_store = True
    physician = g.account.physician
    catalogue = _specialty_catalogue()
    if request.method == "GET":
        return _profile_page(physician, _current_settings(physician), current_language(), {}, catalogue)
    settings, errors = _read_settings(request.form, catalogue)
    language = _read_language(request.form, errors)
    if request.form.get("action") != CONFIRM:
        return _profile_page(physician, settings, language, {}, catalogue, unconfirmed=True)
    if errors:
        return _profile_page(physician, settings, language, errors, catalogue, status=422)
    changes = physician.save_preferences(**settings)
    if changes:
        record_account_event(PROFILE_CHANGED, g.account, about=("physician", physician.id), changed=changes)
    # Only a language other than the one shown is stored: confirming the form leaves the browser's in charge.
    new_language = language != current_language()
    if new_language:
        remember_language(language)  # audited; the messages below are already in the new language
    if changes or new_language:
        flash(_("Your profile is saved."), "success")
    else:
        flash(_("Your profile had no change to save."), "info")
    return redirect(landing_url(g.account))
