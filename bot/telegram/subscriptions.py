"""A chat's subscriptions to new articles: /subscribe [words], /subscriptions (with remove buttons), /unsubscribe.

Subscribing also remembers the language the chat subscribed in (unless it chose one with /language), so that
notifications and digests reach it in that language.
"""

from __future__ import annotations

import asyncio

from telegram import Message, Update
from telegram.constants import ParseMode

from bot.format import escape
from bot.i18n import Translator
from bot.render import language_list, subscriptions_list
from bot.service import MAX_SUBSCRIPTIONS, Service, Subscribed, SubscribeOutcome
from bot.telegram.common import Context, service_of
from bot.telegram.keyboards import subscriptions_keyboard


def subscribed_text(result: Subscribed, tr: Translator) -> str:
    """HTML."""
    if result.outcome is SubscribeOutcome.NO_WORDS:
        return tr("subscribe.no_words")
    if result.outcome is SubscribeOutcome.TOO_MANY:
        return tr("subscribe.too_many", limit=tr.number(MAX_SUBSCRIPTIONS))
    assert result.subscription is not None
    words = result.subscription.words
    text = tr("subscribe.done_words", words=escape(words)) if words else tr("subscribe.done_all")
    if result.foreign_language is not None:
        text += "\n" + tr("subscribe.other_languages", words=tr.language_name(result.foreign_language),
                          languages=language_list(tr, result.kb_languages))
    return text


def _subscribe(service: Service, chat_id: int, words: str, language: str, thread_id: int | None) -> Subscribed:
    result = service.subscribe(chat_id, words, thread_id)
    if result.subscription is not None and service.chat_language(chat_id) is None:
        service.set_chat_language(chat_id, language)
    return result


async def subscribe(update: Update, context: Context, tr: Translator) -> None:
    message, chat = update.effective_message, update.effective_chat
    if message is None or chat is None:
        return
    thread_id = message.message_thread_id if message.is_topic_message else None   # news goes to this topic
    result = await asyncio.to_thread(_subscribe, service_of(context), chat.id, " ".join(context.args or []),
                                     tr.language, thread_id)
    await message.reply_html(subscribed_text(result, tr))   # in a topic, the reply stays in it


async def unsubscribe(update: Update, context: Context, tr: Translator) -> None:
    message, chat = update.effective_message, update.effective_chat
    if message is None or chat is None:
        return
    removed = await asyncio.to_thread(service_of(context).unsubscribe, chat.id)
    await message.reply_text(tr.plural("unsubscribe.done", removed) if removed else tr("unsubscribe.none"))


async def subscriptions(update: Update, context: Context, tr: Translator) -> None:
    message, chat = update.effective_message, update.effective_chat
    if message is None or chat is None:
        return
    current = await asyncio.to_thread(service_of(context).subscriptions, chat.id)
    await message.reply_html(subscriptions_list(current, tr), reply_markup=subscriptions_keyboard(current, tr))


async def remove_button(update: Update, context: Context, tr: Translator, message: Message, rest: str) -> None:
    """u:<subscription id>: remove it and show what is left."""
    query = update.callback_query
    assert query is not None
    if not rest.isdecimal() or not rest.isascii():
        await query.answer(tr("button.gone"))
        return
    service = service_of(context)
    removed = await asyncio.to_thread(service.unsubscribe, message.chat.id, int(rest))
    await query.answer(tr("subscriptions.removed") if removed else tr("button.gone"))
    current = await asyncio.to_thread(service.subscriptions, message.chat.id)
    await message.edit_text(subscriptions_list(current, tr), parse_mode=ParseMode.HTML,
                            reply_markup=subscriptions_keyboard(current, tr))


async def on_migrate(update: Update, context: Context) -> None:
    """A group became a supergroup and got a new id: its subscriptions follow it."""
    message = update.effective_message
    if message is not None and message.migrate_to_chat_id is not None:
        await asyncio.to_thread(service_of(context).migrate_chat, message.chat.id, message.migrate_to_chat_id)
