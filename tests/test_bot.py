"""End to end: the real python-telegram-bot Application against our fake Bot API server on 127.0.0.1.

Each test starts the application as `python -m bot run` does (initialize, post_init, polling, start), talks
to it only through the fake server (users' updates in, the bot's API calls out), and stops it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from telegram.ext import Application

from bot.answer import Answer
from bot.config import Settings
from bot.knowledge import Article, FaqEntry
from bot.search import Hit
from bot.telegram.app import webhook_options
from bot.telegram.keyboards import answer_keyboard, callback_key
from bot.testing.fake_telegram import BOT_ID, BOT_USERNAME, FakeTelegram
from tests.conftest import LIBRARY, OFF_TOPIC_QUESTION, SEED_QUESTION, SEED_SENTENCE, make_article
from tests.driver import (
    ADMIN,
    ADMINS_ONLY,
    EN,
    GONE,
    GROUP_ADMINS_ONLY,
    RATE_LIMIT,
    REAL_LOOKING_TOKEN,
    SLOW_DOWN,
    SORRY,
    USER,
    reply,
    run_env,
    running,
    say,
    service,
    until,
)

SEED_PUBLISHER = "Government of the Republic of Kazakhstan"
LIBRARY_HOURS = ("The central library extends its opening hours for students. "
                 "Reading rooms stay open until midnight during the exam weeks in June.")
PARK = ("A new city park opens next to the river. "
        "The park has a library kiosk, playgrounds and a running track.")



def buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for row in (message.get("reply_markup") or {}).get("inline_keyboard", []) for b in row]


def data_of(message: dict[str, Any], prefix: str) -> list[str]:
    return [b["callback_data"] for b in buttons(message) if b.get("callback_data", "").startswith(prefix)]


async def answered_callback(tg: FakeTelegram) -> dict[str, Any]:
    return await tg.wait_for("answerCallbackQuery")


# --- asking ------------------------------------------------------------------------------

async def test_a_seed_question_is_answered_with_its_sentence_and_source(tg: FakeTelegram, app: Application) -> None:
    update = tg.push_message(SEED_QUESTION)
    message = await reply(tg)
    assert message["parse_mode"] == "HTML"
    assert SEED_SENTENCE in message["text"]
    assert SEED_PUBLISHER in message["text"] and "2018" in message["text"]
    assert message["reply_parameters"]["message_id"] == update["message"]["message_id"]
    assert len(data_of(message, "f:")) == 2
    assert service(app).store.stats().answered == 1


async def test_an_unanswerable_question_gets_an_honest_no_and_latest(tg: FakeTelegram, app: Application) -> None:
    message = await say(tg, OFF_TOPIC_QUESTION)
    assert SEED_SENTENCE not in message["text"]
    assert "/latest" in message["text"]
    assert data_of(message, "l") == ["l"] and not data_of(message, "f:")
    tg.push_callback("l")
    latest = await reply(tg)
    assert next(iter(service(app).kb.articles.values())).title in latest["text"]
    stats = service(app).store.stats()
    assert stats.unanswered == 1 and stats.top_unanswered[0][0] == OFF_TOPIC_QUESTION


async def test_a_5000_character_message_still_gets_a_valid_reply(tg: FakeTelegram, app: Application) -> None:
    text = (SEED_QUESTION + " ") + "executed items " * 400
    assert len(text) >= 5000
    message = await say(tg, text)
    assert message["parse_mode"] == "HTML" and message["text"].strip()
    assert all(len(q) <= 1000 for q, _ in service(app).store.stats().top_unanswered)


async def test_in_groups_only_messages_addressed_to_the_bot_are_questions(tg: FakeTelegram, app: Application) -> None:
    group = -500
    tg.push_message(SEED_QUESTION, chat_id=group, user_id=USER)                       # not for the bot: ignored
    mention = tg.push_message(f"@{BOT_USERNAME} {SEED_QUESTION}", chat_id=group, user_id=USER)
    first = await reply(tg, group)
    assert first["reply_parameters"]["message_id"] == mention["message"]["message_id"]
    assert SEED_SENTENCE in first["text"]
    tg.push_message(f"/ask {SEED_QUESTION}", chat_id=group, user_id=USER)
    assert SEED_SENTENCE in (await reply(tg, group))["text"]
    tg.push_message(SEED_QUESTION, chat_id=group, user_id=USER, reply_to_bot=True)
    assert SEED_SENTENCE in (await reply(tg, group))["text"]
    await asyncio.sleep(0.3)
    assert len(tg.sent(group)) == 3


async def test_one_user_flooding_is_limited_politely_and_others_still_answered(tg: FakeTelegram,
                                                                               app: Application) -> None:
    for _ in range(RATE_LIMIT + 3):
        tg.push_message(SEED_QUESTION, chat_id=USER)
    tg.push_message(SEED_QUESTION, chat_id=2002, user_id=2002)
    assert SEED_SENTENCE in (await reply(tg, 2002))["text"]
    for _ in range(RATE_LIMIT + 1):
        await reply(tg, USER)
    await asyncio.sleep(0.3)
    texts = [m["text"] for m in tg.sent(USER)]
    assert len(texts) == RATE_LIMIT + 1
    assert texts.count(SLOW_DOWN) == 1


# --- buttons -------------------------------------------------------------------------------

async def test_buttons_show_cards_record_feedback_and_refuse_forgeries(
    tg: FakeTelegram, settings: Settings, add_article: Callable[..., Article],
) -> None:
    add_article("library-renovation", "Library renovation approved", LIBRARY)
    add_article("library-hours", "Library opens longer for exams", LIBRARY_HOURS)
    add_article("river-park", "A new park by the river", PARK)
    async with running(settings) as app:
        answer = await say(tg, "when do the library reading rooms reopen after the renovation?")
        assert "Library renovation approved" in answer["text"]
        assert answer["text"].count("<a ") == 1 and not any("url" in b for b in buttons(answer))
        assert '<a href="https://example.org/library-renovation">Read at the source</a>' in answer["text"]

        alternatives = data_of(answer, "a:")
        assert alternatives
        tg.push_callback(alternatives[0])
        card = await reply(tg)
        shown = service(app).article(alternatives[0].removeprefix("a:"))
        assert shown is not None and shown.title in card["text"]
        assert (await answered_callback(tg)).get("text") is None

        unhelpful = data_of(answer, "f:0:")[0]
        tg.push_callback(unhelpful, message_id=answer_id(tg, answer))
        assert (await answered_callback(tg))["text"]
        edited = await tg.wait_for("editMessageReplyMarkup")
        assert not data_of(edited, "f:") and data_of(edited, "a:")
        stats = service(app).store.stats()
        assert stats.unhelpful == 1
        assert stats.top_unhelpful[0][0] == "when do the library reading rooms reopen after the renovation?"

        tg.push_callback(unhelpful, message_id=answer_id(tg, answer))     # replayed: the button is gone now
        assert (await answered_callback(tg))["text"] == GONE
        for forged in ("a:../../etc/passwd", "a:#deadbeef", "u:1", "f:1:", "zzz", "a:" + "x" * 200):
            tg.push_callback(forged, message_id=answer_id(tg, answer))
            assert (await answered_callback(tg))["text"] == GONE
        await asyncio.sleep(0.2)
        assert service(app).store.stats().unhelpful == 1
        assert len(tg.sent(USER)) == 2


def answer_id(tg: FakeTelegram, sent_params: dict[str, Any]) -> int:
    """The message id the fake server gave to a message the bot sent."""
    for call in tg.calls:
        if call.method == "sendMessage" and call.params is sent_params:
            return int(call.result["message_id"])
    raise AssertionError("not a message the bot sent")


def _keyboard(answer: Answer) -> list[tuple[str, str]]:
    markup = answer_keyboard(answer, EN).to_dict()
    return [(b["text"], b.get("url") or b["callback_data"]) for row in markup["inline_keyboard"] for b in row]


def test_the_keyboard_follows_the_answer_tier() -> None:
    best = make_article("best", "Best match", "Body.")
    long_id = make_article("x" * 100, "An article with a very long id " + "and a long title " * 5, "Body.")
    others = (Hit(long_id, 0.4), Hit(make_article("third", "Third", "Body."), 0.3),
              Hit(make_article("fourth", "Fourth", "Body."), 0.2))
    sure = _keyboard(Answer("q", True, True, 0.9, best, ("Body.",), "More of the body.", others))
    assert sure[0] == ("More", "m:best")
    assert [data for _, data in sure[1:4]] == [f"a:{callback_key(long_id.id)}", "a:third", "a:fourth"]
    assert all(len(data.encode()) <= 64 for _, data in sure) and len(sure[1][0]) <= 60
    assert [data for _, data in sure[4:]] == ["f:1:best", "f:0:best"]
    overview = _keyboard(Answer("what is it about?", True, True, 0.9, best, ("Body.",), "More of the body.", ()))
    assert [data for _, data in overview] == ["f:1:best", "f:0:best"]   # the card shows the summary itself
    unsure = _keyboard(Answer("q", True, False, 0.6, best, ("Body.",), "More of the body.", others))
    assert [data for _, data in unsure] == ["a:best", f"a:{callback_key(long_id.id)}", "a:third", "f:1:#", "f:0:#"]
    refused = _keyboard(Answer("q", False, False, 0.1, None, (), None, others))
    assert [data for _, data in refused] == [f"a:{callback_key(long_id.id)}", "a:third", "a:fourth", "l"]
    faq = _keyboard(Answer("q", True, True, 0.9, None, (), None, (), FaqEntry("f", ("q",), "a")))
    assert [data for _, data in faq] == ["f:1:", "f:0:"]


# --- subscriptions -------------------------------------------------------------------------

async def test_subscribe_list_remove_and_unsubscribe(tg: FakeTelegram, app: Application) -> None:
    store = service(app).store
    assert "every new article" in (await say(tg, "/subscribe"))["text"]
    assert "climate change" in (await say(tg, "/subscribe Climate   change"))["text"]
    listing = await say(tg, "/subscriptions")
    removals = data_of(listing, "u:")
    assert len(removals) == 2
    tg.push_callback(removals[0], message_id=answer_id(tg, listing))
    edited = await tg.wait_for("editMessageText")
    assert data_of(edited, "u:") == removals[1:]
    assert [s.words for s in store.subscriptions(USER)] == ["climate change"]
    assert "Unsubscribed" in (await say(tg, "/unsubscribe"))["text"]
    assert store.subscriptions(USER) == []
    assert "no subscriptions" in (await say(tg, "/subscriptions"))["text"]


async def test_in_groups_only_chat_admins_change_subscriptions(tg: FakeTelegram, app: Application) -> None:
    group = -700
    tg.chat_admins[group] = {42}
    assert (await say(tg, "/subscribe", chat_id=group, user_id=USER))["text"] == GROUP_ADMINS_ONLY
    assert service(app).store.subscriptions(group) == []
    assert "Subscribed" in (await say(tg, "/subscribe", chat_id=group, user_id=42))["text"]
    listing = await say(tg, "/subscriptions", chat_id=group, user_id=USER)
    tg.push_callback(data_of(listing, "u:")[0], chat_id=group, user_id=USER, message_id=answer_id(tg, listing))
    assert (await answered_callback(tg))["text"] == GROUP_ADMINS_ONLY
    assert (await say(tg, "/unsubscribe", chat_id=group, user_id=USER))["text"] == GROUP_ADMINS_ONLY
    assert len(service(app).store.subscriptions(group)) == 1


# --- reloads and notifications ---------------------------------------------------------------

async def test_an_admin_reload_adds_an_article_and_subscribers_are_notified(
    tg: FakeTelegram, app: Application, add_article: Callable[..., Article],
) -> None:
    await say(tg, "/subscribe", chat_id=2002)
    await say(tg, "/subscribe football", chat_id=2003)
    add_article("library-renovation", "Library renovation approved", LIBRARY)
    report = await say(tg, "/reload", chat_id=ADMIN)
    assert "1 added" in report["text"] and "added: Library renovation approved" in report["text"]
    notification = await reply(tg, 2002, contains="Library renovation approved")
    assert notification["parse_mode"] == "HTML"
    await until(lambda: not service(app).store.pending())
    assert not any("Library" in m["text"] for m in tg.sent(2003))
    answer = await say(tg, "when do the library reading rooms reopen?")
    assert "Library renovation approved" in answer["text"]


async def test_reload_and_stats_are_refused_to_others(tg: FakeTelegram, app: Application,
                                                      add_article: Callable[..., Article]) -> None:
    add_article("library-renovation", "Library renovation approved", LIBRARY)
    assert (await say(tg, "/reload"))["text"] == ADMINS_ONLY
    assert (await say(tg, "/stats"))["text"] == ADMINS_ONLY
    assert (await say(tg, "/reload", chat_id=-800, user_id=USER))["text"] == ADMINS_ONLY
    assert "library-renovation" not in service(app).kb.articles


async def test_a_broken_reload_keeps_the_old_knowledge_and_tells_the_admin_where(
    tg: FakeTelegram, app: Application, knowledge_dir: Path, add_article: Callable[..., Article],
) -> None:
    add_article("library-renovation", "Library renovation approved", LIBRARY)
    (knowledge_dir / "articles" / "broken.yaml").write_text("id: broken\ntitle: [oops\nbody: x\n", "utf-8")
    report = await say(tg, "/reload", chat_id=ADMIN)
    assert "Not reloaded" in report["text"] and "articles/broken.yaml:" in report["text"]
    assert "library-renovation" not in service(app).kb.articles
    assert SEED_SENTENCE in (await say(tg, SEED_QUESTION))["text"]


async def test_admins_see_stats(tg: FakeTelegram, app: Application) -> None:
    await say(tg, OFF_TOPIC_QUESTION)
    await say(tg, "/subscribe", chat_id=2002)
    stats = await say(tg, "/stats", chat_id=ADMIN)
    assert f"Articles: {len(service(app).kb.articles)}" in stats["text"]
    assert "Subscribed chats: 1" in stats["text"]
    assert "1 not answered" in stats["text"] and "weather in Almaty" in stats["text"]


async def _subscribe_chats(app: Application, chats: range) -> None:
    for chat in chats:
        service(app).store.subscribe(chat)


async def test_a_subscriber_who_blocked_the_bot_is_removed(tg: FakeTelegram, app: Application,
                                                           add_article: Callable[..., Article]) -> None:
    await _subscribe_chats(app, range(3001, 3004))
    tg.block_chat(3002)
    add_article("library-renovation", "Library renovation approved", LIBRARY)
    await say(tg, "/reload", chat_id=ADMIN)
    await reply(tg, 3001, contains="Library")
    await reply(tg, 3003, contains="Library")
    await until(lambda: service(app).store.subscriptions(3002) == [])
    assert [len(service(app).store.subscriptions(c)) for c in (3001, 3003)] == [1, 1]


async def test_429_retry_after_is_honoured_and_nothing_is_lost(tg: FakeTelegram, app: Application,
                                                               add_article: Callable[..., Article]) -> None:
    chats = range(3001, 3006)
    await _subscribe_chats(app, chats)
    tg.fail_next("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1, count=2, chat_id=3003)
    add_article("library-renovation", "Library renovation approved", LIBRARY)
    await say(tg, "/reload", chat_id=ADMIN)
    for chat in chats:
        await reply(tg, chat, contains="Library", timeout=15)
    await until(lambda: not service(app).store.pending())
    for chat in chats:
        assert len([m for m in tg.sent(chat) if "Library" in m["text"]]) == 1
    refused = [c.at for c in tg.calls if c.method == "sendMessage" and c.status == 429]
    delivered = [c.at for c in tg.calls if c.method == "sendMessage" and c.status == 200
                 and c.params["chat_id"] == 3003]
    assert len(refused) == 2
    assert delivered[0] - refused[0] >= 1.9   # waited retry_after after each of the two 429s


async def test_after_a_429_the_broadcast_resumes_one_turn_at_a_time(tg: FakeTelegram, app: Application,
                                                                    add_article: Callable[..., Article]) -> None:
    """A rate limiter that holds every send for the wait and then lets them all go together trips the limit again:
    the strict server would refuse some of that burst."""
    tg.enforce_telegram_limits(per_second=30)
    chats = range(5001, 5121)
    await _subscribe_chats(app, chats)
    tg.fail_next("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1, chat_id=5040)
    add_article("library-renovation", "Library renovation approved", LIBRARY)
    await say(tg, "/reload", chat_id=ADMIN)

    def told() -> list[int]:
        return [len([m for m in tg.sent(chat) if "Library" in m["text"]]) for chat in chats]

    await until(lambda: all(told()), timeout=60)
    await until(lambda: not service(app).store.pending())
    assert told() == [1] * len(chats)
    assert tg.rate_limited == 0   # the one 429 was the injected one


async def test_answers_given_during_a_broadcast_take_turns_with_it_under_the_limit(
        tg: FakeTelegram, app: Application, add_article: Callable[..., Article]) -> None:
    """Telegram counts answers and notifications together, 30 a second for the whole bot: questions asked while a
    broadcast runs at full speed are answered without either meeting a 429, however unevenly they travel."""
    tg.enforce_telegram_limits(per_second=30)
    tg.jitter = 0.2
    chats = range(6001, 6151)
    await _subscribe_chats(app, chats)
    add_article("library-renovation", "Library renovation approved", LIBRARY)
    await say(tg, "/reload", chat_id=ADMIN)
    askers = range(7001, 7031)
    for asker in askers:
        tg.push_message(SEED_QUESTION, chat_id=asker, user_id=asker)
        await asyncio.sleep(0.1)
    for asker in askers:
        assert SEED_SENTENCE[:40] in (await reply(tg, asker))["text"]

    def told() -> list[int]:
        return [len([m for m in tg.sent(chat) if "Library" in m["text"]]) for chat in chats]

    await until(lambda: all(told()), timeout=60)
    assert told() == [1] * len(chats)
    assert tg.rate_limited == 0


async def test_a_restart_in_the_middle_of_a_broadcast_loses_and_repeats_nothing(
    tg: FakeTelegram, settings: Settings, add_article: Callable[..., Article],
) -> None:
    chats = range(4001, 4011)
    stalled = range(4006, 4011)
    for chat in stalled:   # these sends hang, then fail without delivering: the process dies meanwhile
        tg.hang_next("sendMessage", 2.0, chat_id=chat)
    async with running(settings) as app:
        await _subscribe_chats(app, chats)
        add_article("library-renovation", "Library renovation approved", LIBRARY)
        await say(tg, "/reload", chat_id=ADMIN)
        await until(lambda: set(service(app).store.pending()) == set(stalled))
        for task in asyncio.all_tasks():
            if task.get_name() == "broadcast":
                task.cancel()
    assert all(not tg.sent(chat) for chat in stalled)
    async with running(settings) as app:   # the restart resumes from the delivery log
        for chat in stalled:
            await reply(tg, chat, contains="Library")
        await until(lambda: not service(app).store.pending())
    for chat in chats:
        assert len([m for m in tg.sent(chat) if "Library" in m["text"]]) == 1, chat


# --- browsing --------------------------------------------------------------------------------

async def test_latest_search_and_inline_mode(tg: FakeTelegram, app: Application) -> None:
    title = next(iter(service(app).kb.articles.values())).title
    latest = await say(tg, "/latest 3")
    assert title in latest["text"] or title[:40] in latest["text"]
    assert len(data_of(latest, "a:")) == 1
    found = await say(tg, "/search plan items executed")
    assert data_of(found, "a:") == data_of(latest, "a:")
    assert "/search" in (await say(tg, "/search"))["text"]
    assert "No article matches" in (await say(tg, "/search zzzqqq"))["text"]
    tg.push_callback(data_of(found, "a:")[0], message_id=answer_id(tg, found))
    assert SEED_PUBLISHER in (await reply(tg))["text"]
    tg.push_inline_query("plan items")
    inline = await tg.wait_for("answerInlineQuery")
    assert len(inline["results"]) == 1
    assert inline["results"][0]["input_message_content"]["parse_mode"] == "HTML"
    tg.push_inline_query("zzzqqq")
    assert (await tg.wait_for("answerInlineQuery"))["results"] == []


async def test_a_count_that_is_not_a_number_gets_the_usage_not_a_traceback(
    tg: FakeTelegram, app: Application, caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR):
        for count in ("²", "٣", "1" * 5000, "-1", "abc"):   # "²".isdigit() is true, and int() refuses it
            assert (await say(tg, f"/latest {count}"))["text"] == EN("latest.usage")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert EN("latest.title") in (await say(tg, "/latest 2"))["text"]


async def test_help_and_the_command_menus(tg: FakeTelegram, app: Application) -> None:
    public = await tg.wait_for("setMyCommands", lambda p: "scope" not in p)
    admin = await tg.wait_for("setMyCommands", lambda p: (p.get("scope") or {}).get("chat_id") == ADMIN)
    public_names = {c["command"] for c in public["commands"]}
    admin_names = {c["command"] for c in admin["commands"]}
    assert {"reload", "stats", "add", "sources"} & public_names == set()
    assert admin_names == public_names | {"reload", "stats", "add", "sources"}
    assert {"start", "help", "latest", "search", "subscribe", "subscriptions", "unsubscribe", "ask"} <= public_names
    user_help = (await say(tg, "/help"))["text"]
    assert all(f"/{name}" in user_help for name in public_names) and "/reload" not in user_help
    assert "/reload" in (await say(tg, "/start", chat_id=ADMIN))["text"]


async def test_a_failing_database_is_reported_and_answers_go_on(tg: FakeTelegram, app: Application) -> None:
    service(app).store.close()
    assert (await say(tg, "/subscribe"))["text"] == SORRY
    assert SEED_SENTENCE in (await say(tg, SEED_QUESTION))["text"]


def test_webhook_mode_always_checks_a_secret_token(settings: Settings) -> None:
    hook = Settings(token=settings.token, webhook_url="https://bot.example.org/telegram/hook", webhook_port=8443)
    options = webhook_options(hook)
    assert options["url_path"] == "telegram/hook" and options["webhook_url"] == hook.webhook_url
    assert len(options["secret_token"]) >= 32
    assert webhook_options(hook)["secret_token"] != options["secret_token"]
    fixed = Settings(token=settings.token, webhook_url="https://bot.example.org/", webhook_secret="abc_DEF-1")
    assert webhook_options(fixed)["secret_token"] == "abc_DEF-1"


# --- the real command ---------------------------------------------------------------------------

async def test_python_m_bot_run_answers_and_stops_cleanly(knowledge_dir: Path, tmp_path: Path) -> None:
    """What the Dockerfile runs: configuration from the environment, long polling, a clean stop on SIGTERM."""
    async with FakeTelegram(token=REAL_LOOKING_TOKEN) as tg:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", cwd=tmp_path, env=run_env(tg, knowledge_dir, tmp_path, tg.token),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        try:
            tg.push_message(SEED_QUESTION)
            assert SEED_SENTENCE in (await reply(tg, timeout=60))["text"]
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.wait_for(process.communicate(), 60)
    log = stderr.decode()
    assert process.returncode == 0, log
    assert "Application started" in log and "Traceback" not in log
    assert REAL_LOOKING_TOKEN not in log and REAL_LOOKING_TOKEN.split(":")[1] not in log
    assert (tmp_path / "db" / "bot.sqlite3").is_file()


async def test_python_m_bot_run_with_a_refused_token_explains(knowledge_dir: Path, tmp_path: Path) -> None:
    wrong = f"{BOT_ID}:AAH{'y' * 32}"
    async with FakeTelegram(token=REAL_LOOKING_TOKEN) as tg:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", cwd=tmp_path, env=run_env(tg, knowledge_dir, tmp_path, wrong),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await asyncio.wait_for(process.communicate(), 60)
    log = stderr.decode()
    assert process.returncode == 2
    assert "@BotFather" in log.strip().splitlines()[-1]   # our explanation ends it, not an uncaught traceback
    assert wrong not in log and wrong.split(":")[1] not in log
