"""How every reply reads, in the reader's language: answers, article cards and lists, notifications and digests,
subscription outcomes, /reload and /stats reports.

Pure functions of their data and a `bot.i18n.Translator` (`tr`). Each renders Telegram HTML (every piece from an
article or a reader escaped, never over Telegram's message limit whatever the article holds) or, with
`html_mode=False`, the plain text the shell and `python -m bot ask` print. The words come from the message
catalogs; the budgets and limits from `bot.format`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from babel.dates import format_datetime

from bot.answer import ALTERNATIVES, Answer, display_title
from bot.format import (
    BYLINE,
    HEADING,
    MAX_MESSAGE,
    QUOTE,
    QUOTED_WORDS,
    SUMMARY,
    TITLE,
    clip,
    escape,
    fit,
    link,
    one_line,
)
from bot.i18n import DEFAULT, Translator, translator
from bot.knowledge import Article, Changes, KnowledgeBase, Problem, web_url
from bot.smalltalk import Kind
from bot.store import Stats, Subscription
from bot.text import split_sentences, telegram_length, words

if TYPE_CHECKING:  # the poller (and its HTTP client) is loaded only where sources are followed
    from bot.poller import PollOutcome, SourceState
    from bot.sources import Source

ENGLISH = translator(DEFAULT)
NEW = "🆕"


def bold(text: str, html_mode: bool = True) -> str:
    return f"<b>{text}</b>" if html_mode else text


def language_list(tr: Translator, codes: Sequence[str]) -> str:
    return ", ".join(tr.language_name(code) for code in codes)


# --- articles --------------------------------------------------------------------


def _lines(sentences: Sequence[str], html_mode: bool, budget: int = QUOTE) -> list[str]:
    """At most three sentences, one a line, `budget` characters in all."""
    shown = sentences[:3]
    return [clip(s, budget // len(shown), html_mode=html_mode) for s in shown]


def _quote(sentences: Sequence[str], html_mode: bool, budget: int = QUOTE) -> str:
    """Sentences quoted from an article, as a block quote."""
    lines = _lines(sentences, html_mode, budget)
    if not lines:
        return ""
    return f"<blockquote>{chr(10).join(lines)}</blockquote>" if html_mode else "\n".join(f"> {line}" for line in lines)


def _source(article: Article, tr: Translator, html_mode: bool) -> str:
    """Title, then date · publisher · the source link: the one link a card carries (no URL button repeats it)."""
    title = bold(clip(display_title(article), TITLE, html_mode=html_mode), html_mode)
    source = clip(article.source, BYLINE, html_mode=html_mode) if article.source else ""
    byline = " · ".join(part for part in (tr.date(article.published), source) if part)   # a date keeps its NBSPs
    if byline and html_mode:
        byline = f"<i>{byline}</i>"
    url = web_url(article.url)
    if url:
        byline = " · ".join(part for part in (byline, link(url, tr("article.source_link"), html_mode=html_mode))
                            if part)
    return f"{title}\n{byline}" if byline else title


def new_sentences(text: str, shown: str, language: str) -> str:
    """The sentences of `text` that `shown` does not already hold: no sentence is shown twice."""
    seen = one_line(shown)
    return " ".join(s for s in split_sentences(text, language) if one_line(s) not in seen)


def article_card(article: Article, tr: Translator, html_mode: bool = True) -> str:
    """The card for an article chosen from a list, shared inline, or announced: title, summary, byline and link."""
    title, _, byline = _source(article, tr, html_mode).partition("\n")
    summary = clip(article.summary, SUMMARY, html_mode=html_mode) if article.summary.strip() else ""
    return "\n\n".join(part for part in (title, summary, byline) if part)


def more_text(article: Article, shown: str, tr: Translator, html_mode: bool = True) -> str:
    """What "More" adds under an answer card: the summary less what the card (`shown`) already says."""
    rest = new_sentences(article.summary, shown, article.language)
    title = bold(clip(display_title(article), TITLE, html_mode=html_mode), html_mode)
    return f"{title}\n\n{clip(rest, SUMMARY, html_mode=html_mode)}" if rest else ""


def article_list(title: str, articles: Sequence[Article], tr: Translator, html_mode: bool = True) -> str:
    """A short numbered list (title, date, link) for /search and /latest, cut to fit one message."""
    if not articles:
        return tr("browse.none")
    lines = [bold(clip(title, HEADING, html_mode=html_mode), html_mode)]
    used = telegram_length(lines[0])
    for number, article in enumerate(articles, start=1):
        name = clip(display_title(article), TITLE, html_mode=html_mode)
        url = web_url(article.url)
        line = f'{number}. <a href="{escape(url)}">{name}</a>' if html_mode and url else f"{number}. {name}"
        when = tr.date(article.published)
        if when:
            line += f" · {when}"
        if url and not html_mode:
            line += f"\n   {url}"
        if used + 1 + telegram_length(line) > MAX_MESSAGE:
            break
        lines.append(line)
        used += 1 + telegram_length(line)
    return "\n".join(lines)


def about(tr: Translator, words: str) -> str:
    """The title of a list of search results (plain text: `article_list` escapes it)."""
    return tr("browse.about", words=clip(words, QUOTED_WORDS, html_mode=False))


def no_match(tr: Translator, words: str, html_mode: bool = True) -> str:
    return tr("browse.no_match", words=clip(words, QUOTED_WORDS, html_mode=html_mode))


# --- answers ---------------------------------------------------------------------

# Wordings of "give me the overview" in English, Russian and Kazakh: word sequences, "*" ending a prefix.
_OVERVIEW: tuple[tuple[str, ...], ...] = (
    ("summar*",), ("overview",), ("gist",), ("tldr",), ("tl", "dr"), ("briefly",), ("in", "short"), ("in", "brief"),
    ("tell", "me", "about"), ("tell", "us", "about"),
    ("кратк*",), ("вкратце",), ("резюм*",), ("обзор*",), ("суть",), ("в", "двух", "словах"),
    ("о", "чём"), ("о", "чем"), ("про", "что"), ("расскаж*", "о"), ("расскаж*", "об"), ("расскаж*", "про"),
    ("қысқаш*",), ("шолу*",), ("түйін*",), ("мазмұн*",), ("не", "туралы"), ("туралы", "айт*"),
)
_OVERVIEW_WORDS = 30   # an overview request is short; only its first words are looked at


def _matches(word: str, pattern: str) -> bool:
    return word.startswith(pattern[:-1]) if pattern.endswith("*") else word == pattern


def wants_overview(question: str) -> bool:
    """Whether the question asks what an article is about ("what is this article about?", "кратко", "қысқаша"),
    so that the answer card shows the summary rather than offer it behind "More"."""
    tokens = words(question[:300])[:_OVERVIEW_WORDS]
    if len(tokens) >= 3 and tokens[0] == "what" and tokens[-1] == "about":
        return True
    return any(
        all(_matches(tokens[start + i], pattern) for i, pattern in enumerate(phrase))
        for phrase in _OVERVIEW for start in range(len(tokens) - len(phrase) + 1)
    )


def _answer_card(answer: Answer, article: Article, tr: Translator, html_mode: bool) -> str:
    """The sure tier: the answering sentence(s) first, then the summary when asked for, then where it is from."""
    sentences = "\n".join(_lines(answer.sentences, html_mode))
    summary = ""
    if answer.summary and (wants_overview(answer.question) or not sentences):
        summary = clip(answer.summary, SUMMARY, html_mode=html_mode)
    return "\n\n".join(part for part in (sentences, summary, _source(article, tr, html_mode)) if part)


def _guesses(answer: Answer, article: Article, tr: Translator, html_mode: bool) -> str:
    """The unsure tier: each guess names its article and quotes the sentence from it that may answer."""
    guesses = [(article, answer.sentences), *(
        (hit.article, (answer.guess_sentences[n],) if n < len(answer.guess_sentences) else ())
        for n, hit in enumerate(answer.alternatives))][:ALTERNATIVES]
    shown: set[str] = set()
    parts = [tr("answer.not_sure")]
    for number, (guess, sentences) in enumerate(guesses, start=1):
        fresh = [s for s in sentences if s.strip() and one_line(s) not in shown]
        shown.update(one_line(s) for s in fresh)
        title = f"{number}. {bold(clip(display_title(guess), 250, html_mode=html_mode), html_mode)}"
        quote = _quote(fresh, html_mode, QUOTE // len(guesses))
        parts.append(f"{title}\n{quote}" if quote else title)
    return "\n\n".join(parts)


def _titles(articles: Sequence[Article], html_mode: bool) -> str:
    return "\n".join(f"{number}. {bold(clip(display_title(article), 250, html_mode=html_mode), html_mode)}"
                     for number, article in enumerate(articles[:ALTERNATIVES], start=1))


def _answer_body(answer: Answer, tr: Translator, html_mode: bool) -> str:
    if answer.faq is not None:
        parts = [clip(answer.faq.answer, 3000, html_mode=html_mode)]
        for faq_link in answer.faq.links[:5]:
            url = web_url(faq_link)
            if url:
                parts.append(f'<a href="{escape(url)}">{clip(url, 150)}</a>' if html_mode else url)
        return "\n".join(parts)
    if answer.found and answer.article is not None:
        if answer.sure:
            return _answer_card(answer, answer.article, tr, html_mode)
        return _guesses(answer, answer.article, tr, html_mode)
    if not answer.alternatives:   # nothing related at all: no unrelated "closest" article
        return f"{tr('answer.dont_know')}\n{tr('answer.latest_hint')}"
    closest = _titles([hit.article for hit in answer.alternatives], html_mode)
    return "\n\n".join([tr("answer.dont_know"), f"{tr('answer.closest')}\n{closest}", tr("answer.latest_hint")])


def render_answer(answer: Answer, tr: Translator, html_mode: bool = True) -> str:
    """The reply to a question; it says so first when the articles are in other languages than the question."""
    body = _answer_body(answer, tr, html_mode)
    if answer.foreign_language is None:
        return body
    note = tr("answer.other_languages", question=tr.language_name(answer.foreign_language),
              languages=language_list(tr, answer.kb_languages))
    return f"{note}\n\n{body}"


def render_html(answer: Answer, tr: Translator = ENGLISH) -> str:
    """The Telegram reply in HTML parse mode: all text escaped, within the message limit."""
    return render_answer(answer, tr, html_mode=True)


def render_text(answer: Answer, tr: Translator = ENGLISH) -> str:
    """The same reply as plain text, for `python -m bot ask` and the shell."""
    return render_answer(answer, tr, html_mode=False)


# --- small talk ------------------------------------------------------------------

EXAMPLE_TITLE = 120   # the newest article's title, offered as something to ask about


def smalltalk_reply(kind: Kind, tr: Translator, articles: int, languages: Sequence[str],
                    newest: Sequence[Article], html_mode: bool = True) -> str:
    """A short, friendly reply to a greeting, thanks, "who are you" or "help": what the bot knows (how many
    articles, in which languages), something to ask about (the newest article, in the reader's language if one
    is), and /latest."""
    if kind == "thanks":
        return f"{tr('smalltalk.thanks')}\n{tr('answer.latest_hint')}"
    lines = [tr(f"smalltalk.{kind}")]
    if articles:
        lines.append(tr("smalltalk.knows", articles=tr.plural("articles.count", articles),
                        languages=language_list(tr, languages)))
    example = next((a for a in newest if a.language == tr.language), newest[0] if newest else None)
    if example is not None:
        lines.append(tr("smalltalk.example", title=clip(display_title(example), EXAMPLE_TITLE, html_mode=html_mode)))
    lines.append(tr("answer.latest_hint"))
    return "\n".join(lines)


# --- notifications -----------------------------------------------------------------


def _digest_line(article: Article, tr: Translator) -> str:
    title = clip(display_title(article), TITLE)
    url = web_url(article.url)
    line = f'• <a href="{escape(url)}">{title}</a>' if url else f"• {title}"
    when = tr.date(article.published)
    return f"{line} — {when}" if when else line


def render_messages(
    articles: Sequence[Article], language: str = DEFAULT, pages: int | None = None
) -> list[tuple[tuple[str, ...], str]]:
    """(article ids, HTML) per message: one card for one article, else digests of as many lines as fit (the
    first `pages` of them only, when given)."""
    tr = translator(language)
    if len(articles) == 1:
        return [((articles[0].id,), f"{NEW} {article_card(articles[0], tr)}")]
    header = f"{NEW} {bold(tr.plural('digest.header', len(articles)))}"
    continued = f"{NEW} {bold(tr('digest.continued'))}"
    messages: list[tuple[tuple[str, ...], str]] = []
    ids: list[str] = []
    lines: list[str] = [header, ""]
    used = telegram_length(header) + 1
    for article in articles:
        line = _digest_line(article, tr)
        if ids and used + 1 + telegram_length(line) > MAX_MESSAGE:
            messages.append((tuple(ids), "\n".join(lines)))
            if len(messages) == pages:
                return messages
            ids, lines, used = [], [continued, ""], telegram_length(continued) + 1
        ids.append(article.id)
        lines.append(line)
        used += telegram_length(line) + 1
    messages.append((tuple(ids), "\n".join(lines)))
    return messages


def render_notification(articles: Sequence[Article], language: str = DEFAULT) -> str:
    """One message: a card for one article, a digest for several (the rest counted, with a pointer to /latest)."""
    if not articles:
        raise ValueError("nothing to notify about")
    ((ids, text),) = render_messages(articles, language, pages=1)   # thousands of articles: the first page only
    if len(ids) == len(articles):
        return text
    tr = translator(language)
    shown = list(ids)
    while True:
        tail = tr.plural("digest.more", len(articles) - len(shown))
        if telegram_length(text) + 1 + telegram_length(tail) <= MAX_MESSAGE:
            return f"{text}\n{tail}"
        shown.pop()
        text = text.rsplit("\n", 1)[0]


# --- subscriptions -------------------------------------------------------------------


def subscription_what(subscription: Subscription, tr: Translator, limit: int = QUOTED_WORDS) -> str:
    """What a subscription is about, in plain text (escape it for HTML)."""
    if subscription.words is None:
        return tr("subscriptions.everything")
    return tr("subscriptions.about", words=clip(subscription.words, limit, html_mode=False))


def subscriptions_list(subscriptions: Sequence[Subscription], tr: Translator) -> str:
    if not subscriptions:
        return tr("subscriptions.none")
    lines = [bold(tr("subscriptions.title"))]
    lines += [f"• {escape(subscription_what(s, tr))}" for s in subscriptions]
    return "\n".join(lines)


# --- admins' reports -------------------------------------------------------------------


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def reload_report(old: KnowledgeBase, new: KnowledgeBase, changes: Changes, problems: Sequence[Problem],
                  knowledge_dir: Path, tr: Translator) -> str:
    """What a reload changed, or why nothing was swapped in (file:line: message per problem)."""
    def more(n: int) -> str:
        return tr.plural("report.more", n)

    if problems:
        head = f"{bold(tr('reload.failed_title'))} {tr.plural('reload.problems', len(problems))}"
        lines = [f"<code>{escape(_relative(p.path, knowledge_dir))}:{p.line}</code>: {escape(p.message[:300])}"
                 for p in problems]
        return fit([head, *lines], more)
    head = f"{bold(tr('reload.done_title'))} " + tr(
        "reload.counts", articles=tr.plural("articles.count", len(new.articles)),
        added=tr.number(len(changes.added)), updated=tr.number(len(changes.updated)),
        removed=tr.number(len(changes.removed)))
    if not changes:
        return f"{head}\n{tr('reload.unchanged')}"
    lines = [head]
    for key, ids, kb in (("reload.added", changes.added, new), ("reload.updated", changes.updated, new),
                         ("reload.removed", changes.removed, old)):
        lines.extend(tr(key, title=escape(kb.articles[i].title[:200])) for i in ids)
    if changes.added:
        lines.append(tr("reload.notifying"))
    return fit(lines, more)


def stats_report(stats: Stats, articles: int, tr: Translator, top: int = 5) -> str:
    asked = stats.answered + stats.unanswered
    lines = [
        bold(tr("stats.title")),
        tr("stats.articles", count=tr.number(articles)),
        tr("stats.chats", chats=tr.number(stats.subscribed_chats),
           subscriptions=tr.plural("subscriptions.count", stats.subscriptions)),
        tr("stats.questions", asked=tr.number(asked), answered=tr.number(stats.answered),
           unanswered=tr.number(stats.unanswered)),
        tr("stats.feedback", helpful=tr.number(stats.helpful), unhelpful=tr.number(stats.unhelpful)),
    ]
    for key, rows in (("stats.top_unanswered", stats.top_unanswered), ("stats.top_unhelpful", stats.top_unhelpful)):
        if rows:
            lines.append(bold(tr(key)))
            lines.extend(f"{tr.number(count)}× {escape(question[:200])}" for question, count in rows[:top])
    return fit(lines, lambda n: tr.plural("report.more", n))


# --- sources -----------------------------------------------------------------------


def _moment(epoch: float | None, tr: Translator) -> str:
    if epoch is None:
        return tr("sources.never")
    moment = dt.datetime.fromtimestamp(epoch, dt.UTC)
    return format_datetime(moment, format="short", tzinfo=dt.UTC, locale=tr.language) + " UTC"


def _source_name(source: Source) -> str:
    return escape(clip(source.label, TITLE, html_mode=False))


def sources_report(sources: Sequence[Source], states: Mapping[str, SourceState], problems: int,
                   tr: Translator) -> str:
    """/sources: each source's health, numbered as its pause/resume button is."""
    if not sources:
        return tr("sources.none")
    lines = [bold(tr.plural("sources.title", len(sources)))]
    if problems:
        lines.append(tr.plural("sources.problems", problems))
    for number, source in enumerate(sources, 1):
        state = states[source.url]
        entry = [f"{number}. {bold(_source_name(source))}" + (f" — {tr('sources.paused')}" if state.paused else "")]
        if source.name:
            entry.append(escape(clip(source.url, TITLE, html_mode=False)))
        entry.append(tr("sources.last_success", when=_moment(state.last_success, tr)))
        entry.append(tr("sources.last_new", when=_moment(state.last_new_article, tr)))
        if state.last_error:
            entry.append(tr.plural("sources.failing", state.failures, error=escape(state.last_error[:300])))
        lines.append("\n".join(entry))
    return fit(lines, lambda n: tr.plural("report.more", n))


def add_report(url: str, outcome: PollOutcome, tr: Translator) -> str:
    """/add URL: the articles it added and updated (title and id), or why nothing could be read."""
    where = escape(clip(url, TITLE, html_mode=False))
    if outcome.error is not None:
        return tr("add.failed", url=where, error=escape(outcome.error[:300]))
    if not (outcome.added or outcome.updated or outcome.failed):
        return tr("add.nothing", url=where)
    lines = [bold(tr("add.done", url=where))]
    for key, refs in (("add.added", outcome.added), ("add.updated", outcome.updated)):
        lines.extend(tr(key, title=escape(ref.title[:200]), id=f"<code>{escape(ref.id)}</code>") for ref in refs)
    if outcome.failed:
        lines.append(tr.plural("add.failed_items", len(outcome.failed)))
    if outcome.added:
        lines.append(tr("reload.notifying"))
    return fit(lines, lambda n: tr.plural("report.more", n))


def health_message(outcome: PollOutcome, tr: Translator) -> str:
    """What admins are told once when a source starts failing, and once when it recovers."""
    name, url = _source_name(outcome.source), escape(clip(outcome.source.url, TITLE, html_mode=False))
    if outcome.error is not None:
        return tr("health.failing", name=name, url=url, error=escape(outcome.error[:300]))
    return tr("health.recovered", name=name, url=url)
