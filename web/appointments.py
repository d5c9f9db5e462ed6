"""The desks' opening slots (seed: "prendre rendez-vous"): validators publish the times applicants may book.

Times are typed and shown in Geneva time and stored naive UTC (models.db.utcnow). A slot has a capacity; the
applicant books from their tracking page (web/enrol.py). A slot nobody holds can be withdrawn.
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask_babel import format_datetime, ngettext
from flask_babel import gettext as _

from models import Appointment, AppointmentSlot, Desk, utcnow
from models.enrollment import DESK_ZONE
from security.permissions import can_validate_applications

from .auth import permission_required
from .enrol import appointment_time, desk_label
from .trail import record_account_event

bp = Blueprint("appointments", __name__, url_prefix="/guichet/creneaux")

MAX_WEEKS = 26
MAX_SLOTS = 400  # per publication: a typo in the weeks or the length should not open thousands of slots
MAX_CAPACITY = 20
DEFAULTS = {
    "desk": Desk.AMG,
    "day": "",
    "start": "09:00",
    "end": "12:00",
    "length": "20",
    "capacity": "1",
    "weeks": "1",
}


def to_utc(day: dt.date, at: dt.time) -> dt.datetime:
    """A Geneva wall-clock time as stored: naive UTC."""
    return dt.datetime.combine(day, at, DESK_ZONE).astimezone(dt.UTC).replace(tzinfo=None)


def slot_times(day: dt.date, start: dt.time, end: dt.time, length: int | None, weeks: int):
    """(starts_at, ends_at) in UTC: from `start` to `end` on `day`, cut into `length`-minute slots (None: one slot),
    and the same on the same weekday for `weeks` weeks."""
    times = []
    for week in range(weeks):
        date = day + dt.timedelta(weeks=week)
        begin, finish = dt.datetime.combine(date, start), dt.datetime.combine(date, end)
        step = dt.timedelta(minutes=length) if length else finish - begin
        at = begin
        while at + step <= finish:
            times.append((to_utc(date, at.time()), to_utc(date, (at + step).time())))
            at += step
    return times


def clock(value: dt.datetime) -> str:
    """A stored time's hour in Geneva: 09:20."""
    return value.replace(tzinfo=dt.UTC).astimezone(DESK_ZONE).strftime("%H:%M")


def _read(form) -> tuple[dict, dict, list]:
    """(what was typed, an error per field, the slots to open)."""
    typed = {name: form.get(name, default).strip() for name, default in DEFAULTS.items()}
    errors: dict[str, str] = {}
    if typed["desk"] not in Desk.CHOICES:
        errors["desk"] = _("Choose a desk.")
    try:
        day = dt.date.fromisoformat(typed["day"])
    except ValueError:
        day = None
        errors["day"] = _("Enter a date.")
    start = end = None
    try:
        start, end = dt.time.fromisoformat(typed["start"]), dt.time.fromisoformat(typed["end"])
    except ValueError:
        errors["start"] = _("Enter the times as 09:00.")
    if start and end and end <= start:
        errors["end"] = _("The end must be after the start.")
    numbers = {}
    for name, low, high in (("length", 0, 240), ("capacity", 1, MAX_CAPACITY), ("weeks", 1, MAX_WEEKS)):
        try:
            numbers[name] = int(typed[name] or 0)
        except ValueError:
            numbers[name] = -1
        if not low <= numbers[name] <= high:
            errors[name] = _("Enter a number from %(low)d to %(high)d.", low=low, high=high)
    if errors:
        return typed, errors, []
    times = slot_times(day, start, end, numbers["length"] or None, numbers["weeks"])
    if not times:
        errors["length"] = _("The slots are longer than the opening.")
    elif len(times) > MAX_SLOTS:
        errors["weeks"] = _("That would open more than %(count)d slots at once.", count=MAX_SLOTS)
    elif times[0][0] <= utcnow():
        errors["day"] = _("The first slot must be in the future.")
    return typed, errors, times


def _page(typed: dict, errors: dict, status: int = 200):
    now = utcnow()
    slots = list(AppointmentSlot.upcoming(now))
    return (
        render_template(
            "appointments/index.html",
            slots=slots,
            bookings=Appointment.held_in([s.id for s in slots]),
            typed=typed,
            errors=errors,
            desks=[(d, desk_label(d)) for d in Desk.CHOICES],
            desk_label=desk_label,
            appointment_time=appointment_time,
            slot_time=lambda value: format_datetime(value, "EEE d MMM y, HH:mm"),
            clock=clock,
            today=dt.datetime.now(DESK_ZONE).date().isoformat(),
        ),
        status,
    )


@bp.get("")
@permission_required(can_validate_applications)
def index():
    return _page(dict(DEFAULTS), {})


@bp.post("")
@permission_required(can_validate_applications)
def publish():
    typed, errors, times = _read(request.form)
    if errors:
        return _page(typed, errors, 422)
    created = AppointmentSlot.publish(typed["desk"], times, int(typed["capacity"]), g.account)
    record_account_event("appointments.published", g.account, desk=typed["desk"], slots=created)
    message = ngettext("%(num)d slot opened.", "%(num)d slots opened.", created)
    if created < len(times):
        skipped = len(times) - created
        message += " " + ngettext("%(num)d was already open.", "%(num)d were already open.", skipped)
    flash(message, "success")
    return redirect(url_for(".index"), 303)


@bp.post("/<int:slot_id>/supprimer")
@permission_required(can_validate_applications)
def withdraw(slot_id: int):
    slot = AppointmentSlot.get_or_none(AppointmentSlot.id == slot_id)
    if slot is None:
        abort(404)
    if not AppointmentSlot.withdraw_if_unbooked(slot.id):
        flash(_("This slot is booked: the applicant must move or cancel the appointment first."), "error")
        return _page(dict(DEFAULTS), {}, 409)
    record_account_event("appointments.withdrawn", g.account, desk=slot.desk, starts_at=slot.starts_at.isoformat())
    flash(_("The slot of %(when)s is withdrawn.", when=appointment_time(slot.starts_at)), "success")
    return redirect(url_for(".index"), 303)
