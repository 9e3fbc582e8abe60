"""Answer quality benchmark (issue 3): our answerer beside plain BM25, on real questions.

Builds in-memory knowledge bases from ``../shared/eval`` (rtqa_news: 4,977 news
passages; xquad_en and xquad_ru: 240 Wikipedia paragraphs each, the Russian a
translation of the English), asks every question through our answerer (typo
correction, BM25, WordLlama fusion, calibrated confidence, sentence choice and
rendering) and through plain BM25 (bm25s defaults, stemmed, title + text) in the
same run, and prints one Markdown table. Off-topic refusal is measured with the
xquad_en questions asked of the news knowledge base.

rtqa rows are also given for the dev part (three fifths of the questions by a
hash of their id; every constant was chosen on it) and the held-out test part.

    python -m benchmarks.retrieval [--quick] [--shared ../shared]
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path

from benchmarks import workloads
from benchmarks.report import Figure, Section, difference, table
from bot.evaluation import Question, Scores, evaluate_answerer, evaluate_bm25
from bot.knowledge import Article, KnowledgeBase
from bot.search import Index

SETS = (("rtqa_news", "en"), ("xquad_en", "en"), ("xquad_ru", "ru"))
QUICK_LIMIT = 60


@dataclass(frozen=True, slots=True)
class Row:
    dataset: str
    part: str
    scores: Scores
    typo_top1: float


def load_kb(data: Path, name: str, language: str) -> KnowledgeBase:
    articles = {}
    with (data / name / "docs.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            doc = json.loads(line)
            articles[doc["id"]] = Article(
                doc["id"], doc.get("title") or "", None, doc.get("outlet"), doc.get("source"), language, "", doc["text"]
            )
    return KnowledgeBase(articles)


def load_questions(data: Path, name: str, variant: str, limit: int | None) -> list[tuple[str, Question]]:
    """(id, question) pairs; the id decides the dev/test part."""
    out = []
    with (data / name / f"{variant}.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            data = json.loads(line)
            out.append((data["id"], Question(data["question"], data["doc_id"])))
            if limit is not None and len(out) >= limit:
                break
    return out


def part_of(question_id: str) -> str:
    return "dev" if zlib.crc32(question_id.encode()) % 5 < 3 else "test"


def measure(data: Path, limit: int | None = None) -> list[Row]:
    rows: list[Row] = []
    offtopic = [q for _, q in load_questions(data, "xquad_en", "questions", limit)]
    offtopic = [Question(q.question, None) for q in offtopic]
    for name, language in SETS:
        kb = load_kb(data, name, language)
        index = Index.build(kb)
        clean = load_questions(data, name, "questions", limit)
        typo = load_questions(data, name, "questions_typo", limit)
        parts = ("all", "dev", "test") if name == "rtqa_news" else ("all",)
        for part in parts:
            chosen = [q for i, q in clean if part in ("all", part_of(i))]
            chosen_typo = [q for i, q in typo if part in ("all", part_of(i))]
            refuse = offtopic if name == "rtqa_news" and part == "all" else []
            ours = evaluate_answerer(index, chosen, refuse)
            ours_typo = evaluate_answerer(index, chosen_typo)
            rows.append(Row(name, part, ours, ours_typo.top1))
            bm25 = evaluate_bm25(kb, chosen)
            rows.append(Row(name, part, bm25, evaluate_bm25(kb, chosen_typo).top1))
    return rows


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def run(shared: Path, quick: bool = False) -> Section:
    section = Section("retrieval", "Answer quality (rtqa_news, xquad_en, xquad_ru)")
    data = shared / "eval"
    if not data.is_dir():
        section.skipped = f"{data} is absent (the evaluation data sits beside the repository as ../shared/eval)"
        return section
    rows = measure(data, QUICK_LIMIT if quick else None)
    for ours, bm25 in zip(rows[::2], rows[1::2], strict=True):
        if ours.part != "all":
            continue
        n = f"{ours.dataset}, {ours.scores.questions:,} questions"
        section.figures += [
            Figure(f"top-1, {n}", f"{ours.scores.top1:.3f}", f"plain BM25 {bm25.scores.top1:.3f}",
                   difference(ours.scores.top1, bm25.scores.top1), ">= plain BM25",
                   ours.scores.top1 >= bm25.scores.top1),
            Figure(f"top-1 with typos, {n}", f"{ours.typo_top1:.3f}", f"plain BM25 {bm25.typo_top1:.3f}",
                   difference(ours.typo_top1, bm25.typo_top1)),
        ]
    section.details.append(table(
        ("set", "part", "method", "n", "top-1", "top-5", "MRR@10", "typo top-1", "answered", "answered & correct",
         "off-topic refused", "median ms", "p95 ms"),
        [(r.dataset, r.part, r.scores.method, r.scores.questions, f"{r.scores.top1:.3f}", f"{r.scores.top5:.3f}",
          f"{r.scores.mrr10:.3f}", f"{r.typo_top1:.3f}", _cell(r.scores.answered), _cell(r.scores.answered_correct),
          _cell(r.scores.refused_offtopic), f"{r.scores.latency_median_ms:.2f}", f"{r.scores.latency_p95_ms:.2f}")
         for r in rows]))
    return section


def main(argv: list[str] | None = None) -> Section:
    return workloads.command_line(run, __doc__, f"the first {QUICK_LIMIT} questions of each file", argv)


if __name__ == "__main__":
    main()
