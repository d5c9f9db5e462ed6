"""The account workflow (DESIGN §4.3): pending → active ⇄ locked → disabled; HIN accounts start active."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from models import Account, Role, Session, gln_is_valid, utcnow
from security.passwords import hash_password, temporary_password

from . import notifications
from .engine import N_, Reason, T, Workflow, input_guard


class AccountState(StrEnum):
    NEW = "new"  # not yet saved
    PENDING = "pending"  # temporary password issued
    ACTIVE = "active"
    LOCKED = "locked"
    DISABLED = "disabled"


S = AccountState
ADMIN, SYS = Role.ADMINISTRATOR, Role.SYSTEM
ACCOUNT_HOLDERS = (Role.PHYSICIAN, Role.VALIDATOR, Role.ADMINISTRATOR, Role.CLINICIAN)

# How long a temporary password lives (DESIGN §4.1 step 6: at most 72 h); the app factory may shorten it.
TEMPORARY_PASSWORD_HOURS = 72


# -- guards ---------------------------------------------------------------------------------------------------
def physician_account_has_valid_gln(flow) -> Reason | None:
    account = flow.row
    if account.role != Role.PHYSICIAN:
        if account.physician_id is not None:
            return Reason("staff-with-physician", N_("Only a physician account can be tied to a physician (GLN)."))
        return None
    if account.extra_roles:
        return Reason("physician-only", N_("A physician account cannot hold any other role."))
    if account.physician_id is None:
        return Reason("no-physician", N_("A physician account must belong to exactly one physician (one GLN)."))
    if not gln_is_valid(account.physician.gln):
        return Reason("bad-gln", N_("The GLN check digit is wrong."))
    return None


def account_is_unique(flow) -> Reason | None:
    """One account per person: a free username, one account per physician, one per HIN identity."""
    account = flow.row
    if Account.select().where(Account.username == account.username).exists():
        return Reason("username-taken", N_("This username is already taken."))
    if account.physician_id is not None and Account.select().where(Account.physician == account.physician_id).exists():
        return Reason("physician-has-account", N_("This physician already has a myHUG account."))
    issuer, subject = flow.get("issuer"), flow.get("subject")
    if subject and Account.select().where((Account.hin_issuer == issuer) & (Account.hin_subject == subject)).exists():
        return Reason("hin-identity-taken", N_("This HIN identity is already tied to a myHUG account."))
    return None


@input_guard
def hin_identity_is_personal(flow) -> Reason | None:
    if flow.get("identity_type") != "personal":
        return Reason(
            "team-identity",
            N_(
                "This HIN identity belongs to a team or a practice: myHUG accounts are personal, log in with your own "
                "HIN identity."
            ),
        )
    if not flow.get("issuer") or not flow.get("subject"):
        return Reason("no-subject", N_("The identity provider did not say who you are."))
    return None


def is_the_holder(flow) -> Reason | None:
    if flow.actor.account_id != flow.row.id:
        return Reason("forbidden", N_("Only the account holder can activate the account."))
    return None


def password_is_permanent(flow) -> Reason | None:
    account = flow.row
    if account.hin_subject and not account.password_hash:
        return None
    if not account.password_hash or account.password_is_temporary:
        return Reason("temporary-password", N_("The temporary password has not been replaced yet."))
    return None


def profile_is_complete(flow) -> Reason | None:
    physician = flow.row.physician if flow.row.physician_id else None
    if physician is None:
        return None
    missing = not physician.email or not physician.practice_address.strip() or not physician.specialties().exists()
    if missing:
        return Reason("profile-incomplete", N_("Complete “Mon profil” (e-mail, practice address, specialties) first."))
    return None


def has_a_password(flow) -> Reason | None:
    if flow.row.hin_subject and not flow.row.password_hash and flow.row.role == Role.PHYSICIAN:
        return Reason("hin-only", N_("This account logs in with HIN only: it has no password to re-issue."))
    return None


def not_oneself(flow) -> Reason | None:
    if flow.actor.account_id is not None and flow.actor.account_id == flow.row.id:
        return Reason("self", N_("You cannot do this to your own account."))
    return None


# -- effects --------------------------------------------------------------------------------------------------
def issue_temporary_password(flow) -> None:
    account = flow.row
    password = temporary_password()
    account.password_hash = hash_password(password)
    account.password_is_temporary = True
    account.temporary_password_expires_at = utcnow() + dt.timedelta(hours=TEMPORARY_PASSWORD_HOURS)
    account.failed_attempts = 0
    account.next_attempt_at = None
    # Kept on the Python object only (not a column), for the one caller allowed to show it: `flask create-user`.
    account.issued_password = password
    reissued = account.id is not None  # reissue_password; issue_login runs before the first insert
    notifications.notify_temporary_password(flow, password, TEMPORARY_PASSWORD_HOURS, reissued=reissued)


def record_hin_identity(flow) -> None:
    flow.row.hin_issuer = flow.get("issuer")
    flow.row.hin_subject = flow.get("subject")


def clear_failures(flow) -> None:
    flow.row.failed_attempts = 0
    flow.row.next_attempt_at = None


def release_waiting_documents(flow) -> None:
    """Documents that waited for this account to be active reach "Mes documents" once the account is (DESIGN §4.2).

    After the transition is written: the delivery guards read the account's new state from the database."""
    from . import documents  # documents → delivery → account: imported here, not at the top

    account = flow.row
    flow.after_commit.append(lambda: documents.account_activated(account))


def end_sessions(flow) -> None:
    """Locked, disabled or re-issued accounts lose every session at once (DESIGN §6)."""
    if flow.row.id is not None:
        Session.update(revoked_at=utcnow()).where(
            (Session.account == flow.row.id) & Session.revoked_at.is_null()
        ).execute()


# -- the procedure as a table ---------------------------------------------------------------------------------
# fmt: off
TRANSITIONS = [
    #  trigger            from                          to          who
    T("issue_login",      S.NEW,                        S.PENDING,  roles={ADMIN, SYS},
      guards=[physician_account_has_valid_gln, account_is_unique], effects=[issue_temporary_password],
      label=N_("Create the login")),
    T("provision_hin",    S.NEW,                        S.ACTIVE,   roles={SYS},
      guards=[hin_identity_is_personal, physician_account_has_valid_gln, account_is_unique],
      effects=[record_hin_identity, release_waiting_documents], label=N_("First HIN login")),
    T("activate",         S.PENDING,                    S.ACTIVE,   roles=ACCOUNT_HOLDERS,
      guards=[is_the_holder, password_is_permanent, profile_is_complete],
      effects=[clear_failures, release_waiting_documents], label=N_("Activate")),
    T("lock",             [S.PENDING, S.ACTIVE],        S.LOCKED,   roles={ADMIN, SYS},
      guards=[not_oneself], effects=[end_sessions], label=N_("Lock")),
    T("unlock",           S.LOCKED,                     S.ACTIVE,   roles={ADMIN},
      guards=[password_is_permanent], effects=[clear_failures, release_waiting_documents], label=N_("Unlock")),
    T("reissue_password", [S.PENDING, S.ACTIVE, S.LOCKED], S.PENDING, roles={ADMIN},
      guards=[not_oneself, has_a_password], effects=[end_sessions, issue_temporary_password],
      label=N_("Re-issue a temporary password")),
    T("disable",          [S.PENDING, S.ACTIVE, S.LOCKED], S.DISABLED, roles={ADMIN, SYS},
      guards=[not_oneself], effects=[end_sessions], label=N_("Disable")),
]
# fmt: on

ACCOUNT = Workflow("account", Account, AccountState, TRANSITIONS, final=[S.DISABLED])
