"""The performance benchmark (issue 5): every section, one Markdown table each, written to RESULTS.md.

    python -m benchmarks [--quick] [--shared ../shared] [--only NAME ...] [--output FILE]

Sections: latency (item 1), throughput (2), startup (3 and 4: start-up, reload,
memory), broadcast (5), build (6), and the quality sections summaries and
retrieval. Each figure is printed beside its baseline measured in the same run,
the ratio between them, and the issue's goal. A section that is missing or
fails is reported as such and the others still run. The machine (cores, Python,
library versions, load) is recorded at the top.

A full run (no --quick, no --only) writes benchmarks/RESULTS.md; other runs
write only where --output says.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib
import io
import logging
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import bm25s

from benchmarks import workloads
from benchmarks.report import Figure, Section, difference, faster, figures_table, render, share, table

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
LIBRARIES = ("python-telegram-bot", "httpx", "aiolimiter", "rapidfuzz", "bm25s", "numpy", "scipy", "PyStemmer",
             "wordllama", "tokenizers", "PyYAML", "sentencex", "aiohttp", "rouge-score")
TITLES = {
    "broadcast": "5. Broadcast to subscribers through a rate-limited fake Bot API",
    "build": "6. Build (`python -m bot build`, with summaries)",
    "summaries": "Summary quality (BBC News Summary, ROUGE)",
    "retrieval": "Answer quality (rtqa_news, xquad_en, xquad_ru)",
}


# --- the machine -----------------------------------------------------------------

def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=HERE, capture_output=True, text=True,
                               check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}{' with uncommitted changes' if dirty else ''}"


def _load() -> str:
    with contextlib.suppress(OSError):
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    return "unknown"


def machine() -> list[tuple[str, str]]:
    memory = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError):
        kilobytes = int(Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1])
        memory = f"{kilobytes / 1024 / 1024:.1f} GB"
    return [
        ("CPU", f"{os.cpu_count()} cores, {_cpu_model()}"),
        ("memory", memory),
        ("system", platform.platform()),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("libraries", ", ".join(f"{name} {_version(name)}" for name in LIBRARIES)),
        ("code", _git()),
    ]


# --- the existing sections, adapted to one table each ---------------------------------

def _quiet(entry: Callable[[list[str]], Any], argv: list[str]) -> tuple[Any, str]:
    """Call a section's `main(argv)` with its own printing captured (its rows are tabled here instead)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = entry(argv)
    return result, out.getvalue().strip()


def _skipped(section: Section, printed: str) -> Section:
    last = printed.splitlines()[-1] if printed else "the section returned no results"
    section.skipped = last.removeprefix("Skipped: ")
    return section


def broadcast_section(shared: Path, quick: bool) -> Section:
    from benchmarks import broadcast

    section = Section("broadcast", TITLES["broadcast"])
    argv = ["--subscribers", "300", "--scale", "5"] if quick else []
    rows, printed = _quiet(broadcast.main, argv)
    if not rows:
        return _skipped(section, printed)
    ours, naive = rows
    n = f"{ours.subscribers:,} subscribers"
    full = ours.subscribers >= 10_000
    section.figures = [
        Figure(f"achieved rate, {n}", f"{ours.rate:.1f} msg/s = {ours.fraction:.1%} of the limit",
               f"naive sender {naive.rate:.1f} msg/s = {naive.fraction:.1%}", share(ours.rate, naive.rate),
               ">= 95% of the limit at 10,000", ours.fraction >= 0.95 if full else None),
        Figure(f"delivered / attempted, {n}", f"{ours.delivered:,} / {ours.attempted:,}",
               f"naive sender {naive.delivered:,} / {naive.attempted:,}",
               share(ours.delivered, naive.delivered), "every subscriber reached",
               ours.delivered == ours.subscribers if full else None),
        Figure(f"lost / duplicated, {n}", f"{ours.lost:,} / {ours.duplicates:,}",
               f"naive sender {naive.lost:,} / {naive.duplicates:,}", "", "0 lost, 0 duplicated",
               ours.lost == 0 and ours.duplicates == 0 if full else None),
        Figure(f"429 answers received, {n}", f"{ours.rate_limited:,}", f"naive sender {naive.rate_limited:,}", ""),
    ]
    section.details.append(table(
        ("sender", "subscribers", "attempted", "delivered", "429s", "duplicated", "lost", "seconds", "msg/s",
         "limit msg/s", "of limit"),
        [(r.name, r.subscribers, r.attempted, r.delivered, r.rate_limited, r.duplicates, r.lost, f"{r.seconds:.1f}",
          f"{r.rate:.1f}", f"{r.limit:.0f}", f"{r.fraction:.1%}") for r in rows]))
    section.notes.append(printed.splitlines()[0])
    return section


def build_section(shared: Path, quick: bool) -> Section:
    from benchmarks import build

    section = Section("build", TITLES["build"])
    argv = ["--data", str(shared / "eval" / "rtqa_news")] + (["--articles", "300"] if quick else [])
    rows, printed = _quiet(build.main, argv)
    if not rows:
        return _skipped(section, printed)
    first, again = rows
    section.figures = [
        Figure(f"build, {first.articles:,} articles (clean, detect language, summarise, write YAML)",
               f"{first.per_second:.0f} articles/s ({first.seconds:.1f} s, {first.failed} failed)",
               f"rebuild with nothing changed {again.per_second:.0f} articles/s ({again.seconds:.1f} s)",
               faster(first.seconds, again.seconds).replace("faster", "faster rebuild")),
    ]
    section.details.append(build.table(rows))
    return section


def summaries_section(shared: Path, quick: bool) -> Section:
    from benchmarks import summaries

    section = Section("summaries", TITLES["summaries"])
    data = shared / "eval" / "bbc_news_summary" / "articles.jsonl"
    argv = ["--data", str(data)] + (["--limit", "60"] if quick else [])
    rows, printed = _quiet(summaries.main, argv)
    if not rows:
        return _skipped(section, printed)
    lead, ours = rows
    section.figures = [
        Figure(f"ROUGE-1 F, {ours.articles:,} articles", f"{ours.rouge1:.3f}", f"Lead-3 {lead.rouge1:.3f}",
               difference(ours.rouge1, lead.rouge1)),
        Figure(f"ROUGE-2 F, {ours.articles:,} articles", f"{ours.rouge2:.3f}", f"Lead-3 {lead.rouge2:.3f}",
               difference(ours.rouge2, lead.rouge2)),
        Figure(f"ROUGE-L F, {ours.articles:,} articles", f"{ours.rouge_l:.3f}", f"Lead-3 {lead.rouge_l:.3f}",
               difference(ours.rouge_l, lead.rouge_l)),
        Figure("summary time per article", f"{ours.ms_per_article:.2f} ms", f"Lead-3 {lead.ms_per_article:.2f} ms", ""),
    ]
    section.details.append(summaries.table(rows))
    return section


def retrieval_section(shared: Path, quick: bool) -> Section:
    from benchmarks import retrieval

    section = Section("retrieval", TITLES["retrieval"])
    retrieval.EVAL = shared / "eval"  # the section reads its data from this module constant
    rows, printed = _quiet(retrieval.main, ["--limit", "60"] if quick else [])
    if not rows:
        return _skipped(section, printed)
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
    section.details.append(retrieval.table(rows))
    return section


def _own(name: str) -> Callable[[Path, bool], Section]:
    def run(shared: Path, quick: bool) -> Section:
        module = importlib.import_module(f"benchmarks.{name}")
        section: Section = module.run(shared, quick)
        return section

    return run


SECTIONS: dict[str, Callable[[Path, bool], Section]] = {
    "latency": _own("latency"),
    "throughput": _own("throughput"),
    "startup": _own("startup"),
    "broadcast": broadcast_section,
    "build": build_section,
    "summaries": summaries_section,
    "retrieval": retrieval_section,
}
SECTION_TITLES = {
    "latency": "1. Answer latency", "throughput": "2. Bot throughput", "startup": "3-4. Start-up, reload and memory",
    **TITLES,
}


def run_section(name: str, shared: Path, quick: bool) -> Section:
    """One section; an error becomes the section's report, never the end of the run."""
    started = time.perf_counter()
    try:
        section = SECTIONS[name](shared, quick)
    except Exception as exc:  # a broken or half-written section must not stop the others
        detail = traceback.format_exception_only(exc)[-1].strip()
        section = Section(name, SECTION_TITLES[name], error=detail)
        traceback.print_exc()
    section.seconds = time.perf_counter() - started
    return section


# --- the report --------------------------------------------------------------------

def goals_summary(sections: list[Section]) -> str:
    goals = [f for s in sections for f in s.figures if f.goal]
    if not goals:
        return "No section with a goal ran."
    met = sum(f.met is True for f in goals)
    unmeasured = sum(f.met is None for f in goals)
    tail = f", {unmeasured} not measurable at this run's sizes" if unmeasured else ""
    failed = [s.name for s in sections if s.error or s.skipped]
    errors = f" Sections not measured: {', '.join(failed)}." if failed else ""
    return f"{figures_table(goals)}\n\n{met} of {len(goals)} goal figures met{tail}.{errors}"


def document(sections: list[Section], command: str, started: dt.datetime, load_before: str, seconds: float,
             shared: Path) -> str:
    head = [
        "# Benchmark results",
        f"Command: `{command}`, run {started:%Y-%m-%d %H:%M} UTC, {seconds / 60:.1f} minutes in all.",
        table(("machine", ""), [*machine(), ("load average (1, 5, 15 min)", f"before {load_before}, after {_load()}")]),
        "The machine is shared and noisy: read ratios (baseline measured in the same run) before absolute figures.",
    ]
    note = workloads.absent_note(shared)
    if note:
        head.append(f"**{note}**")
    head += ["## Goals at a glance", goals_summary(sections)]
    return "\n\n".join(head + [render(s) for s in sections]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small workloads, for a smoke test (minutes → seconds)")
    parser.add_argument("--shared", type=Path, default=workloads.DEFAULT_SHARED,
                        help="the shared evaluation data (default: ../shared beside the repository)")
    parser.add_argument("--only", nargs="+", choices=tuple(SECTIONS), metavar="NAME",
                        help=f"run only these sections: {', '.join(SECTIONS)}")
    parser.add_argument("--output", type=Path, default=None,
                        help="write the report here (default: benchmarks/RESULTS.md on a full run, else nowhere)")
    args = parser.parse_args(argv)
    logging.getLogger(bm25s.__name__).setLevel(logging.WARNING)  # bm25s sets itself to DEBUG on import
    output = args.output or (RESULTS if not args.quick and not args.only else None)
    started, load_before, clock = dt.datetime.now(dt.UTC), _load(), time.perf_counter()
    print(f"Benchmark on {os.cpu_count()} cores, Python {platform.python_version()}; shared data: {args.shared}")
    note = workloads.absent_note(args.shared)
    if note:
        print(note)
    sections = []
    for name in args.only or SECTIONS:
        print(f"[{name}] running ...", flush=True)
        section = run_section(name, args.shared, args.quick)
        print(render(section) + "\n", flush=True)
        sections.append(section)
    command = "python -m benchmarks " + " ".join(sys.argv[1:] if argv is None else argv)
    report = document(sections, command.strip(), started, load_before, time.perf_counter() - clock, args.shared)
    print("## Goals at a glance\n\n" + goals_summary(sections))
    if output is not None:
        output.write_text(report, encoding="utf-8")
        print(f"Written to {output}")
    else:
        print("Not written to a file (a --quick or --only run; use --output FILE to keep it).")
    return 1 if any(s.error for s in sections) else 0


if __name__ == "__main__":
    raise SystemExit(main())
