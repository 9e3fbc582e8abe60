"""The reader's language: gettext message catalogs read with Babel, plurals and dates by the locale's CLDR rules.

Every user-facing string lives in `bot/locales/<language>/LC_MESSAGES/messages.po` under a symbolic key (msgid
`answer.not_found`, not English prose), so a translator edits one file and adding a language is adding one catalog:
the set of languages is whatever catalogs exist. The catalogs are compiled in memory at first use, so no `.mo`
build step is needed and the `.po` files stay the single source.
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import Translations

LOCALES = Path(__file__).with_name("locales")
DEFAULT = "en"
DOMAIN = "messages"


def catalog_path(language: str) -> Path:
    return LOCALES / language / "LC_MESSAGES" / f"{DOMAIN}.po"


@lru_cache(maxsize=1)
def languages() -> tuple[str, ...]:
    """Every language with a catalog, the default first."""
    found = sorted(path.parent.parent.name for path in LOCALES.glob(f"*/LC_MESSAGES/{DOMAIN}.po"))
    return (DEFAULT, *(code for code in found if code != DEFAULT))


def resolve(chosen: str | None, telegram_code: str | None = None) -> str:
    """The chat's own choice if it made one, else the user's Telegram language ("ru-RU" is "ru"), else English."""
    for code in (chosen, telegram_code):
        if code:
            primary = code.replace("_", "-").split("-")[0].lower()
            if primary in languages():
                return primary
    return DEFAULT


@cache
def _translations(language: str) -> Translations:
    with catalog_path(language).open("rb") as handle:
        catalog = read_po(handle, locale=language, domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)


@dataclass(frozen=True, slots=True)
class Translator:
    """Messages, plurals, numbers and dates in one language; values are substituted with `str.format`."""

    language: str

    def __call__(self, key: str, **values: Any) -> str:
        text = _translations(self.language).gettext(key)
        return text.format(**values) if values else text

    def plural(self, key: str, n: int, **values: Any) -> str:
        """The form of `key` that the language uses for `n` (`{n}` in the text is the number, locale-formatted)."""
        text = _translations(self.language).ngettext(key, key, n)
        return text.format(n=self.number(n), **values)

    def number(self, n: float) -> str:
        return format_decimal(n, locale=self.language)

    def date(self, day: dt.date | None) -> str:
        """A date as the locale writes it in prose ("June 5, 2018", "5 июня 2018 г."); empty when unknown."""
        return format_date(day, format="long", locale=self.language) if day else ""

    def language_name(self, code: str) -> str:
        """A language's name in this language ("русский" for ru in Russian), the code itself when unknown."""
        try:
            return Locale.parse(code).get_display_name(self.language) or code
        except (ValueError, UnknownLocaleError):
            return code


def translator(language: str | None) -> Translator:
    """The translator for a language code as Telegram or the store gives it; unknown codes get English."""
    return _translator(resolve(language))


@cache
def _translator(language: str) -> Translator:
    return Translator(language)
