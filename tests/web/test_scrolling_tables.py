"""Wide tables scroll sideways on a phone inside `.table-wrap`: each wrapper must be reachable by keyboard and named
(axe-core: scrollable-region-focusable, serious), or a keyboard user cannot scroll it to read the last columns."""

from __future__ import annotations

import re
from pathlib import Path

TEMPLATES = Path(__file__).resolve().parents[2] / "web" / "templates"
WRAPPER = re.compile(r"<div\b[^>]*\bclass=\"[^\"]*\btable-wrap\b[^\"]*\"[^>]*>")


def test_every_scrolling_table_wrapper_is_a_focusable_named_region():
    wrappers = [
        (path.relative_to(TEMPLATES), tag)
        for path in TEMPLATES.rglob("*.html")
        for tag in WRAPPER.findall(path.read_text())
    ]
    assert len(wrappers) > 20  # the pattern still finds them
    bad = [
        (str(path), tag)
        for path, tag in wrappers
        if not ('role="region"' in tag and 'tabindex="0"' in tag and "aria-label" in tag)
    ]
    assert bad == []
