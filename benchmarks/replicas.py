"""Replicas benchmark (issue 12): one broadcast shared by 2 and by 3 replica processes on one PostgreSQL database,
and one of two replicas SIGKILLed (and started again) every 10 s during a broadcast, timed against the same
broadcast without kills.

The fake Bot API server enforces Telegram's limits unscaled (30 messages/s overall, 1/s per chat, 429 beyond), so
the replicas together must keep to them. Each replica is a process running the broadcaster every
`python -m bot run` replica runs (`bot.notify.broadcast` with the Bot of `bot.notify.sender`, as
`bot.telegram.app` builds it) until nothing is queued; the parent queues the broadcast, watches what the server
receives and does the killing. A throwaway PostgreSQL server (durable settings) holds the store.

    python -m benchmarks.replicas [--quick]     # or as a section: python -m benchmarks --only replicas
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psycopg

from benchmarks.report import Figure, Section, table
from bot import notify
from bot.knowledge import Article, KnowledgeBase
from bot.store import open_store
from bot.testing.fake_telegram import FakeTelegram
from bot.testing.postgres import cluster, new_database

TELEGRAM_RATE = 30.0
SUBSCRIBERS = 10_000
QUICK_SUBSCRIBERS = 600
KILL_EVERY = 10.0
RATE_GOAL = 0.95
TIME_GOAL = 1.2   # the killed run within 20% of the undisturbed one, plus the lease timeouts it waited out

ARTICLE = Article(
    id="bench-replicas", title="Benchmark article", published=None, source="Bench",
    url="https://bench.example.org/replicas", language="en", summary="A synthetic article for the replicas benchmark.",
    body="Nothing to read here.",
)


@dataclass(frozen=True, slots=True)
class Run:
    name: str
    replicas: int
    subscribers: int
    delivered: int
    lost: int
    duplicates: int
    rate_limited: int
    seconds: float       # from starting the replicas until the last one is done
    sending: float       # from the first message the server took to the last: what the rate is measured over
    kills: int = 0
    in_flight: int = 0   # sends under way at the kills, summed: the most that may arrive twice

    @property
    def rate(self) -> float:
        return (self.delivered - 1) / self.sending if self.sending else 0.0


# --- a replica: the broadcaster of `python -m bot run`, in a process of its own --------------------------------

async def _replica(database_url: str, base_url: str, token: str) -> None:
    store = open_store(database_url, Path("unused.sqlite3"))
    kb = KnowledgeBase({ARTICLE.id: ARTICLE})
    bot = notify.sender(token, base_url)
    try:
        async with bot:
            while True:
                report = await notify.broadcast(bot, store, kb)
                print(json.dumps({"delivered": report.delivered}), flush=True)
                if not await asyncio.to_thread(store.pending):
                    break
    finally:
        store.close()


# --- the parent ------------------------------------------------------------------------------------------------

async def _spawn(database_url: str, tg: FakeTelegram) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.replicas", "--replica", database_url, tg.base_url, tg.token,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)


def _in_flight(database_url: str, tg: FakeTelegram, pid: int) -> int:
    """After the kill of replica `pid`: messages Telegram accepted whose delivery that replica had not recorded
    (its chats still pending and leased to it). Only these may be sent again by the replica that takes over."""
    with psycopg.connect(database_url) as db:
        rows = db.execute(
            "SELECT DISTINCT d.chat_id FROM deliveries d JOIN delivery_leases l ON l.chat_id = d.chat_id "
            "WHERE d.delivered IS NULL AND l.owner LIKE %s", (f"%:{pid}:%",)).fetchall()
    received = {params["chat_id"] for params in tg.sent()}
    return sum(chat in received for (chat,) in rows)


async def _broadcast(server_url: str, name: str, replicas: int, subscribers: int, kill_every: float | None) -> Run:
    database_url = new_database(server_url)
    store = open_store(database_url, Path("unused.sqlite3"))
    try:
        store.unannounced([])   # a new database: settle what is "already announced" (nothing)
        chats = range(1, subscribers + 1)
        for chat in chats:
            store.subscribe(chat)
        store.announce([ARTICLE.id], [(chat, ARTICLE.id) for chat in chats])
    finally:
        store.close()
    async with FakeTelegram() as tg:
        tg.set_rate_limit(TELEGRAM_RATE, per_chat_per_second=1.0)
        started = time.monotonic()
        processes = [await _spawn(database_url, tg) for _ in range(replicas)]
        kills = in_flight = 0
        next_kill = started + (kill_every or 0)
        while any(p.returncode is None for p in processes):
            await asyncio.sleep(0.1)
            if kill_every and time.monotonic() >= next_kill and len(tg.sent()) < subscribers:
                victim = next(p for p in processes if p.returncode is None)
                victim.send_signal(signal.SIGKILL)
                await victim.wait()
                in_flight += _in_flight(database_url, tg, victim.pid)
                kills += 1
                processes.append(await _spawn(database_url, tg))
                next_kill += kill_every
        seconds = time.monotonic() - started
        per_chat = Counter(p["chat_id"] for p in tg.sent())
        taken = [call.at for call in tg.calls if call.method == "sendMessage" and call.status == 200]
        return Run(name, replicas, subscribers, sum(per_chat.values()), subscribers - len(per_chat),
                   sum(n - 1 for n in per_chat.values()), tg.rate_limited, seconds, taken[-1] - taken[0], kills,
                   in_flight)


async def _runs(subscribers: int) -> list[Run]:
    with cluster(durable=True) as server:
        runs = [await _broadcast(server, f"{n} replicas", n, subscribers, None) for n in (2, 3)]
        runs.append(await _broadcast(server, f"2 replicas, one killed every {KILL_EVERY:.0f} s", 2, subscribers,
                                     KILL_EVERY))
    return runs


def run(shared: Path, quick: bool) -> Section:
    subscribers = QUICK_SUBSCRIBERS if quick else SUBSCRIBERS
    runs = asyncio.run(_runs(subscribers))
    section = Section("replicas", "9. Replicas")
    for shared_run in runs[:2]:
        clean = shared_run.rate_limited == 0 and shared_run.lost == 0 and shared_run.duplicates == 0
        section.figures.append(Figure(
            f"broadcast rate, {shared_run.name}, {subscribers:,} subscribers", f"{shared_run.rate:.1f} msg/s",
            f"Telegram's limit {TELEGRAM_RATE:.0f} msg/s", f"{shared_run.rate / TELEGRAM_RATE:.0%} of it",
            f">= {RATE_GOAL:.0%} of {TELEGRAM_RATE:.0f}/s, zero 429, lost, duplicated",
            shared_run.rate >= RATE_GOAL * TELEGRAM_RATE and clean))
    undisturbed, killed = runs[0], runs[2]
    allowed = undisturbed.seconds * TIME_GOAL + killed.kills * notify.LEASE
    section.figures.append(Figure(
        f"broadcast time, {killed.name} ({killed.kills} kills)", f"{killed.seconds:.0f} s",
        f"no kills {undisturbed.seconds:.0f} s", f"{killed.seconds / undisturbed.seconds:.2f}x",
        f"<= 1.2x + {killed.kills} x {notify.LEASE:.0f} s lease = {allowed:.0f} s; zero lost; duplicates <= in flight",
        killed.seconds <= allowed and killed.lost == 0 and killed.duplicates <= killed.in_flight))
    section.details.append(table(
        ("run", "replicas", "subscribers", "delivered", "lost", "duplicates", "429s", "seconds in all",
         "seconds sending", "msg/s sending", "kills", "in flight at the kills"),
        [(r.name, r.replicas, r.subscribers, r.delivered, r.lost, r.duplicates, r.rate_limited, f"{r.seconds:.1f}",
          f"{r.sending:.1f}", f"{r.rate:.1f}", r.kills, r.in_flight) for r in runs]))
    section.notes.append("The rate is measured from the first message the server took to the last (the replicas' "
                         "start-up, a few seconds each, is left out); the killed run's time is the whole run, "
                         "restarts included, against the whole undisturbed run.")
    section.notes.append(f"Lease per claimed chat {notify.LEASE:.0f} s: a killed replica's chats wait that long "
                         "before another replica takes them.")
    return section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--replica", nargs=3, metavar=("DATABASE_URL", "BASE_URL", "TOKEN"),
                        help="(internal) run one replica's broadcaster")
    args = parser.parse_args()
    if args.replica:
        asyncio.run(_replica(*args.replica))
        return
    from benchmarks.report import render

    print(render(run(Path("../shared"), args.quick)))


if __name__ == "__main__":
    main()
