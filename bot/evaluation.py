"""Answer quality on a question set: what `python -m bot eval` and the retrieval benchmark print.

Every figure of our answerer is printed beside plain BM25 (bm25s with its default
parameters, stemmed, title + body) computed in the same run on the same
knowledge base, so that a number is never read without its baseline.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import bm25s
import numpy as np
import Stemmer

from bot import text
from bot.answer import answer_question
from bot.knowledge import KnowledgeBase
from bot.render import render_html
from bot.search import Index


@dataclass(frozen=True, slots=True)
class Question:
    question: str
    doc_id: str | None  # None for off-topic questions


@dataclass(frozen=True, slots=True)
class Scores:
    """One ranker's figures on one question set."""

    method: str
    questions: int
    top1: float
    top5: float
    mrr10: float
    latency_median_ms: float
    latency_p95_ms: float
    answered: float | None = None  # share of questions answered (sure or unsure tier)
    answered_correct: float | None = None  # answered, and the article is the right one
    sure: float | None = None  # share answered in the sure tier
    sure_correct: float | None = None  # precision of the sure tier
    refused_offtopic: float | None = None  # share of off-topic questions refused


class BadQuestions(ValueError):
    """A question file line that is not `{question, doc_id}` JSON; the message says where."""


def read_questions(path: Path, limit: int | None = None, need_doc: bool = True) -> list[Question]:
    questions: list[Question] = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                question = data["question"]
                doc_id = data.get("doc_id")
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
                raise BadQuestions(f"{path}:{number}: expected a JSON object with 'question' ({exc})") from exc
            if not isinstance(question, str) or (need_doc and doc_id is None):
                raise BadQuestions(f"{path}:{number}: 'question' must be text and 'doc_id' given")
            questions.append(Question(question, None if doc_id is None else str(doc_id)))
            if limit is not None and len(questions) >= limit:
                break
    return questions


def _ranks(rankings: Iterable[list[str]], questions: Sequence[Question]) -> tuple[float, float, float]:
    top1 = top5 = mrr = 0.0
    for ids, question in zip(rankings, questions, strict=True):
        if question.doc_id in ids[:10]:
            position = ids.index(question.doc_id)
            top1 += position == 0
            top5 += position < 5
            mrr += 1 / (position + 1)
    n = len(questions) or 1
    return top1 / n, top5 / n, mrr / n


def _latency(samples: list[float]) -> tuple[float, float]:
    if not samples:
        return 0.0, 0.0
    ms = np.asarray(samples) * 1000
    return float(np.median(ms)), float(np.percentile(ms, 95))


def evaluate_answerer(index: Index, questions: Sequence[Question], offtopic: Sequence[Question] = ()) -> Scores:
    """Our answerer end to end: question in, rendered reply out, timed one question at a time."""
    rankings, timings = [], []
    answered = correct = sure = sure_correct = 0
    for question in questions:
        start = time.perf_counter()
        answer = answer_question(index, question.question)
        render_html(answer)
        timings.append(time.perf_counter() - start)
        rankings.append([hit.article.id for hit in index.search(question.question, 10)])
        right = answer.article is not None and answer.article.id == question.doc_id
        answered += answer.found
        correct += answer.found and right
        sure += answer.sure
        sure_correct += answer.sure and right
    refused = sum(not answer_question(index, q.question).found for q in offtopic)
    top1, top5, mrr = _ranks(rankings, questions)
    median, p95 = _latency(timings)
    n = len(questions) or 1
    return Scores(
        "ours", len(questions), top1, top5, mrr, median, p95,
        answered / n, correct / n, sure / n, sure_correct / (sure or 1),
        refused / len(offtopic) if offtopic else None,
    )


def evaluate_bm25(kb: KnowledgeBase, questions: Sequence[Question]) -> Scores:
    """Plain BM25: bm25s defaults, stemmed in the knowledge base's main language, title + body."""
    articles = sorted(kb.articles.values(), key=lambda a: a.id)
    if not articles:
        return Scores("plain BM25", len(questions), 0.0, 0.0, 0.0, 0.0, 0.0)
    language = Counter(a.language for a in articles).most_common(1)[0][0]
    stemmer = Stemmer.Stemmer(text.STEMMERS[language]) if language in text.STEMMERS else None
    stopwords = list(text.stopwords(language))
    corpus = bm25s.tokenize(
        [f"{a.title} {a.body}" for a in articles], stopwords=stopwords, stemmer=stemmer, show_progress=False
    )
    retriever = bm25s.BM25()
    retriever.index(corpus, show_progress=False)
    rankings, timings = [], []
    for question in questions:
        start = time.perf_counter()
        tokens = bm25s.tokenize(
            question.question, stopwords=stopwords, stemmer=stemmer, show_progress=False, return_ids=False
        )[0]
        scores = retriever.get_scores(tokens) if tokens else np.zeros(len(articles))
        top = np.argsort(-scores)[:10]
        timings.append(time.perf_counter() - start)
        rankings.append([articles[i].id for i in top if scores[i] > 0])
    top1, top5, mrr = _ranks(rankings, questions)
    median, p95 = _latency(timings)
    return Scores("plain BM25", len(questions), top1, top5, mrr, median, p95)


def _cell(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(rows: Sequence[Scores], label: str = "") -> str:
    """A Markdown table, one row per ranker."""
    head = "| set | method | n | top-1 | top-5 | MRR@10 | answered | answered & correct | sure (precision) | " \
           "off-topic refused | median ms | p95 ms |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for row in rows:
        sure = "-" if row.sure is None else f"{row.sure:.3f} ({_cell(row.sure_correct)})"
        lines.append(
            f"| {label} | {row.method} | {row.questions} | {row.top1:.3f} | {row.top5:.3f} | {row.mrr10:.3f} | "
            f"{_cell(row.answered)} | {_cell(row.answered_correct)} | {sure} | {_cell(row.refused_offtopic)} | "
            f"{row.latency_median_ms:.2f} | {row.latency_p95_ms:.2f} |"
        )
    return "\n".join(lines)
