"""The delivery workflow (DESIGN §4.2): one document on its way to one physician, advanced by system triggers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from enum import StrEnum

from models import Account, Delivery, Designation, DocumentStatus, ManualAuthorization, NotificationMode, Role

from . import engine
from .account import AccountState
from .engine import N_, SYSTEM, Reason, T, TransitionRefused, Workflow, input_guard


class DeliveryState(StrEnum):
    NEW = "new"  # not yet saved
    FINALIZED = "finalized"
    COMMUNICABLE = "communicable"
    CONSENTED = "consented"
    AVAILABLE = "available"
    NOTIFIED = "notified"
    CONSULTED = "consulted"
    WITHHELD = "withheld"
    REVOKED = "revoked"


S = DeliveryState
SYS, DPI, CLINICIAN, ADMIN, PHYSICIAN = Role.SYSTEM, Role.DPI, Role.CLINICIAN, Role.ADMINISTRATOR, Role.PHYSICIAN
LIVE = [S.FINALIZED, S.COMMUNICABLE, S.CONSENTED, S.AVAILABLE, S.NOTIFIED, S.CONSULTED, S.WITHHELD]

# Why a delivery was revoked (DESIGN §5 reason codes). Only the consent-related ones can be undone.
REVOCATION_REASONS = frozenset({"revoked", "superseded", "not-designated", "not-authorized"})
REINSTATABLE = frozenset({"not-designated", "not-authorized"})


# -- guards (each returns the DESIGN §5 reason code of the rule it checks) ----------------------------------
def document_is_final(flow) -> Reason | None:
    if flow.row.document.status != DocumentStatus.FINAL:
        return Reason("not-final", N_("The document has not been finalized."))
    return None


def document_is_current(flow) -> Reason | None:
    document = flow.row.document
    if document.recalled_at is not None:
        return Reason("revoked", N_("The document was recalled by the hospital."))
    if document.superseded_at is not None:
        return Reason("superseded", N_("A newer version of the document replaced it."))
    return None


def type_is_communicable(flow) -> Reason | None:
    if not flow.row.document.type.communicable:
        return Reason("not-communicable", N_("This type of document is not sent outside the hospital."))
    return None


def type_is_not_communicable(flow) -> Reason | None:
    if flow.row.document.type.communicable:
        return Reason("communicable", N_("This type of document is communicable."))
    return None


# The facts the guards look up (designation, manual authorization, account), kept for the duration of one update
# of one delivery (`memoized()`): the same guard runs in `may()`, in the firing and again at the next step, and
# no transition of a delivery changes those facts. Outside `memoized()` every guard reads the database.
_MISSING = object()
_memo: ContextVar[dict | None] = ContextVar("delivery_guard_memo", default=None)


@contextmanager
def memoized() -> Iterator[None]:
    """Look each guard fact up once while the block runs (nested blocks share the outermost one's lookups)."""
    if _memo.get() is not None:
        yield
        return
    token = _memo.set({})
    try:
        yield
    finally:
        _memo.reset(token)


def _lookup(key: tuple, load):
    memo = _memo.get()
    if memo is None:
        return load()
    found = memo.get(key, _MISSING)
    if found is _MISSING:
        found = memo[key] = load()
    return found


def remember_designations(stay_id: int, designations, *, no_manual_for: int | None = None) -> None:
    """Inside `memoized()`: the caller just read the stay's designations in force, so the guards need not read
    them again; `no_manual_for`: a document inserted by this transaction, which no manual send can refer to yet."""
    memo = _memo.get()
    if memo is None:
        return
    for designation in designations:
        memo[("designation", stay_id, designation.physician_id)] = designation
        if no_manual_for is not None:
            memo[("manual", no_manual_for, designation.physician_id)] = None


def _manual(flow):
    document_id, physician_id = flow.row.document_id, flow.row.physician_id
    return _lookup(
        ("manual", document_id, physician_id), lambda: ManualAuthorization.current(document_id, physician_id)
    )


def _designation(flow):
    stay_id, physician_id = flow.row.document.stay_id, flow.row.physician_id
    return _lookup(("designation", stay_id, physician_id), lambda: Designation.current(stay_id, physician_id))


def recipient_known_for_stay(flow) -> Reason | None:
    """The physician was designated for this stay (whatever the authorization), or a manual send was recorded."""
    designation = _designation(flow)
    if designation is None and _manual(flow) is None:
        return Reason("not-designated", N_("The patient did not designate this physician for this stay."))
    return None


def sending_authorized(flow) -> Reason | None:
    if _manual(flow) is not None:
        return None
    designation = _designation(flow)
    if designation is None:
        return Reason("not-designated", N_("The patient did not designate this physician for this stay."))
    if not designation.authorized:
        return Reason("not-authorized", N_("The patient did not authorize sending documents electronically."))
    return None


def recipient_account_active(flow) -> Reason | None:
    physician_id = flow.row.physician_id
    account = _lookup(("account", physician_id), lambda: Account.get_or_none(Account.physician == physician_id))
    if account is None:
        return Reason("no-account", N_("The physician has no myHUG account."))
    if account.state != AccountState.ACTIVE:
        return Reason("account-inactive", N_("The physician's myHUG account is not active."))
    return None


def notifications_wanted(flow) -> Reason | None:
    physician = flow.row.physician
    if physician.notification_mode == NotificationMode.NONE:
        return Reason("notifications-off", N_("The physician turned e-mail notifications off."))
    if physician.email_bounced_at is not None:
        return Reason("bounced", N_("E-mail to the physician bounced."))
    return None


def is_the_recipient(flow) -> Reason | None:
    account = Account.get_or_none(Account.id == flow.actor.account_id) if flow.actor.account_id else None
    if account is None or account.physician_id != flow.row.physician_id:
        return Reason("forbidden", N_("This document was not sent to you."))
    return None


@input_guard
def revocation_reason_known(flow) -> Reason | None:
    if flow.get("reason") not in REVOCATION_REASONS:
        return Reason("bad-reason", N_("Say why the delivery is revoked."))
    return None


def revocation_can_be_undone(flow) -> Reason | None:
    if flow.row.revoked_reason not in REINSTATABLE:
        return Reason(flow.row.revoked_reason or "revoked", N_("This delivery was revoked for good."))
    return None


# -- effects --------------------------------------------------------------------------------------------------
def stamp(field: str):
    def effect(flow) -> None:
        setattr(flow.row, field, flow.now)

    effect.__name__ = f"stamp_{field}"
    return effect


def record_revocation(flow) -> None:
    flow.row.revoked_reason = flow.get("reason")
    flow.audit_details["reason"] = flow.row.revoked_reason


def clear_revocation(flow) -> None:
    flow.row.revoked_reason = None


# -- the lifecycle as a table ---------------------------------------------------------------------------------
# fmt: off
TRANSITIONS = [
    T("create",         S.NEW,                  S.FINALIZED,    roles={SYS, DPI, CLINICIAN},
      guards=[document_is_final, document_is_current, recipient_known_for_stay], label=N_("Create the delivery")),
    T("classify",       S.FINALIZED,            S.COMMUNICABLE, roles={SYS},
      guards=[document_is_current, type_is_communicable], label=N_("Communicable type")),
    T("withhold",       S.FINALIZED,            S.WITHHELD,     roles={SYS},
      guards=[type_is_not_communicable], label=N_("Type not communicable")),
    T("release",        S.WITHHELD,             S.COMMUNICABLE, roles={SYS},
      guards=[document_is_current, type_is_communicable], label=N_("Type became communicable")),
    T("consent",        S.COMMUNICABLE,         S.CONSENTED,    roles={SYS},
      guards=[document_is_current, sending_authorized], label=N_("Designated and authorized")),
    # Everything is checked again before the document enters "Mes documents": a delivery may wait here for weeks.
    T("make_available", S.CONSENTED,            S.AVAILABLE,    roles={SYS},
      guards=[document_is_current, sending_authorized, recipient_account_active], effects=[stamp("available_at")],
      label=N_("Put in “Mes documents”")),
    T("notify",         S.AVAILABLE,            S.NOTIFIED,     roles={SYS},
      guards=[notifications_wanted], effects=[stamp("notified_at")], label=N_("Notified by e-mail")),
    T("consult",        [S.AVAILABLE, S.NOTIFIED], S.CONSULTED, roles={PHYSICIAN},
      guards=[is_the_recipient], effects=[stamp("consulted_at")], label=N_("Opened by the physician")),
    T("revoke",         LIVE,                   S.REVOKED,      roles={SYS, DPI, CLINICIAN, ADMIN},
      guards=[revocation_reason_known], effects=[record_revocation], label=N_("Revoke")),
    T("reinstate",      S.REVOKED,              S.FINALIZED,    roles={SYS},
      guards=[revocation_can_be_undone, document_is_final, document_is_current, sending_authorized],
      effects=[clear_revocation], label=N_("Reinstate")),
]
# fmt: on

DELIVERY = Workflow("delivery", Delivery, DeliveryState, TRANSITIONS, final=[])

# What the system fires on its own as soon as the guard holds ("nothing waits for a human but the human facts").
AUTOMATIC = ("reinstate", "classify", "withhold", "release", "consent", "make_available")
# From these states on, the patient's authorization is what keeps the delivery alive.
_NEEDS_CONSENT = {S.CONSENTED, S.AVAILABLE, S.NOTIFIED, S.CONSULTED}


def revocation_due(delivery: Delivery) -> Reason | None:
    """Why a live delivery must be revoked now (document recalled or replaced, consent withdrawn), or None."""
    if delivery.state not in LIVE:
        return None
    flow = engine.Flow(workflow=DELIVERY, row=delivery, actor=SYSTEM, data=None, state=delivery.state)
    reason = document_is_current(flow)
    if reason is None and delivery.state in _NEEDS_CONSENT:
        reason = sending_authorized(flow)
    return reason


def advance(delivery: Delivery, actor=SYSTEM) -> Delivery:
    """Bring a delivery up to date: revoke it if a fact it stood on is gone, else fire every automatic trigger
    whose guards hold, until it waits for a fact that is not there yet."""
    with memoized():
        return _advance(delivery, actor)


def _advance(delivery: Delivery, actor) -> Delivery:
    try:
        reason = revocation_due(delivery)
        if reason is not None:
            return engine.fire(DELIVERY, delivery, "revoke", actor, reason=reason.code)
        return engine.settle(DELIVERY, delivery, AUTOMATIC, actor)
    except TransitionRefused as refused:
        if refused.reason.code == engine.CONFLICT:
            return delivery  # someone else moved it meanwhile, and advanced it as they did
        raise
