"""Summary quality benchmark (issue 2): our extractive summaries against Lead-3, by ROUGE on BBC News.

Reads ``../shared/eval/bbc_news_summary/articles.jsonl`` (2,225 articles with reference
extractive summaries) and scores, in the same run and with the same sentence split,
our TextRank summary and Lead-3 (the first three sentences) with ROUGE-1/2/L F1
(``rouge-score``, Porter stemming). Reference on this machine: Lead-3 R-1 .451,
TextRank-3 R-1 .592.

    python -m benchmarks.summaries [--limit N]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rouge_score import rouge_scorer

from bot.summarise import summarise
from bot.text import split_sentences

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "eval" / "bbc_news_summary" / "articles.jsonl"


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


def table(rows: list[Row]) -> str:
    lines = ["| method | articles | R-1 F | R-2 F | R-L F | ms/article |", "|---|---|---|---|---|---|"]
    lines += [
        f"| {r.method} | {r.articles} | {r.rouge1:.3f} | {r.rouge2:.3f} | {r.rouge_l:.3f} | {r.ms_per_article:.2f} |"
        for r in rows
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="use only the first N articles")
    parser.add_argument("--data", type=Path, default=DATA, help="articles.jsonl with text and summary")
    args = parser.parse_args(argv)
    if not args.data.exists():
        print(f"Skipped: {args.data} is absent (the shared evaluation data sits beside the checkout as ../shared).")
        return []
    with args.data.open(encoding="utf-8") as handle:
        articles = [json.loads(line) for line in handle if line.strip()][: args.limit]
    split_sentences("Warm up. The splitter loads its rules once.", "en")
    rows = [evaluate("Lead-3", lead3, articles), evaluate("ours (TextRank, 2-3 sentences)", summarise, articles)]
    print(f"Extractive summaries on BBC News Summary ({len(articles)} articles), ROUGE F1 with stemming:\n")
    print(table(rows))
    return rows


if __name__ == "__main__":
    main()
