"""Driving the real python-telegram-bot Application against the fake Bot API server: shared by the end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from telegram.ext import Application

from bot import i18n
from bot.config import Settings
from bot.service import Service
from bot.telegram.app import ALLOWED_UPDATES, build_application
from bot.telegram.common import SERVICE
from bot.testing.fake_telegram import BOT_ID, FakeTelegram

REPO = Path(__file__).resolve().parent.parent
ADMIN = 9001
USER = 1001
RATE_LIMIT = 10   # every command and button counts against it

# What an English-speaking reader is told, from the catalog (the tests in other languages use their own).
EN = i18n.translator("en")
SORRY = EN("refusal.sorry")
GONE = EN("button.gone")
SLOW_DOWN = EN("refusal.slow_down")
ADMINS_ONLY = EN("refusal.bot_admins")
GROUP_ADMINS_ONLY = EN("refusal.chat_admins")


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Application]:  # type: ignore[type-arg]
    """Start and stop the application in the order `Application.run_polling` uses."""
    application = build_application(settings)
    await application.initialize()
    try:
        assert application.post_init is not None and application.updater is not None
        await application.post_init(application)
        await application.updater.start_polling(poll_interval=0, timeout=1, allowed_updates=ALLOWED_UPDATES)
        await application.start()
        try:
            yield application
        finally:
            await application.updater.stop()
            await application.stop()
    finally:
        await application.shutdown()
        assert application.post_shutdown is not None
        await application.post_shutdown(application)


def service(application: Application) -> Service:  # type: ignore[type-arg]
    return application.bot_data[SERVICE]  # type: ignore[no-any-return]


async def reply(tg: FakeTelegram, chat_id: int = USER, contains: str = "", timeout: float = 30) -> dict[str, Any]:
    """The next message the bot sent to this chat (containing `contains`)."""
    return await tg.wait_for("sendMessage", lambda p: p["chat_id"] == chat_id and contains in p["text"],
                             timeout=timeout)


async def say(tg: FakeTelegram, text: str, chat_id: int = USER, user_id: int | None = None,
              **kwargs: Any) -> dict[str, Any]:
    tg.push_message(text, chat_id=chat_id, user_id=chat_id if user_id is None else user_id, **kwargs)
    return await reply(tg, chat_id)


async def until(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


REAL_LOOKING_TOKEN = f"{BOT_ID}:AAH{'x' * 32}"


def run_env(tg: FakeTelegram, knowledge_dir: Path, tmp_path: Path, token: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "TELEGRAM_BOT_TOKEN": token, "TELEGRAM_BASE_URL": tg.base_url,
            "KNOWLEDGE_DIR": str(knowledge_dir), "DATABASE_PATH": str(tmp_path / "db" / "bot.sqlite3"),
            "ADMIN_IDS": str(ADMIN), "LOG_LEVEL": "DEBUG"}
