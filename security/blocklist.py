"""The blocklist of common passwords (NIST SP 800-63B-4 §3.1.1.2), available offline.

Source: the "passwords" frequency list shipped inside the PyPI package `zxcvbn` (MIT; 30,000 passwords ranked by
frequency in public leaks, lower case), plus a few French favourites that English-language list lacks.
"""

from __future__ import annotations

from functools import cache

# Frequent in French-speaking countries and missing from zxcvbn's list (checked against it; it has "azerty",
# "motdepasse", "soleil", "jetaime", "marseille"…). A password built on one of these is the first thing tried.
FRENCH_EXTRAS = (
    "123soleil",
    "bisou",
    "chouchou",
    "coucou",
    "doudou",
    "jesuis",
    "loulou",
    "moimeme",
    "nicolas",
    "camille",
    "suisse",
    "switzerland",
    "helvetia",
)


@cache
def common_passwords() -> frozenset[str]:
    """Lower-case common passwords. zxcvbn's lists module is 800 kB of Python: loaded at the first check only."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(FREQUENCY_LISTS["passwords"]) | frozenset(FRENCH_EXTRAS)
