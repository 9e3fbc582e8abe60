"""The one registry of what users can do: every command and every button, who may use it, whether the per-user rate
limit applies, and its menu entry. Registration, the command menus (per scope and language), /help and the
terminal shell are all made from it, and permissions and the rate limit are applied here, once.

Adding a command is one `Command(...)` below, one handler `async def name(update, context, tr)` in its feature
module, and its `command.<name>` / `command.<name>.usage` entries in each catalog.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import cast

from telegram import BotCommand, BotCommandScopeChat, Message, Update
from telegram.error import NetworkError, TelegramError
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, InlineQueryHandler, MessageHandler, filters

from bot import i18n
from bot.config import Settings
from bot.format import escape
from bot.i18n import Translator
from bot.service import Service
from bot.telegram import admin, asking, browsing, keyboards, language, maintenance, sources, subscriptions
from bot.telegram.common import (
    NO_PREVIEW,
    SETTINGS,
    Context,
    admit,
    is_bot_admin,
    is_chat_admin,
    translator_of,
)

log = logging.getLogger(__name__)

Handler = Callable[[Update, Context, Translator], Awaitable[None]]
ButtonHandler = Callable[[Update, Context, Translator, Message, str], Awaitable[None]]
Terminal = Callable[[Service, str, Translator], str]   # the same command in `python -m bot shell`: words -> reply


class Access(Enum):
    EVERYONE = "everyone"
    CHAT_ADMINS = "chat admins"   # in groups only the group's admins; in a private chat the user
    BOT_ADMINS = "bot admins"     # ADMIN_IDS only: hidden from others' menus and /help, refused to them


_REFUSAL = {Access.CHAT_ADMINS: "refusal.chat_admins", Access.BOT_ADMINS: "refusal.bot_admins"}


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    handler: Handler
    access: Access = Access.EVERYONE
    limited: bool = True              # counts against the per-user rate limit (USER_RATE_LIMIT)
    usage: bool = False               # has a `command.<name>.usage` entry ("[n]", "words") for /help
    terminal: Terminal | None = None  # also in the shell

    @property
    def description(self) -> str:
        """Catalog key of the menu description, also shown in /help."""
        return f"command.{self.name}"


@dataclass(frozen=True, slots=True)
class Button:
    kind: str                         # callback data is "<kind>:<rest>"
    handler: ButtonHandler
    access: Access = Access.EVERYONE
    limited: bool = True


async def start(update: Update, context: Context, tr: Translator) -> None:
    message = update.effective_message
    if message is not None:
        await message.reply_html(help_text(tr, context.bot.username or "", admin=is_bot_admin(update, context)),
                                 link_preview_options=NO_PREVIEW)


def help_in_terminal(service: Service, words: str, tr: Translator) -> str:
    lines = [tr("shell.help")]
    lines += [f"/{c.name}{_usage(c, tr)} — {tr(c.description)}" for c in COMMANDS if c.terminal is not None]
    lines.append(f"/quit — {tr('shell.quit')}")
    return "\n".join(lines)


COMMANDS: tuple[Command, ...] = (
    Command("start", start, terminal=help_in_terminal),
    Command("help", start, terminal=help_in_terminal),
    Command("ask", asking.ask, usage=True, terminal=asking.ask_in_terminal),
    Command("latest", browsing.latest, usage=True, terminal=browsing.latest_in_terminal),
    Command("search", browsing.search, usage=True, terminal=browsing.search_in_terminal),
    Command("subscribe", subscriptions.subscribe, Access.CHAT_ADMINS, usage=True),
    Command("subscriptions", subscriptions.subscriptions),
    Command("unsubscribe", subscriptions.unsubscribe, Access.CHAT_ADMINS),
    Command("language", language.choose),
    Command("forget", maintenance.forget, Access.CHAT_ADMINS),
    Command("reload", admin.reload, Access.BOT_ADMINS),
    Command("stats", admin.stats, Access.BOT_ADMINS),
    Command("add", sources.add, Access.BOT_ADMINS, usage=True),
    Command("sources", sources.sources, Access.BOT_ADMINS),
)

BUTTONS: tuple[Button, ...] = (
    Button(keyboards.ARTICLE, browsing.article_button),
    Button(keyboards.LATEST, browsing.latest_button),
    Button(keyboards.FEEDBACK, asking.feedback_button),
    Button(keyboards.MORE, asking.more_button),
    Button(keyboards.UNSUBSCRIBE, subscriptions.remove_button, Access.CHAT_ADMINS),
    Button(keyboards.LANGUAGE, language.chosen_button, Access.CHAT_ADMINS),
    Button(keyboards.FORGET, maintenance.forget_button, Access.CHAT_ADMINS),

    Button(keyboards.SOURCE, sources.pause_button, Access.BOT_ADMINS),
)

_ASK = next(c for c in COMMANDS if c.name == "ask")


def _usage(command: Command, tr: Translator) -> str:
    return f" {tr(command.description + '.usage')}" if command.usage else ""


def help_text(tr: Translator, bot_username: str, admin: bool) -> str:
    """HTML: what the bot does, then every command this user may use, from the registry."""
    lines = [tr("help.intro"), ""]
    lines += [f"/{c.name}{escape(_usage(c, tr))} — {escape(tr(c.description))}"
              for c in COMMANDS if admin or c.access is not Access.BOT_ADMINS]
    if bot_username:
        lines += ["", tr("help.inline", bot=escape(bot_username))]
    return "\n".join(lines)


# --- permissions and the rate limit, applied once ------------------------------------


async def _refuse(update: Update, text: str) -> None:
    if update.callback_query is not None:
        await update.callback_query.answer(text, show_alert=True)
    elif update.effective_message is not None:
        await update.effective_message.reply_text(text)


async def _admitted(entry: Command | Button, update: Update, context: Context, tr: Translator) -> bool:
    """The rate limit first (so a flood of refused commands costs no Telegram calls), then who may."""
    if entry.limited:
        allowed, warn = await admit(update, context)
        if not allowed:
            if warn:
                await _refuse(update, tr("refusal.slow_down"))
            elif update.callback_query is not None:
                await update.callback_query.answer()
            return False
    if entry.access is Access.BOT_ADMINS:
        permitted = is_bot_admin(update, context)
    elif entry.access is Access.CHAT_ADMINS:
        permitted = await is_chat_admin(update, context)
    else:
        permitted = True
    if not permitted:
        await _refuse(update, tr(_REFUSAL[entry.access]))
    return permitted


def guarded(command: Command) -> Callable[[Update, Context], Awaitable[None]]:
    async def callback(update: Update, context: Context) -> None:
        tr = await translator_of(update, context)
        if await _admitted(command, update, context, tr):
            await command.handler(update, context, tr)

    return callback


async def on_text(update: Update, context: Context) -> None:
    """Plain text or media: a question in private chats; in groups only when addressed to the bot (then as /ask)."""
    message = update.effective_message
    if message is not None and asking.question_of(message, context.bot) is not None:
        await _ask(update, context)


_ask = guarded(_ASK)


async def on_button(update: Update, context: Context) -> None:
    """Any button under our messages: refused unless the pressed message carries it; then as the registry says."""
    query = update.callback_query
    if query is None:
        return
    tr = await translator_of(update, context)
    data = query.data or ""
    message = query.message if isinstance(query.message, Message) else None
    kind, _, rest = data.partition(":")
    button = next((b for b in BUTTONS if b.kind == kind), None)
    if message is None or button is None or not keyboards.offered(message, data):
        await query.answer(tr("button.gone"))
        return
    if await _admitted(button, update, context, tr):
        await button.handler(update, context, tr, message, rest)


async def on_inline_query(update: Update, context: Context) -> None:
    tr = await translator_of(update, context)
    allowed, _ = await admit(update, context)
    if allowed:
        await browsing.inline_query(update, context, tr)
    elif update.inline_query is not None:
        await update.inline_query.answer([], cache_time=0)


async def unknown_command(update: Update, context: Context) -> None:
    """A mistyped /command in a private chat gets a pointer to /help rather than silence."""
    message = update.effective_message
    tr = await translator_of(update, context)
    allowed, warn = await admit(update, context)
    if message is not None and (allowed or warn):
        await message.reply_text(tr("refusal.unknown_command") if allowed else tr("refusal.slow_down"))


async def on_error(update: object, context: Context) -> None:
    """Log every error once; tell the user something went wrong; never let it stop the bot."""
    if isinstance(context.error, NetworkError) and not isinstance(update, Update):
        log.warning("Telegram unreachable: %s", context.error)  # polling retries by itself
        return
    log.error("error while handling %s", type(update).__name__, exc_info=context.error)
    if not isinstance(update, Update):
        return
    try:
        tr = await translator_of(update, context)
    except Exception:
        user = update.effective_user
        tr = i18n.translator(user.language_code if user is not None else None)
    with contextlib.suppress(TelegramError):
        if update.callback_query is not None:
            await update.callback_query.answer(tr("refusal.sorry"))
        elif update.effective_message is not None:
            await update.effective_message.reply_text(tr("refusal.sorry"))


def register(application: Application) -> None:  # type: ignore[type-arg]
    for command in COMMANDS:
        application.add_handler(CommandHandler(command.name, guarded(command)))
    # Any other /command in a private chat: a pointer to /help (in groups it may be meant for another bot).
    application.add_handler(MessageHandler(filters.COMMAND & filters.ChatType.PRIVATE, unknown_command))
    # Questions: any text in private chats; in groups only what is addressed to the bot. A photo's or document's
    # caption is its question; a voice message, a sticker or media without a caption get told the bot reads text.
    media = (filters.PHOTO | filters.VIDEO | filters.ANIMATION | filters.Document.ALL | filters.VOICE | filters.AUDIO
             | filters.VIDEO_NOTE | filters.Sticker.ALL)
    application.add_handler(MessageHandler(filters.UpdateType.MESSAGE & (filters.TEXT | media) & ~filters.COMMAND,
                                           on_text))
    # A group upgraded to a supergroup keeps its subscriptions.
    application.add_handler(MessageHandler(filters.StatusUpdate.MIGRATE, subscriptions.on_migrate))
    application.add_handler(CallbackQueryHandler(on_button))
    application.add_handler(InlineQueryHandler(on_inline_query))
    application.add_error_handler(on_error)


async def set_menus(application: Application) -> None:  # type: ignore[type-arg]
    """Per language: everyone's menu without the bot admins' commands; each admin's private chat with all of them.

    The default language's menus are set without a language code, so they are what everyone else sees.
    """
    bot = application.bot
    admins = sorted(cast(Settings, application.bot_data[SETTINGS]).admin_ids)
    for code in i18n.languages():
        tr = i18n.translator(code)
        language_code = None if code == i18n.DEFAULT else code
        public = [BotCommand(c.name, tr(c.description)) for c in COMMANDS if c.access is not Access.BOT_ADMINS]
        everything = [BotCommand(c.name, tr(c.description)) for c in COMMANDS]
        try:
            await bot.set_my_commands(public, language_code=language_code)
        except TelegramError as exc:
            log.warning("could not set the command menu (%s): %s", code, exc)
        for admin_id in admins:
            try:
                await bot.set_my_commands(everything, scope=BotCommandScopeChat(admin_id), language_code=language_code)
            except TelegramError as exc:  # e.g. an admin who has never opened a chat with the bot
                log.warning("could not set the admin command menu for user %s (%s): %s", admin_id, code, exc)
