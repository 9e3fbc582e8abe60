"""Knowledge bases of 1k, 10k and 100k articles, with questions whose answer is in them.

Real data when ``../shared/eval/rtqa_news`` is present: the 4,977 quiz passages
(each the gold answer of a real question), topped up with real news leads as
distractors (26,737), and beyond that with *recombined* leads: the headline of
one lead over sentences of two others, so that 100,000 articles carry real
vocabulary and real sentence shapes without repeating any text verbatim.

Without ``../shared`` the articles are synthetic (seeded pseudo-words), and every
figure printed from them says so: timings still mean something, accuracy does not.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from benchmarks.report import Section, render
from bot.evaluation import Question
from bot.ingest import title_from_body
from bot.knowledge import Article, KnowledgeBase, article_path, dump_yaml, write_atomic

DEFAULT_SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SEED = 5
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9“\"'])")


@dataclass(frozen=True, slots=True)
class Workload:
    size: int
    kb: KnowledgeBase
    questions: tuple[Question, ...]  # every gold article is in `kb`
    origin: str  # where the articles came from, for the table's caption

    @property
    def real(self) -> bool:
        return not self.origin.startswith("synthetic")


def rtqa_dir(shared: Path) -> Path:
    return shared / "eval" / "rtqa_news"


def have_rtqa(shared: Path) -> bool:
    folder = rtqa_dir(shared)
    return all((folder / name).is_file() for name in ("docs.jsonl", "questions.jsonl", "distractors_news_leads.jsonl"))


def _jsonl(path: Path) -> Iterator[dict[str, str]]:
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)


def _date(value: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value) if value else None
    except ValueError:
        return None


def _lead_sentence(body: str) -> str:
    """A cheap stand-in for the builder's summary (its own benchmark times the real one)."""
    return _SENTENCE_END.split(body, 1)[0]


def _article(article_id: str, title: str, body: str, published: dt.date | None, source: str | None,
             url: str | None) -> Article:
    """An article as the builder would store it: an untitled one gets its first sentence as title."""
    title = " ".join(title.split()) or title_from_body(body, "en")
    return Article(article_id, title, published, source, url, "en", _lead_sentence(body), body)


def _recombined(leads: list[dict[str, str]], count: int, rng: random.Random) -> Iterator[Article]:
    """`count` new articles: one lead's headline and date over the sentences of two other leads."""
    split = [_SENTENCE_END.split(lead["text"]) for lead in leads]
    for number in range(count):
        head, first, second = (rng.randrange(len(leads)) for _ in range(3))
        a, b = split[first], split[second]
        body = " ".join(a[: max(1, len(a) // 2)] + b[len(b) // 2 :])
        lead = leads[head]
        yield _article(f"mix-{number}", lead["title"], body, _date(lead.get("date")), "recombined",
                       f"https://bench.example.org/mix/{number}")


def real(size: int, shared: Path) -> Workload:
    """`size` articles: half rtqa passages (all 4,977 from 10k up), then news leads, then recombined leads."""
    folder = rtqa_dir(shared)
    rng = random.Random(SEED)
    docs = list(_jsonl(folder / "docs.jsonl"))
    leads = list(_jsonl(folder / "distractors_news_leads.jsonl"))
    rng.shuffle(docs)
    docs = docs[: min(len(docs), max(1, size // 2))]
    articles = [_article(d["id"], d.get("title") or "", d["text"], _date(d.get("date")), d.get("outlet"),
                         d.get("source")) for d in docs]
    articles += [_article(lead["id"], lead.get("title") or "", lead["text"], _date(lead.get("date")), "news lead",
                          lead.get("source")) for lead in leads[: size - len(articles)]]
    articles += list(_recombined(leads, size - len(articles), rng))
    kb = KnowledgeBase({a.id: a for a in articles})
    gold = set(kb.articles)
    questions = [
        Question(q["question"], q["doc_id"]) for q in _jsonl(folder / "questions.jsonl") if q["doc_id"] in gold
    ]
    rng.shuffle(questions)
    parts = [f"{len(docs)} rtqa_news passages", f"{min(len(leads), size - len(docs))} news leads"]
    if size > len(docs) + len(leads):
        parts.append(f"{size - len(docs) - len(leads)} recombined leads")
    return Workload(size, kb, tuple(questions), ", ".join(parts))


def _pseudo_words(rng: random.Random, count: int) -> list[str]:
    syllables = ["ka", "lo", "mi", "ren", "tas", "vo", "du", "pel", "sor", "ni", "bar", "gu", "fen", "hol", "zi"]
    words: set[str] = set()
    while len(words) < count:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def synthetic(size: int) -> Workload:
    """Seeded pseudo-word articles, each asked about with six of its own words plus two common ones."""
    rng = random.Random(SEED)
    vocabulary = _pseudo_words(rng, 5000)
    common = ["what", "happened", "with", "the", "about", "news", "when", "did"]
    articles, questions = [], []
    for number in range(size):
        sentences = [" ".join(rng.choices(vocabulary, k=rng.randint(8, 14))).capitalize() + "." for _ in range(3)]
        body = " ".join(sentences)
        article = _article(f"syn-{number}", " ".join(rng.choices(vocabulary, k=4)).capitalize(), body,
                           dt.date(2024, 1, 1) + dt.timedelta(days=number % 700), "synthetic",
                           f"https://bench.example.org/syn/{number}")
        articles.append(article)
        asked = rng.sample(body.rstrip(".").lower().replace(".", "").split(), 6) + rng.sample(common, 2)
        rng.shuffle(asked)
        questions.append(Question(" ".join(asked) + "?", article.id))
    rng.shuffle(questions)
    return Workload(size, KnowledgeBase({a.id: a for a in articles}), tuple(questions), "synthetic pseudo-words")


def workload(size: int, shared: Path) -> Workload:
    return real(size, shared) if have_rtqa(shared) else synthetic(size)


def absent_note(shared: Path) -> str | None:
    """The sentence every section prints when the real data is missing; None when it is there."""
    if have_rtqa(shared):
        return None
    return (f"NOTE: {rtqa_dir(shared)} is absent, so these knowledge bases are synthetic pseudo-word text: "
            "the timings hold, the accuracy figures mean nothing.")


def note_absent(section: Section, shared: Path) -> Section:
    """Put the missing-data warning first in the section's notes, where nobody can miss it."""
    note = absent_note(shared)
    if note:
        section.notes.insert(0, note)
    return section


def section_arguments(doc: str, quick_help: str) -> argparse.ArgumentParser:
    """The options every section takes when run on its own (`python -m benchmarks.NAME`)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    return parser


def command_line(run: Callable[[Path, bool], Section], doc: str, quick_help: str,
                 argv: list[str] | None = None) -> Section:
    """`python -m benchmarks.NAME [--quick] [--shared DIR]`: one section on its own."""
    args = section_arguments(doc, quick_help).parse_args(argv)
    return run_alone(run, args.shared, args.quick)


def run_alone(run: Callable[[Path, bool], Section], shared: Path, quick: bool) -> Section:
    """Run one section, time it and print its table."""
    started = time.perf_counter()
    section = run(shared, quick)
    section.seconds = time.perf_counter() - started
    print(render(section))
    return section


def write_knowledge(kb: KnowledgeBase, directory: Path) -> Path:
    """The knowledge base as the builder leaves it: one YAML file per article under articles/.

    Written without fsync (a benchmark's scratch files need not survive a power cut).
    """
    for article in kb.articles.values():
        write_atomic(article_path(directory, article.id), dump_yaml(article.to_yaml_dict()), fsync=False)
    return directory
