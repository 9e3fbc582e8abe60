"""Bot throughput (issue 5, item 2): questions answered per second through python-telegram-bot.

The fake Bot API servers (`bot.testing.fake_telegram`) and the simulated users run in
this process; each bot runs in its own process and long-polls its server over
loopback, so the bot has a core to itself as in production. A user pushes a
question (an update), waits until the server sees the bot's sendMessage for
their chat, and asks again; 1, 10 and 50 users ask concurrently. The bots run
side by side and are measured in alternating rounds, so the shared machine's
drifting load falls on all of them alike.

Bots:
- ours: `bot.telegram.app.build_application` as shipped (10k-article knowledge base, every handler,
  statistics store, answers paced at Telegram's 30 messages/s by `notify.AnswerPacing`, which is AIORateLimiter
  plus a turn in the store's shared line);
- the baseline: a bare python-telegram-bot echo bot (ApplicationBuilder, concurrent
  updates, one MessageHandler replying with the question's text);
- two controls that separate the cost of answering from the rate limit: the echo bot
  behind the same pacing (its own store), and ours with the overall cap lifted (`notify.AnswerPacing` patched in the
  bot's process; each answer still takes its turn in the store; nothing else changes).

    python -m benchmarks.throughput [--quick] [--shared ../shared]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

from benchmarks import workloads
from benchmarks.report import Figure, Section, median, ms, percentile, share, size_label, table
from bot.testing.fake_telegram import FakeTelegram

REPO = Path(__file__).resolve().parents[1]
SIZE = 10_000
QUICK_SIZE = 200
LEVELS = (1, 10, 50)
ROUND_SECONDS = 4.0  # of asking, per bot, concurrency level and round
ROUNDS = 2
QUICK_SECONDS = 0.5
READY_TIMEOUT = 300.0
REPLY_TIMEOUT = 60.0
GOAL = 0.80
BOTS = {
    "echo": "bare PTB echo bot (baseline)",
    "ours": "ours: build_application as shipped",
    "echo-limited": "echo bot + the same pacing (AnswerPacing)",
    "ours-unlimited": "ours, rate limiter's overall cap lifted",
}


# --- the bot processes -------------------------------------------------------------

async def _echo(update: Any, context: Any) -> None:
    message = update.effective_message
    await message.reply_text(message.text, do_quote=True)


def serve(mode: str, base_url: str, token: str, knowledge_dir: Path, database: Path) -> None:
    """Run one bot until SIGINT, exactly as `Application.run_polling` runs it."""
    import logging

    from telegram import Update
    from telegram.ext import ApplicationBuilder, MessageHandler, filters

    logging.basicConfig(level=logging.WARNING)
    if mode.startswith("ours"):
        from bot import notify
        from bot.config import Settings
        from bot.telegram import app

        class Unlimited(notify.AnswerPacing):
            """The answers' pacing with Telegram's overall cap lifted: each answer still takes its turn."""

            def __init__(self) -> None:
                super().__init__(notify.Pacing(per_second=10**6))

        settings = Settings(token=token, base_url=base_url, knowledge_dir=knowledge_dir, database_path=database,
                            user_rate_limit=0, log_level="WARNING")
        pacing = Unlimited if mode == "ours-unlimited" else notify.AnswerPacing
        with mock.patch.object(notify, "AnswerPacing", pacing):
            application = app.build_application(settings)
        allowed = app.ALLOWED_UPDATES
    else:
        builder = ApplicationBuilder().token(token).base_url(base_url).concurrent_updates(True)
        if mode == "echo-limited":   # the pacing ours answers through, in a store of its own
            from bot import notify
            from bot.store import Store

            pacing = notify.AnswerPacing()
            pacing.store = Store(database)
            builder = builder.rate_limiter(pacing)
        application = builder.build()
        application.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, _echo))
        allowed = [Update.MESSAGE]
    application.run_polling(allowed_updates=allowed, poll_interval=0, timeout=1)


# --- the server and the users ------------------------------------------------------

class _Server(FakeTelegram):
    """The fake server, telling the waiting user the moment the bot's reply to their chat arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting: dict[int, asyncio.Future[tuple[float, str]]] = {}

    async def _api_sendMessage(self, params: dict[str, Any]) -> Any:
        result = await super()._api_sendMessage(params)
        future = self.waiting.pop(params["chat_id"], None)
        if future is not None and not future.done():
            future.set_result((time.perf_counter(), params["text"]))
        return result


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux /proc), to tell who the bottleneck was."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Level:
    bot: str
    users: int
    replies: int
    seconds: float
    latencies: tuple[float, ...]
    failures: int  # replies that were an error message rather than an answer
    bot_cpu: float | None
    server_cpu: float

    @classmethod
    def combine(cls, parts: list[Level]) -> Level:
        """Several rounds of the same bot and concurrency as one measurement."""
        cpus = [p.bot_cpu for p in parts]
        return cls(parts[0].bot, parts[0].users, sum(p.replies for p in parts), sum(p.seconds for p in parts),
                   tuple(t for p in parts for t in p.latencies), sum(p.failures for p in parts),
                   None if None in cpus else sum(c for c in cpus if c is not None), sum(p.server_cpu for p in parts))

    @property
    def rate(self) -> float:
        return self.replies / self.seconds if self.seconds else 0.0

    def cpu_ms_per_reply(self, cpu: float | None) -> str:
        return f"{1000 * cpu / self.replies:.2f}" if cpu is not None and self.replies else "-"


@dataclass(frozen=True, slots=True)
class _Bot:
    name: str
    server: _Server
    process: asyncio.subprocess.Process
    log: Path


@contextlib.asynccontextmanager
async def _running(name: str, knowledge_dir: Path, scratch: Path) -> AsyncIterator[_Bot]:
    """One bot process long-polling its own fake server, stopped with SIGINT as Ctrl-C would."""
    async with _Server() as server:
        log = scratch / f"{name}.log"
        with log.open("w") as output:
            command = [sys.executable, "-m", "benchmarks.throughput", "--serve", name, "--base-url", server.base_url,
                       "--token", server.token, "--knowledge", str(knowledge_dir),
                       "--database", str(scratch / f"{name}.sqlite3")]
            process = await asyncio.create_subprocess_exec(*command, cwd=REPO, stdout=output, stderr=output)
            try:
                yield _Bot(name, server, process, log)
            finally:
                if process.returncode is None:
                    process.send_signal(signal.SIGINT)
                    try:
                        await asyncio.wait_for(process.wait(), 30)
                    except TimeoutError:
                        process.kill()
                        await process.wait()


async def _ready(bot: _Bot) -> None:
    """Polling has begun, so start-up (loading the knowledge base, for ours) is over."""
    deadline = time.monotonic() + READY_TIMEOUT
    while not any(call.method == "getUpdates" for call in bot.server.calls):
        if bot.process.returncode is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the {bot.name} bot did not start: {bot.log.read_text()[-1500:]}")
        await asyncio.sleep(0.05)


async def _ask(tg: _Server, chat: int, question: str) -> tuple[float, str]:
    future: asyncio.Future[tuple[float, str]] = asyncio.get_running_loop().create_future()
    tg.waiting[chat] = future
    sent = time.perf_counter()
    tg.push_message(question, chat_id=chat, user_id=chat)
    arrived, text = await asyncio.wait_for(future, REPLY_TIMEOUT)
    return arrived - sent, text


async def _level(bot: _Bot, users: int, seconds: float, questions: list[str]) -> Level:
    """`users` simulated users asking `bot` for `seconds`, each waiting for the reply before asking again."""
    from bot.i18n import translator

    sorry = translator("en")("refusal.sorry")
    latencies: list[float] = []
    failures = 0
    end = time.perf_counter() + seconds

    async def user(number: int) -> None:
        nonlocal failures
        asked = number
        while time.perf_counter() < end:
            latency, text = await _ask(bot.server, 1000 + number, questions[asked % len(questions)])
            latencies.append(latency)
            failures += text.startswith(sorry)
            asked += users

    bot_cpu, server_cpu = _cpu_seconds(bot.process.pid), time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(user(n) for n in range(users)))
    elapsed = time.perf_counter() - started
    bot_used = _cpu_seconds(bot.process.pid)
    return Level(bot.name, users, len(latencies), elapsed, tuple(latencies), failures,
                 None if bot_cpu is None or bot_used is None else bot_used - bot_cpu,
                 time.process_time() - server_cpu)


def figures(levels: list[Level]) -> list[Figure]:
    by = {(level.bot, level.users): level for level in levels}
    out = []
    for users in sorted({level.users for level in levels}):
        echo, ours = by[("echo", users)], by[("ours", users)]
        unlimited, echo_limited = by[("ours-unlimited", users)], by[("echo-limited", users)]
        who = f"{users} user{'s' if users > 1 else ''}"
        out += [
            Figure(f"questions/s, {who}: ours as shipped", f"{ours.rate:.0f}/s", f"bare echo bot {echo.rate:.0f}/s",
                   share(ours.rate, echo.rate), f">= {GOAL:.0%} of echo", ours.rate >= GOAL * echo.rate),
            Figure(f"questions/s, {who}: ours, limiter's cap lifted", f"{unlimited.rate:.0f}/s",
                   f"bare echo bot {echo.rate:.0f}/s", share(unlimited.rate, echo.rate), f">= {GOAL:.0%} of echo",
                   unlimited.rate >= GOAL * echo.rate),
            Figure(f"questions/s, {who}: ours as shipped vs echo behind the same limiter", f"{ours.rate:.0f}/s",
                   f"limited echo bot {echo_limited.rate:.0f}/s", share(ours.rate, echo_limited.rate),
                   f">= {GOAL:.0%} of echo", ours.rate >= GOAL * echo_limited.rate),
            Figure(f"p99 latency, {who}: ours as shipped (limiter's cap lifted)",
                   f"{ms(percentile(ours.latencies, 99))} ({ms(percentile(unlimited.latencies, 99))})",
                   f"bare echo bot {ms(percentile(echo.latencies, 99))}",
                   f"{percentile(unlimited.latencies, 99) / percentile(echo.latencies, 99):.2f}x with the cap lifted"),
        ]
    return out


def detail(levels: list[Level]) -> str:
    rows = [
        (BOTS[level.bot], level.users, level.replies, f"{level.rate:.1f}", ms(median(level.latencies)),
         ms(percentile(level.latencies, 99)), level.failures, level.cpu_ms_per_reply(level.bot_cpu),
         level.cpu_ms_per_reply(level.server_cpu))
        for level in levels
    ]
    return table(("bot", "users", "replies", "replies/s", "p50", "p99", "error replies", "bot CPU ms/reply",
                  "server+users CPU ms/reply"), rows)


async def measure(shared: Path, quick: bool) -> tuple[list[Level], str]:
    """All bots run at once; each concurrency level is measured in rounds that alternate between them.

    The machine is shared, so its load drifts: alternating short rounds exposes every bot
    to the same drift, where measuring one bot after another would not.
    """
    size = QUICK_SIZE if quick else SIZE
    seconds, rounds = (QUICK_SECONDS, 1) if quick else (ROUND_SECONDS, ROUNDS)
    load = workloads.workload(size, shared)
    questions = [q.question for q in load.questions[:500]]
    samples: dict[tuple[str, int], list[Level]] = {}
    with tempfile.TemporaryDirectory(prefix="throughput-bench-") as scratch:
        knowledge_dir = workloads.write_knowledge(load.kb, Path(scratch) / "knowledge")
        async with contextlib.AsyncExitStack() as stack:
            bots = [await stack.enter_async_context(_running(name, knowledge_dir, Path(scratch))) for name in BOTS]
            await asyncio.gather(*(_ready(bot) for bot in bots))
            for bot in bots:
                await _level(bot, 1, seconds, questions)  # warm-up, not reported
            for users in LEVELS:
                print(f"  throughput: {users} concurrent users ...", flush=True)
                for number in range(rounds):
                    for bot in bots if number % 2 == 0 else bots[::-1]:
                        samples.setdefault((bot.name, users), []).append(await _level(bot, users, seconds, questions))
    levels = [Level.combine(parts) for parts in samples.values()]
    return levels, (f"{size_label(size)} articles ({load.origin}); per bot and concurrency, {rounds} rounds of "
                    f"{seconds:g} s alternating between the bots")


def run(shared: Path, quick: bool = False) -> Section:
    section = Section("throughput", "2. Bot throughput through python-telegram-bot (fake Bot API on loopback)")
    levels, workload = asyncio.run(measure(shared, quick))
    section.figures = figures(levels)
    section.details.append(detail(levels))
    section.notes.append(f"Workload: {workload}. Each user waits for the reply before asking again; "
                         "latency runs from pushing the update to the server receiving the sendMessage.")
    section.notes.append("Our bot runs with the per-user question limit off (USER_RATE_LIMIT=0): simulated users "
                         "ask far faster than people do. CPU columns: the bot's process, and this process (the "
                         "fake server and the users), per reply; a bot near 1 core is the bottleneck.")
    return workloads.note_absent(section, shared)


def main(argv: list[str] | None = None) -> Section | None:
    parser = workloads.section_arguments(__doc__, "a tiny knowledge base, one short round per level")
    parser.add_argument("--serve", choices=tuple(BOTS), help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--token", help=argparse.SUPPRESS)
    parser.add_argument("--knowledge", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--database", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.base_url, args.token, args.knowledge, args.database)
        return None
    return workloads.run_alone(run, args.shared, args.quick)


if __name__ == "__main__":
    main()
