"""Summary quality benchmark (issue 2): our extractive summaries against Lead-3, by ROUGE on BBC News.

Reads ``../shared/eval/bbc_news_summary/articles.jsonl`` (2,225 articles with reference
extractive summaries) and scores, in the same run and with the same sentence split,
our TextRank summary and Lead-3 (the first three sentences) with ROUGE-1/2/L F1
(``rouge-score``, Porter stemming). Reference on this machine: Lead-3 R-1 .451,
TextRank-3 R-1 .592.

    python -m benchmarks.summaries [--quick] [--shared ../shared]
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rouge_score import rouge_scorer

from benchmarks import workloads
from benchmarks.report import Figure, Section, difference, table
from bot.summarise import summarise
from bot.text import split_sentences

QUICK_LIMIT = 60


@dataclass(frozen=True, slots=True)
class Row:
    method: str
    articles: int
    rouge1: float
    rouge2: float
    rouge_l: float
    ms_per_article: float


def lead3(text: str, language: str) -> str:
    return " ".join(split_sentences(text, language)[:3])


def evaluate(name: str, method: Callable[[str, str], str], articles: list[dict[str, str]]) -> Row:
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    totals = [0.0, 0.0, 0.0]
    elapsed = 0.0
    for article in articles:
        started = time.perf_counter()
        summary = method(article["text"], "en")
        elapsed += time.perf_counter() - started
        scores = scorer.score(article["summary"], summary)
        for i, key in enumerate(("rouge1", "rouge2", "rougeL")):
            totals[i] += scores[key].fmeasure
    n = len(articles)
    return Row(name, n, totals[0] / n, totals[1] / n, totals[2] / n, 1000 * elapsed / n)


def run(shared: Path, quick: bool = False) -> Section:
    section = Section("summaries", "Summary quality (BBC News Summary, ROUGE)")
    data = shared / "eval" / "bbc_news_summary" / "articles.jsonl"
    if not data.exists():
        section.skipped = f"{data} is absent (the shared evaluation data sits beside the checkout as ../shared)"
        return section
    with data.open(encoding="utf-8") as handle:
        articles = [json.loads(line) for line in handle if line.strip()][: QUICK_LIMIT if quick else None]
    split_sentences("Warm up. The splitter loads its rules once.", "en")
    lead, ours = rows = [evaluate("Lead-3", lead3, articles), evaluate("ours (TextRank, 2-3 sentences)", summarise,
                                                                      articles)]
    section.figures = [
        Figure(f"ROUGE-1 F, {ours.articles:,} articles", f"{ours.rouge1:.3f}", f"Lead-3 {lead.rouge1:.3f}",
               difference(ours.rouge1, lead.rouge1)),
        Figure(f"ROUGE-2 F, {ours.articles:,} articles", f"{ours.rouge2:.3f}", f"Lead-3 {lead.rouge2:.3f}",
               difference(ours.rouge2, lead.rouge2)),
        Figure(f"ROUGE-L F, {ours.articles:,} articles", f"{ours.rouge_l:.3f}", f"Lead-3 {lead.rouge_l:.3f}",
               difference(ours.rouge_l, lead.rouge_l)),
        Figure("summary time per article", f"{ours.ms_per_article:.2f} ms", f"Lead-3 {lead.ms_per_article:.2f} ms", ""),
    ]
    section.details.append(table(
        ("method", "articles", "R-1 F", "R-2 F", "R-L F", "ms/article"),
        [(r.method, r.articles, f"{r.rouge1:.3f}", f"{r.rouge2:.3f}", f"{r.rouge_l:.3f}", f"{r.ms_per_article:.2f}")
         for r in rows]))
    section.notes.append("ROUGE F1 with stemming.")
    return section


def main(argv: list[str] | None = None) -> Section:
    return workloads.command_line(run, __doc__, f"the first {QUICK_LIMIT} articles", argv)


if __name__ == "__main__":
    main()
