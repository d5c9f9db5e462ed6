"""`Physician.save_preferences`: the choices of "Mon profil" written in one transaction, returning what changed."""

from __future__ import annotations

import pytest

from models import Physician

PERSONAL = ("Favre", "Anne", "anne.favre@example.ch", "+41791112233", "Rue du Rhône")


def choices(**overrides) -> dict:
    chosen = dict(
        notification_mode="each",
        patients_filter="all",
        documents_filter="all",
        landing_page="documents",
        specialties=["cardiology"],
    )
    chosen.update(overrides)
    return chosen


def stored(physician: Physician) -> tuple:
    row = Physician.get_by_id(physician.id)
    codes = sorted(s.code for s in row.specialties())
    return row.notification_mode, row.patients_filter, row.documents_filter, row.landing_page, codes


@pytest.fixture
def physician(make_physician):
    made = make_physician(last_name="Favre", first_name="Anne", email="anne.favre@example.ch", mobile="+41791112233")
    assert stored(made) == ("each", "all", "all", "documents", ["cardiology"])  # the defaults, one specialty
    return made


def test_the_changes_are_written_and_returned_without_personal_data(physician):
    changes = physician.save_preferences(
        **choices(notification_mode="digest", landing_page="patients", specialties=["neurology", "nephrology"])
    )
    assert changes == {
        "notification_mode": {"from": "each", "to": "digest"},
        "landing_page": {"from": "documents", "to": "patients"},
        "specialties": {"added": ["nephrology", "neurology"], "removed": ["cardiology"]},
    }
    assert stored(physician) == ("digest", "all", "all", "patients", ["nephrology", "neurology"])
    assert physician.landing_page == "patients"  # the object in hand follows
    for personal in (*PERSONAL, physician.gln, physician.public_id, str(physician.id)):
        assert personal not in repr(changes)


def test_saving_the_same_choices_again_changes_nothing(physician):
    assert physician.save_preferences(**choices(documents_filter="unread")) == {
        "documents_filter": {"from": "all", "to": "unread"}
    }
    assert physician.save_preferences(**choices(documents_filter="unread")) == {}
    # Compared with what is stored, not with a stale object: another copy of the row sees no change either.
    assert Physician.get_by_id(physician.id).save_preferences(**choices(documents_filter="unread")) == {}


@pytest.mark.parametrize(
    "bad",
    [
        {"landing_page": "elsewhere"},
        {"notification_mode": "sms"},
        {"specialties": ["cardiology", "astrology"]},
    ],
)
def test_a_value_outside_the_choices_writes_nothing(physician, bad):
    before = stored(physician)
    with pytest.raises(ValueError):
        physician.save_preferences(**choices(**{"patients_filter": "with_unread", "specialties": ["neurology"], **bad}))
    assert stored(physician) == before
