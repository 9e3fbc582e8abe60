"""The fake Bot API server behaves like Telegram for the real python-telegram-bot client."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator

import pytest
import telegram
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TimedOut
from telegram.ext import ApplicationBuilder, CallbackQueryHandler, CommandHandler, ContextTypes

from bot.testing.fake_telegram import BOT_USERNAME, FakeTelegram


@pytest.fixture
async def bot(tg: FakeTelegram) -> AsyncIterator[telegram.Bot]:
    async with telegram.Bot(tg.token, base_url=tg.base_url, base_file_url=tg.base_file_url) as client:
        yield client


async def test_send_message_returns_a_full_message_and_is_recorded(tg: FakeTelegram, bot: telegram.Bot) -> None:
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("More", callback_data="more:1")]])
    message = await bot.send_message(42, "<b>Title</b> &amp; 42", parse_mode="HTML", reply_markup=keyboard)
    assert message.text == "Title & 42"
    assert message.chat.id == 42
    assert message.from_user is not None and message.from_user.username == BOT_USERNAME
    assert message.reply_markup == keyboard
    assert tg.sent(42) == [tg.sent()[0]]
    assert tg.sent(42)[0]["text"] == "<b>Title</b> &amp; 42"
    assert tg.sent(42)[0]["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "more:1"


async def test_numeric_text_stays_text(tg: FakeTelegram, bot: telegram.Bot) -> None:
    await bot.send_message(7, "42")
    assert tg.sent(7)[0]["text"] == "42"
    assert tg.sent(7)[0]["chat_id"] == 7


@pytest.mark.parametrize(
    ("text", "parse_mode", "error"),
    [
        ("a < b", "HTML", "parse entities"),
        ("Q&A", "HTML", "parse entities"),
        ("<script>x</script>", "HTML", "unsupported start tag"),
        ("<b>open", "HTML", "end tag"),
        ("x" * 4097, None, "too long"),
        ("   ", None, "empty"),
    ],
)
async def test_messages_telegram_would_refuse_are_refused(
    tg: FakeTelegram, bot: telegram.Bot, text: str, parse_mode: str | None, error: str
) -> None:
    with pytest.raises(BadRequest, match=error):
        await bot.send_message(1, text, parse_mode=parse_mode)
    assert tg.sent() == []


async def test_length_limit_counts_visible_text(tg: FakeTelegram, bot: telegram.Bot) -> None:
    await bot.send_message(1, "<b>" + "&amp;" * 4096 + "</b>", parse_mode="HTML")
    assert len(tg.sent(1)) == 1


async def test_callback_data_over_64_bytes_is_refused(tg: FakeTelegram, bot: telegram.Bot) -> None:
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("x", callback_data="é" * 33)]])
    with pytest.raises(BadRequest, match=r"(?i)button_data_invalid"):
        await bot.send_message(1, "hi", reply_markup=keyboard)


async def test_get_updates_long_polls_until_an_update_arrives(tg: FakeTelegram, bot: telegram.Bot) -> None:
    started = time.monotonic()
    poll = asyncio.create_task(bot.get_updates(timeout=5))
    await asyncio.sleep(0.2)
    assert not poll.done()
    tg.push_message("/start now", chat_id=5, user_id=5)
    updates = await poll
    assert time.monotonic() - started < 4
    assert [u.message.text for u in updates if u.message] == ["/start now"]
    assert updates[0].message is not None and updates[0].message.entities[0].type == "bot_command"
    again = await bot.get_updates(offset=updates[0].update_id, timeout=0)
    assert [u.update_id for u in again] == [updates[0].update_id]
    confirmed = await bot.get_updates(offset=updates[0].update_id + 1, timeout=0)
    assert confirmed == ()


async def test_empty_long_poll_returns_after_timeout(bot: telegram.Bot) -> None:
    started = time.monotonic()
    assert await bot.get_updates(timeout=1) == ()
    assert 0.9 <= time.monotonic() - started < 3


async def test_injected_errors_reach_the_client_as_ptb_exceptions(tg: FakeTelegram, bot: telegram.Bot) -> None:
    tg.block_chat(9)
    with pytest.raises(Forbidden, match="blocked by the user"):
        await bot.send_message(9, "hi")
    tg.fail_next("sendMessage", 429, "Too Many Requests: retry after 3", retry_after=3)
    with pytest.raises(RetryAfter) as flood:
        await bot.send_message(1, "hi")
    assert flood.value.retry_after in (3, dt.timedelta(seconds=3))
    tg.fail_next("sendMessage", 502, "Bad Gateway", count=2, chat_id=2)
    await bot.send_message(1, "other chats unaffected")
    for _ in range(2):
        with pytest.raises(NetworkError):
            await bot.send_message(2, "hi")
    await bot.send_message(2, "third time lucky")
    tg.reset_next("sendMessage")
    with pytest.raises(NetworkError):
        await bot.send_message(3, "hi")
    tg.hang_next("sendMessage", 1.0)
    with pytest.raises(TimedOut):
        await bot.send_message(3, "hi", read_timeout=0.3)
    assert [p["text"] for p in tg.sent()] == ["other chats unaffected", "third time lucky"]
    assert [c.status for c in tg.calls if c.method == "sendMessage"] == [403, 429, 200, 502, 502, 200, 0, 504]


async def test_rate_limit_answers_429_and_counts_them(tg: FakeTelegram, bot: telegram.Bot) -> None:
    tg.set_rate_limit(per_second=5, per_chat_per_second=1, retry_after=1)
    results = await asyncio.gather(*(bot.send_message(c, "x") for c in range(1, 11)), return_exceptions=True)
    refused = [r for r in results if isinstance(r, RetryAfter)]
    assert len(refused) == 5 == tg.rate_limited
    assert len(tg.sent()) == 5


async def test_rate_limit_per_chat(tg: FakeTelegram, bot: telegram.Bot) -> None:
    tg.set_rate_limit(per_second=None, per_chat_per_second=1)
    await bot.send_message(100, "x")
    await bot.send_message(101, "another chat is not held back")
    with pytest.raises(RetryAfter):
        await bot.send_message(100, "again at once")
    assert tg.rate_limited == 1


async def test_wait_for_hands_out_each_call_once(tg: FakeTelegram, bot: telegram.Bot) -> None:
    await bot.send_message(1, "first")
    waiter = asyncio.create_task(tg.wait_for("sendMessage", lambda p: p["chat_id"] == 1, timeout=3))
    assert (await tg.wait_for("sendMessage"))["text"] == "first"
    await bot.send_message(1, "second")
    assert (await waiter)["text"] == "second"
    with pytest.raises(TimeoutError):
        await tg.wait_for("sendMessage", timeout=0.2)


async def test_real_application_handles_commands_and_buttons(tg: FakeTelegram) -> None:
    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Press", callback_data="pressed")]])
        assert update.effective_message is not None
        await update.effective_message.reply_text("Hello", reply_markup=keyboard)

    async def press(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None
        await query.answer("ok")
        await query.edit_message_text(f"You pressed {query.data}")

    app = ApplicationBuilder().token(tg.token).base_url(tg.base_url).base_file_url(tg.base_file_url).build()
    app.add_handler(CommandHandler("start", start))
    app.add_handler(CallbackQueryHandler(press))
    async with app:
        await app.start()
        assert app.updater is not None
        await app.updater.start_polling(poll_interval=0, timeout=1)
        tg.push_message("/start", chat_id=77, user_id=77)
        reply = await tg.wait_for("sendMessage", lambda p: p["chat_id"] == 77)
        assert reply["text"] == "Hello"
        tg.push_callback("pressed", chat_id=77, user_id=77)
        edit = await tg.wait_for("editMessageText")
        assert edit["text"] == "You pressed pressed"
        assert (await tg.wait_for("answerCallbackQuery"))["text"] == "ok"
        await app.updater.stop()
        await app.stop()
