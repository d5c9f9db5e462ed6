"""Every user-facing string exists in French and in English.

Message ids are English; French (the default) translates every one, with the same placeholders. The English catalogue
holds every message too: its entries may stay empty (the English is the message id) but not where English needs more
than the id, as for plurals. Templates show no words outside `_()`, and every e-mail and SMS carries both languages.
"""

from __future__ import annotations

import ast
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar

import pytest
from babel.messages.catalog import PYTHON_FORMAT, Catalog, Message
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from jinja2 import Environment

from .conftest import ROOT, TRANSLATIONS

KEYWORDS = {**DEFAULT_KEYWORDS, "lazy_gettext": None}
TEMPLATES = ROOT / "web" / "templates"
# Words a template may show untranslated: names, codes, the format of a reference.
NAMES = {"myHUG", "GLN", "LOINC", "MH", "XXXX"}
# The hospital's own name, in French in both languages (base.html marks it lang="fr").
PROPER_NAMES = ("Hôpitaux universitaires de Genève",)
WORD = re.compile(r"[^\W\d_]{2,}")


def extracted_messages() -> dict[str, str | tuple[str, ...]]:
    """Each message of the code and the templates, keyed by its id: the id itself, or (singular, plural)."""
    with (ROOT / "babel.cfg").open() as handle:
        method_map, options_map = parse_mapping_cfg(handle)
    messages = {}
    for _filename, _lineno, message, _comments, _context in extract_from_dir(
        str(ROOT), method_map, options_map, keywords=KEYWORDS
    ):
        key = message[0] if isinstance(message, tuple) else message
        messages[key] = tuple(message) if isinstance(message, tuple) else message
    return messages


def extracted_message_ids() -> set[str]:
    return set(extracted_messages())


def catalogue(language: str) -> Catalog:
    with (TRANSLATIONS / language / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        return read_po(handle, locale=language)


def forms(value: str | tuple | list) -> tuple[str, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def placeholder_names(text: str) -> set[str]:
    return {match.group(1) for match in PYTHON_FORMAT.finditer(text) if match.group(1)}


def placeholder_problems(message: Message) -> list[str]:
    """Each translated form must name exactly the placeholders of its English: form 0 those of the singular, the
    others those of the plural. (Babel's own check lets a translation drop a placeholder; a dropped %(name)s loses
    the name, and French form 0 also serves n = 0, so it cannot drop %(num)d either.)"""
    ids = forms(message.id)
    problems = []
    for index, text in enumerate(forms(message.string)):
        english = ids[min(index, len(ids) - 1)]
        if text and placeholder_names(text) != placeholder_names(english):
            problems.append(
                f"{english!r} → {text!r}: {sorted(placeholder_names(text))} ≠ {sorted(placeholder_names(english))}"
            )
    return problems


def test_extraction_finds_workflow_reasons_and_template_strings():
    ids = extracted_message_ids()
    assert "Page not found" in ids  # web/errors.py
    assert "Skip to content" in ids  # a template
    assert "The patient did not designate this physician for this stay." in ids  # N_() in workflows/
    assert "Create the login" in ids  # a transition label


def test_every_message_has_a_french_translation():
    catalog = catalogue("fr")
    missing = []
    for msgid in sorted(extracted_message_ids()):
        message = catalog.get(msgid)
        if message is None or message.fuzzy:
            missing.append(msgid)
            continue
        if not all(forms(message.string)):
            missing.append(msgid)
    hint = "untranslated in web/translations/fr (run pybabel update, see babel.cfg):\n"
    assert not missing, hint + "\n".join(missing)
    problems = [(m.id, [str(e) for e in errors]) for m, errors in catalog.check()]
    assert not problems, problems


@pytest.mark.parametrize("language", ["fr", "en"])
def test_translations_keep_the_placeholders_of_the_message(language):
    problems = [problem for message in catalogue(language) if message.id for problem in placeholder_problems(message)]
    assert not problems, "placeholders differ from the English:\n" + "\n".join(problems)


def test_placeholder_check_catches_a_dropped_or_renamed_name():
    assert placeholder_problems(Message("Hello %(name)s", "Bonjour"))
    assert placeholder_problems(Message("Hello %(name)s", "Bonjour %(nom)s"))
    assert placeholder_problems(
        Message(("%(num)d document", "%(num)d documents"), ("Un document", "%(num)d documents"))
    )
    assert not placeholder_problems(Message("Hello %(name)s", "Bonjour %(name)s"))
    assert not placeholder_problems(Message("Hello %(name)s", ""))  # untranslated: English shows the message id


def english_problems(catalog: Catalog, messages: dict) -> list[str]:
    """What the English catalogue lacks: a message of the code with no entry, a plural whose entry has another
    plural text than the code's, a translation filled in for some forms only."""
    problems = []
    for key, message in sorted(messages.items()):
        entry = catalog.get(key)
        if entry is None:
            problems.append(f"no entry: {key!r}")
        elif isinstance(message, tuple) and forms(entry.id) != message:
            problems.append(f"plural differs from the code's: {forms(entry.id)!r} ≠ {message!r}")
        elif any(forms(entry.string)) and not all(forms(entry.string)):
            problems.append(f"some forms left empty: {key!r}")
    return problems


def test_every_message_is_in_the_english_catalogue():
    problems = english_problems(catalogue("en"), extracted_messages())
    hint = "missing or stale in web/translations/en (tools/translate.py refreshes both catalogues):\n"
    assert not problems, hint + "\n".join(problems)


def test_english_check_catches_a_missing_entry_and_a_stale_plural():
    catalog = Catalog(locale="en")
    catalog.add(("%(num)d file", "%(num)d files"), ("", ""))
    catalog.add("Half", "")
    messages = {"%(num)d file": ("%(num)d file", "%(num)d new files"), "Half": "Half", "Absent": "Absent"}
    problems = english_problems(catalog, messages)
    assert any("Absent" in p for p in problems)
    assert any("plural differs" in p for p in problems)
    assert len(problems) == 2


# -- templates: no words outside _() --------------------------------------------------------------------------------
class ShownText(HTMLParser):
    """The text a page shows (element content and the attributes people see or hear), outside scripts and styles."""

    SHOWN_ATTRIBUTES: ClassVar = {
        "alt",
        "title",
        "placeholder",
        "aria-label",
        "aria-description",
        "aria-valuetext",
        "label",
    }
    BUTTON_INPUTS: ClassVar = {"submit", "button", "reset"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.texts: list[str] = []
        self.hidden_depth = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self.hidden_depth += 1
        values = dict(attrs)
        for name, value in attrs:
            shown = name in self.SHOWN_ATTRIBUTES or (
                name == "value" and tag == "input" and values.get("type") in self.BUTTON_INPUTS
            )
            if shown and value:
                self.texts.append(value)

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self.hidden_depth -= 1

    def handle_data(self, data):
        if not self.hidden_depth:
            # A macro's attribute fragment (` aria-describedby="…"`) sits outside any tag in the source.
            self.texts.append(re.sub(r'[\w-]+="[^"]*"', " ", data))


def untranslated_words(source: str, env: Environment) -> list[str]:
    """Words of a template's own text: everything between Jinja's tags (expressions become blanks)."""
    text = "".join(value if token == "data" else " " for _line, token, value in env.lex(source))
    parser = ShownText()
    parser.feed(text)
    parser.close()
    words = []
    for shown in parser.texts:
        for name in PROPER_NAMES:
            shown = shown.replace(name, " ")
        words += [word for word in WORD.findall(shown) if word not in NAMES]
    return words


def test_templates_show_no_untranslated_words():
    env = Environment(extensions=["jinja2.ext.i18n"])
    found = {}
    for path in sorted(TEMPLATES.rglob("*.html")):
        words = untranslated_words(path.read_text(encoding="utf-8"), env)
        if words:
            found[str(path.relative_to(ROOT))] = words
    assert not found, f"text outside _() in templates (wrap it in {{{{ _('…') }}}}): {found}"


def test_untranslated_word_check_sees_text_and_shown_attributes():
    env = Environment(extensions=["jinja2.ext.i18n"])
    source = '<p>{{ _("Hello") }} Bonjour</p><img alt="Logo"><input type="submit" value="Envoyer"><b title="{{ x }}">'
    assert untranslated_words(source, env) == ["Bonjour", "Logo", "Envoyer"]
    assert untranslated_words('<input type="hidden" name="confirm" value="yes"> GLN', env) == []


# -- e-mails and SMS: both languages in every message ----------------------------------------------------------------
JINJA_SYNTAX = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
MESSAGE_TEMPLATES = sorted([*TEMPLATES.glob("email/*.txt"), *TEMPLATES.glob("sms/*.txt")])


def language_vocabularies() -> tuple[set[str], set[str]]:
    """(French-only words, English-only words), learnt from the French catalogue: its ids and its translations."""
    french, english = set(), set()
    for message in catalogue("fr"):
        if message.id:
            english |= {w.lower() for text in forms(message.id) for w in WORD.findall(text)}
            french |= {w.lower() for text in forms(message.string) for w in WORD.findall(text)}
    return french - english, english - french


def language_counts(text: str, vocabularies: tuple[set[str], set[str]]) -> tuple[int, int]:
    words = [w.lower() for w in WORD.findall(JINJA_SYNTAX.sub(" ", text))]
    french, english = vocabularies
    return sum(w in french for w in words), sum(w in english for w in words)


def bilingual_problems(path: Path, vocabularies) -> list[str]:
    """An SMS has words of both languages; an e-mail's subject too, and its body is at least a third each."""
    text = path.read_text(encoding="utf-8")
    problems = []
    if path.parent.name == "email":
        header, _blank, text = text.partition("\n")
        subject = header.removeprefix("Subject:")
        if subject == header or 0 in language_counts(subject, vocabularies):
            problems.append(f"{path.name}: the subject line is not in both languages: {header!r}")
        french, english = language_counts(text, vocabularies)
        if min(french, english) * 3 < french + english:
            problems.append(f"{path.name}: French words {french}, English words {english}: one part is missing")
    else:
        french, english = language_counts(text, vocabularies)
        if not (french and english):
            problems.append(f"{path.name}: French words {french}, English words {english}")
    return problems


def test_every_email_and_sms_is_in_french_and_in_english():
    assert len(MESSAGE_TEMPLATES) >= 10
    vocabularies = language_vocabularies()
    problems = [problem for path in MESSAGE_TEMPLATES for problem in bilingual_problems(path, vocabularies)]
    assert not problems, problems


def test_bilingual_check_catches_a_message_in_one_language(tmp_path):
    vocabularies = language_vocabularies()
    (tmp_path / "email").mkdir()
    (tmp_path / "sms").mkdir()
    french_only = tmp_path / "email" / "fr.txt"
    french_only.write_text(
        "Subject: myHUG – votre compte est actif\n\nBonjour,\n\nVotre compte myHUG est actif. Connectez-vous.\n"
    )
    assert len(bilingual_problems(french_only, vocabularies)) == 2
    sms = tmp_path / "sms" / "code.txt"
    sms.write_text("myHUG : code de connexion {{ code }} (valable {{ minutes }} min).")
    assert bilingual_problems(sms, vocabularies)
    sms.write_text(
        "myHUG : code de connexion {{ code }} (valable {{ minutes }} min). Login code {{ code }}, never share it."
    )
    assert not bilingual_problems(sms, vocabularies)


# -- Python: a flashed message is always translated ------------------------------------------------------------------


def untranslated_flashes(source: str) -> list[int]:
    """Lines where flash() is given a literal or an f-string instead of a translated message."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "flash" and node.args:
            first = node.args[0]
            if isinstance(first, (ast.Constant, ast.JoinedStr)):
                lines.append(node.lineno)
    return lines


def test_flashed_messages_are_translated():
    found = {}
    for path in sorted((ROOT / "web").rglob("*.py")):
        lines = untranslated_flashes(path.read_text(encoding="utf-8"))
        if lines:
            found[str(path.relative_to(ROOT))] = lines
    assert not found, f"flash() with an untranslated message: {found}"
    assert untranslated_flashes('flash("Saved")\nflash(_("Saved"))\nflash(f"{n} saved")') == [1, 3]
