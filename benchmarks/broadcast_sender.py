"""One broadcaster in a process of its own, as each replica of the running bot is: `benchmarks.broadcast` starts
one per sender, so that the fake Bot API server, which stamps each message as it arrives, keeps an event loop
to itself and the senders' pauses are theirs alone.

    python -m benchmarks.broadcast_sender DATABASE TOKEN BASE_URL WORKER

DATABASE: a postgresql:// URL, or the path of a SQLite file. Prints the broadcast's report as JSON.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from pathlib import Path

from bot.knowledge import Article, KnowledgeBase
from bot.notify import broadcast, sender
from bot.store import Store, open_store

ARTICLE = Article(
    id="bench-1", title="Benchmark article", published=None, source="Bench", url="https://bench.example.org/1",
    language="en", summary="A synthetic article for the broadcast benchmark.", body="Nothing to read here.",
)


def open_database(database: str) -> Store:
    url = database if database.startswith("postgresql://") else None
    return open_store(url, Path(database))


async def _broadcast(database: str, token: str, base_url: str, worker: str) -> dict[str, int]:
    store = open_database(database)
    try:
        async with sender(token, base_url) as bot:
            report = await broadcast(bot, store, KnowledgeBase({ARTICLE.id: ARTICLE}), worker=worker)
    finally:
        store.close()
    return dataclasses.asdict(report)


def main(argv: list[str]) -> None:
    database, token, base_url, worker = argv
    print(json.dumps(asyncio.run(_broadcast(database, token, base_url, worker))))


if __name__ == "__main__":
    main(sys.argv[1:])
