"""Questions: plain text (or a photo's or document's caption) in private chats, a mention, a reply or /ask in
groups; small talk; media without words; the answer card, its "More" button and feedback."""

from __future__ import annotations

import asyncio

from telegram import Bot, Message, MessageEntity, Update
from telegram.constants import ChatType

from bot import smalltalk
from bot.i18n import Translator
from bot.render import more_text, render_answer, smalltalk_reply
from bot.service import MAX_LIST, Service, clean_question
from bot.telegram.common import NO_PREVIEW, Context, service_of
from bot.telegram.keyboards import FEEDBACK, MORE, answer_keyboard, rated, without


def question_of(message: Message, bot: Bot) -> str | None:
    """The question a message puts to the bot, or None when it is not addressed to the bot.

    Private chats: any text. Groups: /ask, an @mention of the bot, or a reply to one of its messages.
    A photo's or document's caption is read as its text; a message without words gives "".
    """
    text = message.text or message.caption or ""
    entities = message.parse_entities() if message.text else message.parse_caption_entities()
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


async def ask(update: Update, context: Context, tr: Translator) -> None:
    """/ask, and any message addressed to the bot (`commands.on_text` routes those here)."""
    message = update.effective_message
    if message is None:
        return
    question = clean_question(question_of(message, context.bot) or "")
    if not question:
        await message.reply_text(tr("ask.empty") if message.text else tr("ask.text_only"))
        return
    service = service_of(context)
    talk = smalltalk.kind(question)
    if talk is not None:
        await message.reply_html(_smalltalk(service, talk, tr), do_quote=True, link_preview_options=NO_PREVIEW)
        return
    answer = await asyncio.to_thread(service.ask, question)
    # Quoting the question keeps it attached to the answer, so feedback can record it without keeping state.
    await message.reply_html(render_answer(answer, tr), reply_markup=answer_keyboard(answer, tr), do_quote=True,
                             allow_sending_without_reply=True, link_preview_options=NO_PREVIEW)


def _smalltalk(service: Service, talk: smalltalk.Kind, tr: Translator, html_mode: bool = True) -> str:
    return smalltalk_reply(talk, tr, len(service.kb.articles), service.languages, service.latest(MAX_LIST),
                           html_mode)


async def feedback_button(update: Update, context: Context, tr: Translator, message: Message, rest: str) -> None:
    """f:<1|0>:<key>: record helpful / not helpful about the article(s) the message showed against the quoted
    question, then drop the two buttons."""
    query = update.callback_query
    assert query is not None
    verdict, _, key = rest.partition(":")
    if verdict not in ("0", "1"):
        await query.answer(tr("button.gone"))
        return
    service = service_of(context)
    shown = [article.id for article in map(service.article, rated(message, key)) if article is not None]
    asked = message.reply_to_message
    question = (question_of(asked, context.bot) or "") if asked is not None else ""
    await asyncio.to_thread(service.feedback, question, shown, verdict == "1")
    await query.answer(tr("feedback.thanks"))
    await message.edit_reply_markup(without(message, FEEDBACK))


async def more_button(update: Update, context: Context, tr: Translator, message: Message, rest: str) -> None:
    """m:<key>: the article's summary, less what the card already says, under the card; the button goes."""
    query = update.callback_query
    assert query is not None
    article = service_of(context).article(rest)
    text = more_text(article, message.text or "", tr) if article is not None else ""
    if not text:
        await query.answer(tr("button.gone"))
        return
    await query.answer()
    await message.reply_html(text, do_quote=True, allow_sending_without_reply=True, link_preview_options=NO_PREVIEW)
    await message.edit_reply_markup(without(message, MORE))


def ask_in_terminal(service: Service, words: str, tr: Translator) -> str:
    question = clean_question(words)
    if not question:
        return tr("ask.empty")
    talk = smalltalk.kind(question)
    if talk is not None:
        return _smalltalk(service, talk, tr, html_mode=False)
    return render_answer(service.ask(question), tr, html_mode=False)
