"""Start-up, reload and memory (issue 5, items 3 and 4), each size in a fresh process.

The knowledge base is written as the builder leaves it (one YAML file per
article), then a new Python process starts the bot's core the way `python -m bot
run` does (imports python-telegram-bot and the bot, opens the store, loads
`Service`) and answers one question: the wall time from spawning the process to
that answer is the start-up time, and its peak RSS the memory figure.

The first process parses every file and saves the parsed articles and the built
index beside its database; the restart reads both (issue 11: < 2 s at 10k); a
third start without the saved index shows what it saves.

Each process (`benchmarks.startup_child`) first answers while the start's warm-up
thread (the embedding model, word frequencies) ends, then reloads three times, as /reload
does: once with nothing changed (the service's cache of unchanged files), once
after one article was edited, once after one article was added (both indexed
incrementally); then takes in one more new article as the bot does one from a
followed source or /add, reading only the file the builder wrote (issue 11:
searchable in < 1 s at 100k, with no loop stall over 100 ms); and puts the
files back. While each reload runs, a 1 ms ticker task
measures the worst event-loop stall and a question is answered every 10 ms; the
same is measured with no reload running, as the baseline.

Baseline process: a plain BM25 bot (the same YAML reader, then bm25s over title
and body, `bot.evaluation.evaluate_bm25`), also started fresh.

    python -m benchmarks.startup [--quick] [--shared ../shared]
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import workloads
from benchmarks.report import Figure, Section, faster, ms, share, size_label, table
from bot import index_cache, knowledge_cache

REPO = Path(__file__).resolve().parents[1]
SIZES = (10_000, 100_000)
QUICK_SIZES = (200, 1_000)
START_GOAL = 2.0  # seconds, at 10k (issue 11)
NEW_GOAL = 1.0  # seconds from /reload to a new article searchable, at 100k
STALL_GOAL = 0.100  # seconds
RSS_GOAL_MB = 1024  # at 100k
IDLE_SECONDS = 2.0  # at least this long with no reload running, for the baseline
CHILD_TIMEOUT = 900


@dataclasses.dataclass(frozen=True, slots=True)
class Started:
    """One fresh process: seconds from spawn to each event, and what it reported."""

    events: dict[str, dict[str, Any]]
    spawned: float

    def at(self, event: str) -> float:
        return self.events[event]["at"] - self.spawned

    def __getitem__(self, event: str) -> dict[str, Any]:
        return self.events[event]


def spawn(mode: str, knowledge_dir: Path, questions_file: Path, database: Path, idle_seconds: float) -> Started:
    command = [sys.executable, "-m", "benchmarks.startup_child", mode, str(knowledge_dir), str(questions_file),
               str(database), str(idle_seconds)]
    spawned = time.time()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=CHILD_TIMEOUT, check=False)
    events = {}
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            data = json.loads(line)
            events[data["event"]] = data
    if done.returncode != 0:
        raise RuntimeError(f"{mode} process failed ({done.returncode}): {done.stderr.strip()[-1500:]}")
    return Started(events, spawned)


@dataclasses.dataclass(frozen=True, slots=True)
class SizeResult:
    size: int
    write_seconds: float
    cold: Started  # our first start: every file parsed, the cache written
    ours: Started  # our restart, files unchanged: the parsed articles and the saved index read
    unsaved: Started  # the same restart without the saved index: the parsed articles read, the index built
    plain: Started


def measure(size: int, shared: Path, scratch: Path, idle_seconds: float) -> SizeResult:
    load = workloads.workload(size, shared)
    knowledge_dir = scratch / f"knowledge-{size}"
    started = time.perf_counter()
    workloads.write_knowledge(load.kb, knowledge_dir)
    write_seconds = time.perf_counter() - started
    questions_file = scratch / f"questions-{size}.json"
    questions_file.write_text(json.dumps([q.question for q in load.questions[:200]]), encoding="utf-8")
    # The first start parses every file and writes the knowledge-base cache beside the database; the second,
    # a restart with the files unchanged, reads it: that is the start-up a running bot sees.
    database = scratch / f"ours-{size}.sqlite3"
    cold = spawn("ours", knowledge_dir, questions_file, database, idle_seconds)
    ours = spawn("ours", knowledge_dir, questions_file, database, idle_seconds)
    saved_index = index_cache.beside(knowledge_cache.beside(database))  # type: ignore[arg-type]
    saved_index.unlink()
    unsaved = spawn("ours", knowledge_dir, questions_file, database, idle_seconds)
    plain = spawn("plain", knowledge_dir, questions_file, scratch / f"plain-{size}.sqlite3", idle_seconds)
    return SizeResult(size, write_seconds, cold, ours, unsaved, plain)


def figures(r: SizeResult) -> list[Figure]:
    label = f"{size_label(r.size)} articles"
    goal_size = r.size == 10_000
    start, plain_start = r.ours.at("first answer"), r.plain.at("first answer")
    first_start = r.cold.at("first answer")
    reloaded = r.ours["reloaded"]
    idle, same, edited, added = reloaded["idle"], reloaded["unchanged"], reloaded["edited"], reloaded["added"]
    sourced, warming = reloaded["from a source"], reloaded["warm-up"]
    stall = max(same["worst_stall"], edited["worst_stall"])
    unsaved = r.unsaved.at("first answer")
    new_goal = r.size == 100_000
    rss, plain_rss = r.ours["first answer"]["rss_mb"], r.plain["first answer"]["rss_mb"]
    rss_goal = r.size == 100_000
    return [
        Figure(f"restart to first answer (files unchanged), {label}", f"{start:.1f} s",
               f"plain BM25 bot {plain_start:.1f} s", f"{start / plain_start:.1f}x the time" if plain_start else "-",
               f"< {START_GOAL:.0f} s" if goal_size else "", start < START_GOAL if goal_size else None),
        Figure(f"restart to first answer, without the saved index, {label}", f"{unsaved:.1f} s",
               f"with it {start:.1f} s", faster(unsaved, start)),
        Figure(f"new article from a followed source (or /add): searchable after, {label}",
               f"{sourced['ready_after']:.2f} s", f"index update alone {reloaded['index_update']:.2f} s", "",
               f"< {NEW_GOAL:.0f} s" if new_goal else "", sourced["ready_after"] < NEW_GOAL if new_goal else None),
        Figure(f"worst event-loop stall while it is taken in, {label}",
               ms(sourced["worst_stall"]), f"no reload running {ms(idle['worst_stall'])}",
               f"+{ms(sourced['worst_stall'] - idle['worst_stall'])}", f"< {ms(STALL_GOAL)}",
               sourced["worst_stall"] < STALL_GOAL),
        Figure(f"/reload after an editor added one article by hand: searchable after, {label}",
               f"{added['ready_after']:.2f} s", "every file stat-ed", "", "", None),
        Figure(f"worst event-loop stall during that /reload, {label}",
               ms(added["worst_stall"]), f"no reload running {ms(idle['worst_stall'])}",
               f"+{ms(added['worst_stall'] - idle['worst_stall'])}", f"< {ms(STALL_GOAL)}",
               added["worst_stall"] < STALL_GOAL),
        Figure(f"worst event-loop stall after the first answer, while the start's warm-up ends, {label}",
               ms(warming["worst_stall"]), f"no reload running {ms(idle['worst_stall'])}",
               f"+{ms(warming['worst_stall'] - idle['worst_stall'])}", "", None),
        Figure(f"first start to first answer (no cache yet), {label}", f"{first_start:.1f} s",
               f"plain BM25 bot {plain_start:.1f} s",
               f"{first_start / plain_start:.1f}x the time" if plain_start else "-"),
        Figure(f"/reload, one article edited, {label}", f"{edited['seconds']:.1f} s",
               f"our cold start {start:.1f} s", faster(start, edited["seconds"]),
               f"< {START_GOAL:.0f} s" if goal_size else "", edited["seconds"] < START_GOAL if goal_size else None),
        Figure(f"/reload, nothing changed, {label}", f"{same['seconds']:.2f} s",
               f"our cold start {start:.1f} s", faster(start, same["seconds"]),
               f"< {START_GOAL:.0f} s" if goal_size else "", same["seconds"] < START_GOAL if goal_size else None),
        Figure(f"worst event-loop stall during either /reload, {label}", ms(stall),
               f"no reload running {ms(idle['worst_stall'])}", f"+{ms(stall - idle['worst_stall'])}",
               f"< {ms(STALL_GOAL)}", stall < STALL_GOAL),
        Figure(f"p99 answer latency during /reload (edited), {label}", ms(edited["p99"]),
               f"no reload running {ms(idle['p99'])}", f"{edited['p99'] / idle['p99']:.1f}x" if idle["p99"] else "-"),
        Figure(f"peak RSS, {label} loaded", f"{rss:,.0f} MB", f"plain BM25 bot {plain_rss:,.0f} MB",
               share(rss, plain_rss), f"< {RSS_GOAL_MB:,} MB" if rss_goal else "",
               rss < RSS_GOAL_MB if rss_goal else None),
        Figure(f"peak RSS after the reloads (old and new index alive at the swap), {label}",
               f"{reloaded['rss_mb']:,.0f} MB", f"plain BM25 bot {plain_rss:,.0f} MB",
               share(reloaded["rss_mb"], plain_rss),
               f"< {RSS_GOAL_MB:,} MB" if rss_goal else "", reloaded["rss_mb"] < RSS_GOAL_MB if rss_goal else None),
    ]


def detail(results: list[SizeResult]) -> str:
    rows = []
    for r in results:
        for name, run in (("ours, first start", r.cold), ("ours, restart", r.ours),
                          ("ours, restart without the saved index", r.unsaved), ("plain BM25 bot", r.plain)):
            rows.append((size_label(r.size), name, f"{run.at('interpreter'):.2f}",
                         f"{run.at('imported') - run.at('interpreter'):.2f}", f"{run['loaded']['seconds']:.2f}",
                         f"{run.at('first answer'):.2f}", f"{run['first answer']['rss_mb']:,.0f}"))
    timing = table(("articles", "process", "interpreter s", "imports s", "load (YAML read + index) s",
                    "start to first answer s", "peak RSS MB"), rows)
    rows = []
    for r in results:
        reloaded = r.ours["reloaded"]
        for name in ("idle", "warm-up", "unchanged", "edited", "added", "from a source"):
            w = reloaded[name]
            rows.append((size_label(r.size), {"idle": "no reload (baseline)", "warm-up": "the start's warm-up ending",
                                               "unchanged": "reload, nothing changed",
                                               "edited": "reload, one article edited",
                                               "added": "reload, one new article",
                                               "from a source": "one new article from a source"}[name],
                         f"{w['seconds']:.2f}", ms(w["worst_stall"]), w["answers"], ms(w["p50"]), ms(w["p99"]),
                         w["full_collections"], ms(w["longest_collection"])))
    reloads = table(("articles", "while", "seconds", "worst loop stall", "answers", "answer p50", "answer p99",
                     "full GC passes", "longest GC pass"), rows)
    return timing + "\n\n" + reloads


def run(shared: Path, quick: bool = False) -> Section:
    section = Section("startup", "3-4. Start-up, reload and memory (each size in a fresh process)")
    sizes = QUICK_SIZES if quick else SIZES
    idle_seconds = 0.3 if quick else IDLE_SECONDS
    results = []
    with tempfile.TemporaryDirectory(prefix="startup-bench-") as scratch:
        for size in sizes:
            print(f"  startup: {size_label(size)} articles ...", flush=True)
            results.append(measure(size, shared, Path(scratch), idle_seconds))
    for result in results:
        section.figures += figures(result)
    section.details.append(detail(results))
    section.notes.append("Writing the YAML files (setup, not timed as start-up): " + "; ".join(
        f"{size_label(r.size)} {r.write_seconds:.1f} s" for r in results))
    section.notes.append("Start-up is wall time from spawning `python` to the first reply text; the OS file cache is "
                         "warm (the files were just written). Our first start parses every file and writes the "
                         "parsed-article cache and the index beside the database; the restart reads unchanged files "
                         "from the first, as /reload does, and loads the second. A new article from a source is "
                         "taken in as the bot takes in what its poller or /add wrote: the builder names the files it "
                         "wrote, and only those are read. \"Searchable after\" runs from the start of the reload to "
                         "the first 1 ms tick that finds the article in the index being served; \"index update "
                         "alone\" is `Index.updated` within it. A /reload after hand edits stats every file.")
    return workloads.note_absent(section, shared)


def main(argv: list[str] | None = None) -> Section:
    return workloads.command_line(run, __doc__, "tiny knowledge bases", argv)


if __name__ == "__main__":
    main()
