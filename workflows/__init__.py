"""The state machines of the procedure: enrolment, account, delivery; engine.py is the one place that fires them."""

from .account import ACCOUNT, AccountState
from .delivery import DELIVERY, DeliveryState
from .engine import SYSTEM, Action, Actor, Reason, TransitionRefused, available_actions, create, fire, may
from .enrollment import ENROLLMENT, EnrollmentState

WORKFLOWS = {w.name: w for w in (ENROLLMENT, ACCOUNT, DELIVERY)}

__all__ = [
    "ACCOUNT",
    "DELIVERY",
    "ENROLLMENT",
    "SYSTEM",
    "WORKFLOWS",
    "AccountState",
    "Action",
    "Actor",
    "DeliveryState",
    "EnrollmentState",
    "Reason",
    "TransitionRefused",
    "available_actions",
    "create",
    "fire",
    "may",
]

from . import notices  # noqa: E402, F401  (registers the dispatcher follow-up of "notification" e-mails)
