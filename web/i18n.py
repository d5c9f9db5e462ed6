"""Languages: French first (the procedure's language), English second; the account's choice, then the browser's."""

from __future__ import annotations

from flask import Flask, current_app, g, request, session
from flask_babel import Babel, get_locale, refresh

from models import Account

from .trail import record_account_event

babel = Babel()

SESSION_KEY = "language"
# Each language named in itself, so that someone who cannot read the current one still finds theirs.
LANGUAGE_NAMES = {"fr": "Français", "en": "English"}


def languages() -> list[str]:
    return list(current_app.config.get("LANGUAGES", ["fr", "en"]))


def select_locale() -> str:
    """The account's `language`, else the one chosen on this browser, else Accept-Language, else French."""
    account = g.get("account")
    if account is not None and account.language in languages():
        return account.language
    chosen = session.get(SESSION_KEY)
    if chosen in languages():
        return chosen
    return request.accept_languages.best_match(languages()) or current_app.config.get("BABEL_DEFAULT_LOCALE", "fr")


def remember_language(language: str) -> None:
    """The language chosen on this browser (the switch, "Mon profil"): kept in the browser's session and, for someone
    logged in, on the account, where it follows them to any browser. The rest of this request speaks it too."""
    session[SESSION_KEY] = language
    account = g.get("account")
    if account is not None and account.language != language:
        Account.update(language=language).where(Account.id == account.id).execute()
        record_account_event("account.language", account, **{"from": account.language, "to": language})
        account.language = language
    refresh()


def current_language() -> str:
    return str(get_locale() or "fr")


def init_app(app: Flask) -> None:
    babel.init_app(app, locale_selector=select_locale)
    app.jinja_env.globals.update(current_language=current_language, language_names=LANGUAGE_NAMES)
