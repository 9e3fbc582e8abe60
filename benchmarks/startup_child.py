"""The fresh process whose start-up, reloads and memory `benchmarks.startup` measures.

Only the standard library is imported before the first event, so that the time
and memory of importing the bot are measured as the bot's own. Each event is
one JSON line on stdout, stamped with the wall clock so that the parent can
measure from the moment it spawned this process.

    python -m benchmarks.startup_child ours|plain KNOWLEDGE_DIR QUESTIONS.json DATABASE IDLE_SECONDS
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import resource
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

ASK_INTERVAL = 0.010
TICK = 0.001
MAX_IDLE_SECONDS = 15.0
EDIT = " This article was edited for the reload benchmark."
NEW_ID = "zz-benchmark-new-article"
NEW_TITLE = "Quokka sanctuary volunteers count the benchmark marsupials"
SOURCE_ID = "zz-benchmark-source-article"
SOURCE_TITLE = "Axolotl hatchery opens its doors to benchmark visitors"


@dataclasses.dataclass(slots=True)
class Timer:
    seconds: float = 0.0


INDEX_UPDATE = Timer()   # the index update alone within the last reload (`Index.updated`), without reading files

T = TypeVar("T")


def emit(event: str, **values: Any) -> None:
    print(json.dumps({"event": event, "at": time.time(), **values}), flush=True)


def peak_rss_mb() -> float:
    """This process's own peak RSS: VmHWM, which exec resets (ru_maxrss keeps the parent's peak across exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _percentile(samples: list[float], q: float) -> float:
    if not samples:
        return 0.0
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


@dataclasses.dataclass(slots=True)
class Watch:
    """What the ticker, the asker and the garbage collector saw while one awaitable ran."""

    seconds: float = 0.0
    worst_stall: float = 0.0
    latencies: list[float] = dataclasses.field(default_factory=list)
    ready_after: float = 0.0  # when `ready` first held, from the start (checked at every tick)
    full_collections: int = 0  # cyclic GC passes over the whole heap: they hold the GIL throughout
    longest_collection: float = 0.0
    _collecting_since: float = 0.0

    def on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._collecting_since = time.perf_counter()
        elif info["generation"] == 2:
            self.full_collections += 1
            self.longest_collection = max(self.longest_collection, time.perf_counter() - self._collecting_since)

    def summary(self) -> dict[str, float]:
        return {"seconds": self.seconds, "ready_after": self.ready_after, "worst_stall": self.worst_stall,
                "answers": len(self.latencies),
                "p50": _percentile(self.latencies, 50), "p99": _percentile(self.latencies, 99),
                "full_collections": self.full_collections, "longest_collection": self.longest_collection}


async def watched(work: Awaitable[T], ask: Callable[[str], object], questions: list[str],
                  ready: Callable[[], bool] = lambda: False) -> tuple[T, Watch]:
    """Run `work` while a 1 ms ticker measures loop stalls (and when `ready` first holds) and a question is
    answered every 10 ms.

    An answer's latency runs from when it was due to when its reply text was ready, so
    time spent waiting for a stalled event loop counts, as it would for a user.
    """
    watch = Watch()
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(TICK)
            now = time.perf_counter()
            watch.worst_stall = max(watch.worst_stall, now - last - TICK)
            last = now
            if not watch.ready_after and ready():
                watch.ready_after = now - started

    async def asker() -> None:
        due, number = time.perf_counter(), 0
        while not stop.is_set():
            due += ASK_INTERVAL
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            ask(questions[number % len(questions)])
            done = time.perf_counter()
            watch.latencies.append(done - due)
            number += 1
            due = max(due, done - ASK_INTERVAL)  # after a stall, carry on at the normal pace rather than in a burst

    started = time.perf_counter()
    tasks = [asyncio.create_task(ticker()), asyncio.create_task(asker())]
    gc.callbacks.append(watch.on_gc)
    try:
        result = await work
    finally:
        watch.seconds = time.perf_counter() - started
        gc.callbacks.remove(watch.on_gc)
        stop.set()
        await asyncio.gather(*tasks)
    return result, watch


async def reloads(service: Any, knowledge_dir: Path, questions: list[str], idle_seconds: float) -> dict[str, Any]:
    """After the start's warm-up thread ends, reload with nothing changed, then after editing one article, then
    after adding one, then take in one more as from a source; then as long again with no reload."""
    from bot import knowledge

    _, warming = await watched(warm_up_ended(), service.ask, questions)
    unchanged, same = await watched(service.reload(), service.ask, questions)
    path = knowledge.article_paths(knowledge_dir)[0]
    problems: list[knowledge.Problem] = []
    article = knowledge.read_article(path, problems)
    if article is None:
        raise RuntimeError(f"cannot read {path}: {problems}")
    edited = dataclasses.replace(article, body=article.body + EDIT)
    knowledge.write_atomic(path, knowledge.dump_yaml(edited.to_yaml_dict()), fsync=False)
    changed, rebuilt = await watched(service.reload(), service.ask, questions)
    fresh = dataclasses.replace(article, id=NEW_ID, title=NEW_TITLE, body=NEW_TITLE + ". " + article.body)
    knowledge.write_article(knowledge_dir, fresh)
    added, new = await watched(service.reload(), service.ask, questions, ready=lambda: NEW_ID in service.kb.articles)
    if service.index.search(NEW_TITLE, 1)[0].article.id != NEW_ID:
        raise RuntimeError("the new article is not found by its title")
    # As a followed source's new item reaches the index: the builder writes the file and says which it wrote.
    polled = dataclasses.replace(article, id=SOURCE_ID, title=SOURCE_TITLE, body=SOURCE_TITLE + ". " + article.body)
    written = knowledge.write_article(knowledge_dir, polled)
    from_source, sourced = await watched(service.reload([written]), service.ask, questions,
                                         ready=lambda: SOURCE_ID in service.kb.articles)
    if service.index.search(SOURCE_TITLE, 1)[0].article.id != SOURCE_ID:
        raise RuntimeError("the article from a source is not found by its title")
    # Leave the files as they were, so that the next process restarts with nothing changed.
    knowledge.write_atomic(path, knowledge.dump_yaml(article.to_yaml_dict()), fsync=False)
    knowledge.article_path(knowledge_dir, NEW_ID).unlink()
    written.unlink()
    quiet = min(max(rebuilt.seconds, idle_seconds), MAX_IDLE_SECONDS)  # the same exposure to the machine's noise
    _, idle = await watched(asyncio.sleep(quiet), service.ask, questions)
    if (not changed.ok or len(changed.changes.updated) != 1 or unchanged.changes or len(added.changes.added) != 1
            or len(from_source.changes.added) != 1):
        raise RuntimeError(f"unexpected reload results: {unchanged.changes} then {changed.changes} {changed.problems}")
    return {"idle": idle.summary(), "warm-up": warming.summary(), "unchanged": same.summary(),
            "edited": rebuilt.summary(), "added": new.summary(), "from a source": sourced.summary(),
            "index_update": INDEX_UPDATE.seconds}


async def warm_up_ended() -> None:
    """The start's warm-up thread (`Service` loads the embedding model and word frequencies in it) has ended."""
    while any(thread.name == "warm-up" for thread in threading.enumerate()):
        await asyncio.sleep(TICK)


def ours(knowledge_dir: Path, questions: list[str], database: Path, idle_seconds: float) -> None:
    """The bot's own start: python-telegram-bot and every module imported, the store opened, `Service` loaded."""
    import bot.telegram.app  # noqa: F401
    from bot import knowledge_cache
    from bot.service import Service
    from bot.store import Store

    emit("imported")
    timed_updates()
    store = Store(database)
    started = time.perf_counter()
    service = Service(knowledge_dir, store, user_rate_limit=0, cache_path=knowledge_cache.beside(database))
    emit("loaded", seconds=time.perf_counter() - started, articles=len(service.kb.articles))
    service.ask(questions[0])
    emit("first answer", rss_mb=peak_rss_mb())
    results = asyncio.run(reloads(service, knowledge_dir, questions, idle_seconds))
    emit("reloaded", rss_mb=peak_rss_mb(), **results)
    store.close()


def timed_updates() -> None:
    """Time `Index.updated` within each reload: the cost of indexing the change, apart from reading the files."""
    from bot.search import Index

    original = Index.updated

    def updated(self: Index, *args: Any, **kwargs: Any) -> Index:
        started = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            INDEX_UPDATE.seconds = time.perf_counter() - started

    Index.updated = updated  # type: ignore[method-assign]


def plain(knowledge_dir: Path, questions: list[str]) -> None:
    """A plain BM25 bot: python-telegram-bot, the same YAML reader, bm25s over title and body."""
    import telegram.ext  # noqa: F401

    from bot import knowledge
    from bot.evaluation import Question, evaluate_bm25

    emit("imported")
    started = time.perf_counter()
    kb = knowledge.load(knowledge_dir)
    emit("loaded", seconds=time.perf_counter() - started, articles=len(kb.articles))
    evaluate_bm25(kb, [Question(questions[0], None)])
    emit("first answer", rss_mb=peak_rss_mb())


def main(argv: list[str]) -> None:
    emit("interpreter")
    mode, knowledge_dir, questions_file, database, idle_seconds = argv
    questions = json.loads(Path(questions_file).read_text(encoding="utf-8"))
    if mode == "ours":
        ours(Path(knowledge_dir), questions, Path(database), float(idle_seconds))
    elif mode == "plain":
        plain(Path(knowledge_dir), questions)
    else:
        raise SystemExit(f"unknown process kind {mode!r}: expected ours or plain")


if __name__ == "__main__":
    main(sys.argv[1:])
