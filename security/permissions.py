"""Who may do what, as named predicates: views check them and templates ask the same functions (STYLE §4).

Each takes the logged-in account (or None for an anonymous visitor). Only an *active* account holds a role's
rights: a pending account (temporary password not yet replaced) may do nothing but replace it.
"""

from __future__ import annotations

from models import Account, Role


def is_authenticated(account: Account | None) -> bool:
    return account is not None


def is_active(account: Account | None) -> bool:
    return account is not None and account.state == "active"


def has_role(account: Account | None, *roles: str) -> bool:
    """Any of `roles`, primary or extra (staff may hold several: the e-health service validates and administers)."""
    return is_active(account) and any(account.has_role(role) for role in roles)


def is_physician(account: Account | None) -> bool:
    return has_role(account, Role.PHYSICIAN)


def is_validator(account: Account | None) -> bool:
    return has_role(account, Role.VALIDATOR)


def is_administrator(account: Account | None) -> bool:
    return has_role(account, Role.ADMINISTRATOR)


def is_clinician(account: Account | None) -> bool:
    return has_role(account, Role.CLINICIAN)


def can_view_workflows(account: Account | None) -> bool:
    """The workflow pictures with live counts per state (DESIGN §3): the e-health service only."""
    return is_administrator(account)


def can_read_audit(account: Account | None) -> bool:
    return is_administrator(account)


def can_manage_accounts(account: Account | None) -> bool:
    return is_administrator(account)


def can_review_applications(account: Account | None) -> bool:
    """Step 6: the e-health service reviews transmitted applications, reads their file and creates the login."""
    return is_administrator(account)


def can_use_validation_desk(account: Account | None) -> bool:
    """The AMG secretariat and the e-health service desk receive applicants in person (DESIGN §1)."""
    return has_role(account, Role.VALIDATOR, Role.ADMINISTRATOR)


def can_validate_applications(account: Account | None) -> bool:
    """Steps 2–5 at the desk (receive, check the identity and the mobile, sign section 2, transmit): the validator
    role only. An administrator works there only if they also hold it; their own step, 6, is on the admin side."""
    return is_validator(account)


def can_read_own_documents(account: Account | None) -> bool:
    """Mes documents, Mes patients, Mon profil: a physician account tied to its one physician."""
    return is_physician(account) and account.physician_id is not None


def can_record_designations(account: Account | None) -> bool:
    return is_clinician(account)


# What templates see (registered as Jinja globals by the app factory).
PREDICATES = {
    fn.__name__: fn
    for fn in (
        is_authenticated,
        is_active,
        has_role,
        is_physician,
        is_validator,
        is_administrator,
        is_clinician,
        can_view_workflows,
        can_read_audit,
        can_manage_accounts,
        can_review_applications,
        can_use_validation_desk,
        can_validate_applications,
        can_read_own_documents,
        can_record_designations,
    )
}
