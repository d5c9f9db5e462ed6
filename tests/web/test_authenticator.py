"""Mon profil → authenticator app: enrolment with a QR code and a first code, one app at most, removal."""

from __future__ import annotations

import datetime as dt
import json
import re

import pyotp
import pytest
import time_machine

from models import AuditEvent, Role, TotpCredential
from security import otp

from .conftest import csrf_token_in

PAGE = "/profil/authentificateur"
T0 = dt.datetime(2031, 3, 3, 8, 0, 10, tzinfo=dt.UTC)
STEP = int(T0.timestamp()) // 30
_SECRET_ON_PAGE = re.compile(r'id="totp-secret"[^>]*>([A-Z2-7 ]+)<')


@pytest.fixture
def frozen():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


@pytest.fixture
def physician(login_as, frozen):
    return login_as(Role.PHYSICIAN)


def post(client, path: str, **data):
    """A form submitted from the page, with the page's CSRF token."""
    token = csrf_token_in(client.get(PAGE).data)
    return client.post(PAGE + path, data={"csrf_token": token, **data})


def code_at(secret: str, step: int) -> str:
    return pyotp.TOTP(secret).at(step * 30)


def enrol(client, account) -> str:
    """Add and confirm an app through the pages; its secret."""
    assert post(client, "/ajouter").status_code == 302
    secret = otp.totp_secret(otp.pending_credential(account))
    assert post(client, "/confirmer", code=code_at(secret, STEP)).status_code == 302
    return secret


def audit_actions() -> list[tuple[str, str, dict]]:
    return [(e.action, e.outcome, json.loads(e.details)) for e in AuditEvent.select().order_by(AuditEvent.id)]


def test_anonymous_visitors_are_sent_to_the_login_page(client, csrf_token):
    response = client.get(PAGE)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=/profil/authentificateur")
    token = csrf_token("/")
    response = client.post(PAGE + "/ajouter", data={"csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    assert TotpCredential.select().count() == 0


def test_enrolment_round_trip(client, physician):
    page = client.get(PAGE)
    assert page.status_code == 200
    assert 'action="/profil/authentificateur/ajouter"' in page.get_data(as_text=True)
    assert page.headers["Cache-Control"] == "no-store"

    assert post(client, "/ajouter").headers["Location"] == PAGE
    pending = otp.pending_credential(physician)
    secret = otp.totp_secret(pending)  # decrypted with the configured key
    html = client.get(PAGE).get_data(as_text=True)
    shown = _SECRET_ON_PAGE.search(html).group(1)
    assert shown == " ".join(secret[i : i + 4] for i in range(0, 32, 4))  # groups of 4 for typing by hand
    assert "<svg" in html and 'role="img"' in html
    assert otp.active_credential(physician) is None

    response = post(client, "/confirmer", code=code_at(secret, STEP))
    assert response.status_code == 302
    active = otp.active_credential(physician)
    assert active.id == pending.id and active.confirmed_at == T0.replace(tzinfo=None)
    html = client.get(PAGE).get_data(as_text=True)
    assert secret[:4] not in html and "<svg" not in html  # never shown again once active
    assert 'action="/profil/authentificateur/supprimer"' in html

    actions = [(a, o) for a, o, _d in audit_actions() if a.startswith("totp.")]
    assert actions == [("totp.added", "success"), ("totp.confirmed", "success")]
    # The code the app showed now counts as used: the login cannot accept it again.
    assert not otp.consume_totp(active, code_at(secret, STEP))


def test_a_wrong_code_is_refused(client, physician):
    post(client, "/ajouter")
    secret = otp.totp_secret(otp.pending_credential(physician))
    for wrong in ("000000" if code_at(secret, STEP) != "000000" else "111111", code_at(secret, STEP - 2), "abc"):
        response = post(client, "/confirmer", code=wrong)
        assert response.status_code == 422
        assert 'id="confirm-error"' in response.get_data(as_text=True)
    assert otp.active_credential(physician) is None and otp.pending_credential(physician) is not None
    failures = [d for a, o, d in audit_actions() if a == "totp.confirm_failed" and o == "failure"]
    assert [d["reason"] for d in failures] == ["wrong-code"] * 3


def test_a_second_active_app_is_impossible(client, physician):
    enrol(client, physician)
    response = post(client, "/ajouter")
    assert response.status_code == 302
    assert TotpCredential.select().count() == 1
    assert 'class="notice notice--error"' in client.get(PAGE).get_data(as_text=True)  # the flashed refusal
    # Confirming with nothing pending changes nothing either.
    assert post(client, "/confirmer", code="123456").status_code == 302
    assert TotpCredential.select().where(TotpCredential.confirmed_at.is_null(False)).count() == 1


def test_cancel_drops_the_pending_app(client, physician):
    post(client, "/ajouter")
    assert post(client, "/annuler").status_code == 302
    assert TotpCredential.select().count() == 0
    assert [a for a, _o, _d in audit_actions() if a.startswith("totp.")] == ["totp.added", "totp.cancelled"]


def test_removal_with_a_current_code(client, physician, frozen):
    secret = enrol(client, physician)
    assert post(client, "/supprimer", code=code_at(secret, STEP)).status_code == 422  # the confirmation code: used
    frozen.shift(dt.timedelta(seconds=30))
    response = post(client, "/supprimer", code=code_at(secret, STEP + 1))
    assert response.status_code == 302
    assert TotpCredential.select().count() == 0
    removed = [d for a, _o, d in audit_actions() if a == "totp.removed"]
    assert [d["method"] for d in removed] == ["code"]


def test_removal_with_the_password(client, physician):
    enrol(client, physician)
    assert post(client, "/supprimer", password="not the password").status_code == 422
    assert otp.active_credential(physician) is not None
    assert post(client, "/supprimer", password=physician.issued_password).status_code == 302
    assert otp.active_credential(physician) is None
    events = [(a, o, d.get("method")) for a, o, d in audit_actions() if a.startswith("totp.remove")]
    assert events == [("totp.remove_failed", "failure", None), ("totp.removed", "success", "password")]


def test_removal_needs_a_code_or_the_password(client, physician):
    enrol(client, physician)
    response = post(client, "/supprimer")
    assert response.status_code == 422 and 'id="remove-error"' in response.get_data(as_text=True)
    assert otp.active_credential(physician) is not None


def test_wrong_answers_to_remove_are_limited(client, physician, frozen):
    enrol(client, physician)
    for _ in range(5):
        assert post(client, "/supprimer", password="guess").status_code == 422
    # Now even the right password is refused until 15 minutes have passed.
    assert post(client, "/supprimer", password=physician.issued_password).status_code == 422
    assert otp.active_credential(physician) is not None
    frozen.shift(dt.timedelta(minutes=16))
    assert post(client, "/supprimer", password=physician.issued_password).status_code == 302


def test_audit_events_never_hold_the_secret_or_a_code(client, physician, frozen):
    secret = enrol(client, physician)
    post(client, "/supprimer", code="999999")
    frozen.shift(dt.timedelta(seconds=30))
    post(client, "/supprimer", code=code_at(secret, STEP + 1))
    details = " ".join(e.details for e in AuditEvent.select())
    codes = {code_at(secret, STEP + n) for n in range(-1, 3)}
    assert secret not in details and not any(code in details for code in codes) and "999999" not in details


@pytest.mark.parametrize("path", ["/ajouter", "/confirmer", "/annuler", "/supprimer"])
def test_posts_need_the_csrf_token(client, physician, path):
    enrol(client, physician) if path == "/supprimer" else post(client, "/ajouter")
    before = [(c.id, c.confirmed_at, c.last_timecode) for c in TotpCredential.select()]
    response = client.post(PAGE + path, data={"code": "123456", "password": physician.issued_password})
    assert response.status_code == 400
    assert [(c.id, c.confirmed_at, c.last_timecode) for c in TotpCredential.select()] == before


def test_the_qr_code_is_inline_svg_without_script_or_style(client, physician):
    post(client, "/ajouter")
    response = client.get(PAGE)
    html = response.get_data(as_text=True)
    svg = html[html.index("<svg") : html.index("</svg>") + len("</svg>")]
    assert "<script" not in svg.lower() and "style=" not in svg.lower() and "<style" not in svg.lower()
    assert "style=" not in html and "<script" not in html  # the whole page obeys the CSP
    assert "style-src 'self'" in response.headers["Content-Security-Policy"]
    assert re.fullmatch(r'<svg [^>]*><rect [^>]*/><path fill="#000" d="[Mhvz0-9,\-]+"/></svg>', svg)


def test_the_qr_code_holds_the_provisioning_uri():
    """The matrix drawn is the one of the otpauth URI (same modules as qrcode's own rendering)."""
    import qrcode

    from web.authenticator import qr_svg

    uri = otp.provisioning_uri("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", "dr.test")
    svg = str(qr_svg(uri, "QR"))
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4)
    code.add_data(uri)
    code.make(fit=True)
    matrix = code.get_matrix()
    dark = set()
    for x, y, width in re.findall(r"M(\d+),(\d+)h(\d+)v1h-\d+z", svg):
        dark |= {(int(x) + i, int(y)) for i in range(int(width))}
    assert dark == {(x, y) for y, row in enumerate(matrix) for x, on in enumerate(row) if on}
    assert f'viewBox="0 0 {len(matrix)} {len(matrix)}"' in svg
