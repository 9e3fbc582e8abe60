"""The text primitives every reply is built from: Telegram's limits, one-line clipping, fitting lines in a message.

Telegram's own limits come from `telegram.constants` under one name each; the budgets below them are ours.
Lengths are counted as Telegram counts them (UTF-16 code units, `bot.text.telegram_length`), after HTML escaping,
so a clipped piece never grows past its budget when escaped.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence

from telegram.constants import InlineKeyboardButtonLimit, InlineQueryLimit, MessageLimit

from bot.text import telegram_length

MAX_MESSAGE = MessageLimit.MAX_TEXT_LENGTH
MAX_CALLBACK_DATA = InlineKeyboardButtonLimit.MAX_CALLBACK_DATA
MAX_INLINE_RESULTS = InlineQueryLimit.RESULTS

# Our budgets for the pieces of a message or button.
TITLE = 300          # an article's title in a card or a list
BUTTON_TITLE = 60    # an article's title on a button: phones show little more
SUMMARY = 1000       # a summary in a card
QUOTE = 1200         # the answering sentences, all together
BYLINE = 200         # date and publisher
HEADING = 200        # the title of a list
QUOTED_WORDS = 100   # a reader's words quoted back ("articles about …")


def one_line(text: str) -> str:
    return " ".join(text.split())


def escape(text: str) -> str:
    return html.escape(text, quote=True)


def clip(text: str, limit: int, *, html_mode: bool = True) -> str:
    """`text` on one line, escaped in HTML mode, cut at a word boundary so that it fits `limit`."""
    esc = escape if html_mode else str
    text = one_line(text)
    if telegram_length(esc(text)) <= limit:
        return esc(text)
    low, high = 0, len(text)
    while low < high:  # the longest prefix whose escaped form, plus an ellipsis, fits
        middle = (low + high + 1) // 2
        if telegram_length(esc(text[:middle])) + 1 <= limit:
            low = middle
        else:
            high = middle - 1
    cut = text[:low]
    if " " in cut[len(cut) // 2:]:
        cut = cut[: cut.rindex(" ")]
    return esc(cut.rstrip()) + "…"


def link(url: str, label: str, *, html_mode: bool = True) -> str:
    """A link in HTML mode, "label: url" in plain text."""
    return f'<a href="{escape(url)}">{escape(label)}</a>' if html_mode else f"{label}: {url}"


def fit(lines: Sequence[str], more: Callable[[int], str], limit: int = MAX_MESSAGE) -> str:
    """Join whole lines while they fit in one message, then end with `more(number left out)`."""
    out: list[str] = []
    used = 0
    for number, line in enumerate(lines):
        rest = len(lines) - number
        tail = more(rest)
        if used + telegram_length(line) + (0 if rest == 1 else telegram_length(tail) + 1) > limit:
            out.append(tail)
            break
        out.append(line)
        used += telegram_length(line) + 1
    return "\n".join(out)
