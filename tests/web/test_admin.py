"""The workflows page: administrators only, one picture per workflow with live counts per state."""

from __future__ import annotations

import re

import pytest

from models import Role
from workflows import WORKFLOWS, diagram


def state_count(html: str, workflow: str, state: str) -> int:
    match = re.search(rf'id="{workflow}-state-{state}">.*?<td class="num">(\d+)</td>', html, re.S)
    assert match, f"no row for {workflow}/{state}"
    return int(match.group(1))


def test_administrator_sees_every_workflow_with_counts(client, login_as, make_account, monkeypatch):
    drawn = {}
    real = diagram.to_svg

    def spy(workflow, counts=None):
        drawn[workflow.name] = counts
        return real(workflow, counts)

    monkeypatch.setattr(diagram, "to_svg", spy)
    login_as(Role.ADMINISTRATOR)
    make_account(Role.CLINICIAN)
    make_account(Role.CLINICIAN, state="pending")
    make_account(Role.VALIDATOR, state="locked")

    response = client.get("/admin/workflows")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert html.count("<svg") == len(WORKFLOWS)
    assert drawn["account"] == {"active": 2, "pending": 1, "locked": 1}
    assert drawn["enrollment"] == {} and drawn["delivery"] == {}
    assert (state_count(html, "account", "active"), state_count(html, "account", "pending")) == (2, 1)
    assert state_count(html, "account", "disabled") == 0
    assert state_count(html, "enrollment", "submitted") == 0
    assert "Créer le login" in html  # transition labels are translated
    assert 'href="/admin/workflows"' in html  # the nav link
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("role", [Role.PHYSICIAN, Role.VALIDATOR, Role.CLINICIAN])
def test_other_roles_are_refused_and_see_no_link(client, login_as, role):
    login_as(role)
    response = client.get("/admin/workflows")
    assert response.status_code == 403
    assert "Accès refusé" in response.get_data(as_text=True)
    assert client.get("/admin/workflows/account.mmd").status_code == 403
    home = client.get("/").get_data(as_text=True)
    assert "Workflows" not in home and "/admin/workflows" not in home


def test_anonymous_is_sent_to_login(client):
    for path in ("/admin/workflows", "/admin/workflows/account.mmd"):
        response = client.get(path)
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/login?next=/admin/workflows")


def test_mermaid_download(client, login_as):
    login_as(Role.ADMINISTRATOR)
    response = client.get("/admin/workflows/delivery.mmd")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert response.headers["Content-Disposition"] == 'attachment; filename="delivery.mmd"'
    assert response.get_data(as_text=True) == diagram.to_mermaid(WORKFLOWS["delivery"])
    assert client.get("/admin/workflows/nothing.mmd").status_code == 404


def test_count_by_state_groups_in_the_database(make_account):
    make_account(Role.CLINICIAN)
    make_account(Role.CLINICIAN)
    make_account(Role.CLINICIAN, state="disabled")
    assert WORKFLOWS["account"].model.count_by_state() == {"active": 2, "disabled": 1}
