"""The editors' commands (ADMIN_IDS): /reload and /stats."""

from __future__ import annotations

import asyncio

from telegram import Update

from bot import notify
from bot.i18n import Translator
from bot.render import reload_report, stats_report
from bot.telegram.common import Context, service_of


async def reload(update: Update, context: Context, tr: Translator) -> None:
    """Reread the knowledge base without blocking answers; report; then notify subscribers in the background."""
    message = update.effective_message
    if message is None:
        return
    service = service_of(context)
    result = await service.reload()
    fresh = await asyncio.to_thread(notify.unannounced, service.store, result.new) if result.ok else []
    if fresh:  # queued (at the task's first step) before the reply, so a failed reply cannot lose the notification
        context.application.create_task(
            notify.notify_new(context.bot, service.store, result.new, fresh), update=update, name="broadcast"
        )
    await message.reply_html(reload_report(result.old, result.new, result.changes, result.problems,
                                           service.knowledge_dir, tr))


async def stats(update: Update, context: Context, tr: Translator) -> None:
    message = update.effective_message
    if message is None:
        return
    service = service_of(context)
    await message.reply_html(stats_report(await asyncio.to_thread(service.stats), len(service.kb.articles), tr))
