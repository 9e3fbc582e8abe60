"""The command registry: every entry's menu text exists in every catalog, and /help and the menus come from it."""

from __future__ import annotations

import pytest
from telegram.ext import Application

from bot import i18n
from bot.telegram.commands import BUTTONS, COMMANDS, Access, help_text
from bot.testing.fake_telegram import FakeTelegram
from tests.driver import ADMIN


@pytest.mark.parametrize("language", i18n.languages())
def test_every_command_has_its_menu_text_in_every_language(language: str) -> None:
    tr = i18n.translator(language)
    english = i18n.translator("en")
    for command in COMMANDS:
        keys = [command.description] + ([command.description + ".usage"] if command.usage else [])
        for key in keys:
            assert tr(key) != key, f"{language}: {key} missing"   # gettext gives the key back when it is missing
            assert language == "en" or key.endswith(".usage") or tr(key) != english(key), f"{language}: {key}"


def test_names_and_button_kinds_are_unique() -> None:
    assert len({c.name for c in COMMANDS}) == len(COMMANDS)
    assert len({b.kind for b in BUTTONS}) == len(BUTTONS)


def test_help_lists_what_each_reader_may_use() -> None:
    tr = i18n.translator("ru")
    public = help_text(tr, "civic_bot", admin=False)
    admin = help_text(tr, "civic_bot", admin=True)
    for command in COMMANDS:
        assert (f"/{command.name}" in public) is (command.access is not Access.BOT_ADMINS)
        assert f"/{command.name} " in admin and tr(command.description) in admin


async def test_the_menus_are_set_per_language_and_scope(tg: FakeTelegram, app: Application) -> None:
    for language in i18n.languages():
        code = None if language == i18n.DEFAULT else language
        tr = i18n.translator(language)
        public = await tg.wait_for("setMyCommands", lambda p, code=code: "scope" not in p
                                   and p.get("language_code") == code)
        admin = await tg.wait_for("setMyCommands", lambda p, code=code: (p.get("scope") or {}).get("chat_id") == ADMIN
                                  and p.get("language_code") == code)
        assert [(c["command"], c["description"]) for c in admin["commands"]] == [
            (c.name, tr(c.description)) for c in COMMANDS]
        assert [c["command"] for c in public["commands"]] == [
            c.name for c in COMMANDS if c.access is not Access.BOT_ADMINS]
