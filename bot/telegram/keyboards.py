"""Every inline keyboard the bot sends, and the callback data its buttons carry.

Callback data is `<kind>:<rest>`, at most `MAX_CALLBACK_DATA` bytes; the kinds are the constants below and
`bot.telegram.commands.BUTTONS` says what each does. A pressed button is honoured only if the message
really carries it (`offered`), so forged data is refused and never used as a path.
"""

from __future__ import annotations

import hashlib

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message

from bot import i18n
from bot.answer import ALTERNATIVES, Answer, display_title
from bot.format import BUTTON_TITLE, MAX_CALLBACK_DATA, clip
from bot.i18n import Translator
from bot.knowledge import Article
from bot.render import subscription_what, wants_overview
from bot.sources import Source
from bot.store import Subscription

ARTICLE = "a"        # a:<article key>      show the article's card
FEEDBACK = "f"       # f:<1|0>:<key>        helpful / not helpful about what the message showed (see GUESSES)
MORE = "m"           # m:<article key>      the summary under an answer card
UNSUBSCRIBE = "u"    # u:<subscription id>  remove one subscription
LATEST = "l"         # l                    the latest articles
LANGUAGE = "g"       # g:<code>             the chat's language
FORGET = "x"         # x:<1|0>              /forget confirmed / cancelled
SOURCE = "p"         # p:<1|0>:<source key> pause / resume a followed source

KEY_BYTES = MAX_CALLBACK_DATA - len(f"{FEEDBACK}:1:")   # the longest prefix put before an article key
# The feedback key of an unsure answer: it rates every guess the message lists (its article buttons). Never an
# article's own key: `callback_key` hashes every id that starts with "#". An empty key rates a FAQ answer.
GUESSES = "#"


def callback_key(article_id: str) -> str:
    """An article id as it travels in callback data: itself when short, else a stable hash of it."""
    if len(article_id.encode()) <= KEY_BYTES and not article_id.startswith("#"):
        return article_id
    return "#" + hashlib.blake2b(article_id.encode(), digest_size=12).hexdigest()


def _plain(text: str, limit: int = BUTTON_TITLE) -> str:
    return clip(text, limit, html_mode=False)


def article_button(article: Article) -> InlineKeyboardButton:
    return InlineKeyboardButton(_plain(display_title(article)), callback_data=f"{ARTICLE}:{callback_key(article.id)}")


def answer_keyboard(answer: Answer, tr: Translator) -> InlineKeyboardMarkup:
    """"More" (the summary the card left out), the titles offered (the next best articles, or the guesses when
    unsure), helpful / not helpful. No source button: the card's text holds the one link."""
    rows = []
    article = answer.article
    if answer.sure and article is not None and answer.summary and answer.sentences \
            and not wants_overview(answer.question):
        rows.append([InlineKeyboardButton(tr("button.more"), callback_data=f"{MORE}:{callback_key(article.id)}")])
    offered = [hit.article for hit in answer.alternatives]
    if article is not None and not answer.sure:
        offered.insert(0, article)
    rows += [[article_button(a)] for a in offered[:ALTERNATIVES]]
    if answer.found:
        key = "" if article is None else callback_key(article.id) if answer.sure else GUESSES
        rows.append([InlineKeyboardButton(tr("button.helpful"), callback_data=f"{FEEDBACK}:1:{key}"),
                     InlineKeyboardButton(tr("button.not_helpful"), callback_data=f"{FEEDBACK}:0:{key}")])
    else:
        rows.append([InlineKeyboardButton(tr("button.latest"), callback_data=LATEST)])
    return InlineKeyboardMarkup([row for row in rows if row])


def list_keyboard(articles: list[Article]) -> InlineKeyboardMarkup | None:
    return InlineKeyboardMarkup([[article_button(a)] for a in articles]) if articles else None


def subscriptions_keyboard(subscriptions: list[Subscription], tr: Translator) -> InlineKeyboardMarkup | None:
    if not subscriptions:
        return None
    return InlineKeyboardMarkup([
        [InlineKeyboardButton(tr("button.stop", what=subscription_what(sub, tr, 40)),
                              callback_data=f"{UNSUBSCRIBE}:{sub.id}")]
        for sub in subscriptions
    ])


def language_keyboard() -> InlineKeyboardMarkup:
    """One button per catalog, each named in its own language."""
    return InlineKeyboardMarkup([
        [InlineKeyboardButton(i18n.translator(code)("language.name"), callback_data=f"{LANGUAGE}:{code}")]
        for code in i18n.languages()
    ])


def forget_keyboard(tr: Translator) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton(tr("button.forget"), callback_data=f"{FORGET}:1"),
                                  InlineKeyboardButton(tr("button.cancel"), callback_data=f"{FORGET}:0")]])


MAX_SOURCE_BUTTONS = 50   # Telegram shows at most 100 buttons under a message


def source_key(url: str) -> str:
    """A source's URL as it travels in callback data: a short stable hash, looked up again on press."""
    return hashlib.blake2b(url.encode(), digest_size=8).hexdigest()


def sources_keyboard(sources: list[Source], paused: set[str], tr: Translator) -> InlineKeyboardMarkup | None:
    """One pause or resume button per source, numbered as in the /sources list."""
    rows = []
    for number, source in enumerate(sources[:MAX_SOURCE_BUTTONS], 1):
        action, flag = ("button.resume", 0) if source.url in paused else ("button.pause", 1)
        label = _plain(f"{number}. {source.label}")
        rows.append([InlineKeyboardButton(tr(action, name=label),
                                          callback_data=f"{SOURCE}:{flag}:{source_key(source.url)}")])
    return InlineKeyboardMarkup(rows) if rows else None


def offered(message: Message, data: str) -> bool:
    """Whether the pressed message really carries a button with this data (a client can send any data)."""
    markup = message.reply_markup
    return markup is not None and any(b.callback_data == data for row in markup.inline_keyboard for b in row)


def rated(message: Message, key: str) -> list[str]:
    """The article keys a feedback key rates: the guesses the message lists, or the one article, or none (FAQ)."""
    if key != GUESSES:
        return [key] if key else []
    rows = message.reply_markup.inline_keyboard if message.reply_markup else ()
    return [b.callback_data.removeprefix(f"{ARTICLE}:") for row in rows for b in row
            if isinstance(b.callback_data, str) and b.callback_data.startswith(f"{ARTICLE}:")]


def without(message: Message, kind: str) -> InlineKeyboardMarkup | None:
    """The message's keyboard less the rows of one kind of button (feedback once given, "More" once shown)."""
    rows = [row for row in (message.reply_markup.inline_keyboard if message.reply_markup else ())
            if not any(isinstance(b.callback_data, str) and b.callback_data.startswith(f"{kind}:") for b in row)]
    return InlineKeyboardMarkup(rows) if rows else None
