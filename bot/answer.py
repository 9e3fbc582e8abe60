"""An answer to a question: which article, which sentence, how sure (how it reads is `bot.render`'s business).

Three tiers rather than a coin toss: *sure* (one article), *unsure* ("maybe one
of these", the top three: the right article is far more often in the top five
than first), and *no match* (an honest "I don't know", the closest titles when
they are related to the question at all, and a pointer to /latest). A curated
FAQ entry that matches the question wins over articles. A ranked article is a
`bot.search.Hit` everywhere here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from bot.knowledge import Article, FaqEntry
from bot.search import FOUND, RELATED, SURE, Hit, Index
from bot.text import split_sentences

__all__ = ["ALTERNATIVES", "Answer", "answer_question", "display_title", "with_guess_sentences"]

SURE_MARGIN = 0.05  # fused-score lead over the runner-up needed to name one article
ALTERNATIVES = 3


@dataclass(frozen=True, slots=True)
class Answer:
    question: str
    found: bool  # sure or unsure tier
    sure: bool  # sure tier only
    confidence: float  # 0..1, calibrated so it means the same at 1 and 100,000 articles
    article: Article | None  # best guess when found; None otherwise
    sentences: tuple[str, ...]  # verbatim answering sentence(s) from the article, the answering one first
    summary: str | None  # the article's summary less any sentence already in `sentences`
    alternatives: tuple[Hit, ...]  # next best, best first; when not found, the closest related articles
    # (none when nothing is related: a clear off-topic question)
    faq: FaqEntry | None = None  # set when a curated FAQ entry answered
    # Set by the service when the question's language is none of the knowledge base's (`kb_languages`).
    foreign_language: str | None = None
    kb_languages: tuple[str, ...] = ()
    # The unsure tier's other guesses: per alternative, its sentence that may answer (set by `with_guess_sentences`).
    guess_sentences: tuple[str, ...] = ()

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
            "alternatives": [{"id": a.article.id, "title": display_title(a.article), "score": round(a.score, 4)}
                             for a in self.alternatives],
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
        alternatives = tuple(Hit(c.article, c.score) for c in candidates)
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
    alternatives = tuple(Hit(c.article, c.score) for c in others[:ALTERNATIVES])
    if not found:
        return Answer(question, False, False, confidence, None, (), None, alternatives)
    return Answer(
        question, True, sure, confidence, best.article, judgement.sentences,
        _summary_without(best.article.summary, judgement.sentences, best.article.language), alternatives,
    )


def with_guess_sentences(index: Index, answer: Answer) -> Answer:
    """In the unsure tier, the sentence of each other guess that may answer, so that every guess shows its own."""
    if not answer.found or answer.sure or not answer.alternatives:
        return answer
    ranking = index.rank(answer.question, k=1)
    sentences = tuple(next(iter(index.best_sentences(hit.article, ranking, limit=1)), "")
                      for hit in answer.alternatives)
    return replace(answer, guess_sentences=sentences)


def _summary_without(summary: str, sentences: Sequence[str], language: str) -> str | None:
    """The summary less the sentences already given as the answer: no sentence is returned twice."""
    given = {" ".join(s.split()) for s in sentences}
    rest = [s for s in split_sentences(summary, language) if " ".join(s.split()) not in given]
    return " ".join(rest) or None
