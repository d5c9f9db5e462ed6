"""The delivery workflow (DESIGN §4.2): each guard refused with its §5 reason code and honoured, and advance().

Which role may fire what from which state is tested once for all workflows in test_transition_tables.py.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from models import (
    Account,
    AuditEvent,
    Delivery,
    Designation,
    Document,
    DocumentStatus,
    NotificationMode,
    Role,
    TransitionLog,
    utcnow,
)
from models.documents import SEED_DOCUMENT_TYPES
from security import audit
from security.passwords import hash_password
from tests.conftest import statements
from workflows import ACCOUNT, DELIVERY, SYSTEM, Actor, TransitionRefused, available_actions, engine, may
from workflows.delivery import advance

from .conftest import DISCHARGE_SUMMARY, PROGRESS_NOTE

DPI = Actor(Role.DPI)


# -- helpers ---------------------------------------------------------------------------------------------------
def _stored(delivery: Delivery) -> Delivery:
    return Delivery.get_by_id(delivery.id)


def _log(delivery: Delivery) -> list[TransitionLog]:
    where = (TransitionLog.workflow == "delivery") & (TransitionLog.object_id == delivery.id)
    return list(TransitionLog.select().where(where).order_by(TransitionLog.id))


def _triggers(delivery: Delivery) -> list[str]:
    return [log.trigger for log in _log(delivery)]


def _fire_all(delivery: Delivery, *triggers: str, actor=SYSTEM) -> Delivery:
    for trigger in triggers:
        engine.fire(DELIVERY, delivery, trigger, actor)
    return delivery


def _withdraw(row) -> None:
    """The patient withdraws a designation, or a manual authorization is withdrawn."""
    type(row).update(revoked_at=utcnow()).where(type(row).id == row.id).execute()


def _activate_through_the_workflow(account: Account) -> None:
    """What the physician's first login does: a permanent password, then `activate` as the holder."""
    Account.update(password_hash=hash_password("correct horse battery staple"), password_is_temporary=False).where(
        Account.id == account.id
    ).execute()
    engine.fire(ACCOUNT, Account.get_by_id(account.id), "activate", Actor(Role.PHYSICIAN, account.id))


@pytest.fixture
def world(make_stay, make_document, designate, authorize_manually, make_physician, recipient, make_delivery):
    """The factories in one place, for the parametrized arrangements below."""
    return SimpleNamespace(
        make_stay=make_stay,
        make_document=make_document,
        designate=designate,
        authorize_manually=authorize_manually,
        make_physician=make_physician,
        recipient=recipient,
        make_delivery=make_delivery,
    )


@pytest.fixture
def sent(world):
    """sent(authorized=True, account='active', loinc=…, **physician fields) → a `finalized` delivery.

    A final document of one stay, for a physician the patient designated for that stay; `account=None` means the
    physician has no myHUG account yet.
    """

    def make(*, authorized=True, account="active", loinc=DISCHARGE_SUMMARY, **physician_fields) -> Delivery:
        if account is None:
            physician = world.make_physician(**physician_fields)
        else:
            physician, _account = world.recipient(state=account, **physician_fields)
        stay = world.make_stay()
        world.designate(stay, physician, authorized=authorized)
        return world.make_delivery(world.make_document(stay, loinc=loinc), physician)

    return make


# -- create: a final, current document for a recipient known for this stay ------------------------------------
def preliminary(w, physician):
    stay = w.make_stay()
    w.designate(stay, physician)
    return w.make_document(stay, status=DocumentStatus.PRELIMINARY)


def superseded(w, physician):
    stay = w.make_stay()
    w.designate(stay, physician)
    return w.make_document(stay, superseded_at=utcnow())


def recalled(w, physician):
    stay = w.make_stay()
    w.designate(stay, physician)
    return w.make_document(stay, recalled_at=utcnow())


def nobody_designated(w, physician):
    return w.make_document()


def another_physician_designated(w, physician):
    stay = w.make_stay()
    w.designate(stay, w.make_physician())
    return w.make_document(stay)


def designated_for_another_stay_of_the_patient(w, physician):
    earlier = w.make_stay()
    w.designate(earlier, physician)
    return w.make_document(w.make_stay(patient=earlier.patient))


def designation_withdrawn(w, physician):
    stay = w.make_stay()
    _withdraw(w.designate(stay, physician))
    return w.make_document(stay)


def manual_authorization_for_another_document(w, physician):
    stay = w.make_stay()
    w.authorize_manually(w.make_document(stay), physician)
    return w.make_document(stay)


def manual_authorization_for_another_physician(w, physician):
    document = w.make_document()
    w.authorize_manually(document, w.make_physician())
    return document


def manual_authorization_withdrawn(w, physician):
    document = w.make_document()
    _withdraw(w.authorize_manually(document, physician))
    return document


@pytest.mark.parametrize(
    ("arrange", "code"),
    [
        (preliminary, "not-final"),
        (superseded, "superseded"),
        (recalled, "revoked"),
        (nobody_designated, "not-designated"),
        (another_physician_designated, "not-designated"),
        (designated_for_another_stay_of_the_patient, "not-designated"),
        (designation_withdrawn, "not-designated"),
        (manual_authorization_for_another_document, "not-designated"),
        (manual_authorization_for_another_physician, "not-designated"),
        (manual_authorization_withdrawn, "not-designated"),
    ],
)
@pytest.mark.parametrize("actor", [SYSTEM, DPI], ids=["system", "dpi"])
def test_create_refused(world, refused, arrange, code, actor):
    physician, _account = world.recipient()
    document = arrange(world, physician)
    delivery = Delivery(document=document, physician=physician)
    with refused(delivery, code):
        engine.create(DELIVERY, delivery, "create", actor)


def designated_and_authorized(w, physician):
    stay = w.make_stay()
    w.designate(stay, physician, authorized=True)
    return w.make_document(stay)


def designated_without_authorization(w, physician):
    stay = w.make_stay()
    w.designate(stay, physician, authorized=False)
    return w.make_document(stay)


def manually_authorized(w, physician):
    document = w.make_document()
    w.authorize_manually(document, physician)
    return document


@pytest.mark.parametrize("arrange", [designated_and_authorized, designated_without_authorization, manually_authorized])
def test_create_for_a_recipient_known_for_the_stay(world, arrange):
    physician, _account = world.recipient()
    document = arrange(world, physician)

    delivery = world.make_delivery(document, physician, DPI)

    stored = _stored(delivery)
    assert (stored.state, stored.version, stored.document_id, stored.physician_id) == (
        "finalized",
        1,
        document.id,
        physician.id,
    )
    assert _triggers(delivery) == ["create"]


# -- classify / withhold / release: by document type -----------------------------------------------------------
@pytest.mark.parametrize(("loinc", "communicable"), [(t[0], t[3]) for t in SEED_DOCUMENT_TYPES])
def test_the_document_type_decides_between_communicable_and_withheld(sent, refused, loinc, communicable):
    delivery = sent(loinc=loinc)
    right, wrong = ("classify", "withhold") if communicable else ("withhold", "classify")
    with refused(delivery, "communicable" if communicable else "not-communicable"):
        engine.fire(DELIVERY, delivery, wrong, SYSTEM)

    engine.fire(DELIVERY, delivery, right, SYSTEM)

    assert _stored(delivery).state == ("communicable" if communicable else "withheld")


def test_release_once_the_administrator_makes_the_type_communicable(sent, refused, set_communicable):
    delivery = _fire_all(sent(loinc=PROGRESS_NOTE), "withhold")
    with refused(delivery, "not-communicable"):
        engine.fire(DELIVERY, delivery, "release", SYSTEM)

    set_communicable(PROGRESS_NOTE, True)
    engine.fire(DELIVERY, Delivery.get_by_id(delivery.id), "release", SYSTEM)

    assert _stored(delivery).state == "communicable"


@pytest.mark.parametrize(("field", "code"), [("recalled_at", "revoked"), ("superseded_at", "superseded")])
def test_release_refused_for_a_document_no_longer_current(sent, refused, set_communicable, field, code):
    delivery = _fire_all(sent(loinc=PROGRESS_NOTE), "withhold")
    Document.update({field: utcnow()}).where(Document.id == delivery.document_id).execute()
    set_communicable(PROGRESS_NOTE, True)
    delivery = Delivery.get_by_id(delivery.id)
    with refused(delivery, code):
        engine.fire(DELIVERY, delivery, "release", SYSTEM)


# -- consent: designated and authorized, or a manual send ------------------------------------------------------
def test_consent_refused_without_authorization(sent, refused):
    delivery = _fire_all(sent(authorized=False), "classify")
    with refused(delivery, "not-authorized"):
        engine.fire(DELIVERY, delivery, "consent", SYSTEM)


def test_consent_refused_once_the_designation_is_withdrawn(sent, refused):
    delivery = _fire_all(sent(), "classify")
    _withdraw(Designation.get(Designation.physician == delivery.physician_id))
    with refused(delivery, "not-designated"):
        engine.fire(DELIVERY, delivery, "consent", SYSTEM)


@pytest.mark.parametrize("designation", [None, "unauthorized"])
def test_consent_with_a_manual_authorization(world, designation):
    physician, _account = world.recipient()
    stay = world.make_stay()
    if designation:
        world.designate(stay, physician, authorized=False)
    document = world.make_document(stay)
    world.authorize_manually(document, physician)
    delivery = _fire_all(world.make_delivery(document, physician), "classify")

    engine.fire(DELIVERY, delivery, "consent", SYSTEM)

    assert _stored(delivery).state == "consented"


def test_consent_when_designated_and_authorized(sent):
    delivery = _fire_all(sent(), "classify", "consent")
    assert _stored(delivery).state == "consented"


# -- make_available: an active account -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("account", "code"),
    [
        (None, "no-account"),
        ("pending", "account-inactive"),
        ("locked", "account-inactive"),
        ("disabled", "account-inactive"),
    ],
)
def test_make_available_refused_without_an_active_account(sent, refused, account, code):
    delivery = _fire_all(sent(account=account), "classify", "consent")
    with refused(delivery, code):
        engine.fire(DELIVERY, delivery, "make_available", SYSTEM)
    assert may(DELIVERY, delivery, "make_available", SYSTEM).code == code


def test_make_available_puts_it_in_mes_documents(sent, frozen_now):
    delivery = _fire_all(sent(), "classify", "consent", "make_available")
    stored = _stored(delivery)
    assert (stored.state, stored.available_at) == ("available", frozen_now)
    assert list(Delivery.visible_to(stored.physician_id)) == [stored]


# -- notify: according to the physician's preference -----------------------------------------------------------
@pytest.mark.parametrize(
    ("preference", "code"),
    [({"notification_mode": NotificationMode.NONE}, "notifications-off"), ({"email_bounced_at": "bounced"}, "bounced")],
    ids=["no-email", "bounced"],
)
def test_notify_refused_when_no_email_can_be_sent(sent, refused, preference, code):
    if preference.get("email_bounced_at"):
        preference = {"email_bounced_at": utcnow()}
    delivery = _fire_all(sent(**preference), "classify", "consent", "make_available")
    with refused(delivery, code):
        engine.fire(DELIVERY, delivery, "notify", SYSTEM)
    assert _stored(delivery).state == "available"  # still in "Mes documents"


@pytest.mark.parametrize("mode", [NotificationMode.EACH, NotificationMode.DIGEST])
def test_notify_stamps_the_notification(sent, frozen_now, mode):
    delivery = _fire_all(sent(notification_mode=mode), "classify", "consent", "make_available", "notify")
    assert (_stored(delivery).state, _stored(delivery).notified_at) == ("notified", frozen_now)


# -- consult: the recipient only ---------------------------------------------------------------------------------
@pytest.mark.parametrize("notified", [False, True])
def test_the_recipient_consults(sent, frozen_now, notified):
    delivery = _fire_all(sent(), "classify", "consent", "make_available", *(["notify"] if notified else []))
    holder = Account.get(Account.physician == delivery.physician_id)

    engine.fire(DELIVERY, delivery, "consult", Actor(Role.PHYSICIAN, holder.id))

    stored = _stored(delivery)
    assert (stored.state, stored.consulted_at) == ("consulted", frozen_now)
    assert (_log(delivery)[-1].trigger, _log(delivery)[-1].actor_id) == ("consult", holder.id)


def test_another_physician_cannot_consult(sent, recipient, refused):
    delivery = _fire_all(sent(), "classify", "consent", "make_available")
    _other, other_account = recipient()
    for actor in (Actor(Role.PHYSICIAN, other_account.id), Actor(Role.PHYSICIAN, None)):
        with refused(delivery, "forbidden"):
            engine.fire(DELIVERY, delivery, "consult", actor)
        action = {a.trigger: a for a in available_actions(DELIVERY, delivery, actor)}["consult"]
        assert not action.allowed and action.reason.code == "forbidden"


# -- revoke / reinstate ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reason", [None, "", "changed my mind", "notifications-off", "not-final"])
def test_revoke_needs_a_known_reason(sent, refused, reason):
    delivery = _fire_all(sent(), "classify", "consent", "make_available")
    with refused(delivery, "bad-reason"):
        engine.fire(DELIVERY, delivery, "revoke", SYSTEM, reason=reason)


@pytest.mark.parametrize("reason", ["revoked", "superseded", "not-designated", "not-authorized"])
@pytest.mark.parametrize("actor", [SYSTEM, DPI], ids=["system", "dpi"])
def test_revoke_records_its_reason(sent, reason, actor):
    delivery = _fire_all(sent(), "classify", "consent", "make_available")

    engine.fire(DELIVERY, delivery, "revoke", actor, reason=reason)

    stored = _stored(delivery)
    assert (stored.state, stored.revoked_reason) == ("revoked", reason)
    event = AuditEvent.select().where(AuditEvent.action == "delivery.revoke").get()
    assert f'"reason":"{reason}"' in event.details
    assert list(Delivery.visible_to(stored.physician_id)) == []


def test_a_withheld_delivery_can_be_revoked(sent):
    delivery = _fire_all(sent(loinc=PROGRESS_NOTE), "withhold")
    engine.fire(DELIVERY, delivery, "revoke", SYSTEM, reason="superseded")
    assert _stored(delivery).state == "revoked"


@pytest.mark.parametrize("reason", ["not-designated", "not-authorized"])
def test_a_consent_revocation_can_be_reinstated(sent, reason):
    delivery = _fire_all(sent(), "classify", "consent")
    engine.fire(DELIVERY, delivery, "revoke", SYSTEM, reason=reason)

    engine.fire(DELIVERY, delivery, "reinstate", SYSTEM)

    assert (_stored(delivery).state, _stored(delivery).revoked_reason) == ("finalized", None)


@pytest.mark.parametrize("reason", ["superseded", "revoked"])
def test_a_recall_or_supersession_is_for_good(sent, refused, reason):
    delivery = _fire_all(sent(), "classify", "consent", "make_available")
    engine.fire(DELIVERY, delivery, "revoke", SYSTEM, reason=reason)
    with refused(delivery, reason):
        engine.fire(DELIVERY, delivery, "reinstate", SYSTEM)
    assert advance(delivery).state == "revoked"


def test_reinstate_refused_while_the_designation_is_still_withdrawn(sent, refused):
    delivery = _fire_all(sent(), "classify", "consent")
    _withdraw(Designation.get(Designation.physician == delivery.physician_id))
    engine.fire(DELIVERY, delivery, "revoke", SYSTEM, reason="not-designated")
    with refused(delivery, "not-designated"):
        engine.fire(DELIVERY, delivery, "reinstate", SYSTEM)


@pytest.mark.parametrize(("field", "code"), [("recalled_at", "revoked"), ("superseded_at", "superseded")])
def test_reinstate_refused_once_the_document_is_no_longer_current(sent, refused, field, code):
    delivery = _fire_all(sent(), "classify", "consent")
    engine.fire(DELIVERY, delivery, "revoke", SYSTEM, reason="not-authorized")
    Document.update({field: utcnow()}).where(Document.id == delivery.document_id).execute()
    delivery = Delivery.get_by_id(delivery.id)
    with refused(delivery, code):
        engine.fire(DELIVERY, delivery, "reinstate", SYSTEM)


# -- advance(): every automatic step whose guard holds, then stop and say why ------------------------------------
def test_advance_takes_a_designated_authorized_document_to_an_active_physician(sent):
    delivery = sent()
    events = AuditEvent.select().count()

    advance(delivery)

    stored = _stored(delivery)
    assert (stored.state, stored.version) == ("available", 4)
    assert _triggers(delivery) == ["create", "classify", "consent", "make_available"]
    logs = _log(delivery)
    assert [(log.source, log.dest) for log in logs] == [
        ("new", "finalized"),
        ("finalized", "communicable"),
        ("communicable", "consented"),
        ("consented", "available"),
    ]
    assert all(log.actor_role == "system" for log in logs[1:])
    assert AuditEvent.select().count() == events + 3
    assert audit.verify().ok


def test_advance_writes_the_delivery_once_for_several_steps(sent, database):
    """new → available is three automatic steps after the creation, persisted as ONE compare-and-set UPDATE of
    the delivery (each step keeps its own log row and audit event)."""
    delivery = sent()
    with statements() as seen:
        advance(delivery)
    updates = [sql for sql in seen if sql.startswith('UPDATE "delivery"')]
    assert len(updates) == 1 and '("delivery"."version" = ' in updates[0]  # from the version it was read at
    assert (_stored(delivery).state, _stored(delivery).version) == ("available", 4)


def test_advance_of_a_stale_row_writes_nothing(sent):
    delivery = sent()
    stale = Delivery.get_by_id(delivery.id)
    advance(delivery)
    counts = (TransitionLog.select().count(), AuditEvent.select().count())

    assert advance(stale).state == "finalized"  # the conflict is absorbed: another advance already did the work
    assert stale.state == "finalized"  # the row in memory is not left half-way along the chain
    assert (TransitionLog.select().count(), AuditEvent.select().count()) == counts
    assert _stored(delivery).state == "available"
    assert audit.verify().ok


def test_advance_is_idempotent(sent):
    delivery = advance(sent())
    before = (_stored(delivery).version, TransitionLog.select().count(), AuditEvent.select().count())
    advance(delivery)
    assert before == (_stored(delivery).version, TransitionLog.select().count(), AuditEvent.select().count())


@pytest.mark.parametrize(
    ("situation", "stops_at", "waits_for", "code"),
    [
        ({"authorized": False}, "communicable", "consent", "not-authorized"),
        ({"account": None}, "consented", "make_available", "no-account"),
        ({"account": "pending"}, "consented", "make_available", "account-inactive"),
        ({"account": "locked"}, "consented", "make_available", "account-inactive"),
        ({"loinc": PROGRESS_NOTE}, "withheld", "release", "not-communicable"),
    ],
    ids=["not-authorized", "no-account", "account-pending", "account-locked", "not-communicable"],
)
def test_advance_stops_where_a_fact_is_missing_and_names_it(sent, situation, stops_at, waits_for, code):
    delivery = advance(sent(**situation))
    assert _stored(delivery).state == stops_at
    assert may(DELIVERY, delivery, waits_for, SYSTEM).code == code
    assert list(Delivery.visible_to(delivery.physician_id)) == []


def test_advance_continues_once_the_patient_authorizes(sent):
    delivery = advance(sent(authorized=False))
    Designation.update(authorized=True).where(Designation.physician == delivery.physician_id).execute()

    advance(delivery)

    assert _stored(delivery).state == "available"


def test_advance_continues_once_the_account_is_activated(sent):
    delivery = advance(sent(account="pending"))
    assert _stored(delivery).state == "consented"
    _activate_through_the_workflow(Account.get(Account.physician == delivery.physician_id))

    advance(delivery)

    assert _stored(delivery).state == "available"
    assert _triggers(delivery)[-1] == "make_available"


def test_advance_releases_a_withheld_document_once_its_type_is_communicable(sent, set_communicable):
    delivery = advance(sent(loinc=PROGRESS_NOTE))
    set_communicable(PROGRESS_NOTE, True)

    advance(Delivery.get_by_id(delivery.id))

    assert _stored(delivery).state == "available"
    assert _triggers(delivery)[1:] == ["withhold", "release", "consent", "make_available"]


def test_a_delivery_revoked_for_lack_of_authorization_returns_after_reauthorization(sent):
    delivery = advance(sent())
    designation = Designation.get(Designation.physician == delivery.physician_id)
    Designation.update(authorized=False).where(Designation.id == designation.id).execute()
    engine.fire(DELIVERY, delivery, "revoke", SYSTEM, reason="not-authorized")
    Designation.update(authorized=True).where(Designation.id == designation.id).execute()

    advance(delivery)

    stored = _stored(delivery)
    assert (stored.state, stored.revoked_reason) == ("available", None)
    assert _triggers(delivery)[-5:] == ["revoke", "reinstate", "classify", "consent", "make_available"]


def test_a_delivery_revoked_for_lack_of_authorization_stays_revoked_until_reauthorized(sent):
    delivery = advance(sent())
    Designation.update(authorized=False).where(Designation.physician == delivery.physician_id).execute()
    engine.fire(DELIVERY, delivery, "revoke", SYSTEM, reason="not-authorized")

    advance(delivery)

    assert (_stored(delivery).state, _stored(delivery).revoked_reason) == ("revoked", "not-authorized")


def recall(delivery):
    Document.update(recalled_at=utcnow()).where(Document.id == delivery.document_id).execute()


def supersede(delivery):
    Document.update(superseded_at=utcnow()).where(Document.id == delivery.document_id).execute()


def withdraw_designation(delivery):
    _withdraw(Designation.get(Designation.physician == delivery.physician_id))


@pytest.mark.parametrize("withdrawal", [recall, supersede, withdraw_designation])
def test_nothing_withdrawn_while_waiting_for_the_account_reaches_mes_documents(sent, withdrawal):
    delivery = advance(sent(account="pending"))
    withdrawal(delivery)
    _activate_through_the_workflow(Account.get(Account.physician == delivery.physician_id))

    advance(Delivery.get_by_id(delivery.id))

    assert list(Delivery.visible_to(delivery.physician_id)) == []


# -- Delivery.visible_to: "Mes documents" ------------------------------------------------------------------------
def test_visible_to_shows_only_the_physicians_own_deliveries_that_reached_their_space(world, recipient):
    physician, account = recipient()
    holder = Actor(Role.PHYSICIAN, account.id)

    def delivery(*, to=physician, authorized=True, loinc=DISCHARGE_SUMMARY):
        stay = world.make_stay()
        world.designate(stay, to, authorized=authorized)
        return advance(world.make_delivery(world.make_document(stay, loinc=loinc), to))

    available = delivery()
    notified = _fire_all(delivery(), "notify")
    consulted = _fire_all(delivery(), "consult", actor=holder)
    hidden = [
        delivery(authorized=False),  # communicable
        delivery(loinc=PROGRESS_NOTE),  # withheld
        engine.fire(DELIVERY, delivery(), "revoke", SYSTEM, reason="revoked"),
    ]
    other, _other_account = recipient(state="pending")
    consented = delivery(to=other)
    theirs = _fire_all(delivery(to=world.recipient()[0]), "notify")

    assert [_stored(d).state for d in hidden] == ["communicable", "withheld", "revoked"]
    assert _stored(consented).state == "consented"
    assert {d.id for d in Delivery.visible_to(physician.id)} == {available.id, notified.id, consulted.id}
    assert list(Delivery.visible_to(other.id)) == []
    assert {d.id for d in Delivery.visible_to(theirs.physician_id)} == {theirs.id}


# -- fire_many: one trigger on many rows, one write per table -------------------------------------------------------
def test_fire_many_notifies_every_row_in_one_update_with_a_log_row_and_event_each(sent, database):
    deliveries = [advance(sent()) for _ in range(3)]
    events, logs = AuditEvent.select().count(), TransitionLog.select().count()

    with statements() as seen:
        fired, refused = engine.fire_many(DELIVERY, deliveries, "notify", SYSTEM)

    assert len([sql for sql in seen if sql.startswith('UPDATE "delivery"')]) == 1
    assert len([sql for sql in seen if sql.startswith('INSERT INTO "transition_log"')]) == 1

    assert (len(fired), refused) == (3, [])
    stored = [_stored(d) for d in deliveries]
    assert [(d.state, d.version) for d in stored] == [("notified", 5)] * 3
    assert all(d.notified_at == d.state_changed_at for d in stored)
    assert [d.version for d in deliveries] == [5, 5, 5]  # the rows in memory follow
    assert (AuditEvent.select().count(), TransitionLog.select().count()) == (events + 3, logs + 3)
    assert audit.verify().ok


def test_fire_many_returns_the_rows_a_guard_refuses_and_leaves_them(sent):
    wants = advance(sent())
    silent = advance(sent(notification_mode=NotificationMode.NONE))

    fired, refused = engine.fire_many(DELIVERY, [wants, silent], "notify", SYSTEM)

    assert fired == [wants]
    assert [(row, reason.code) for row, reason in refused] == [(silent, "notifications-off")]
    assert (_stored(wants).state, _stored(silent).state) == ("notified", "available")


def test_fire_many_with_one_stale_row_writes_nothing(sent):
    deliveries = [advance(sent()) for _ in range(3)]
    stale = Delivery.get_by_id(deliveries[1].id)
    engine.fire(DELIVERY, deliveries[1], "notify", SYSTEM)  # someone else moved it meanwhile
    rows = [deliveries[0], stale, deliveries[2]]
    events = AuditEvent.select().count()

    with pytest.raises(TransitionRefused) as refused:
        engine.fire_many(DELIVERY, rows, "notify", SYSTEM)

    assert refused.value.reason.code == "conflict"
    assert [_stored(d).state for d in rows] == ["available", "notified", "available"]
    assert [d.state for d in rows] == ["available", "available", "available"]  # memory says what was written
    assert AuditEvent.select().count() == events
