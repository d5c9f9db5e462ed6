"""Every message id in the code and the templates has a French translation (French is the default language)."""

from __future__ import annotations

from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from .conftest import ROOT, TRANSLATIONS

KEYWORDS = {**DEFAULT_KEYWORDS, "lazy_gettext": None}


def extracted_message_ids() -> set[str]:
    with (ROOT / "babel.cfg").open() as handle:
        method_map, options_map = parse_mapping_cfg(handle)
    ids = set()
    for _filename, _lineno, message, _comments, _context in extract_from_dir(
        str(ROOT), method_map, options_map, keywords=KEYWORDS
    ):
        ids.add(message[0] if isinstance(message, tuple) else message)
    return ids


def test_extraction_finds_workflow_reasons_and_template_strings():
    ids = extracted_message_ids()
    assert "Page not found" in ids  # web/errors.py
    assert "Skip to content" in ids  # a template
    assert "The patient did not designate this physician for this stay." in ids  # N_() in workflows/
    assert "Create the login" in ids  # a transition label


def test_every_message_has_a_french_translation():
    with (TRANSLATIONS / "fr" / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        catalog = read_po(handle, locale="fr")
    missing = []
    for msgid in sorted(extracted_message_ids()):
        message = catalog.get(msgid)
        if message is None or message.fuzzy:
            missing.append(msgid)
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if not all(strings):
            missing.append(msgid)
    hint = "untranslated in web/translations/fr (run pybabel update, see babel.cfg):\n"
    assert not missing, hint + "\n".join(missing)
    problems = [(m.id, [str(e) for e in errors]) for m, errors in catalog.check()]
    assert not problems, problems
