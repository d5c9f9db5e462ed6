"""Merge French translations into web/translations/fr: `python tools/translate.py FILE.json`.

FILE.json maps English message ids to French (plural ids as "singular|plural" → ["fr singular", "fr plural"]).
Typography is applied here: ’ for ', a no-break space before : ; ? ! and inside « ».
Then the catalogues are refreshed from the sources (extract + update), so nothing else is lost.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parent.parent
TRANSLATIONS = ROOT / "web" / "translations"
POT = TRANSLATIONS / "messages.pot"
NBSP = "\u00a0"


def typography(text: str) -> str:
    text = text.replace("'", "’")
    text = re.sub(r" ([:;?!])", NBSP + r"\1", text)
    return text.replace("« ", "«" + NBSP).replace(" »", NBSP + "»")


def refresh_catalogues() -> None:
    babel = [sys.executable, "-m", "babel.messages.frontend"]
    subprocess.run(
        [
            *babel,
            "-q",
            "extract",
            "-F",
            "babel.cfg",
            "-k",
            "lazy_gettext",
            "-k",
            "N_",
            "--no-location",
            "--sort-output",
            "-o",
            str(POT),
            ".",
        ],
        cwd=ROOT,
        check=True,
    )
    subprocess.run(
        [*babel, "-q", "update", "--no-fuzzy-matching", "-i", str(POT), "-d", str(TRANSLATIONS)], cwd=ROOT, check=True
    )


def merge(translations: dict) -> list[str]:
    path = TRANSLATIONS / "fr" / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as handle:
        catalog = read_po(handle, locale="fr")
    missing = []
    for message in catalog:
        if not message.id:
            continue
        key = "|".join(message.id) if isinstance(message.id, tuple) else message.id
        if key in translations:
            value = translations[key]
            if isinstance(value, list):
                # CLDR gives French three forms (one, many, other): "many" reads like "other".
                value = value + [value[-1]] * (catalog.num_plurals - len(value))
                message.string = tuple(typography(v) for v in value)
            else:
                message.string = typography(value)
            message.flags.discard("fuzzy")
        elif not message.string or (isinstance(message.string, tuple) and not all(message.string)):
            missing.append(key)
    with path.open("wb") as handle:
        write_po(handle, catalog, width=120, sort_output=True)
    return missing


if __name__ == "__main__":
    refresh_catalogues()
    table = json.loads(Path(sys.argv[1]).read_text()) if len(sys.argv) > 1 else {}
    left = merge(table)
    for key in left:
        print(f"untranslated: {key!r}")
    sys.exit(1 if left else 0)
