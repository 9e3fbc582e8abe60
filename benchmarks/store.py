"""Store benchmark (issue 12): per-operation time on SQLite and on PostgreSQL, measured side by side.

The goal: PostgreSQL within 2x of SQLite for subscribe, claiming a batch of deliveries, marking one delivered
and recording a question. Both run as the bot runs them: SQLite a WAL file on local disk, PostgreSQL a local
server over its unix socket with the server's default (durable) settings and the store's own session settings.
Each operation is timed as one call from Python, so the figures include the driver and, for PostgreSQL, the
round trips.

    python -m benchmarks.store [--operations 2000] [--database-url postgresql://…]

Without --database-url (or BENCH_DATABASE_URL) a throwaway PostgreSQL server is started for the run (needs
Debian's `postgresql` package, as the tests do).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bot.store import Store, open_store
from tests.postgres import cluster, new_database

BATCH = 50        # chats per claim: a broadcast worker's bite
THREADS = 4       # callers at once in the concurrency figure
GOAL = 2.0        # PostgreSQL within this factor of SQLite


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


def table(sqlite: dict[str, list[float]], pg: dict[str, list[float]], rates: tuple[float, float]) -> str:
    lines = ["| operation | SQLite µs/op (median) | PostgreSQL µs/op (median) | PostgreSQL / SQLite | goal ≤ 2x |",
             "|---|---|---|---|---|"]
    for name, times in sqlite.items():
        ours, theirs = statistics.median(times) * 1e6, statistics.median(pg[name]) * 1e6
        ratio = theirs / ours
        goal = "—" if "for scale" in name else ("met" if ratio <= GOAL else "missed")
        lines.append(f"| {name} | {ours:.0f} | {theirs:.0f} | {ratio:.2f}x | {goal} |")
    lines.append(f"| record a question, {THREADS} threads at once (questions/s) | {rates[0]:.0f}/s | {rates[1]:.0f}/s "
                 f"| {rates[0] / rates[1]:.2f}x | — |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.store", description=__doc__.splitlines()[0])
    parser.add_argument("--operations", type=int, default=2000, help="calls of each operation (claims: a tenth)")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"),
                        help="an empty PostgreSQL database to use instead of a throwaway server")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as workdir:
        store = Store(Path(workdir) / "bench.sqlite3")
        try:
            on_sqlite = measure(store, args.operations)
            sqlite_rate = concurrent(store, args.operations)
        finally:
            store.close()
    with postgres(args.database_url) as url:
        store = open_store(url, Path("unused"))
        try:
            on_postgres = measure(store, args.operations)
            postgres_rate = concurrent(store, args.operations)
        finally:
            store.close()
    print(f"{args.operations} calls per operation ({args.operations // 10} claims), one thread, same machine\n")
    print(table(on_sqlite, on_postgres, (sqlite_rate, postgres_rate)))


if __name__ == "__main__":
    main()
