"""Keeping only what is needed: the daily retention job (RETENTION_DAYS) and /forget, which deletes everything the
bot stores about the chat that sends it, after a confirmation (it cannot be undone)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from telegram import Message, Update

from bot.i18n import Translator
from bot.telegram.common import Context, service_of, settings_of
from bot.telegram.keyboards import forget_keyboard

log = logging.getLogger(__name__)

DAY = dt.timedelta(days=1)   # how often the retention job runs (the first run is at start)


def at_start() -> dict[str, object]:
    """APScheduler options for a job added in post_init that must also run as soon as the job queue starts.

    post_init runs before the scheduler starts: an interval job added then (`first=0`) has its first run moved
    to one interval later, and a run whose time passed more than a second before the start (APScheduler's
    default grace) is dropped.
    """
    return {"next_run_time": dt.datetime.now(dt.UTC), "misfire_grace_time": None}


async def prune(context: Context) -> None:
    """Delete delivered deliveries and statistics older than RETENTION_DAYS (0 keeps everything), off the loop."""
    days = settings_of(context).retention_days
    if days:
        removed = await asyncio.to_thread(service_of(context).store.prune, days)
        log.info("retention: %d rows older than %d days deleted", removed, days)


async def forget(update: Update, context: Context, tr: Translator) -> None:
    """/forget: say what would go, and ask first."""
    message = update.effective_message
    if message is not None:
        await message.reply_text(tr("forget.confirm"), reply_markup=forget_keyboard(tr))


async def forget_button(update: Update, context: Context, tr: Translator, message: Message, rest: str) -> None:
    """x:1 deletes everything about the chat; x:0 keeps it. Either way the buttons go, so it happens once."""
    query = update.callback_query
    assert query is not None
    confirmed = rest == "1"
    if confirmed:
        await asyncio.to_thread(service_of(context).forget_chat, message.chat.id)
    await query.answer()
    await message.edit_text(tr("forget.done") if confirmed else tr("forget.cancelled"))
