"""Followed sources (issue 11): the bot polling 200 feeds on a local HTTP server while it answers questions.

The bot runs as `python -m bot run` does, in its own process, against the fake Bot API server; the feeds are
served by an aiohttp server in this process on 127.0.0.1 (ALLOW_PRIVATE_SOURCES=1), each with an ETag, so an
unchanged feed answers 304. Phases, in one run of one bot process:

- idle: no sources.yaml; the bot's CPU over a quiet stretch, then questions (one every `GAP` seconds, each from
  a new chat) and their latency from the update being queued to the answer arriving: the baseline;
- polling hard: the 200 sources, unchanged (304), each polled every `EVERY` seconds (a minute, compressed, so
  poll rounds run back to back): the bot's CPU over a stretch without questions, per poll, less the idle CPU of
  the same stretch; then the same questions;
- full answers: the same feeds without validators (a full 200 answer of the same, unchanged feed): CPU per poll,
  the cost 304 saves;
- new items: one new item at a time in a random feed; the time from its appearance to the subscriber's
  notification (goal: one poll interval plus 5 s), while questions go on;
- polling every minute, the goal's load: a question every `GAP` seconds for a whole minute, so that the one
  round of 200 polls in it falls among them.

    python -m benchmarks.sources [--quick] [--shared ../shared]
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from aiohttp import web

from benchmarks import workloads
from benchmarks.report import Figure, Section, median, ms, percentile, table
from bot.render import NEW
from bot.testing.fake_telegram import BOT_ID, FakeTelegram

REPO = Path(__file__).resolve().parents[1]
TOKEN = f"{BOT_ID}:AAH{'b' * 32}"
SOURCES, QUICK_SOURCES = 200, 40
EVERY = 2.0                 # seconds between polls of one source (a minute, compressed)
GOAL_EVERY = 60.0           # seconds between polls of one source in the goal
KB_SIZE, QUICK_KB_SIZE = 1_000, 200
QUESTIONS, QUICK_QUESTIONS = 200, 40
NEW_ITEMS, QUICK_NEW_ITEMS = 10, 3
GAP = 0.1                   # seconds between questions: under AIORateLimiter's 30 messages/s
QUIET = 6.0                 # seconds of each CPU measurement
SUBSCRIBER = 7_000
LATENCY_RATIO_GOAL = 2.0    # p99 during polling, over idle
CPU_GOAL = 0.005            # seconds per poll of an unchanged feed
ANNOUNCE_SLACK = 5.0        # seconds beyond one poll interval
READY_TIMEOUT = 120.0
REPLY_TIMEOUT = 60.0

_WORDS = ("council", "residents", "budget", "library", "school", "transport", "river", "park", "hospital",
          "volunteers", "election", "court", "market", "water", "roads", "housing", "festival", "museum")


def _item(feed: int, number: int) -> tuple[str, str]:
    """(title, description) of a full item (long enough not to be a teaser, so no page is fetched)."""
    rng = random.Random(feed * 10_000 + number)
    title = f"Bench feed {feed} item {number}: {' '.join(rng.sample(_WORDS, 3))}"
    sentences = [" ".join(rng.choices(_WORDS, k=12)).capitalize() + "." for _ in range(8)]
    return title, " ".join(sentences)


@dataclass
class Feeds:
    """The 200 feeds: each with its items, a version in its ETag, and counts of what was answered."""

    count: int
    validators: bool = True
    items: dict[int, list[tuple[str, str]]] = field(default_factory=dict)
    version: Counter[int] = field(default_factory=Counter)
    answered: Counter[int] = field(default_factory=Counter)   # status -> count
    port: int = 0

    def __post_init__(self) -> None:
        self.items = {feed: [_item(feed, 0)] for feed in range(self.count)}

    def url(self, feed: int) -> str:
        return f"http://127.0.0.1:{self.port}/feed/{feed}.xml"

    def publish(self, feed: int) -> str:
        title, body = _item(feed, len(self.items[feed]))
        self.items[feed].insert(0, (title, body))
        self.version[feed] += 1
        return title

    def _rss(self, feed: int) -> bytes:
        entries = "".join(
            f"<item><title>{escape(title)}</title><link>https://bench.example.org/{feed}/{n}</link>"
            f"<guid>bench-{feed}-{n}</guid><description>{escape(body)}</description></item>"
            for n, (title, body) in enumerate(reversed(self.items[feed])))
        return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Bench feed {feed}</title>'
                f"<link>https://bench.example.org/</link><description>x</description>{entries}</channel></rss>"
                ).encode()

    async def _handle(self, request: web.Request) -> web.Response:
        feed = int(request.match_info["feed"])
        if feed not in self.items:
            raise web.HTTPNotFound()
        etag = f'"{feed}-{self.version[feed]}"'
        if self.validators and request.headers.get("If-None-Match") == etag:
            self.answered[304] += 1
            return web.Response(status=304, headers={"ETag": etag})
        self.answered[200] += 1
        headers = {"Content-Type": "application/rss+xml"} | ({"ETag": etag} if self.validators else {})
        return web.Response(body=self._rss(feed), headers=headers)

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[Feeds]:
        app = web.Application()
        app.router.add_get("/feed/{feed:\\d+}.xml", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.1)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self.port = runner.addresses[0][1]
        try:
            yield self
        finally:
            await runner.cleanup()


class _Telegram(FakeTelegram):
    """The fake Bot API server, noting when each message arrived."""

    def __init__(self) -> None:
        super().__init__(TOKEN)
        self.arrivals: list[tuple[float, int, str]] = []
        self.arrived = asyncio.Event()

    async def _api_sendMessage(self, params: dict[str, Any]) -> Any:
        result = await super()._api_sendMessage(params)
        self.arrivals.append((time.perf_counter(), params["chat_id"], params["text"]))
        self.arrived.set()
        self.arrived = asyncio.Event()
        return result

    async def message(self, chat_id: int, since: int, contains: str = "", timeout: float = REPLY_TIMEOUT,
                      notification: bool = False) -> float:
        """When the first message to this chat after arrival `since` (containing `contains`) arrived."""
        deadline = time.perf_counter() + timeout
        while True:
            for at, chat, text in self.arrivals[since:]:
                if chat == chat_id and contains in text and text.startswith(NEW) == notification:
                    return at
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise TimeoutError(f"no message to {chat_id} containing {contains!r} within {timeout:g} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), remaining)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.asynccontextmanager
async def _bot(tg: _Telegram, knowledge_dir: Path, scratch: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_BASE_URL": tg.base_url,
           "KNOWLEDGE_DIR": str(knowledge_dir), "DATABASE_PATH": str(scratch / "bot.sqlite3"), "ADMIN_IDS": "",
           "ALLOW_PRIVATE_SOURCES": "1", "USER_RATE_LIMIT": "0", "LOG_LEVEL": "WARNING"}
    log = scratch / "bot.log"
    with log.open("w") as output:
        process = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "run", cwd=scratch, env=env,
                                                       stdout=output, stderr=output)
        try:
            deadline = time.monotonic() + READY_TIMEOUT
            while not any(call.method == "getUpdates" for call in tg.calls):
                if process.returncode is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the bot did not start: {log.read_text()[-1500:]}")
                await asyncio.sleep(0.05)
            yield process
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGINT)
                try:
                    await asyncio.wait_for(process.wait(), 30)
                except TimeoutError:
                    process.kill()
                    await process.wait()


async def _questions(tg: _Telegram, questions: list[str], count: int, first_chat: int) -> list[float]:
    """Latencies of `count` questions, one every GAP seconds, each from a new chat."""
    latencies: list[float] = []

    async def one(number: int) -> None:
        chat = first_chat + number
        since = len(tg.arrivals)
        sent = time.perf_counter()
        tg.push_message(questions[number % len(questions)], chat_id=chat, user_id=chat)
        latencies.append(await tg.message(chat, since) - sent)

    tasks = []
    for number in range(count):
        tasks.append(asyncio.create_task(one(number)))
        await asyncio.sleep(GAP)
    await asyncio.gather(*tasks)
    return latencies


async def _cpu_over(pid: int, seconds: float) -> float:
    before = _cpu_seconds(pid)
    await asyncio.sleep(seconds)
    return _cpu_seconds(pid) - before


@dataclass
class Measured:
    sources: int
    idle: list[float] = field(default_factory=list)
    polling: list[float] = field(default_factory=list)
    with_new: list[float] = field(default_factory=list)
    idle_cpu: float = 0.0          # seconds of bot CPU over QUIET, no sources
    cpu_304: float = 0.0           # seconds per poll answered 304
    cpu_full: float = 0.0          # seconds per poll answered in full (same content)
    polls_304: int = 0
    polls_full: int = 0
    announce: list[float] = field(default_factory=list)
    every_minute: list[float] = field(default_factory=list)
    polls_in_minute: int = 0


async def _polls(feeds: Feeds, pid: int, status: int, idle_cpu: float) -> tuple[float, int]:
    before = feeds.answered[status]
    cpu = await _cpu_over(pid, QUIET)
    polls = feeds.answered[status] - before
    return max(cpu - idle_cpu, 0.0) / max(polls, 1), polls


async def measure(shared: Path, quick: bool) -> Measured:
    sources = QUICK_SOURCES if quick else SOURCES
    count = QUICK_QUESTIONS if quick else QUESTIONS
    workload = workloads.workload(QUICK_KB_SIZE if quick else KB_SIZE, shared)
    questions = [q.question for q in workload.questions]
    result = Measured(sources)
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        knowledge_dir = workloads.write_knowledge(workload.kb, scratch / "knowledge")
        async with _Telegram() as tg, Feeds(sources).serving() as feeds, _bot(tg, knowledge_dir, scratch) as bot:
            since = len(tg.arrivals)
            tg.push_message("/subscribe", chat_id=SUBSCRIBER, user_id=SUBSCRIBER)
            await tg.message(SUBSCRIBER, since)
            result.idle_cpu = await _cpu_over(bot.pid, QUIET)
            result.idle = await _questions(tg, questions, count, 100_000)

            since = len(tg.arrivals)
            (knowledge_dir / "sources.yaml").write_text(
                "".join(f"- url: {feeds.url(i)}\n  every: {EVERY:g}s\n" for i in range(sources)), "utf-8")
            await tg.message(SUBSCRIBER, since, notification=True, timeout=READY_TIMEOUT)   # the first items
            while feeds.answered[304] < 2 * sources:   # every source polled again since: the steady state
                await asyncio.sleep(0.2)
            result.cpu_304, result.polls_304 = await _polls(feeds, bot.pid, 304, result.idle_cpu)
            result.polling = await _questions(tg, questions, count, 200_000)

            feeds.validators = False
            await asyncio.sleep(EVERY + 1)
            result.cpu_full, result.polls_full = await _polls(feeds, bot.pid, 200, result.idle_cpu)
            feeds.validators = True
            await asyncio.sleep(EVERY + 1)

            asking = asyncio.create_task(_questions(tg, questions, count, 300_000))
            rng = random.Random(workloads.SEED)
            for _ in range(QUICK_NEW_ITEMS if quick else NEW_ITEMS):
                since = len(tg.arrivals)
                appeared = time.perf_counter()
                title = feeds.publish(rng.randrange(sources))
                result.announce.append(await tg.message(SUBSCRIBER, since, escape(title), notification=True,
                                                        timeout=EVERY + 60) - appeared)
                await asyncio.sleep(rng.uniform(0, EVERY))
            result.with_new = await asking

            (knowledge_dir / "sources.yaml").write_text(
                "".join(f"- url: {feeds.url(i)}\n  every: {GOAL_EVERY:g}s\n" for i in range(sources)), "utf-8")
            await asyncio.sleep(EVERY + 1)   # each source's last poll on the old schedule: next due in a minute
            before = feeds.answered[304] + feeds.answered[200]
            result.every_minute = await _questions(tg, questions, int(GOAL_EVERY / GAP), 400_000)
            result.polls_in_minute = feeds.answered[304] + feeds.answered[200] - before
    return result


def run(shared: Path, quick: bool = False) -> Section:
    section = Section("sources", "8. Followed sources: polling beside answering")
    m = asyncio.run(measure(shared, quick))
    full = m.sources >= SOURCES
    idle99, polling99, new99, minute99 = (percentile(x, 99) for x in (m.idle, m.polling, m.with_new,
                                                                      m.every_minute))
    ratio = minute99 / idle99 if idle99 else float("inf")
    section.figures = [
        Figure(f"answer latency p99 over a minute in which {m.sources} sources are polled (304)", ms(minute99),
               f"idle {ms(idle99)}", f"{ratio:.2f}x idle", f"within {LATENCY_RATIO_GOAL:g}x idle",
               ratio <= LATENCY_RATIO_GOAL if full else None),
        Figure(f"answer latency p99 while {m.sources} sources are polled every {EVERY:g} s (304)", ms(polling99),
               f"idle {ms(idle99)}", f"{polling99 / idle99:.2f}x idle" if idle99 else "-"),
        Figure("bot CPU per poll of an unchanged feed (304)", ms(m.cpu_304),
               f"full answer of the same feed {ms(m.cpu_full)}",
               f"{m.cpu_full / m.cpu_304:.1f}x less" if m.cpu_304 else "-", f"< {ms(CPU_GOAL)}",
               m.cpu_304 < CPU_GOAL if full else None),
        Figure("new item to its announcement, max", f"{max(m.announce):.2f} s",
               f"poll interval {EVERY:g} s", f"median {median(m.announce):.2f} s",
               f"<= interval + {ANNOUNCE_SLACK:g} s", max(m.announce) <= EVERY + ANNOUNCE_SLACK),
        Figure("answer latency p99 while new items are taken in", ms(new99), f"idle {ms(idle99)}",
               f"{new99 / idle99:.2f}x idle" if idle99 else "-"),
    ]
    section.details.append(table(
        ("phase", "questions", "median", "p95", "p99", "max"),
        [(name, len(x), ms(median(x)), ms(percentile(x, 95)), ms(percentile(x, 99)), ms(max(x)))
         for name, x in (("idle", m.idle), (f"polling every {EVERY:g} s, 304", m.polling),
                         (f"polling every {EVERY:g} s, new items", m.with_new),
                         (f"polling every {GOAL_EVERY:g} s, 304", m.every_minute))]))
    section.notes += [
        f"{m.sources} sources, each polled every {EVERY:g} s (a minute, compressed: rounds back to back): "
        f"{m.polls_304 / QUIET:.0f} polls/s, {m.polls_304 / QUIET / (m.sources / 60):.0f}x the load of polling "
        f"them every minute; then every {GOAL_EVERY:g} s, with questions over a whole minute ({m.polls_in_minute} "
        f"polls in it). One question every {GAP:g} s from a new chat; the bot is `python -m bot run` in its "
        "own process, its fetches on an event loop of their own (`bot.telegram.sources`).",
        f"CPU per poll: the bot process's CPU over {QUIET:g} s less its idle CPU over the same time "
        f"({m.idle_cpu * 1000:.0f} ms), over the polls answered then ({m.polls_304} answered 304, "
        f"{m.polls_full} answered in full).",
        f"New items: {len(m.announce)}, one at a time; announcement delays "
        + ", ".join(f"{s:.2f}" for s in m.announce) + " s.",
    ]
    return workloads.note_absent(section, shared)


def main(argv: list[str] | None = None) -> Section:
    return workloads.command_line(run, __doc__, f"{QUICK_SOURCES} sources, {QUICK_KB_SIZE} articles", argv)


if __name__ == "__main__":
    main()
