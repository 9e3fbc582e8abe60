"""Build benchmark (issue 2, issue 5 item 6): `python -m bot build` of 10,000 real news articles.

Takes ``../shared/eval/rtqa_news/docs.jsonl`` (4,977 passages) topped up with news leads
from ``distractors_news_leads.jsonl``, builds them into an empty temporary knowledge
base (cleaning, language detection, summaries, one atomic YAML file each), then
builds the same inputs again, which must change nothing.

    python -m benchmarks.build [--quick] [--shared ../shared]
"""

from __future__ import annotations

import itertools
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchmarks import workloads
from benchmarks.report import Figure, Section, faster, table
from bot.ingest import build

ARTICLES = 10_000
QUICK_ARTICLES = 300


@dataclass(frozen=True, slots=True)
class Row:
    run: str
    articles: int
    added: int
    updated: int
    unchanged: int
    failed: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.articles / self.seconds if self.seconds else 0.0


def measure(data: Path, articles: int) -> list[Row]:
    docs, leads = data / "docs.jsonl", data / "distractors_news_leads.jsonl"
    rows = []
    with tempfile.TemporaryDirectory(prefix="build-bench-") as tmp:
        inputs = Path(tmp) / "inputs.jsonl"
        with inputs.open("w", encoding="utf-8") as out, docs.open(encoding="utf-8") as a, \
                leads.open(encoding="utf-8") as b:
            out.writelines(itertools.islice(itertools.chain(a, b), articles))
        knowledge_dir = Path(tmp) / "knowledge"
        for run_name in ("first build", "rebuild, nothing changed"):
            report = build([str(inputs)], knowledge_dir, progress=True)
            done = len(report.added) + len(report.updated) + len(report.unchanged) + len(report.failed)
            rows.append(Row(run_name, done, len(report.added), len(report.updated), len(report.unchanged),
                            len(report.failed), report.seconds))
    return rows


def run(shared: Path, quick: bool = False) -> Section:
    section = Section("build", "6. Build (`python -m bot build`, with summaries)")
    data = shared / "eval" / "rtqa_news"
    if not ((data / "docs.jsonl").exists() and (data / "distractors_news_leads.jsonl").exists()):
        section.skipped = f"{data} is absent (the shared evaluation data sits beside the checkout as ../shared)"
        return section
    first, again = rows = measure(data, QUICK_ARTICLES if quick else ARTICLES)
    section.figures = [
        Figure(f"build, {first.articles:,} articles (clean, detect language, summarise, write YAML)",
               f"{first.per_second:.0f} articles/s ({first.seconds:.1f} s, {first.failed} failed)",
               f"rebuild with nothing changed {again.per_second:.0f} articles/s ({again.seconds:.1f} s)",
               faster(first.seconds, again.seconds).replace("faster", "faster rebuild")),
    ]
    section.details.append(table(
        ("run", "articles", "added", "updated", "unchanged", "failed", "seconds", "articles/s"),
        [(r.run, r.articles, r.added, r.updated, r.unchanged, r.failed, f"{r.seconds:.1f}", f"{r.per_second:.0f}")
         for r in rows]))
    section.notes.append(f"On {os.cpu_count()} cores: summaries, YAML, atomic writes.")
    return section


def main(argv: list[str] | None = None) -> Section:
    return workloads.command_line(run, __doc__, f"{QUICK_ARTICLES} articles", argv)


if __name__ == "__main__":
    main()
