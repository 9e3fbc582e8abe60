"""The message catalogs: every key the code uses exists in every language, with the same placeholders."""

from __future__ import annotations

import ast
import datetime as dt
import string
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from bot import i18n

BOT = Path(i18n.__file__).parent


def _catalog(language: str) -> dict[str, tuple[str, ...]]:
    with i18n.catalog_path(language).open("rb") as handle:
        catalog = read_po(handle, locale=language)
    entries = {}
    for message in catalog:
        if message.id:
            key = message.id[0] if isinstance(message.id, tuple) else message.id
            forms = message.string if isinstance(message.string, tuple) else (message.string,)
            entries[key] = tuple(forms)
    return entries


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def _keys_used_in_code() -> set[str]:
    """String keys passed to a translator: `tr("key")` and `tr.plural("key", n)` anywhere in bot/."""
    keys = set()
    for path in BOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)):
                continue
            func = node.func
            if (isinstance(func, ast.Name) and func.id == "tr") or (
                    isinstance(func, ast.Attribute) and func.attr == "plural"):
                keys.add(node.args[0].value)
    return keys


def test_every_language_has_a_catalog_and_english_comes_first() -> None:
    assert i18n.languages()[0] == "en"
    assert {"en", "ru", "kk"} <= set(i18n.languages())


@pytest.mark.parametrize("language", i18n.languages())
def test_every_key_is_translated_with_the_same_placeholders(language: str) -> None:
    english = _catalog("en")
    translated = _catalog(language)
    assert not set(english) - set(translated), "keys missing from the catalog"
    assert not set(translated) - set(english), "keys the English catalog does not have"
    for key, forms in translated.items():
        assert all(form.strip() for form in forms), f"{language}: {key} is empty"
        wanted = set().union(*(_placeholders(form) for form in english[key]))
        for form in forms:
            assert _placeholders(form) <= wanted | {"n"}, f"{language}: {key} uses an unknown placeholder"


def test_every_key_the_code_uses_is_in_the_catalogs() -> None:
    missing = _keys_used_in_code() - set(_catalog("en"))
    assert not missing, f"keys used in code but missing from the catalogs: {sorted(missing)}"


def test_plurals_and_dates_follow_each_locale() -> None:
    ru = i18n.translator("ru")
    assert [ru.plural("articles.count", n) for n in (1, 3, 5, 21)] == ["1 статья", "3 статьи", "5 статей", "21 статья"]
    assert i18n.translator("en").plural("articles.count", 1) == "1 article"
    assert ru.date(dt.date(2018, 6, 5)).replace("\u202f", " ") == "5 июня 2018 г."  # CLDR: a narrow no-break space
    assert "маусым" in i18n.translator("kk").date(dt.date(2018, 6, 5))
    assert i18n.translator("en").date(None) == ""


@pytest.mark.parametrize(("chosen", "telegram", "expected"), [
    (None, "ru", "ru"), (None, "ru-RU", "ru"), (None, "kk", "kk"), (None, "de", "en"), (None, None, "en"),
    ("kk", "ru", "kk"), ("xx", "ru", "ru"),
])
def test_the_chats_choice_wins_then_telegrams_language_then_english(
        chosen: str | None, telegram: str | None, expected: str) -> None:
    assert i18n.resolve(chosen, telegram) == expected
