"""Broadcast benchmark (issue 11 part 6, issue 12): notify N subscribers through a fake Bot API server that enforces
Telegram's limits exactly as sliding windows (30 messages in ANY second, 1 a second per chat, 20 a minute per
group; 429 with retry_after beyond), with one sender on SQLite and 1, 2 and 3 senders (replicas) sharing one
PostgreSQL database. Each sender is the Bot the running bot broadcasts with (`bot.notify.sender`), in a process
of its own (`benchmarks.broadcast_sender`) as each replica is; the server has this process to itself.
Baseline in the same run: the naive broadcast (as many messages in flight, no pacing, no retry, no delivery log).

    python -m benchmarks.broadcast [--quick] [--shared ../shared]
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import telegram
from telegram.error import TelegramError
from telegram.request import HTTPXRequest

from benchmarks import workloads
from benchmarks.broadcast_sender import ARTICLE, open_database
from benchmarks.report import Figure, Section, share, table
from bot.notify import CONCURRENCY, plan
from bot.render import render_notification
from bot.testing.fake_telegram import FakeTelegram
from tests.postgres import cluster, new_database

TELEGRAM_RATE = 30  # messages in any sliding second, overall
SUBSCRIBERS = (1_000, 10_000)  # one sender
SHARED_SUBSCRIBERS = 1_000  # 2 and 3 senders on one PostgreSQL database
QUICK_SUBSCRIBERS = 300
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class Row:
    name: str
    subscribers: int
    senders: int
    attempted: int
    delivered: int
    rate_limited: int
    duplicates: int
    lost: int
    seconds: float  # until every sender returned, their start-up included
    rate: float  # messages delivered per second, from the first message the server accepted to the last

    @property
    def fraction(self) -> float:
        return self.rate / TELEGRAM_RATE

    @property
    def clean(self) -> bool:
        return self.rate_limited == 0 and self.lost == 0 and self.duplicates == 0


def _row(name: str, tg: FakeTelegram, subscribers: int, senders: int, started: float) -> Row:
    per_chat = Counter(p["chat_id"] for p in tg.sent() if re.search(r"bench\.example\.org/1", p["text"]))
    delivered = sum(per_chat.values())
    attempted = sum(1 for c in tg.calls if c.method == "sendMessage")
    accepted = [c.at for c in tg.calls if c.method == "sendMessage" and c.status == 200]
    return Row(
        name=name, subscribers=subscribers, senders=senders, attempted=attempted, delivered=delivered,
        rate_limited=tg.rate_limited, duplicates=sum(n - 1 for n in per_chat.values()),
        lost=subscribers - len(per_chat), seconds=time.monotonic() - started,
        rate=(len(accepted) - 1) / max(max(accepted) - min(accepted), 1e-9) if accepted else 0.0,
    )


async def _send(database: str, tg: FakeTelegram, worker: str) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.broadcast_sender", database, tg.token, tg.base_url, worker, cwd=REPO,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await process.communicate()
    if process.returncode:
        raise RuntimeError(f"sender {worker} failed: {err.decode()[-1500:]}")


async def _ours(name: str, subscribers: int, database: str, senders: int) -> Row:
    """Each sender is a replica: a process of its own, all on one database."""
    store = open_database(database)
    try:
        for chat in range(1, subscribers + 1):
            store.subscribe(chat)
        store.announce([ARTICLE.id], plan([ARTICLE], store.all_subscriptions()))
    finally:
        store.close()
    async with FakeTelegram() as tg:
        tg.enforce_telegram_limits(per_second=TELEGRAM_RATE)
        started = time.monotonic()
        await asyncio.gather(*(_send(database, tg, f"replica-{n}") for n in range(senders)))
        return _row(name, tg, subscribers, senders, started)


async def _naive(subscribers: int) -> Row:
    """What a bot without pacing or a delivery log does: send flat out, let failures fall on the floor."""
    text = render_notification([ARTICLE])
    async with FakeTelegram() as tg:
        tg.enforce_telegram_limits(per_second=TELEGRAM_RATE)
        request = HTTPXRequest(connection_pool_size=CONCURRENCY)
        in_flight = asyncio.Semaphore(CONCURRENCY)
        async with telegram.Bot(tg.token, base_url=tg.base_url, request=request) as bot:

            async def send(chat: int) -> None:
                # A failure is the naive bot's loss, which is what the benchmark measures.
                async with in_flight:
                    with contextlib.suppress(TelegramError):
                        await bot.send_message(chat, text, parse_mode="HTML")

            started = time.monotonic()
            await asyncio.gather(*(send(chat) for chat in range(1, subscribers + 1)))
        return _row("baseline: no pacing, no retry", tg, subscribers, 1, started)


async def measure(quick: bool) -> list[Row]:
    rows = []
    single = (QUICK_SUBSCRIBERS,) if quick else SUBSCRIBERS
    shared = QUICK_SUBSCRIBERS if quick else SHARED_SUBSCRIBERS
    for subscribers in single:
        with tempfile.TemporaryDirectory() as workdir:
            database = str(Path(workdir) / "bench.sqlite3")
            rows.append(await _ours("ours: 1 sender, SQLite", subscribers, database, 1))
    with cluster(durable=True) as server:
        for senders in (1, 2, 3):
            name = f"ours: {senders} sender{'s' * (senders > 1)}, PostgreSQL"
            rows.append(await _ours(name, shared, new_database(server), senders))
    rows.append(await _naive(shared))
    return rows


def run(shared: Path, quick: bool = False) -> Section:
    section = Section("broadcast", "5. Broadcast to subscribers against Telegram's limits as sliding windows")
    rows = asyncio.run(measure(quick))
    naive = rows[-1]
    full = not quick
    for r in rows[:-1]:
        n = f"{r.subscribers:,} subscribers, {r.name.removeprefix('ours: ')}"
        section.figures.append(Figure(
            f"achieved rate, {n}", f"{r.rate:.1f} msg/s = {r.fraction:.1%} of 30/s",
            f"naive sender {naive.rate:.1f} msg/s", share(r.rate, naive.rate), ">= 95% of 30/s",
            r.fraction >= 0.95 if full else None))
        section.figures.append(Figure(
            f"429 / lost / duplicated, {n}", f"{r.rate_limited:,} / {r.lost:,} / {r.duplicates:,}",
            f"naive sender {naive.rate_limited:,} / {naive.lost:,} / {naive.duplicates:,}", "", "0 / 0 / 0",
            r.clean if full else None))
    section.details.append(table(
        ("sender", "subscribers", "senders", "attempted", "delivered", "429s", "duplicated", "lost", "seconds",
         "msg/s", "of 30/s"),
        [(r.name, r.subscribers, r.senders, r.attempted, r.delivered, r.rate_limited, r.duplicates, r.lost,
          f"{r.seconds:.1f}", f"{r.rate:.1f}", f"{r.fraction:.1%}") for r in rows]))
    section.notes.append("The server counts accepted messages in every sliding second (and per chat, per group "
                         "minute), stamped as they arrive; each of our senders is a process of its own, the "
                         "server and the naive sender share one.")
    return section


def main(argv: list[str] | None = None) -> Section:
    return workloads.command_line(run, __doc__, f"{QUICK_SUBSCRIBERS} subscribers", argv)


if __name__ == "__main__":
    main()
