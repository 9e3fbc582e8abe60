"""Answer quality on a question set: what `python -m bot eval` and the retrieval benchmark print.

Every figure of our answerer is printed beside plain BM25 (bm25s with its default
parameters, stemmed, title + body) computed in the same run on the same
knowledge base, so that a number is never read without its baseline.
"""

from __future__ import annotations

import json
import random
import time
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import bm25s
import numpy as np
import Stemmer

from bot import text
from bot.answer import Answer, answer_question
from bot.knowledge import Article, KnowledgeBase
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


# --- the sweep: knowledge bases of every size ------------------------------------

SWEEP_SIZES = (1, 3, 10, 30, 240)
SWEEP_DRAWS = {1: 20, 3: 10, 10: 5, 30: 3, 240: 1}  # several random draws where one draw says little
SWEEP_OFFTOPIC = 60  # off-topic questions asked of each draw
Split = Literal["all", "dev", "test"]


class MissingData(FileNotFoundError):
    """The evaluation data (../shared/eval) is not there; the message says what is needed."""


@dataclass(frozen=True, slots=True)
class Case:
    """One question asked of a knowledge base: `doc_id` is None when off-topic, "" when any article may answer."""

    question: str
    doc_id: str | None
    answer: str | None


@dataclass(frozen=True, slots=True)
class Draw:
    language: str
    size: int
    kb: KnowledgeBase
    cases: tuple[Case, ...]


@dataclass(frozen=True, slots=True)
class SweepRow:
    label: str
    draws: int
    questions: int
    answered_correct: float  # found, the right article, the reference answer inside the returned sentences
    offtopic: int
    refused: float  # off-topic questions refused


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise MissingData(f"{path} is missing: the sweep needs ../shared/eval (xquad_en, xquad_ru, rtqa_news)")
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def russian_offtopic() -> list[str]:
    """Everyday Russian questions no news knowledge base answers (bot/offtopic_ru.txt)."""
    lines = resources.files("bot").joinpath("offtopic_ru.txt").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def in_split(key: str, split: Split) -> bool:
    """A stable half of the data by key: tuning uses "dev", reported figures "test"."""
    if split == "all":
        return True
    return (zlib.crc32(key.encode("utf-8")) % 2 == 0) == (split == "dev")


def sweep_draws(data: Path, language: str, split: Split = "all", seed: int = 0,
                sizes: Sequence[int] = SWEEP_SIZES) -> Iterator[Draw]:
    """Knowledge bases of xquad paragraphs of each size, with every question of their paragraphs and
    off-topic questions (English: rtqa news quiz questions; Russian: bot/offtopic_ru.txt).

    The split is by Wikipedia article (paragraphs of one article share words), off-topic questions by
    their text; the 240-paragraph base always holds every paragraph, and asks only the split's questions.
    """
    docs = _jsonl(data / f"xquad_{language}" / "docs.jsonl")
    questions = _jsonl(data / f"xquad_{language}" / "questions.jsonl")
    if language == "en":
        offtopic = [q["question"] for q in _jsonl(data / "rtqa_news" / "questions.jsonl")]
    else:
        offtopic = russian_offtopic()
    offtopic = [q for q in offtopic if in_split(q, split)]
    by_doc: dict[str, list[Case]] = {}
    for q in questions:
        by_doc.setdefault(q["doc_id"], []).append(Case(q["question"], q["doc_id"], q["answer"]))
    articles = {
        d["id"]: Article(d["id"], d["title"], None, None, None, language, "", d["text"]) for d in docs
    }
    eligible = sorted(d["id"] for d in docs if in_split(d["title"], split))
    rng = random.Random(seed)
    for size in sizes:
        for _ in range(SWEEP_DRAWS.get(size, 1) if size < len(articles) else 1):
            chosen = sorted(articles) if size >= len(articles) else rng.sample(eligible, min(size, len(eligible)))
            asked = [case for doc_id in chosen if doc_id in eligible for case in by_doc.get(doc_id, [])]
            asked += [Case(q, None, None) for q in rng.sample(offtopic, min(SWEEP_OFFTOPIC, len(offtopic)))]
            yield Draw(language, size, KnowledgeBase({i: articles[i] for i in chosen}), tuple(asked))


def answered_correctly(answer: Answer, case: Case) -> bool:
    """Found, the right article (any, when the case names none), and the reference answer in the returned sentences."""
    if not answer.found or answer.article is None or case.answer is None:
        return False
    if case.doc_id and answer.article.id != case.doc_id:
        return False
    return _folded(case.answer) in _folded(" ".join(answer.sentences))


def _folded(value: str) -> str:
    return " ".join(text.normalise(value).casefold().split())


def score_draws(label: str, draws: Iterable[Draw]) -> SweepRow:
    return _score(label, ((Index.build(draw.kb), draw.cases) for draw in draws))


def _score(label: str, rounds: Iterable[tuple[Index, Sequence[Case]]]) -> SweepRow:
    n_rounds = asked = correct = offtopic = refused = 0
    for index, cases in rounds:
        n_rounds += 1
        for case in cases:
            answer = answer_question(index, case.question)
            if case.doc_id is None:
                offtopic += 1
                refused += not answer.found
            else:
                asked += 1
                correct += answered_correctly(answer, case)
    return SweepRow(label, n_rounds, asked, correct / (asked or 1), offtopic, refused / (offtopic or 1))


def read_cases(path: Path) -> list[Case]:
    """`{question, answer}` lines (answer: text the answering sentence holds) and `{question, offtopic: true}`."""
    cases = []
    for number, data in enumerate(_jsonl(path), start=1):
        if not isinstance(data, dict) or not isinstance(data.get("question"), str):
            raise BadQuestions(f"{path}:{number}: expected a JSON object with 'question'")
        cases.append(Case(data["question"], None if data.get("offtopic") else "", data.get("answer")))
    return cases


def score_cases(label: str, index: Index, cases: Sequence[Case]) -> SweepRow:
    """Like `score_draws` on a knowledge base of one's own: any article counts, its sentence must hold the answer."""
    return _score(label, [(index, cases)])


def sweep(data: Path, split: Split = "all", seed: int = 0) -> list[SweepRow]:
    """Every size in English and Russian: the figures `python -m bot eval --sweep` prints."""
    rows = []
    for language in ("en", "ru"):
        for size in SWEEP_SIZES:
            rows.append(score_draws(f"xquad_{language} {size}", sweep_draws(data, language, split, seed, (size,))))
    return rows


def sweep_table(rows: Sequence[SweepRow]) -> str:
    head = "| knowledge base | draws | questions | answered & correct | off-topic | off-topic refused |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    lines += [
        f"| {r.label} | {r.draws} | {r.questions} | {r.answered_correct:.3f} | {r.offtopic} | {r.refused:.3f} |"
        for r in rows
    ]
    return "\n".join(lines)


SHIPPED_QUESTIONS = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "shipped_questions.jsonl"


def sweep_report(data: Path, shipped: Index, split: Split = "all") -> str:
    """The sweep's table: xquad knowledge bases of every size, then `shipped` (the knowledge base the bot
    runs) with the project's own questions about it, when the repository's test fixture is there."""
    rows = sweep(data, split)
    if SHIPPED_QUESTIONS.is_file():
        rows.append(score_cases(f"shipped ({len(shipped)} articles)", shipped, read_cases(SHIPPED_QUESTIONS)))
    return sweep_table(rows)
