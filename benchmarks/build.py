"""Build benchmark (issue 2, issue 5 item 6): `python -m bot build` of 10,000 real news articles.

Takes ``../shared/eval/rtqa_news/docs.jsonl`` (4,977 passages) topped up with news leads
from ``distractors_news_leads.jsonl``, builds them into an empty temporary knowledge
base (cleaning, language detection, summaries, one atomic YAML file each), then
builds the same inputs again, which must change nothing.

    python -m benchmarks.build [--articles 10000]
"""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bot.ingest import build

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "eval" / "rtqa_news"


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


def table(rows: list[Row]) -> str:
    lines = ["| run | articles | added | updated | unchanged | failed | seconds | articles/s |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [
        f"| {r.run} | {r.articles} | {r.added} | {r.updated} | {r.unchanged} | {r.failed} | {r.seconds:.1f} "
        f"| {r.per_second:.0f} |"
        for r in rows
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--articles", type=int, default=10_000)
    parser.add_argument("--data", type=Path, default=DATA, help="folder with docs.jsonl and the distractors")
    args = parser.parse_args(argv)
    docs, leads = args.data / "docs.jsonl", args.data / "distractors_news_leads.jsonl"
    if not (docs.exists() and leads.exists()):
        print(f"Skipped: {args.data} is absent (the shared evaluation data sits beside the checkout as ../shared).")
        return []
    rows = []
    with tempfile.TemporaryDirectory(prefix="build-bench-") as tmp:
        inputs = Path(tmp) / "inputs.jsonl"
        with inputs.open("w", encoding="utf-8") as out, docs.open(encoding="utf-8") as a, \
                leads.open(encoding="utf-8") as b:
            out.writelines(itertools.islice(itertools.chain(a, b), args.articles))
        knowledge_dir = Path(tmp) / "knowledge"
        for run in ("first build", "rebuild, nothing changed"):
            report = build([str(inputs)], knowledge_dir, progress=True)
            done = len(report.added) + len(report.updated) + len(report.unchanged) + len(report.failed)
            rows.append(Row(run, done, len(report.added), len(report.updated), len(report.unchanged),
                            len(report.failed), report.seconds))
    print(f"Build of {args.articles} news articles on {os.cpu_count()} cores (summaries, YAML, atomic writes):\n")
    print(table(rows))
    return rows


if __name__ == "__main__":
    main()
