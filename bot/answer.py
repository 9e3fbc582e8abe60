"""An answer to a question: which article, which sentence, how sure, and how it reads.

Three tiers rather than a coin toss: *sure* (one article), *unsure* ("maybe one
of these", the top three: the right article is far more often in the top five
than first), and *no match* (an honest "I don't know", the closest titles when
they are related to the question at all, and a pointer to /latest). A curated
FAQ entry that matches the question wins over articles. Rendering is pure: the
same Answer gives Telegram HTML (every piece escaped, never over Telegram's 4,096-character limit, whatever the article
holds) and plain text for the command line.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.knowledge import Article, FaqEntry, web_url
from bot.search import FOUND, RELATED, SURE, Hit, Index
from bot.text import split_sentences, telegram_length

__all__ = [
    "Alternative", "Answer", "answer_question", "article_html", "display_title", "hits_html",
    "render_html", "render_text",
]

TELEGRAM_LIMIT = 4096
SURE_MARGIN = 0.05  # fused-score lead over the runner-up needed to name one article
ALTERNATIVES = 3

NOT_SURE = "I'm not sure; maybe one of these:"
DONT_KNOW = "I don't know the answer to that."
CLOSEST = "The closest articles I have:"
LATEST_HINT = "Send /latest to see the newest articles."


@dataclass(frozen=True, slots=True)
class Alternative:
    id: str
    title: str
    score: float


@dataclass(frozen=True, slots=True)
class Answer:
    question: str
    found: bool  # sure or unsure tier
    sure: bool  # sure tier only
    confidence: float  # 0..1, calibrated so it means the same at 1 and 100,000 articles
    article: Article | None  # best guess when found; None otherwise
    sentences: tuple[str, ...]  # verbatim answering sentence(s) from the article, the answering one first
    summary: str | None  # the article's summary less any sentence already in `sentences`
    alternatives: tuple[Alternative, ...]  # next best, best first; when not found, the closest related articles
    # (none when nothing is related: a clear off-topic question)
    faq: FaqEntry | None = None  # set when a curated FAQ entry answered

    def to_json(self) -> dict[str, Any]:
        article = self.article
        return {
            "question": self.question,
            "found": self.found,
            "sure": self.sure,
            "confidence": round(self.confidence, 4),
            "article": None if article is None else {
                "id": article.id,
                "title": display_title(article),
                "published": article.published.isoformat() if article.published else None,
                "source": article.source,
                "url": article.url,
            },
            "sentences": list(self.sentences),
            "summary": self.summary,
            "alternatives": [{"id": a.id, "title": a.title, "score": round(a.score, 4)} for a in self.alternatives],
            "faq": None if self.faq is None else {
                "id": self.faq.id, "answer": self.faq.answer, "links": list(self.faq.links),
            },
        }


def display_title(article: Article) -> str:
    """The title, or the opening words of the body for an article that has none."""
    if article.title.strip():
        return " ".join(article.title.split())
    words = article.body.split()
    return " ".join(words[:12]) + (" …" if len(words) > 12 else "") if words else article.id


def answer_question(index: Index, question: str) -> Answer:
    """Answer one question from the index: FAQ first, then the best article if it is good enough.

    The closest articles are offered on a refusal only when they are related to the question at all:
    "weather in Almaty tomorrow?" gets a plain "I don't know", not an article that mentions Almaty.
    """
    faq = index.match_faq(question)
    ranking = index.rank(question, k=ALTERNATIVES + 1)
    candidates = ranking.candidates
    if faq is not None:
        alternatives = tuple(Alternative(c.article.id, display_title(c.article), c.score) for c in candidates)
        return Answer(question, True, True, faq.score / 100, None, (), None, alternatives[:ALTERNATIVES], faq.entry)
    if not candidates:
        return Answer(question, False, False, 0.0, None, (), None, ())
    judgement = index.judge(ranking)
    confidence = judgement.confidence
    best = candidates[0]
    found = confidence >= FOUND
    # With no runner-up there is nothing to offer instead, so a found answer is a sure one.
    lead = best.score - candidates[1].score if len(candidates) > 1 else None
    sure = found and (lead is None or (confidence >= SURE and lead >= SURE_MARGIN))
    others = candidates[1:] if found else candidates if confidence >= RELATED else ()
    alternatives = tuple(Alternative(c.article.id, display_title(c.article), c.score) for c in others[:ALTERNATIVES])
    if not found:
        return Answer(question, False, False, confidence, None, (), None, alternatives)
    return Answer(
        question, True, sure, confidence, best.article, judgement.sentences,
        _summary_without(best.article.summary, judgement.sentences, best.article.language), alternatives,
    )


def _summary_without(summary: str, sentences: Sequence[str], language: str) -> str | None:
    """The summary less the sentences already given as the answer: no sentence is returned twice."""
    given = {" ".join(s.split()) for s in sentences}
    rest = [s for s in split_sentences(summary, language) if " ".join(s.split()) not in given]
    return " ".join(rest) or None


# --- rendering -------------------------------------------------------------------


def _clip(value: str, limit: int, html_mode: bool = True) -> str:
    """`value` on one line, escaped in HTML mode, cut at a word boundary so that it fits `limit`."""
    escape = html.escape if html_mode else str
    value = " ".join(value.split())
    if telegram_length(escape(value)) <= limit:
        return escape(value)
    low, high = 0, len(value)
    while low < high:  # the longest prefix whose escaped form, plus an ellipsis, fits
        middle = (low + high + 1) // 2
        if telegram_length(escape(value[:middle])) + 1 <= limit:
            low = middle
        else:
            high = middle - 1
    cut = value[:low]
    if " " in cut[len(cut) // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return escape(cut.rstrip()) + "…"


def _date(published: dt.date | None) -> str:
    return f"{published.day} {published:%B %Y}" if published else ""


def _byline(article: Article) -> str:
    return " · ".join(part for part in (_date(article.published), article.source or "") if part)


def _card(article: Article, sentences: Sequence[str], summary: str | None, html_mode: bool) -> list[str]:
    """Title, answering sentence(s), summary, date and publisher, link: the budgets sum well under 4,096."""
    parts: list[str] = []
    title = _clip(display_title(article), 300, html_mode)
    parts.append(f"<b>{title}</b>" if html_mode else title)
    quote = _quote(sentences, html_mode)
    if quote:
        parts.append(quote)
    if summary and summary.strip() and " ".join(summary.split()) not in {" ".join(s.split()) for s in sentences}:
        parts.append(_clip(summary, 1000, html_mode))
    byline = _byline(article)
    if byline:
        clipped = _clip(byline, 200, html_mode)
        parts.append(f"<i>{clipped}</i>" if html_mode else clipped)
    url = web_url(article.url)
    if url:
        parts.append(f'<a href="{html.escape(url, quote=True)}">Source</a>' if html_mode else f"Source: {url}")
    return parts


def _quote(sentences: Sequence[str], html_mode: bool) -> str:
    """The answering sentences as a block quote (at most three, 1,200 characters in all)."""
    if not sentences:
        return ""
    shown = sentences[:3]
    lines = [_clip(s, 1200 // len(shown), html_mode) for s in shown]
    return f"<blockquote>{chr(10).join(lines)}</blockquote>" if html_mode else "\n".join(f"> {line}" for line in lines)


def _titles(alternatives: Sequence[Alternative], html_mode: bool) -> list[str]:
    lines = []
    for number, alternative in enumerate(alternatives[:ALTERNATIVES], start=1):
        title = _clip(alternative.title, 250, html_mode)
        lines.append(f"{number}. <b>{title}</b>" if html_mode else f"{number}. {title}")
    return lines


def _render(answer: Answer, html_mode: bool) -> str:
    if answer.faq is not None:
        parts = [_clip(answer.faq.answer, 3000, html_mode)]
        for link in answer.faq.links[:5]:
            url = web_url(link)
            if url:
                parts.append(f'<a href="{html.escape(url, quote=True)}">{_clip(url, 150)}</a>' if html_mode else url)
        return "\n".join(parts)
    if answer.found and answer.article is not None:
        if answer.sure:
            return "\n\n".join(_card(answer.article, answer.sentences, answer.summary, html_mode))
        guesses = [Alternative(answer.article.id, display_title(answer.article), 1.0), *answer.alternatives]
        parts = [NOT_SURE, "\n".join(_titles(guesses, html_mode)), _quote(answer.sentences, html_mode)]
        return "\n\n".join(part for part in parts if part)
    if not answer.alternatives:
        return f"{DONT_KNOW}\n{LATEST_HINT}"
    return "\n\n".join([DONT_KNOW, CLOSEST + "\n" + "\n".join(_titles(answer.alternatives, html_mode)), LATEST_HINT])


def render_html(answer: Answer) -> str:
    """The Telegram reply in HTML parse mode: all text escaped, at most 4,096 characters."""
    return _render(answer, html_mode=True)


def render_text(answer: Answer) -> str:
    """The same reply as plain text, for `python -m bot ask` and the shell."""
    return _render(answer, html_mode=False)


def article_html(article: Article, sentences: Sequence[str] = ()) -> str:
    """The full card for an article chosen from a list of results."""
    return "\n\n".join(_card(article, sentences, article.summary, html_mode=True))


def hits_html(title: str, hits: Sequence[Hit]) -> str:
    """A short list (title, date, link) for /search and /latest, cut to fit one message."""
    lines = [f"<b>{_clip(title, 200)}</b>"]
    used = telegram_length(lines[0])
    for number, hit in enumerate(hits, start=1):
        name = _clip(display_title(hit.article), 200)
        url = web_url(hit.article.url)
        line = f'{number}. <a href="{html.escape(url, quote=True)}">{name}</a>' if url else f"{number}. {name}"
        date = _date(hit.article.published)
        if date:
            line += f" · {date}"
        if used + 1 + telegram_length(line) > TELEGRAM_LIMIT:
            break
        lines.append(line)
        used += 1 + telegram_length(line)
    return "\n".join(lines)
