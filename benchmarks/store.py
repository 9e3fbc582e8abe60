"""Store benchmark (issue 12): per-operation time on SQLite and on PostgreSQL, measured side by side.

The goal: PostgreSQL within 2x of SQLite for subscribe, claiming a batch of deliveries, marking one delivered
and recording a question. Both run as the bot runs them: SQLite a WAL file on local disk, PostgreSQL a local
server over its unix socket with the server's default (durable) settings and the store's own session settings.
Each operation is timed as one call from Python, so the figures include the driver and, for PostgreSQL, the
round trips.

    python -m benchmarks.store [--quick]      # or as a section: python -m benchmarks --only store

Without BENCH_DATABASE_URL (an empty PostgreSQL database to use) a throwaway PostgreSQL server is started for
the run (needs Debian's `postgresql` package, as the tests do).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks import workloads
from benchmarks.report import Figure, Section, share
from bot.store import Store, open_store
from bot.testing.postgres import cluster, new_database

BATCH = 50        # chats per claim: a broadcast worker's bite
THREADS = 4       # callers at once in the concurrency figure
GOAL = 2.0        # PostgreSQL within this factor of SQLite
OPERATIONS = 2000
QUICK_OPERATIONS = 200


def _timed(operation: Callable[[int], object], count: int) -> list[float]:
    """Seconds per call of operation(0 … count-1)."""
    times = []
    for n in range(count):
        started = time.perf_counter()
        operation(n)
        times.append(time.perf_counter() - started)
    return times


def measure(store: Store, count: int) -> dict[str, list[float]]:
    """Per-call times of each operation on a store holding a broadcast's worth of queued deliveries."""
    store.unannounced([])
    store.announce(["bench-article"], [(chat, "bench-article") for chat in range(count * BATCH // 10)])
    claims = count // 10
    claimed: list[int] = []

    def claim(n: int) -> None:
        claimed.extend(store.claim_deliveries(f"worker-{n % 3}", BATCH, 600))

    results = {
        "subscribe": _timed(lambda n: store.subscribe(10**9 + n, f"topic {n % 50}"), count),
        f"claim a batch ({BATCH} chats)": _timed(claim, claims),
    }
    results["mark delivered"] = _timed(lambda n: store.mark_delivered(claimed[n], ["bench-article"]),
                                       min(count, len(claimed)))
    results["record a question"] = _timed(
        lambda n: store.record_question(f"who funds the project number {n % 300}?", answered=bool(n % 3)), count)
    results["a round trip (SELECT 1), for scale"] = _timed(lambda n: store._read("SELECT 1"), count)
    return results


def concurrent(store: Store, count: int, threads: int = THREADS) -> float:
    """Questions recorded per second by several threads at once (replicas' worth of callers)."""
    def ask(worker: int) -> None:
        for n in range(count // threads):
            store.record_question(f"question {worker} {n % 100}", answered=True)

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(ask, range(threads)))
    return (count // threads * threads) / (time.perf_counter() - started)


@contextlib.contextmanager
def postgres(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    with cluster(durable=True) as server:
        yield new_database(server)


def run(shared: Path, quick: bool = False) -> Section:
    section = Section("store", "7. Store: PostgreSQL beside SQLite, per operation")
    count = QUICK_OPERATIONS if quick else OPERATIONS
    with tempfile.TemporaryDirectory() as workdir:
        store = Store(Path(workdir) / "bench.sqlite3")
        try:
            on_sqlite, sqlite_rate = measure(store, count), concurrent(store, count)
        finally:
            store.close()
    with postgres(os.environ.get("BENCH_DATABASE_URL")) as url:
        store = open_store(url, Path("unused"))
        try:
            on_postgres, postgres_rate = measure(store, count), concurrent(store, count)
        finally:
            store.close()
    for name, times in on_sqlite.items():
        sqlite_us, postgres_us = statistics.median(times) * 1e6, statistics.median(on_postgres[name]) * 1e6
        ratio = postgres_us / sqlite_us
        scale = "for scale" in name
        section.figures.append(Figure(
            f"{name}, median", f"PostgreSQL {postgres_us:,.0f} µs", f"SQLite {sqlite_us:,.0f} µs",
            f"{ratio:.2f}x SQLite", "" if scale else f"<= {GOAL:g}x SQLite", None if scale else ratio <= GOAL))
    section.figures.append(Figure(
        f"record a question, {THREADS} threads at once", f"PostgreSQL {postgres_rate:,.0f}/s",
        f"SQLite {sqlite_rate:,.0f}/s", share(postgres_rate, sqlite_rate)))
    section.notes.append(f"{count} calls per operation ({count // 10} claims), one thread, same machine. "
                         "Without BENCH_DATABASE_URL a throwaway PostgreSQL server is started (Debian's `postgresql`).")
    return section


def main(argv: list[str] | None = None) -> Section:
    return workloads.command_line(run, __doc__, f"{QUICK_OPERATIONS} calls per operation", argv)


if __name__ == "__main__":
    main()
