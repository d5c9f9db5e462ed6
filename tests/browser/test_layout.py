"""In Chromium: layouts that must follow the window's width, measured where the browser puts the boxes."""

from __future__ import annotations

import pytest

from models import Account, Specialty
from tests.browser.test_accessibility import VIEWPORTS, context_for
from web import demo

# The pages with the checklist of the 46 FMH specialties, and who opens them.
CHECKLISTS = {"/profil": "cdupont", "/inscription": None}


def open_at(browser, server, width: str, path: str, username: str | None):
    """A fresh French browser at `width` showing `path`, logged in as `username` when one is given."""
    account = Account.get(Account.username == username) if username is not None else None
    context, page = context_for(browser, server, "fr", width, account)
    response = page.goto(server.url + path)
    assert response.status == 200, f"{path} answered {response.status} at {page.url}"
    return context, page


def checkbox_edges(page) -> list[list[float]]:
    """[left, right] of each specialty's checkbox, in CSS pixels from the window's left edge."""
    return page.locator("fieldset.field--choices input[type=checkbox]").evaluate_all(
        "boxes => boxes.map(box => [box.getBoundingClientRect().left, box.getBoundingClientRect().right])"
    )


@pytest.mark.parametrize("path", sorted(CHECKLISTS))
@pytest.mark.parametrize("width", sorted(VIEWPORTS))
def test_the_specialty_checklist_has_columns_on_a_desktop_and_one_on_a_phone(browser, live_server, path, width):
    demo.load(live_server.app.config["BLOB_DIR"])
    context, page = open_at(browser, live_server, width, path, CHECKLISTS[path])
    try:
        edges = checkbox_edges(page)
        window = page.viewport_size["width"]
        frames = page.locator("fieldset.profile-setting").evaluate_all(
            "sets => sets.map(s => [s.id, getComputedStyle(s).borderTopWidth])"
        )
    finally:
        context.close()

    assert len(edges) == Specialty.select().count()
    columns = sorted({round(left) for left, _right in edges})
    if width == "desktop":
        assert len(columns) >= 2, f"{path}: every specialty in one column at x={columns} in a {window} px window"
    else:
        assert len(columns) == 1, f"{path}: {len(columns)} columns at x={columns} in a {window} px window"
    assert max(right for _left, right in edges) <= window
    if path == "/profil":
        # The specialties framed as the other settings are (the checklist's rule once removed their frame).
        assert len(frames) >= 6 and {border for _id, border in frames} == {"1px"}, frames
