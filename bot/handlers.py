"""Telegram callbacks: thin translations between updates and `bot.service.Service`.

Every command is declared once in `COMMANDS` (name, description, admin-only,
callback); `bot.app` registers handlers and the command menu from it, and
/help is written from it. Button presses carry short callback data, checked
against the buttons the pressed message really has and against the current
knowledge base, so forged data is refused politely and never used as a path.
"""

from __future__ import annotations

import contextlib
import functools
import html
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast

from telegram import (
    Bot,
    Chat,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InlineQueryResultArticle,
    InputTextMessageContent,
    LinkPreviewOptions,
    Message,
    MessageEntity,
    Update,
)
from telegram.constants import ChatMemberStatus, ChatType, ParseMode
from telegram.error import NetworkError, TelegramError
from telegram.ext import ContextTypes

from bot import notify
from bot.answer import ALTERNATIVES, Answer, article_html, hits_html, render_html
from bot.config import Settings
from bot.knowledge import Article, web_url
from bot.search import Hit
from bot.service import (
    EMPTY_QUESTION,
    MAX_LIST,
    Service,
    callback_key,
    clean_question,
    count_arg,
    no_match,
    reload_html,
    stats_html,
)
from bot.store import Subscription

log = logging.getLogger(__name__)

Callback = Callable[[Update, ContextTypes.DEFAULT_TYPE], Awaitable[None]]

SERVICE = "service"
SETTINGS = "settings"

NO_PREVIEW = LinkPreviewOptions(is_disabled=True)
GONE = "Sorry, that is no longer available."
SLOW_DOWN = "You are asking faster than I can answer. Please wait a minute and ask again."
SORRY = "Sorry, something went wrong on my side. Please try again in a moment."
ADMINS_ONLY = "Sorry, this command is only for the bot's editors."
GROUP_ADMINS_ONLY = "Only this group's admins can change its subscriptions."
UNKNOWN_COMMAND = "I don't know that command; /help lists the ones I do. Or just send me your question."
BUTTON_TITLE = 60


def service_of(context: ContextTypes.DEFAULT_TYPE) -> Service:
    return cast(Service, context.bot_data[SERVICE])


def settings_of(context: ContextTypes.DEFAULT_TYPE) -> Settings:
    return cast(Settings, context.bot_data[SETTINGS])


# --- keyboards ---------------------------------------------------------------

def _short(text: str, limit: int = BUTTON_TITLE) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def article_button(article_id: str, title: str) -> InlineKeyboardButton:
    return InlineKeyboardButton(_short(title), callback_data=f"a:{callback_key(article_id)}")


def source_row(article: Article | None) -> list[InlineKeyboardButton]:
    url = web_url(article.url) if article is not None else None
    return [InlineKeyboardButton("Read at the source", url=url)] if url else []


def answer_keyboard(answer: Answer) -> InlineKeyboardMarkup:
    """Source link, the titles offered (the next best articles, or the guesses when unsure), helpful / not helpful."""
    rows = [source_row(answer.article)] if answer.sure else []
    offered = [(alt.id, alt.title) for alt in answer.alternatives]
    if answer.article is not None and not answer.sure:
        offered.insert(0, (answer.article.id, answer.article.title))
    rows += [[article_button(article_id, title)] for article_id, title in offered[:ALTERNATIVES]]
    if answer.found:
        key = callback_key(answer.article.id) if answer.article is not None else ""
        rows.append([InlineKeyboardButton("👍 Helpful", callback_data=f"f:1:{key}"),
                     InlineKeyboardButton("👎 Not helpful", callback_data=f"f:0:{key}")])
    else:
        rows.append([InlineKeyboardButton("Latest news", callback_data="l")])
    return InlineKeyboardMarkup([row for row in rows if row])


def list_keyboard(articles: list[Article]) -> InlineKeyboardMarkup | None:
    return InlineKeyboardMarkup([[article_button(a.id, a.title)] for a in articles]) if articles else None


def subscriptions_view(subscriptions: list[Subscription]) -> tuple[str, InlineKeyboardMarkup | None]:
    if not subscriptions:
        return "This chat has no subscriptions. Send /subscribe to get every new article.", None
    lines = ["<b>This chat gets new articles:</b>"]
    buttons = []
    for s in subscriptions:
        what = "every new article" if s.words is None else f"about “{_short(s.words, 100)}”"
        lines.append(f"• {html.escape(what)}")
        buttons.append([InlineKeyboardButton(f"✖ Stop: {_short(what, 40)}", callback_data=f"u:{s.id}")])
    return "\n".join(lines), InlineKeyboardMarkup(buttons)


def _offered(message: Message, data: str) -> bool:
    """Whether the pressed message really carries a button with this data (a client can send any data)."""
    markup = message.reply_markup
    return markup is not None and any(b.callback_data == data for row in markup.inline_keyboard for b in row)


def _without_feedback(message: Message) -> InlineKeyboardMarkup | None:
    rows = [row for row in (message.reply_markup.inline_keyboard if message.reply_markup else ())
            if not any(isinstance(b.callback_data, str) and b.callback_data.startswith("f:") for b in row)]
    return InlineKeyboardMarkup(rows) if rows else None


# --- who is asking what ------------------------------------------------------

def question_of(message: Message, bot: Bot) -> str | None:
    """The question a message puts to the bot, or None when it is not addressed to the bot.

    Private chats: any text. Groups: /ask, an @mention of the bot, or a reply to one of its messages.
    """
    text = message.text or ""
    entities = message.parse_entities()
    command = next((t for e, t in entities.items() if e.type == MessageEntity.BOT_COMMAND and e.offset == 0), None)
    if command is not None:
        name, _, target = command[1:].partition("@")
        if name.lower() != "ask" or (target and target.lower() != (bot.username or "").lower()):
            return None
        return text[len(command):]
    mentions = [
        t for e, t in entities.items()
        if (e.type == MessageEntity.MENTION and t[1:].lower() == (bot.username or "").lower())
        or (e.type == MessageEntity.TEXT_MENTION and e.user is not None and e.user.id == bot.id)
    ]
    replied = message.reply_to_message
    to_bot = replied is not None and replied.from_user is not None and replied.from_user.id == bot.id
    if message.chat.type != ChatType.PRIVATE and not mentions and not to_bot:
        return None
    for mention in mentions:
        text = text.replace(mention, " ")
    return text


async def _may_change_subscriptions(update: Update, context: ContextTypes.DEFAULT_TYPE) -> bool:
    """In groups only chat admins (checked with Telegram, by user id) may; in private chats the user may."""
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


def _allowed(update: Update, context: ContextTypes.DEFAULT_TYPE) -> tuple[bool, bool]:
    user = update.effective_user
    return service_of(context).limiter.check(user.id) if user is not None else (True, False)


# --- asking --------------------------------------------------------------------

async def _answer(update: Update, context: ContextTypes.DEFAULT_TYPE, question: str) -> None:
    message = update.effective_message
    assert message is not None
    allowed, warn = _allowed(update, context)
    if not allowed:
        if warn:
            await message.reply_text(SLOW_DOWN)
        return
    if not clean_question(question):
        await message.reply_text(EMPTY_QUESTION)
        return
    answer = service_of(context).ask(question)
    # Quoting the question keeps it attached to the answer, so feedback can record it without keeping state.
    await message.reply_html(render_html(answer), reply_markup=answer_keyboard(answer), do_quote=True,
                             allow_sending_without_reply=True, link_preview_options=NO_PREVIEW)


async def on_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Plain text: a question in private chats; in groups only when addressed to the bot."""
    message = update.effective_message
    if message is None:
        return
    question = question_of(message, context.bot)
    if question is not None:
        await _answer(update, context, question)


async def unknown_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A mistyped /command gets a pointer to /help rather than silence."""
    message = update.effective_message
    allowed, warn = _allowed(update, context)
    if message is not None and (allowed or warn):
        await message.reply_text(UNKNOWN_COMMAND if allowed else SLOW_DOWN)


async def ask(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    if message is not None:
        await _answer(update, context, question_of(message, context.bot) or "")


# --- browsing ------------------------------------------------------------------

async def _send_list(message: Message, title: str, articles: list[Article]) -> None:
    if not articles:
        await message.reply_text("There are no articles yet.")
        return
    await message.reply_html(hits_html(title, [Hit(a, 0.0) for a in articles]), reply_markup=list_keyboard(articles),
                             link_preview_options=NO_PREVIEW)


async def latest(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    if message is None:
        return
    count = count_arg((context.args or [""])[0])
    await _send_list(message, "Latest articles", service_of(context).latest(count))


async def search(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    if message is None:
        return
    query = " ".join(context.args or [])
    if not clean_question(query):
        await message.reply_text("Tell me what to look for, for example: /search action plan")
        return
    allowed, warn = _allowed(update, context)
    if not allowed:
        if warn:
            await message.reply_text(SLOW_DOWN)
        return
    hits = service_of(context).search(query, k=5)
    if not hits:
        await message.reply_text(no_match(query))
        return
    await _send_list(message, f"Articles about “{clean_question(query)[:100]}”", [h.article for h in hits])


async def on_inline_query(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """`@botname words` in any chat: matching articles (the newest when no words yet), each a card to share."""
    inline = update.inline_query
    if inline is None:
        return
    service = service_of(context)
    query = clean_question(inline.query)
    articles = [h.article for h in service.search(query, k=MAX_LIST)] if query else service.latest(MAX_LIST)
    results = [
        InlineQueryResultArticle(
            id=callback_key(a.id),
            title=_short(a.title, 100),
            description=_short(a.summary, 120),
            input_message_content=InputTextMessageContent(article_html(a), parse_mode=ParseMode.HTML,
                                                          link_preview_options=NO_PREVIEW),
            reply_markup=InlineKeyboardMarkup([source_row(a)]) if source_row(a) else None,
        )
        for a in articles
    ]
    await inline.answer(results, cache_time=60)


# --- subscriptions -----------------------------------------------------------------

def group_admins_only(callback: Callback) -> Callback:
    """A chat's subscriptions are its own to change: in groups only its admins may."""

    @functools.wraps(callback)
    async def guarded(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message, chat = update.effective_message, update.effective_chat
        if message is None or chat is None:
            return
        if not await _may_change_subscriptions(update, context):
            await message.reply_text(GROUP_ADMINS_ONLY)
            return
        await callback(update, context)

    return guarded


@group_admins_only
async def subscribe(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message, chat = cast(Message, update.effective_message), cast(Chat, update.effective_chat)
    await message.reply_text(service_of(context).subscribe(chat.id, " ".join(context.args or [])))


@group_admins_only
async def unsubscribe(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message, chat = cast(Message, update.effective_message), cast(Chat, update.effective_chat)
    removed = service_of(context).store.unsubscribe(chat.id)
    await message.reply_text(
        f"Unsubscribed: this chat will get no more new articles ({removed} subscription(s) removed)."
        if removed else "This chat had no subscriptions."
    )


async def subscriptions(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message, chat = update.effective_message, update.effective_chat
    if message is None or chat is None:
        return
    text, markup = subscriptions_view(service_of(context).store.subscriptions(chat.id))
    await message.reply_html(text, reply_markup=markup)


async def on_migrate(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A group became a supergroup and got a new id: its subscriptions follow it."""
    message = update.effective_message
    if message is not None and message.migrate_to_chat_id is not None:
        service_of(context).store.migrate_chat(message.chat.id, message.migrate_to_chat_id)


# --- admins ----------------------------------------------------------------------

def admin_only(callback: Callback) -> Callback:
    """Admins are numeric user ids from ADMIN_IDS, in any chat; never a username or a chat title."""

    @functools.wraps(callback)
    async def guarded(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        user = update.effective_user
        if user is None or user.id not in settings_of(context).admin_ids:
            if update.effective_message is not None:
                await update.effective_message.reply_text(ADMINS_ONLY)
            return
        await callback(update, context)

    return guarded


async def reload(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Reread the knowledge base without blocking answers; report; then notify subscribers in the background."""
    message = update.effective_message
    if message is None:
        return
    service = service_of(context)
    result = await service.reload()
    fresh = notify.unannounced(service.store, result.new) if result.ok else []
    if fresh:  # queued (at the task's first step) before the reply, so a failed reply cannot lose the notification
        context.application.create_task(
            notify.notify_new(context.bot, service.store, result.new, fresh), update=update, name="broadcast"
        )
    await message.reply_html(reload_html(result, service.knowledge_dir))


async def stats(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    if message is None:
        return
    service = service_of(context)
    await message.reply_html(stats_html(service.store.stats(), len(service.kb.articles)))


# --- buttons -----------------------------------------------------------------------

async def _show_article(update: Update, context: ContextTypes.DEFAULT_TYPE, message: Message, key: str) -> None:
    query = update.callback_query
    assert query is not None
    article = service_of(context).article(key)
    if article is None:
        await query.answer(GONE)
        return
    await query.answer()
    source = source_row(article)
    await message.reply_html(article_html(article), reply_markup=InlineKeyboardMarkup([source]) if source else None,
                             do_quote=False, link_preview_options=NO_PREVIEW)


async def _feedback(update: Update, context: ContextTypes.DEFAULT_TYPE, message: Message, rest: str) -> None:
    query = update.callback_query
    assert query is not None
    verdict, _, key = rest.partition(":")
    if verdict not in ("0", "1"):
        await query.answer(GONE)
        return
    allowed, _ = _allowed(update, context)
    if allowed:
        service = service_of(context)
        article = service.article(key) if key else None
        asked = message.reply_to_message
        question = (question_of(asked, context.bot) or "") if asked is not None else ""
        service.feedback(question, article.id if article is not None else None, verdict == "1")
    await query.answer("Thank you, noted.")
    await message.edit_reply_markup(_without_feedback(message))


async def _remove_subscription(update: Update, context: ContextTypes.DEFAULT_TYPE, message: Message, rest: str) -> None:
    query = update.callback_query
    assert query is not None
    if not rest.isdigit():
        await query.answer(GONE)
        return
    if not await _may_change_subscriptions(update, context):
        await query.answer(GROUP_ADMINS_ONLY, show_alert=True)
        return
    store = service_of(context).store
    removed = store.unsubscribe(message.chat.id, int(rest))
    await query.answer("Subscription removed." if removed else GONE)
    text, markup = subscriptions_view(store.subscriptions(message.chat.id))
    await message.edit_text(text, parse_mode=ParseMode.HTML, reply_markup=markup)


async def _latest_button(update: Update, context: ContextTypes.DEFAULT_TYPE, message: Message, rest: str) -> None:
    query = update.callback_query
    assert query is not None
    await query.answer()
    await _send_list(message, "Latest articles", service_of(context).latest(5))


_BUTTONS: dict[str, Callable[[Update, ContextTypes.DEFAULT_TYPE, Message, str], Awaitable[None]]] = {
    "a": _show_article,     # a:<article key>      show the article's card
    "f": _feedback,         # f:<1|0>:<key>        helpful / not helpful
    "u": _remove_subscription,  # u:<subscription id>
    "l": _latest_button,    # l                    the latest articles
}


async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    if query is None:
        return
    data = query.data or ""
    message = query.message if isinstance(query.message, Message) else None
    kind, _, rest = data.partition(":")
    action = _BUTTONS.get(kind)
    if message is None or action is None or not _offered(message, data):
        await query.answer(GONE)
        return
    await action(update, context, message, rest)


# --- help and errors ---------------------------------------------------------------

async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    if message is None:
        return
    user = update.effective_user
    is_admin = user is not None and user.id in settings_of(context).admin_ids
    await message.reply_html(help_html(context.bot.username or "", is_admin), link_preview_options=NO_PREVIEW)


def help_html(bot_username: str, admin: bool) -> str:
    lines = [
        "I answer questions about civil-society news from our editors' knowledge base, with the source.",
        "Just send me a question. In groups, mention me, reply to me, or use /ask.",
        "Under each answer: related articles, and buttons to tell us whether it helped.",
        "",
    ]
    lines += [f"/{c.name}{' ' + c.usage if c.usage else ''} — {html.escape(c.description)}"
              for c in COMMANDS if admin or not c.admin]
    if bot_username:
        lines += ["", f"In any chat, type @{html.escape(bot_username)} and some words to share an article."]
    return "\n".join(lines)


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Log every error once; tell the user something went wrong; never let it stop the bot."""
    if isinstance(context.error, NetworkError) and not isinstance(update, Update):
        log.warning("Telegram unreachable: %s", context.error)  # polling retries by itself
        return
    log.error("error while handling %s", type(update).__name__, exc_info=context.error)
    if not isinstance(update, Update):
        return
    with contextlib.suppress(TelegramError):
        if update.callback_query is not None:
            await update.callback_query.answer(SORRY)
        elif update.effective_message is not None:
            await update.effective_message.reply_text(SORRY)


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    description: str      # shown in Telegram's command menu and in /help
    callback: Callback
    admin: bool = False   # only for ADMIN_IDS: hidden from others' menus, and refused to them
    usage: str = ""


COMMANDS: tuple[Command, ...] = (
    Command("start", "what this bot does", start),
    Command("help", "how to use this bot", start),
    Command("ask", "ask a question (in groups)", ask, usage="question"),
    Command("latest", "the newest articles", latest, usage="[n]"),
    Command("search", "find articles", search, usage="words"),
    Command("subscribe", "get new articles here (optionally only about some words)", subscribe, usage="[words]"),
    Command("subscriptions", "list and remove this chat's subscriptions", subscriptions),
    Command("unsubscribe", "stop all new-article messages", unsubscribe),
    Command("reload", "reread the knowledge base and notify subscribers", reload, admin=True),
    Command("stats", "articles, subscribers, unanswered questions", stats, admin=True),
)
