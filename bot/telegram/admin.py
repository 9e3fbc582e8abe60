"""The editors' commands (ADMIN_IDS): /reload and /stats."""

from __future__ import annotations

import asyncio

from telegram import Update

from bot.i18n import Translator
from bot.render import reload_report, stats_report
from bot.telegram.common import Context, announce_new, service_of


async def reload(update: Update, context: Context, tr: Translator) -> None:
    """Reread the knowledge base without blocking answers; report; then notify subscribers in the background."""
    message = update.effective_message
    if message is None:
        return
    service = service_of(context)
    result = await service.reload()
    if result.ok:
        await announce_new(context.application, service, result.new, update)
    await message.reply_html(reload_report(result.old, result.new, result.changes, result.problems,
                                           service.knowledge_dir, tr))


async def stats(update: Update, context: Context, tr: Translator) -> None:
    message = update.effective_message
    if message is None:
        return
    service = service_of(context)
    await message.reply_html(stats_report(await asyncio.to_thread(service.stats), len(service.kb.articles), tr))
