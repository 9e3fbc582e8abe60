"""Browsing: /latest [n], /search words, inline mode, and the article and "latest news" buttons."""

from __future__ import annotations

import re

from telegram import InlineQueryResultArticle, InputTextMessageContent, Message, Update
from telegram.constants import ParseMode

from bot.answer import display_title
from bot.format import clip
from bot.i18n import Translator
from bot.knowledge import Article
from bot.render import about, article_card, article_list, no_match
from bot.service import MAX_LIST, Service, clean_question
from bot.telegram.common import NO_PREVIEW, Context, service_of
from bot.telegram.keyboards import callback_key, list_keyboard

DEFAULT_COUNT = 5
SEARCH_RESULTS = 5
_COUNT = re.compile(r"[0-9]{1,4}")   # ASCII digits only: "²" is a digit to str.isdigit, not to int()


def count_arg(text: str) -> int | None:
    """The `n` of /latest n: the default when absent, None when it is not a number."""
    text = text.strip()
    if not text:
        return DEFAULT_COUNT
    return int(text) if _COUNT.fullmatch(text) else None


async def _send_list(message: Message, title: str, articles: list[Article], tr: Translator) -> None:
    await message.reply_html(article_list(title, articles, tr), reply_markup=list_keyboard(articles),
                             link_preview_options=NO_PREVIEW)


async def latest(update: Update, context: Context, tr: Translator) -> None:
    message = update.effective_message
    if message is None:
        return
    count = count_arg(" ".join(context.args or []))
    if count is None:
        await message.reply_text(tr("latest.usage"))
        return
    await _send_list(message, tr("latest.title"), service_of(context).latest(count), tr)


async def search(update: Update, context: Context, tr: Translator) -> None:
    message = update.effective_message
    if message is None:
        return
    query = clean_question(" ".join(context.args or []))
    if not query:
        await message.reply_text(tr("search.usage"))
        return
    hits = service_of(context).search(query, k=SEARCH_RESULTS)
    if not hits:
        await message.reply_html(no_match(tr, query))
        return
    await _send_list(message, about(tr, query), [h.article for h in hits], tr)


async def inline_query(update: Update, context: Context, tr: Translator) -> None:
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
            title=clip(display_title(a), 100, html_mode=False),
            description=clip(a.summary, 120, html_mode=False),
            input_message_content=InputTextMessageContent(article_card(a, tr), parse_mode=ParseMode.HTML,
                                                          link_preview_options=NO_PREVIEW),
        )
        for a in articles
    ]
    await inline.answer(results, cache_time=60)


async def article_button(update: Update, context: Context, tr: Translator, message: Message, rest: str) -> None:
    """a:<key>: the article's card."""
    query = update.callback_query
    assert query is not None
    article = service_of(context).article(rest)
    if article is None:
        await query.answer(tr("button.gone"))
        return
    await query.answer()
    await message.reply_html(article_card(article, tr), do_quote=False, link_preview_options=NO_PREVIEW)


async def latest_button(update: Update, context: Context, tr: Translator, message: Message, rest: str) -> None:
    query = update.callback_query
    assert query is not None
    await query.answer()
    await _send_list(message, tr("latest.title"), service_of(context).latest(DEFAULT_COUNT), tr)


def latest_in_terminal(service: Service, words: str, tr: Translator) -> str:
    count = count_arg(words)
    if count is None:
        return tr("latest.usage")
    return article_list(tr("latest.title"), service.latest(count), tr, html_mode=False)


def search_in_terminal(service: Service, words: str, tr: Translator) -> str:
    query = clean_question(words)
    if not query:
        return tr("search.usage")
    hits = service.search(query, k=SEARCH_RESULTS)
    if not hits:
        return no_match(tr, query, html_mode=False)
    return article_list(about(tr, query), [h.article for h in hits], tr, html_mode=False)
