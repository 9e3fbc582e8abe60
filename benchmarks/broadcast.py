"""Broadcast benchmark (issue 5, item 5): notify N subscribers through a rate-limited fake Bot API server.

The server enforces Telegram's flood limits (30 messages/s overall, 1 message/s
per chat, 429 with retry_after beyond them), multiplied by --scale so that
10,000 subscribers finish in well under a minute. Our broadcast runs through a
real python-telegram-bot Application with AIORateLimiter set to the same
scaled limit. Baseline in the same run: the naive broadcast (as many messages
in flight as ours, but no rate limiter, no retry, no delivery log).

    python -m benchmarks.broadcast [--quick] [--shared ../shared]
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import telegram
from telegram.error import TelegramError
from telegram.ext import AIORateLimiter, ApplicationBuilder
from telegram.request import HTTPXRequest

from benchmarks import workloads
from benchmarks.report import Figure, Section, share, table
from bot.knowledge import Article, KnowledgeBase
from bot.notify import CONCURRENCY, notify_new
from bot.render import render_notification
from bot.store import Store
from bot.testing.fake_telegram import FakeTelegram

TELEGRAM_RATE = 30  # messages per second, overall
TELEGRAM_PER_CHAT = 1  # messages per second, per chat
SCALE = 5  # Telegram's limits multiplied, so that 10,000 subscribers finish in well under a minute
SUBSCRIBERS = 10_000
QUICK_SUBSCRIBERS = 300

ARTICLE = Article(
    id="bench-1", title="Benchmark article", published=None, source="Bench", url="https://bench.example.org/1",
    language="en", summary="A synthetic article for the broadcast benchmark.", body="Nothing to read here.",
)


@dataclass(frozen=True, slots=True)
class Row:
    name: str
    subscribers: int
    attempted: int
    delivered: int
    rate_limited: int
    duplicates: int
    lost: int
    seconds: float
    rate: float  # messages delivered per second
    limit: float  # the server's limit, messages per second

    @property
    def fraction(self) -> float:
        return self.rate / self.limit


def _row(name: str, tg: FakeTelegram, subscribers: int, seconds: float, limit: float) -> Row:
    per_chat = Counter(p["chat_id"] for p in tg.sent() if re.search(r"bench\.example\.org/1", p["text"]))
    delivered = sum(per_chat.values())
    attempted = sum(1 for c in tg.calls if c.method == "sendMessage")
    return Row(
        name=name, subscribers=subscribers, attempted=attempted, delivered=delivered,
        rate_limited=tg.rate_limited, duplicates=sum(n - 1 for n in per_chat.values()),
        lost=subscribers - len(per_chat), seconds=seconds, rate=delivered / seconds, limit=limit,
    )


async def _ours(subscribers: int, scale: float, workdir: Path) -> Row:
    limit = TELEGRAM_RATE * scale
    async with FakeTelegram() as tg:
        tg.set_rate_limit(limit, TELEGRAM_PER_CHAT * scale, retry_after=1)
        store = Store(workdir / "bench.sqlite3")
        for chat in range(1, subscribers + 1):
            store.subscribe(chat)
        app = (
            ApplicationBuilder().token(tg.token).base_url(tg.base_url).updater(None)
            .rate_limiter(AIORateLimiter(overall_max_rate=limit, overall_time_period=1, max_retries=3)).build()
        )
        async with app:
            started = time.perf_counter()
            await notify_new(app.bot, store, KnowledgeBase({ARTICLE.id: ARTICLE}), [ARTICLE])
            seconds = time.perf_counter() - started
        store.close()
        return _row("ours: notify_new + AIORateLimiter", tg, subscribers, seconds, limit)


async def _naive(subscribers: int, scale: float) -> Row:
    """What a bot without a limiter or a delivery log does: send flat out, let failures fall on the floor."""
    limit = TELEGRAM_RATE * scale
    text = render_notification([ARTICLE])
    async with FakeTelegram() as tg:
        tg.set_rate_limit(limit, TELEGRAM_PER_CHAT * scale, retry_after=1)
        request = HTTPXRequest(connection_pool_size=CONCURRENCY)
        in_flight = asyncio.Semaphore(CONCURRENCY)
        async with telegram.Bot(tg.token, base_url=tg.base_url, request=request) as bot:

            async def send(chat: int) -> None:
                # A failure is the naive bot's loss, which is what the benchmark measures.
                async with in_flight:
                    with contextlib.suppress(TelegramError):
                        await bot.send_message(chat, text, parse_mode="HTML")

            started = time.perf_counter()
            await asyncio.gather(*(send(chat) for chat in range(1, subscribers + 1)))
            seconds = time.perf_counter() - started
        return _row("baseline: no limiter, no retry", tg, subscribers, seconds, limit)


async def measure(subscribers: int, scale: float) -> list[Row]:
    with tempfile.TemporaryDirectory() as workdir:
        ours = await _ours(subscribers, scale, Path(workdir))
    naive = await _naive(subscribers, scale)
    return [ours, naive]


def run(shared: Path, quick: bool = False) -> Section:
    section = Section("broadcast", "5. Broadcast to subscribers through a rate-limited fake Bot API")
    subscribers = QUICK_SUBSCRIBERS if quick else SUBSCRIBERS
    ours, naive = rows = asyncio.run(measure(subscribers, SCALE))
    n = f"{ours.subscribers:,} subscribers"
    full = ours.subscribers >= SUBSCRIBERS
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
    section.notes.append(f"Server limit {TELEGRAM_RATE * SCALE:.0f} msg/s overall, {TELEGRAM_PER_CHAT * SCALE:.0f} "
                         f"msg/s per chat (Telegram's limits x{SCALE:g}).")
    return section


def main(argv: list[str] | None = None) -> Section:
    return workloads.command_line(run, __doc__, f"{QUICK_SUBSCRIBERS} subscribers", argv)


if __name__ == "__main__":
    main()
