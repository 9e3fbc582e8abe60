"""The reader's language, end to end through the fake Bot API: a reader whose Telegram is in Russian or Kazakh sees
no English interface text anywhere; /language changes it; notifications follow the subscriber's language; a question
or a subscription in a language the articles are not in is told so."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from telegram.ext import Application

from bot import i18n, knowledge
from bot.config import Settings
from bot.knowledge import Article
from bot.testing.fake_telegram import BOT_USERNAME, FakeTelegram
from tests.conftest import make_article
from tests.driver import ADMIN, USER, reply, running, say, service, until

DAY = dt.date(2018, 6, 5)
LIMIT = 40
ARTICLES = {
    "ru": make_article(
        "ru-library", "В Алматы отремонтируют центральную библиотеку",
        "Городской совет одобрил ремонт центральной библиотеки в понедельник. Работы обойдутся в 40 миллионов "
        "тенге, а читальные залы откроются в сентябре. Книги пока выдают во временном зале.",
        language="ru", source="Гражданский вестник", published=DAY),
    "kk": make_article(
        "kk-park", "Өзен жағасында жаңа саябақ ашылады",
        "Қала әкімдігі өзен жағасында жаңа саябақ салуды мақұлдады. Саябақта балалар алаңы мен жүгіру жолы "
        "болады. Құрылыс жұмыстары қыркүйекте аяқталады.",
        language="kk", source="Азаматтық хабаршы", published=DAY),
}
QUESTIONS = {"ru": "Когда откроются читальные залы библиотеки?", "kk": "Саябақта балалар алаңы бола ма?"}
NEW_ARTICLES = {
    "ru": [make_article(f"ru-news-{n}", f"Волонтёры провели субботник номер {n}",
                        f"Волонтёры убрали парк номер {n} и посадили деревья.", language="ru",
                        source="Гражданский вестник", published=DAY) for n in range(3)],
    "kk": [make_article(f"kk-news-{n}", f"Еріктілер сенбілік өткізді, нөмір {n}",
                        f"Еріктілер {n} саябақты тазалап, ағаш отырғызды.", language="kk",
                        source="Азаматтық хабаршы", published=DAY) for n in range(3)],
}

_LATIN_WORD = re.compile(r"[A-Za-z]{2,}")
_NOT_PROSE = re.compile(r"https?://\S+|<[^>]*>|/[a-z_]+|@\w+|Ctrl-D")


def english_in(text: str) -> list[str]:
    """Latin-script words left once links, markup, /commands and @names are taken out."""
    return _LATIN_WORD.findall(_NOT_PROSE.sub(" ", text))


def shown_texts(tg: FakeTelegram, language: str) -> list[str]:
    """Every text the bot showed: messages, edits, callback answers, buttons, and the command menus in `language`."""
    texts: list[str] = []
    for call in tg.calls:
        params: dict[str, Any] = call.params
        if call.method == "setMyCommands":
            if params.get("language_code") == language:
                texts += [c["description"] for c in params["commands"]]
            continue
        if call.method == "answerInlineQuery":
            texts += [r["input_message_content"]["message_text"] for r in params["results"]]
            continue
        if isinstance(params.get("text"), str):
            texts.append(params["text"])
        markup = params.get("reply_markup") or {}
        texts += [b["text"] for row in markup.get("inline_keyboard", []) for b in row]
    return texts


@pytest.fixture
def reader_settings(settings: Settings, tmp_path: Path) -> Settings:
    """A knowledge base with one Russian and one Kazakh article and no English at all; and a limit that lets one
    reader go through everything while a flood still reaches it."""
    directory = tmp_path / "ru-kk-knowledge"
    for article in ARTICLES.values():
        knowledge.write_article(directory, article)
    return dataclasses.replace(settings, knowledge_dir=directory, user_rate_limit=LIMIT)


@pytest.mark.parametrize("language", ["ru", "kk"])
async def test_a_reader_in_russian_or_kazakh_sees_no_english(
    tg: FakeTelegram, reader_settings: Settings, language: str,
) -> None:
    settings = reader_settings
    tr = i18n.translator(language)
    group, flooder, talker = -600, 2700, 2800
    tg.chat_admins[group] = {ADMIN}
    async with running(settings) as app:
        await until(lambda: any(c.method == "setMyCommands" and c.params.get("language_code") == language
                                for c in tg.calls))

        def ask(text: str, chat_id: int = USER, user_id: int | None = None) -> Any:
            return say(tg, text, chat_id=chat_id, user_id=user_id, language=language)

        assert tr("command.latest") in (await ask("/start"))["text"]
        await ask("/help")
        answer = await ask(QUESTIONS[language])
        assert ARTICLES[language].title in answer["text"] and tr.date(DAY) in answer["text"]
        unanswered = await ask("какая погода будет завтра в Астане?" if language == "ru" else "ертең ауа райы қандай?")
        assert tr("answer.dont_know") in unanswered["text"]
        await ask("/latest")
        assert (await ask("/latest ²"))["text"] == tr("latest.usage")
        await ask("/search")
        await ask("/search библиотека" if language == "ru" else "/search саябақ")
        await ask("/no_such_command")

        tg.push_callback("l", message_id=_message_id(tg, unanswered), language=language)   # "latest news" button
        latest = await reply(tg)
        assert tr("latest.title") in latest["text"]
        tg.push_callback(_buttons(latest)[0]["callback_data"], message_id=_message_id(tg, latest), language=language)
        await reply(tg)
        tg.push_callback("f:1:" + ARTICLES[language].id, message_id=_message_id(tg, answer), language=language)
        assert (await tg.wait_for("answerCallbackQuery", lambda p: p.get("text")))["text"] == tr("feedback.thanks")
        tg.push_inline_query("", language=language)
        await tg.wait_for("answerInlineQuery")

        assert tr("subscribe.done_all") == (await ask("/subscribe"))["text"]
        await ask("/subscribe библиотека" if language == "ru" else "/subscribe саябақ")
        listing = await ask("/subscriptions")
        tg.push_callback(_buttons(listing)[0]["callback_data"], message_id=_message_id(tg, listing), language=language)
        await tg.wait_for("editMessageText")
        assert (await ask("/subscribe", chat_id=group))["text"] == tr("refusal.chat_admins")
        assert (await ask("/reload"))["text"] == tr("refusal.bot_admins")

        await ask("/subscribe", chat_id=3001, user_id=3001)
        await ask("/subscribe", chat_id=3002, user_id=3002)
        knowledge.write_article(settings.knowledge_dir, NEW_ARTICLES[language][0])
        await ask("/reload", chat_id=ADMIN)
        card = await reply(tg, 3001, contains=NEW_ARTICLES[language][0].title)
        assert tr("article.source_link") in card["text"]
        for article in NEW_ARTICLES[language][1:]:
            knowledge.write_article(settings.knowledge_dir, article)
        await ask("/reload", chat_id=ADMIN)
        digest = await reply(tg, 3001, contains=NEW_ARTICLES[language][1].title)
        assert tr.plural("digest.header", 2) in digest["text"]
        await until(lambda: not service(app).store.pending())
        assert tr("stats.title") in (await ask("/stats", chat_id=ADMIN))["text"]
        # The keyword subscription may have matched a new article too: wait for the reply itself, not the next message.
        tg.push_message("/unsubscribe", chat_id=USER, user_id=USER, language=language)
        assert (await reply(tg, contains=tr.plural("unsubscribe.done", 1)))["text"] == tr.plural("unsubscribe.done", 1)

        tg.fail_next("sendMessage", 400, "Bad Request: message is too long", chat_id=USER)
        tg.push_message(QUESTIONS[language], language=language)
        assert (await reply(tg, contains=tr("refusal.sorry")))["text"] == tr("refusal.sorry")

        for _ in range(LIMIT + 2):
            tg.push_message("/latest", chat_id=flooder, user_id=flooder, language=language)
        await reply(tg, flooder, contains=tr("refusal.slow_down"))

        tg.push_message(f"@{BOT_USERNAME} {QUESTIONS[language]}", chat_id=group, user_id=talker, language=language)
        await reply(tg, group)
        await asyncio.sleep(0.3)

    texts = shown_texts(tg, language)
    assert len(texts) > 40
    leaks = {text: english_in(text) for text in texts if english_in(text)}
    assert not leaks, leaks


def _buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for row in (message.get("reply_markup") or {}).get("inline_keyboard", []) for b in row]


def _message_id(tg: FakeTelegram, sent: dict[str, Any]) -> int:
    return next(int(c.result["message_id"]) for c in tg.calls if c.method == "sendMessage" and c.params is sent)


async def test_language_buttons_change_the_chats_language_and_its_notifications(
    tg: FakeTelegram, app: Application, add_article: Callable[..., Article],
) -> None:
    choice = await say(tg, "/language", language="ru")
    assert choice["text"] == i18n.translator("ru")("language.choose", current="Русский")
    assert [b["text"] for b in _buttons(choice)] == ["English", "Қазақша", "Русский"]
    tg.push_callback("g:kk", message_id=_message_id(tg, choice), language="ru")
    kk = i18n.translator("kk")
    assert (await tg.wait_for("editMessageText"))["text"] == kk("language.set", language="Қазақша")
    assert service(app).store.chat_language(USER) == "kk"
    assert (await say(tg, "/subscribe", language="ru"))["text"] == kk("subscribe.done_all")   # the choice wins
    assert (await say(tg, "/subscribe", chat_id=2002, language="ru"))["text"] == i18n.translator("ru")(
        "subscribe.done_all")
    add_article("library-renovation", "Library renovation approved", "The council approved the renovation.")
    await say(tg, "/reload", chat_id=ADMIN)
    assert kk("article.source_link") in (await reply(tg, USER, contains="Library renovation"))["text"]
    assert i18n.translator("ru")("article.source_link") in (await reply(tg, 2002, contains="Library"))["text"]
    tg.push_callback("g:xx", message_id=_message_id(tg, choice))
    assert (await tg.wait_for("answerCallbackQuery", lambda p: p.get("text")))["text"] == i18n.translator("kk")(
        "button.gone")


async def test_a_question_in_a_language_the_articles_are_not_in_is_told_so(tg: FakeTelegram, app: Application) -> None:
    ru = i18n.translator("ru")
    answer = await say(tg, "Сколько пунктов плана выполнено?", language="ru")
    assert answer["text"].startswith(ru("answer.other_languages", question="русский", languages="английский"))
    english = await say(tg, "how many plan items were executed?", language="ru")
    assert ru("answer.other_languages", question="русский", languages="английский") not in english["text"]
    warned = await say(tg, "/subscribe волонтёры", language="ru")
    assert ru("subscribe.other_languages", words="русский", languages="английский") in warned["text"]
    plain = await say(tg, "/subscribe volunteers", language="ru")
    assert ru("subscribe.other_languages", words="русский", languages="английский") not in plain["text"]
