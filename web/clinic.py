"""The clinic, for hospital staff: a patient's stays, the designation of the treating physician for each stay, the
physician directory, the manual send of a document, and why a document did or did not reach someone.

The seed's rules, as the pages apply them: documents leave automatically only to a physician the patient designated
for *this* stay or ambulatory episode and authorized to receive them electronically (renewed for each new one);
"les documents peuvent également être envoyés manuellement par le médecin en charge de votre patient – moyennant une
autorisation préalable explicite du patient". Every change is ONE call into workflows/documents.py, which brings the
deliveries concerned up to date in the same transaction and leaves the transition log and audit trail; a refusal
re-renders the page with the reason beside the form that was sent (403/409/422) and writes nothing. Clinicians read
the documents themselves in the DPI: these pages never serve, embed or link to a PDF.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from zoneinfo import ZoneInfo

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext

from models import Delivery, Designation, Document, DocumentStatus, Patient, Physician, Role, Specialty, Stay, StayKind
from security.permissions import can_record_designations
from workflows import DELIVERY, Actor, DeliveryState, Reason, TransitionRefused, documents
from workflows.engine import N_

from .auth import permission_required
from .errors import handle_transition_refused, status_for
from .templating import role_label

bp = Blueprint("clinic", __name__, url_prefix="/clinique")

ZONE = ZoneInfo("Europe/Zurich")
SEARCH_LIMIT = 50  # rows a search shows; one more is read to say that there are more
SEARCH_MAX = 200  # characters of a search
NOTE_MAX = 1000  # characters of a manual send's note; the textarea says so too

S = DeliveryState
STATE_LABELS = {
    S.NEW: lazy_gettext("(creation)"),
    S.FINALIZED: lazy_gettext("Finalized"),
    S.COMMUNICABLE: lazy_gettext("Communicable"),
    S.CONSENTED: lazy_gettext("Consented, waiting for an active account"),
    S.AVAILABLE: lazy_gettext("Available in myHUG"),
    S.NOTIFIED: lazy_gettext("Available, physician notified"),
    S.CONSULTED: lazy_gettext("Opened by the physician"),
    S.WITHHELD: lazy_gettext("Withheld"),
    S.REVOKED: lazy_gettext("Revoked"),
    "none": lazy_gettext("Not sent"),
}
REACHED = frozenset({S.AVAILABLE, S.NOTIFIED, S.CONSULTED})

# DESIGN §5 reason codes, with the very message ids of the delivery workflow's guards (one translation each).
REASON_TEXTS = {
    "not-final": N_("The document has not been finalized."),
    "revoked": N_("The document was recalled by the hospital."),
    "superseded": N_("A newer version of the document replaced it."),
    "not-communicable": N_("This type of document is not sent outside the hospital."),
    "not-designated": N_("The patient did not designate this physician for this stay."),
    "not-authorized": N_("The patient did not authorize sending documents electronically."),
    "no-account": N_("The physician has no myHUG account."),
    "account-inactive": N_("The physician's myHUG account is not active."),
    "notifications-off": N_("The physician turned e-mail notifications off."),
    "bounced": N_("E-mail to the physician bounced."),
}
# What a manual send can change: the patient's designation and authorization; nothing else.
MANUAL_SEND_HELPS = frozenset({"not-designated", "not-authorized"})

KIND_LABELS = {
    StayKind.INPATIENT: lazy_gettext("Hospital stay"),
    StayKind.AMBULATORY: lazy_gettext("Ambulatory care episode"),
}
DOCUMENT_STATUS_LABELS = {
    DocumentStatus.PRELIMINARY: lazy_gettext("Preliminary"),
    DocumentStatus.FINAL: lazy_gettext("Final"),
}
# Why a designation was revoked (workflows/documents.py records "withdrawn": a Consent made inactive or rejected by
# the DPI, or a withdrawal recorded here).
REVOCATION_LABELS = {"withdrawn": lazy_gettext("Withdrawn by the patient")}
ACCOUNT_LABELS = {
    "active": lazy_gettext("Active myHUG account"),
    "pending": lazy_gettext("myHUG account not activated yet"),
    "locked": lazy_gettext("myHUG account locked"),
    "disabled": lazy_gettext("myHUG account disabled"),
    None: lazy_gettext("No myHUG account"),
}

# Refusals of a form before the service layer sees it (nothing is written).
NO_PHYSICIAN = Reason("no-physician", N_("Choose the physician first."))
DESIGNATION_NOT_CONFIRMED = Reason(
    "not-confirmed", N_("Confirm that the patient designated this physician for this stay.")
)
WITHDRAWAL_NOT_CONFIRMED = Reason("not-confirmed", N_("Confirm that the patient withdrew it."))
AGREEMENT_MISSING = Reason(
    "agreement-missing", N_("A document is sent manually only with the patient's explicit agreement: confirm it.")
)
AGREEMENT_DATE_BAD = Reason("agreement-date", N_("Enter the date of the patient's agreement."))
AGREEMENT_DATE_FUTURE = Reason("agreement-date", N_("The date of the patient's agreement cannot be in the future."))


# -- labels -------------------------------------------------------------------------------------------------------
def _label(labels: dict, value) -> str:
    label = labels.get(value)
    return str(label) if label is not None else (value or "—")


def state_label(state: str | None) -> str:
    return _label(STATE_LABELS, state)


def reason_text(code: str | None) -> str:
    """A DESIGN §5 reason code in words, translated."""
    if not code:
        return ""
    text = REASON_TEXTS.get(code)
    return _(text) if text else code


def trigger_label(trigger: str) -> str:
    label = next((spec.label for spec in DELIVERY.transitions if spec.trigger == trigger), trigger)
    return _(label)


def kind_label(kind: str) -> str:
    return _label(KIND_LABELS, kind)


def account_label(state: str | None) -> str:
    return _label(ACCOUNT_LABELS, state)


def revocation_label(reason: str | None) -> str:
    return _label(REVOCATION_LABELS, reason) if reason else ""


def document_status_label(document: Document) -> str:
    if document.recalled_at is not None:
        return _("Recalled")
    if document.superseded_at is not None:
        return _("Replaced by a newer version")
    return _label(DOCUMENT_STATUS_LABELS, document.status)


@bp.context_processor
def _helpers() -> dict:
    """What every clinic template (and the macros it imports with context) may call."""
    return dict(
        state_label=state_label,
        reason_text=reason_text,
        trigger_label=trigger_label,
        kind_label=kind_label,
        account_label=account_label,
        revocation_label=revocation_label,
        document_status_label=document_status_label,
        role_label=role_label,
    )


# -- helpers of the views -----------------------------------------------------------------------------------------
def _or_404(row):
    if row is None:
        abort(404)
    return row


def _clinician() -> Actor:
    return Actor(Role.CLINICIAN, g.account.id, ip=request.remote_addr)


def _search_text() -> str:
    return request.args.get("q", "").strip()[:SEARCH_MAX]


def _specialties() -> list[Specialty]:
    return list(Specialty.select().order_by(Specialty.name_fr))


def _chosen_physician(value: str | None) -> Physician | None:
    """The physician a form or a link names by public id: None when none is named, 404 when it names nobody."""
    if not value:
        return None
    return _or_404(Physician.by_public_id(value))


def _physician_from_form() -> Physician:
    physician = Physician.by_public_id(request.form.get("physician", ""))
    if physician is None:
        raise TransitionRefused(NO_PHYSICIAN)
    return physician


def _today() -> dt.date:
    return dt.datetime.now(ZONE).date()


# -- finding a patient --------------------------------------------------------------------------------------------
@bp.get("")
@permission_required(can_record_designations)
def index():
    text = _search_text()
    rows = list(Patient.search(text, limit=SEARCH_LIMIT + 1)) if text else []
    return render_template(
        "clinic/index.html", text=text, patients=rows[:SEARCH_LIMIT], more=len(rows) > SEARCH_LIMIT, limit=SEARCH_LIMIT
    )


# -- a patient: stays, designations, documents --------------------------------------------------------------------
def _stays_overview(stays: list[Stay]) -> dict:
    """What the patient and stay pages show of stays, in a constant number of queries whatever their number."""
    ids = [stay.id for stay in stays]
    designations, stay_documents = defaultdict(list), defaultdict(list)
    for designation in Designation.of_stays(ids):
        designations[designation.stay_id].append(designation)
    for document in Document.of_stays(ids):
        stay_documents[document.stay_id].append(document)
    physicians = {d.physician_id for rows in designations.values() for d in rows}
    return dict(
        designations=designations,
        documents=stay_documents,
        specialties=Physician.specialties_of(physicians),
        account_states=Physician.account_states(physicians),
    )


@bp.get("/patients/<public_id>")
@permission_required(can_record_designations)
def patient(public_id: str):
    patient = _or_404(Patient.by_public_id(public_id))
    stays = list(Stay.of_patient(patient.id))
    return render_template("clinic/patient.html", patient=patient, stays=stays, **_stays_overview(stays))


# -- a stay: record or revoke a designation ------------------------------------------------------------------------
def _render_stay(stay: Stay, refusal: dict | None = None, status: int = 200):
    if refusal is not None:  # the record form again with what was sent; a withdrawal refused: the stay as it is
        recording = refusal["active"] != "no" and refusal["withdraw"] != "yes"
        chosen = Physician.by_public_id(refusal["physician"]) if recording else None
    else:
        chosen = _chosen_physician(request.args.get("medecin"))
    overview = _stays_overview([stay])
    current = Designation.current(stay.id, chosen.id) if chosen else None
    chosen_extra = (
        dict(
            chosen_specialties=Physician.specialties_of([chosen.id])[chosen.id],
            chosen_account=Physician.account_states([chosen.id]).get(chosen.id),
        )
        if chosen
        else {}
    )
    page = render_template(
        "clinic/stay.html",
        stay=stay,
        patient=stay.patient,
        chosen=chosen,
        current=current,
        refusal=refusal,
        all_specialties=_specialties(),
        **chosen_extra,
        **overview,
    )
    return page, status


@bp.get("/sejours/<public_id>")
@permission_required(can_record_designations)
def stay(public_id: str):
    return _render_stay(_or_404(Stay.by_public_id(public_id)))


@bp.post("/sejours/<public_id>/designations")
@permission_required(can_record_designations)
def designation(public_id: str):
    """Record (active=yes) or revoke (active=no) the designation of one physician for this stay, with or without the
    authorization to send electronically; the service layer releases or revokes the stay's deliveries."""
    stay = _or_404(Stay.by_public_id(public_id))
    physician = _physician_from_form()
    active = request.form.get("active", "yes") != "no"
    authorized = active and request.form.get("authorized") == "yes"
    if request.form.get("confirm") != "yes":
        withdrawing = not active or request.form.get("withdraw") == "yes"
        raise TransitionRefused(WITHDRAWAL_NOT_CONFIRMED if withdrawing else DESIGNATION_NOT_CONFIRMED)
    documents.record_designation(
        stay=stay, physician=physician, authorized=authorized, active=active, source="clinic", actor=_clinician()
    )
    name = physician.display_name
    if not active:
        message = _(
            "The designation of %(name)s for this stay is revoked: documents of the stay no longer reach them.",
            name=name,
        )
    elif authorized:
        message = _(
            "%(name)s is designated for this stay, with the authorization to send documents electronically.",
            name=name,
        )
    else:
        message = _(
            "%(name)s is designated for this stay, without the authorization to send documents electronically: "
            "no document will reach them.",
            name=name,
        )
    flash(message, "success")
    return redirect(url_for(".stay", public_id=stay.public_id), 303)


# -- the physician directory --------------------------------------------------------------------------------------
@bp.get("/medecins")
@permission_required(can_record_designations)
def physicians():
    """Physicians by name, GLN and specialty, with their specialties and whether their myHUG account is active.

    Reached from a stay (`sejour`) or a document (`document`), each result links back there to be chosen."""
    text = _search_text()
    specialty = request.args.get("specialite", "").strip()[:64] or None
    for_stay = _or_404(Stay.by_public_id(request.args["sejour"])) if request.args.get("sejour") else None
    for_document = _or_404(Document.by_public_id(request.args["document"])) if request.args.get("document") else None
    searched = bool(text or specialty)
    rows = list(Physician.search(text, specialty, limit=SEARCH_LIMIT + 1)) if searched else []
    shown = rows[:SEARCH_LIMIT]
    return render_template(
        "clinic/physicians.html",
        text=text,
        specialty=specialty,
        all_specialties=_specialties(),
        searched=searched,
        physicians=shown,
        physician_specialties=Physician.specialties_of(p.id for p in shown),
        more=len(rows) > SEARCH_LIMIT,
        limit=SEARCH_LIMIT,
        for_stay=for_stay,
        for_document=for_document,
    )


# -- a document: its recipients, the explainer, the manual send ------------------------------------------------------
def _recipients(document: Document) -> list[dict]:
    """One row per recipient from the service layer, with the physician, the delivery and its history."""
    statuses = documents.delivery_status(document)
    physicians = Physician.by_glns(s.gln for s in statuses)
    deliveries = {d.physician.gln: d for d in Delivery.of_document(document.id)}
    history = defaultdict(list)
    for log in Delivery.history(d.id for d in deliveries.values()):
        history[log.object_id].append(log)
    rows = []
    for status in statuses:
        delivery = deliveries.get(status.gln)
        rows.append(
            dict(
                gln=status.gln,
                physician=physicians.get(status.gln),
                state=status.state,
                reason=status.reason,
                delivery=delivery,
                history=history.get(delivery.id, []) if delivery else [],
            )
        )
    return rows


def _explanation(document: Document, physician: Physician, recipients: list[dict]) -> dict:
    """The first unmet rule for this physician (None: it reached them), and their delivery if there is one."""
    reason = documents.explain(document, physician)
    delivery = next((r["delivery"] for r in recipients if r["gln"] == physician.gln), None)
    return dict(
        reason=reason,
        delivery=delivery,
        reached=delivery is not None and delivery.state in REACHED,
        manual_send_helps=reason is not None and reason.code in MANUAL_SEND_HELPS,
        specialties=Physician.specialties_of([physician.id])[physician.id],
        account_state=Physician.account_states([physician.id]).get(physician.id),
    )


def _render_document(document: Document, chosen: Physician | None, refusal: dict | None = None, status: int = 200):
    recipients = _recipients(document)
    return (
        render_template(
            "clinic/document.html",
            document=document,
            recipients=recipients,
            chosen=chosen,
            explanation=_explanation(document, chosen, recipients) if chosen else None,
            previous=document.replaces,
            newer=Document.newer_version(document.id),
            all_specialties=_specialties(),
            refusal=refusal,
            today=_today(),
            note_max=NOTE_MAX,
        ),
        status,
    )


@bp.get("/documents/<public_id>")
@permission_required(can_record_designations)
def document(public_id: str):
    document = _or_404(Document.by_public_id(public_id))
    return _render_document(document, _chosen_physician(request.args.get("medecin")))


def _agreed_at() -> dt.datetime:
    """The day the patient agreed (today by default, never in the future), as the start of that day in Geneva."""
    if request.form.get("agreed") != "yes":
        raise TransitionRefused(AGREEMENT_MISSING)
    text = request.form.get("agreed_on", "").strip()
    try:
        day = dt.date.fromisoformat(text) if text else _today()
    except ValueError:
        raise TransitionRefused(AGREEMENT_DATE_BAD) from None
    if day > _today():
        raise TransitionRefused(AGREEMENT_DATE_FUTURE)
    return dt.datetime.combine(day, dt.time(), ZONE).astimezone(dt.UTC).replace(tzinfo=None)


@bp.post("/documents/<public_id>/envoi-manuel")
@permission_required(can_record_designations)
def manual_send(public_id: str):
    """The patient explicitly agreed that this document goes to this physician: recorded, and the delivery created or
    reinstated and advanced as far as it goes."""
    document = _or_404(Document.by_public_id(public_id))
    physician = _physician_from_form()
    agreed_at = _agreed_at()
    note = request.form.get("note", "").strip()[:NOTE_MAX]
    delivery = documents.authorize_manual_send(
        document=document, physician=physician, patient_agreed_at=agreed_at, note=note, actor=_clinician()
    )
    name = physician.display_name
    if delivery.state in REACHED:
        flash(_("The document is now available to %(name)s in myHUG.", name=name), "success")
    elif delivery.state == S.CONSENTED:
        flash(
            _(
                "The manual send is recorded: the document will reach %(name)s as soon as their myHUG account is "
                "active.",
                name=name,
            ),
            "success",
        )
    else:
        reason = documents.explain(document, physician)
        flash(
            _(
                "The manual send is recorded, but the document cannot reach %(name)s: %(reason)s",
                name=name,
                reason=_(reason.text) if reason else state_label(delivery.state),
            ),
            "error",
        )
    return redirect(url_for(".document", public_id=document.public_id, medecin=physician.public_id), 303)


# -- refusals -------------------------------------------------------------------------------------------------------
@bp.errorhandler(TransitionRefused)
def refused(refusal: TransitionRefused):
    """A refused form: its page again, with the reason beside the form that was sent (403/409/422), and what was
    typed kept. Nothing was written: the service layer runs each change in one transaction."""
    values = request.view_args or {}
    status = status_for(refusal)
    if g.get("account") is None or request.method != "POST":
        return handle_transition_refused(refusal)
    shown = dict(
        form=request.endpoint.rpartition(".")[2],
        physician=request.form.get("physician", ""),
        active=request.form.get("active", "yes"),
        withdraw=request.form.get("withdraw", ""),
        message=_(refusal.reason.text),
        kept={k: request.form.get(k, "") for k in ("authorized", "agreed", "agreed_on", "note")},
    )
    if request.endpoint == "clinic.designation":
        stay = Stay.by_public_id(values.get("public_id", ""))
        if stay is not None:
            return _render_stay(stay, shown, status)
    if request.endpoint == "clinic.manual_send":
        document = Document.by_public_id(values.get("public_id", ""))
        if document is not None:
            chosen = Physician.by_public_id(request.form.get("physician", ""))
            return _render_document(document, chosen, shown, status)
    return handle_transition_refused(refusal)
