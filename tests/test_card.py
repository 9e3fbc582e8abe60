"""How an answer looks, and what messages that are not questions get (issue 9, parts 3 and 4), end to end through
the real Application and the fake Bot API server: the answering sentence first, one link, the summary on request
or behind "More", every unsure guess named, feedback on what was shown, small talk, captions, voice and stickers."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable
from typing import Any

import pytest
from telegram.ext import Application

from bot import i18n, knowledge
from bot.config import Settings
from bot.knowledge import Article
from bot.render import more_text, render_messages, wants_overview
from bot.testing.fake_telegram import BOT_USERNAME, FakeTelegram, visible_text
from tests.conftest import LIBRARY, OFF_TOPIC_QUESTION, SEED_QUESTION, SEED_SENTENCE
from tests.driver import EN, USER, reply, running, say, service

SHIPPED_URL = "https://example.org/news/civil-forum"
HOURS = ("The central library extends its opening hours for students. "
         "Reading rooms stay open until midnight during the exam weeks in June.")
PARK = ("A new city park opens next to the river. "
        "The park has a library kiosk, playgrounds and a running track.")
LIBRARY_SUMMARY = ("The city council approved the renovation of the central library on Monday. "
                   "The library keeps lending books from a temporary hall during the works.")


def shown(message: dict[str, Any]) -> str:
    """What the reader sees of a message the bot sent."""
    return visible_text(message["text"], message.get("parse_mode"))


def buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for row in (message.get("reply_markup") or {}).get("inline_keyboard", []) for b in row]


def data_of(message: dict[str, Any], prefix: str) -> list[str]:
    return [b["callback_data"] for b in buttons(message) if b.get("callback_data", "").startswith(prefix)]


def message_id(tg: FakeTelegram, sent: dict[str, Any]) -> int:
    return next(int(c.result["message_id"]) for c in tg.calls if c.method == "sendMessage" and c.params is sent)


def sentences_in(text: str) -> list[str]:
    return [s.strip() for line in text.splitlines() for s in line.split(". ") if len(s.strip()) > 20]


@pytest.fixture
def shipped_with_url(settings: Settings) -> Settings:
    """The shipped article as published with a link (the repository's copy has none)."""
    (path,) = knowledge.article_paths(settings.knowledge_dir)
    article = knowledge.read_article(path, [])
    assert article is not None
    path.unlink()
    knowledge.write_article(settings.knowledge_dir, dataclasses.replace(article, url=SHIPPED_URL))
    return settings


@pytest.fixture
def library_settings(settings: Settings, add_article: Callable[..., Article]) -> Settings:
    add_article("library-renovation", "Library renovation approved", LIBRARY, summary=LIBRARY_SUMMARY)
    add_article("library-hours", "Library opens longer for exams", HOURS)
    add_article("river-park", "A new park by the river", PARK)
    return settings


# --- the card -------------------------------------------------------------------------------


@pytest.mark.parametrize("question", [
    "what is this article about?", "What's the forum about", "tell me about the library", "summary please",
    "give me an overview", "кратко о ремонте", "О чём эта статья?", "расскажи про форум",
    "мақала не туралы?", "қысқаша айтып беріңіз", "форум туралы айтып бер",
])
def test_a_question_asking_for_the_overview_is_recognised(question: str) -> None:
    assert wants_overview(question)


@pytest.mark.parametrize("question", [
    SEED_QUESTION, "when do the reading rooms reopen?", "what happened to grant financing?", "about",
    "кто такой Калетаев?", "сколько пунктов выполнено?", "форум қашан өтеді?", "", "what " * 500,
])
def test_a_plain_question_does_not_ask_for_the_overview(question: str) -> None:
    assert not wants_overview(question)


async def test_the_card_starts_with_the_answering_sentence_and_has_one_link(
    tg: FakeTelegram, shipped_with_url: Settings,
) -> None:
    async with running(shipped_with_url) as app:
        card = await say(tg, SEED_QUESTION)
        article = next(iter(service(app).kb.articles.values()))
        text = shown(card)
        assert text.splitlines()[0] == SEED_SENTENCE
        assert text.index(SEED_SENTENCE) < text.index(article.title.split(":")[0]) < text.index("June 5, 2018")
        assert "Government of the Republic of Kazakhstan" in text
        assert card["text"].count("<a ") == 1 and f'<a href="{SHIPPED_URL}">' in card["text"]
        assert not any("url" in b for b in buttons(card))
        assert all(text.count(s) == 1 for s in sentences_in(text))
        assert article.summary.split(". ")[0] not in text        # the summary waits behind "More"
    ((_, notification),) = render_messages([article])             # its notification: the same one link
    assert notification.count("<a ") == 1 and f'<a href="{SHIPPED_URL}">' in notification


async def test_more_shows_the_summary_once_and_then_goes(tg: FakeTelegram, shipped_with_url: Settings) -> None:
    async with running(shipped_with_url) as app:
        card = await say(tg, SEED_QUESTION)
        article = next(iter(service(app).kb.articles.values()))
        (more,) = data_of(card, "m:")
        assert [b["text"] for b in buttons(card) if b.get("callback_data") == more] == [EN("button.more")]
        tg.push_callback(more, message_id=message_id(tg, card))
        summary = await reply(tg)
        assert summary["reply_parameters"]["message_id"] == message_id(tg, card)
        text = shown(summary)
        assert text.startswith(article.title.split(":")[0])
        assert "the Action Plan for the implementation of the recommendations" in text
        assert "organization and holding of the VIII Civil Forum" in text
        assert SEED_SENTENCE not in text
        edited = await tg.wait_for("editMessageReplyMarkup")
        assert not data_of(edited, "m:") and len(data_of(edited, "f:")) == 2
        tg.push_callback(more, message_id=message_id(tg, card))            # pressed again: the button is gone
        assert (await tg.wait_for("answerCallbackQuery", lambda p: p.get("text")))["text"] == EN("button.gone")


async def test_an_overview_question_gets_the_summary_in_the_card(tg: FakeTelegram, library_settings: Settings) -> None:
    async with running(library_settings):
        card = await say(tg, "tell me about the library renovation")
        text = shown(card)
        assert "Library renovation approved" in text
        assert "temporary hall during the works" in text and not data_of(card, "m:")
        assert all(text.count(s) == 1 for s in sentences_in(text))
        plain = await say(tg, "when do the reading rooms reopen after the renovation?")
        assert shown(plain).splitlines()[0] == "Works will cost 40 million tenge and the reading rooms reopen in " \
                                                "September."
        assert "temporary hall" not in shown(plain) and data_of(plain, "m:") == ["m:library-renovation"]


async def test_every_unsure_guess_names_its_article_and_feedback_rates_them_all(
    tg: FakeTelegram, library_settings: Settings,
) -> None:
    question = "what about the library?"
    async with running(library_settings) as app:
        answer = await say(tg, question)
        text = shown(answer)
        assert text.startswith(EN("answer.not_sure"))
        guesses = [key.removeprefix("a:") for key in data_of(answer, "a:")]
        assert sorted(guesses) == ["library-hours", "library-renovation", "river-park"]
        articles = service(app).kb.articles
        for number, key in enumerate(guesses, start=1):
            body = articles[key].body
            block = text.split(f"{number}. {articles[key].title}\n", 1)[1].split("\n\n", 1)[0]
            assert block and all(len(line) > 20 and line in body for line in block.splitlines())
        assert all(text.count(s) == 1 for s in sentences_in(text))

        (unhelpful,) = data_of(answer, "f:0:")
        tg.push_callback(unhelpful, message_id=message_id(tg, answer))
        assert (await tg.wait_for("answerCallbackQuery", lambda p: p.get("text")))["text"] == EN("feedback.thanks")
        await tg.wait_for("editMessageReplyMarkup")

        tg.push_callback(f"a:{guesses[1]}", message_id=message_id(tg, answer))     # a guess's own card
        card = await reply(tg, contains=articles[guesses[1]].title)
        assert card["text"].count("<a ") == 1 and not any("url" in b for b in buttons(card))
    with sqlite3.connect(library_settings.database_path) as db:
        rows = db.execute("SELECT text, article_id, unhelpful FROM feedback").fetchall()
    assert rows == [(question, ", ".join(guesses), 1)]


async def test_a_clear_off_topic_question_is_refused_without_a_closest_article(
    tg: FakeTelegram, library_settings: Settings,
) -> None:
    async with running(library_settings):
        for question in ("weather in Almaty tomorrow?", OFF_TOPIC_QUESTION):
            refusal = await say(tg, question)
            assert shown(refusal) == f"{EN('answer.dont_know')}\n{EN('answer.latest_hint')}"
            assert EN("answer.closest") not in shown(refusal) and not data_of(refusal, "a:")
            assert data_of(refusal, "l") == ["l"]


# --- small talk and other messages ----------------------------------------------------------


@pytest.mark.parametrize(("language", "hello", "thanks", "who"), [
    ("en", "hi", "thanks", "who are you?"),
    ("ru", "привет", "спасибо!", "кто ты?"),
    ("kk", "сәлем", "рахмет", "сен кімсің?"),
])
async def test_small_talk_gets_a_short_friendly_reply_in_the_readers_language(
    tg: FakeTelegram, app: Application, language: str, hello: str, thanks: str, who: str,
) -> None:
    tr = i18n.translator(language)
    title = next(iter(service(app).kb.articles.values())).title
    knows = tr("smalltalk.knows", articles=tr.plural("articles.count", 1), languages=tr.language_name("en"))
    for text, key in ((hello, "smalltalk.greeting"), (who, "smalltalk.who"), ("help", "smalltalk.help")):
        lines = shown(await say(tg, text, language=language)).splitlines()
        assert lines[:2] == [tr(key), knows]
        assert title[:40] in lines[2] and lines[3] == tr("answer.latest_hint")
    lines = shown(await say(tg, thanks, language=language)).splitlines()
    assert lines == [tr("smalltalk.thanks"), tr("answer.latest_hint")]
    stats = service(app).store.stats()
    assert stats.answered == stats.unanswered == 0            # small talk is not counted as a question


async def test_small_talk_in_a_group_is_answered_only_when_addressed(tg: FakeTelegram, app: Application) -> None:
    group = -700
    tg.push_message("hi", chat_id=group, user_id=USER)
    tg.push_message(f"@{BOT_USERNAME} hi", chat_id=group, user_id=USER)
    assert shown(await reply(tg, group)).startswith(EN("smalltalk.greeting"))
    tg.push_message("thanks", chat_id=group, user_id=USER, reply_to_bot=True)
    assert shown(await reply(tg, group)).startswith(EN("smalltalk.thanks"))
    assert len(tg.sent(group)) == 2


async def test_a_caption_is_the_question(tg: FakeTelegram, app: Application) -> None:
    for media in ("photo", "document"):
        tg.push_message(SEED_QUESTION, media=media)
        assert shown(await reply(tg)).splitlines()[0] == SEED_SENTENCE
    group = -701
    tg.push_message(SEED_QUESTION, chat_id=group, user_id=USER, media="photo")           # not for the bot
    tg.push_message(f"@{BOT_USERNAME} {SEED_QUESTION}", chat_id=group, user_id=USER, media="photo")
    assert shown(await reply(tg, group)).splitlines()[0] == SEED_SENTENCE
    assert len(tg.sent(group)) == 1


@pytest.mark.parametrize("language", ["en", "ru", "kk"])
async def test_voice_stickers_and_bare_media_get_one_line_about_text(
    tg: FakeTelegram, app: Application, language: str,
) -> None:
    line = i18n.translator(language)("ask.text_only")
    for media in ("voice", "sticker", "photo", "video", "document"):
        tg.push_message("", media=media, language=language)
        assert (await reply(tg))["text"] == line
    group = -702
    tg.push_message("", chat_id=group, user_id=USER, media="voice", language=language)   # not for the bot
    tg.push_message("", chat_id=group, user_id=USER, media="sticker", reply_to_bot=True, language=language)
    assert (await reply(tg, group))["text"] == line
    assert len(tg.sent(group)) == 1
    assert service(app).store.stats().unanswered == 0


def test_more_never_repeats_what_the_card_says() -> None:
    article = Article("x", "Заголовок", None, None, None, "ru", "Первое предложение. Второе предложение.", "Тело.")
    tr = i18n.translator("ru")
    assert more_text(article, "Первое предложение.\n\nЗаголовок", tr) == "<b>Заголовок</b>\n\nВторое предложение."
    assert more_text(article, "Первое предложение. Второе предложение.", tr) == ""
