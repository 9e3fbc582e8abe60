"""What every handler needs: the service and settings, the reader's language, the rate limit, who is an admin."""

from __future__ import annotations

import asyncio
import logging
from typing import cast

import telegram
from telegram import LinkPreviewOptions, Update
from telegram.constants import ChatMemberStatus, ChatType
from telegram.ext import Application, ContextTypes

from bot import i18n, notify
from bot.config import Settings
from bot.i18n import Translator
from bot.knowledge import KnowledgeBase
from bot.service import Service
from bot.store import StoreError

log = logging.getLogger(__name__)

SERVICE = "service"
SETTINGS = "settings"
SENDER = "sender"   # the Bot that broadcasts (`notify.sender`)
NO_PREVIEW = LinkPreviewOptions(is_disabled=True)

Context = ContextTypes.DEFAULT_TYPE


def service_of(context: Context) -> Service:
    return cast(Service, context.bot_data[SERVICE])


def settings_of(context: Context) -> Settings:
    return cast(Settings, context.bot_data[SETTINGS])


def sender_of(application: Application) -> telegram.Bot:  # type: ignore[type-arg]
    return cast(telegram.Bot, application.bot_data[SENDER])


async def announce_new(
    application: Application, service: Service, kb: KnowledgeBase, update: Update | None = None,  # type: ignore[type-arg]
) -> None:
    """Queue what subscribers have not heard of in `kb` and broadcast it in the background, as /reload does.

    The task queues the articles durably at its first step, before the caller replies, so a failed reply
    cannot lose a notification.
    """
    fresh = await asyncio.to_thread(notify.unannounced, service.store, kb)
    if fresh:
        application.create_task(notify.notify_new(sender_of(application), service.store, kb, fresh), update=update,
                                name="broadcast")


async def language_of(update: Update, context: Context) -> str:
    """The chat's choice if it made one, else the user's Telegram language, else English."""
    chat, user = update.effective_chat, update.effective_user
    chosen = None
    if chat is not None:
        service = service_of(context)
        known, chosen = service.known_language(chat.id)
        if not known:
            try:
                chosen = await asyncio.to_thread(service.chat_language, chat.id)
            except StoreError as exc:  # a preference: answering in the user's Telegram language beats not answering
                log.warning("could not read the chat's language: %s", exc)
    return i18n.resolve(chosen, user.language_code if user is not None else None)


async def translator_of(update: Update, context: Context) -> Translator:
    return i18n.translator(await language_of(update, context))


async def admit(update: Update, context: Context) -> tuple[bool, bool]:
    """The per-user rate limit, for every path a user can trigger: (allowed, warn once). Replicas keep it in the
    database (a round trip, so off the event loop); one process keeps it in memory."""
    user = update.effective_user
    if user is None:
        return True, False
    limiter = service_of(context).limiter
    if limiter.blocking:
        return await asyncio.to_thread(limiter.check, user.id)
    return limiter.check(user.id)


def is_bot_admin(update: Update, context: Context) -> bool:
    """Admins are numeric user ids from ADMIN_IDS, in any chat; never a username or a chat title."""
    user = update.effective_user
    return user is not None and user.id in settings_of(context).admin_ids


async def is_chat_admin(update: Update, context: Context) -> bool:
    """In groups a chat admin (checked with Telegram, by user id); in a private chat, the user."""
    chat = update.effective_chat
    if chat is None:
        return False
    if chat.type == ChatType.PRIVATE:
        return True
    message = update.message
    if message is not None and message.sender_chat is not None and message.sender_chat.id == chat.id:
        return True  # an anonymous group admin posts as the group itself
    user = update.effective_user
    if user is None:
        return False
    member = await context.bot.get_chat_member(chat.id, user.id)
    return member.status in (ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.OWNER)
