"""/language: the chat picks the language the bot speaks in it (and sends notifications in), with buttons."""

from __future__ import annotations

import asyncio

from telegram import Message, Update

from bot import i18n
from bot.i18n import Translator
from bot.telegram.common import Context, service_of
from bot.telegram.keyboards import language_keyboard


async def choose(update: Update, context: Context, tr: Translator) -> None:
    message = update.effective_message
    if message is not None:
        await message.reply_text(tr("language.choose", current=tr("language.name")), reply_markup=language_keyboard())


async def chosen_button(update: Update, context: Context, tr: Translator, message: Message, rest: str) -> None:
    """g:<code>: remember the choice, and say so in the new language."""
    query = update.callback_query
    assert query is not None
    if rest not in i18n.languages():
        await query.answer(tr("button.gone"))
        return
    await asyncio.to_thread(service_of(context).set_chat_language, message.chat.id, rest)
    tr = i18n.translator(rest)
    await query.answer()
    await message.edit_text(tr("language.set", language=tr("language.name")))
