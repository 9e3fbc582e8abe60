"""Several replicas on one PostgreSQL database behind one webhook URL.

In process: the settings, the shared rate limit, chat languages and reloads seen across two `Service`s on one real
PostgreSQL database, the jobs lease, and the fake Bot API server delivering updates by webhook. End to end: two
`python -m bot run` replicas in webhook mode behind a round-robin proxy on loopback, fed by the fake server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot import notify
from bot.config import ConfigError, load_settings
from bot.knowledge import Article
from bot.service import Service
from bot.store import Store, open_store
from bot.telegram import replicas
from bot.testing.fake_telegram import FakeTelegram
from tests.conftest import LIBRARY, SEED_QUESTION, SEED_SENTENCE
from tests.driver import ADMIN, EN, REAL_LOOKING_TOKEN, SLOW_DOWN, reply, run_env

TOKEN = "123456789:AAHfakefakefakefakefakefake_-12"
LIBRARY_QUESTION = "how much will the library renovation cost?"
LIBRARY_SENTENCE = "Works will cost 40 million tenge"


# --- settings ---------------------------------------------------------------------------------------

def test_database_url_selects_postgresql_and_is_never_shown() -> None:
    url = "postgresql://bot:pa55word@db:5432/bot"
    settings = load_settings({"TELEGRAM_BOT_TOKEN": TOKEN, "DATABASE_URL": url}, env_file=None)
    assert settings.database_url == url
    assert "pa55word" not in repr(settings)
    assert load_settings({"TELEGRAM_BOT_TOKEN": TOKEN}, env_file=None).database_url is None


def test_a_database_url_that_is_not_postgresql_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError, match="DATABASE_URL") as error:
        load_settings({"TELEGRAM_BOT_TOKEN": TOKEN, "DATABASE_URL": "mysql://root:hunter2@db/bot"}, env_file=None)
    assert "hunter2" not in str(error.value)


def test_webhook_replicas_must_share_a_secret() -> None:
    """A random secret per start would make each new replica register a secret the others refuse."""
    replica = {"TELEGRAM_BOT_TOKEN": TOKEN, "DATABASE_URL": "postgresql://db/bot",
               "WEBHOOK_URL": "https://bot.example.org/hook"}
    with pytest.raises(ConfigError, match="WEBHOOK_SECRET"):
        load_settings(replica, env_file=None)
    assert load_settings({**replica, "WEBHOOK_SECRET": "shared_1"}, env_file=None).webhook_secret == "shared_1"
    alone = load_settings({**replica, "DATABASE_URL": ""}, env_file=None)   # one SQLite process: random is fine
    assert alone.webhook_secret is not None and len(alone.webhook_secret) >= 32


# --- two replicas' services on one database --------------------------------------------------------------

@pytest.fixture
def shared_stores(postgres_url: str) -> Iterator[Callable[[], Store]]:
    """Stores on one fresh PostgreSQL database, one per replica, closed at the end."""
    opened: list[Store] = []

    def open_one() -> Store:
        opened.append(open_store(postgres_url, Path("unused.sqlite3")))
        return opened[-1]

    yield open_one
    for store in opened:
        store.close()


def test_one_user_cannot_multiply_the_question_limit_by_the_replicas(shared_stores: Callable[[], Store],
                                                                     knowledge_dir: Path) -> None:
    first, second = (Service(knowledge_dir, shared_stores(), user_rate_limit=4, shared=True) for _ in range(2))
    outcomes = [(first if turn % 2 else second).limiter.check(42) for turn in range(10)]
    assert [allowed for allowed, _ in outcomes].count(True) == 4
    assert [warn for _, warn in outcomes].count(True) == 2   # one polite "please wait" per replica, then quiet
    assert first.limiter.check(43) == (True, False)          # another user has a bucket of their own


def test_a_chat_language_chosen_on_one_replica_is_used_by_the_other(shared_stores: Callable[[], Store],
                                                                   knowledge_dir: Path) -> None:
    first, second = (Service(knowledge_dir, shared_stores(), shared=True) for _ in range(2))
    assert second.chat_language(-500) is None
    first.set_chat_language(-500, "kk")
    assert second.chat_language(-500) == "kk"
    assert second.known_language(-500) == (False, None)   # nothing remembered in a process: always the store


async def test_a_reload_on_one_replica_is_followed_by_the_other(
    shared_stores: Callable[[], Store], knowledge_dir: Path, add_article: Callable[..., Article],
) -> None:
    first, second = (Service(knowledge_dir, shared_stores(), shared=True) for _ in range(2))
    assert await second.follow() is None
    add_article("library-renovation", "Library renovation approved", LIBRARY)
    assert (await first.reload()).changes.added == ("library-renovation",)
    followed = await second.follow()
    assert followed is not None and followed.changes.added == ("library-renovation",)
    assert LIBRARY_SENTENCE in " ".join(second.ask(LIBRARY_QUESTION).sentences)
    assert await second.follow() is None and await first.follow() is None   # each change is followed once
    assert not (await first.reload()).changes   # a reload that changed nothing publishes nothing
    assert await second.follow() is None


async def test_the_jobs_lease_has_one_holder_and_passes_on_when_it_lapses(
    shared_stores: Callable[[], Store],
) -> None:
    store = shared_stores()
    first, second = (replicas.Leadership(store, replica, seconds=1.0) for replica in ("a", "b"))
    assert await first.renew() and not await second.renew()
    ran: list[str] = []

    async def job(context: Any) -> None:
        ran.append(context.name)

    gated = replicas.leader_only(job)
    for name, leadership in (("a", first), ("b", second)):
        await gated(SimpleNamespace(bot_data={replicas.LEADERSHIP: leadership}, name=name))
    assert ran == ["a"]
    await asyncio.sleep(1.1)   # "a" died: it renews no more
    assert not first.leading
    assert await second.renew() and not await first.renew()
    await second.resign()       # a clean stop hands over at once
    assert await first.renew()
    alone = replicas.Leadership(store, "c", alone=True)   # SQLite: one process, leading without a lease
    assert alone.leading and await alone.renew() and first.leading


# --- the fake Bot API server delivers by webhook -------------------------------------------------------

async def test_the_fake_server_posts_updates_to_the_webhook_until_answered(tg: FakeTelegram) -> None:
    received: list[tuple[str | None, dict[str, Any]]] = []
    answers = iter([500])   # the first delivery is refused: Telegram tries again

    async def hook(request: web.Request) -> web.Response:
        received.append((request.headers.get("X-Telegram-Bot-Api-Secret-Token"), await request.json()))
        return web.Response(status=next(answers, 200))

    async with _server([web.post("/hook", hook)]) as url:
        early = tg.push_message("before the webhook")
        async with aiohttp.ClientSession() as session:
            async def call(method: str, **params: Any) -> dict[str, Any]:
                async with session.post(f"{tg.base_url}{tg.token}/{method}", json=params) as response:
                    return await response.json()  # type: ignore[no-any-return]

            assert (await call("setWebhook", url=f"{url}/hook", secret_token="s3cret"))["ok"]
            assert (await call("getUpdates"))["error_code"] == 409
            late = tg.push_message("after")
            await _until(lambda: len(received) == 3)
            assert sorted(u["update_id"] for _, u in received) == [early["update_id"]] * 2 + [late["update_id"]]
            assert {secret for secret, _ in received} == {"s3cret"}
            assert [status for update, status in tg.webhook_posts if update == early["update_id"]] == [500, 200]
            assert (await call("deleteWebhook"))["ok"]
            polled = tg.push_message("polled again")
            assert [u["update_id"] for u in (await call("getUpdates"))["result"]] == [polled["update_id"]]


# --- two `python -m bot run` replicas behind a round-robin proxy ---------------------------------------------

@dataclass
class Proxy:
    """Round robin over the replicas' webhook servers; a replica that does not answer is skipped (as Caddy's
    `lb_try_duration` does). Records which replica answered each update."""

    backends: list[str]
    turn: int = 0
    served: dict[int, int] = field(default_factory=dict)   # update_id -> index of the replica that took it
    url: str = ""

    def by(self, index: int) -> list[int]:
        return [update for update, backend in self.served.items() if backend == index]

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        secret = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
        for _ in range(len(self.backends)):
            index, self.turn = self.turn % len(self.backends), self.turn + 1
            try:
                async with aiohttp.ClientSession() as session, session.post(
                    self.backends[index] + request.path, data=body,
                    headers={"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": secret},
                ) as response:
                    answer = await response.read()
            except aiohttp.ClientConnectionError:
                continue
            if response.status == 200:
                self.served[json.loads(body)["update_id"]] = index
            return web.Response(status=response.status, body=answer)
        return web.Response(status=502)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def _server(routes: list[web.RouteDef]) -> AsyncIterator[str]:
    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def _until(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


@dataclass
class Replicas:
    tg: FakeTelegram
    proxy: Proxy
    processes: list[asyncio.subprocess.Process]
    logs: list[Path]

    async def ask(self, text: str, chat_id: int, contains: str = "") -> tuple[dict[str, Any], int]:
        """Push a message; the bot's reply and which replica took the update."""
        update = self.tg.push_message(text, chat_id=chat_id, user_id=chat_id)
        sent = await reply(self.tg, chat_id, contains=contains, timeout=30)
        return sent, self.proxy.served[update["update_id"]]

    def next_replica(self) -> int:
        return self.proxy.turn % len(self.proxy.backends)


@contextlib.asynccontextmanager
async def _replicas(tmp_path: Path, knowledge_dir: Path, database_url: str, count: int = 2,
                    **env: str) -> AsyncIterator[Replicas]:
    """`count` replicas of `python -m bot run` in webhook mode on one database and one knowledge dir, behind the
    proxy; SIGTERM at the end (each must stop cleanly)."""
    ports = [_free_port() for _ in range(count)]
    proxy = Proxy([f"http://127.0.0.1:{port}" for port in ports])
    async with FakeTelegram(token=REAL_LOOKING_TOKEN) as tg, _server([web.post("/{path:.*}", proxy.handle)]) as url:
        proxy.url = f"{url}/telegram/hook"
        processes, logs = [], []
        try:
            for number, port in enumerate(ports):
                home = tmp_path / f"replica{number}"
                home.mkdir()
                replica_env = {**run_env(tg, knowledge_dir, home, tg.token), "DATABASE_URL": database_url,
                               "WEBHOOK_URL": proxy.url, "WEBHOOK_SECRET": "shared_Secret-1",
                               "WEBHOOK_LISTEN": "127.0.0.1", "WEBHOOK_PORT": str(port), "LOG_LEVEL": "INFO",
                               "USER_RATE_LIMIT": "100", **env}
                logs.append(home / "bot.log")
                with logs[-1].open("wb") as output:
                    processes.append(await asyncio.create_subprocess_exec(
                        sys.executable, "-m", "bot", "run", cwd=home, env=replica_env, stdout=output, stderr=output))
            hooks = [await tg.wait_for("setWebhook", timeout=90) for _ in ports]
            assert {(h["url"], h["secret_token"]) for h in hooks} == {(proxy.url, "shared_Secret-1")}
            for port in ports:   # each listens right after its setWebhook
                await _until(lambda port=port: _listening(port), timeout=30)
            yield Replicas(tg, proxy, processes, logs)
        finally:
            for process in processes:
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
            for process, log in zip(processes, logs, strict=True):
                await asyncio.wait_for(process.wait(), 60)
                assert process.returncode in (0, -signal.SIGKILL), log.read_text()


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _buttons(message: dict[str, Any], prefix: str) -> list[str]:
    rows = (message.get("reply_markup") or {}).get("inline_keyboard", [])
    return [b["callback_data"] for row in rows for b in row if b.get("callback_data", "").startswith(prefix)]


def _message_id(tg: FakeTelegram, sent: dict[str, Any]) -> int:
    return next(int(c.result["message_id"]) for c in tg.calls if c.method == "sendMessage" and c.params is sent)


async def test_two_replicas_share_the_work_subscriptions_buttons_and_reloads(
    tmp_path: Path, knowledge_dir: Path, postgres_url: str, add_article: Callable[..., Article],
) -> None:
    async with _replicas(tmp_path, knowledge_dir, postgres_url) as group:
        tg = group.tg
        # Questions: each update is answered by the replica that received it, and both receive some.
        for chat in range(5001, 5007):
            answer, _ = await group.ask(SEED_QUESTION, chat)
            assert SEED_SENTENCE in answer["text"]
        assert group.proxy.by(0) and group.proxy.by(1)
        assert len(group.proxy.served) == 6

        # A button under a message one replica sent works on the other: the callback data carries everything.
        answer, answered_by = await group.ask(SEED_QUESTION, 5010)
        assert group.next_replica() != answered_by
        helpful = _buttons(answer, "f:1:")
        update = tg.push_callback(helpful[0], chat_id=5010, user_id=5010, message_id=_message_id(tg, answer))
        thanks = await tg.wait_for("answerCallbackQuery", lambda p: bool(p.get("text")), timeout=30)
        assert thanks["text"] == EN("feedback.thanks") and group.proxy.served[update["update_id"]] != answered_by

        # A subscription made through one replica is removed through the other.
        chat = 5020
        done, subscribed_by = await group.ask("/subscribe library", chat)
        assert "library" in done["text"]
        listing, _ = await group.ask("/subscriptions", chat)
        if group.next_replica() == subscribed_by:
            await group.ask(SEED_QUESTION, chat)
        remove = _buttons(listing, "u:")
        assert len(remove) == 1
        update = tg.push_callback(remove[0], chat_id=chat, user_id=chat, message_id=_message_id(tg, listing))
        await tg.wait_for("editMessageText", lambda p: p["chat_id"] == chat, timeout=30)
        assert group.proxy.served[update["update_id"]] != subscribed_by
        store = open_store(postgres_url, tmp_path / "unused.sqlite3")
        try:
            assert store.subscriptions(chat) == []
        finally:
            store.close()

        # /reload on one replica: within seconds the other answers from the new article too.
        add_article("library-renovation", "Library renovation approved", LIBRARY)
        report, reloaded_by = await group.ask("/reload", ADMIN)
        assert "Library renovation approved" in report["text"]
        started, other = time.monotonic(), 1 - reloaded_by
        while True:
            if group.next_replica() != other:
                await group.ask(SEED_QUESTION, 5030)
            answer, by = await group.ask(LIBRARY_QUESTION, 5031)
            assert by == other
            if LIBRARY_SENTENCE in answer["text"]:
                break
            assert time.monotonic() - started < 15, "the other replica never followed the reload"
            await asyncio.sleep(0.5)


async def test_the_question_limit_holds_across_replicas(
    tmp_path: Path, knowledge_dir: Path, postgres_url: str,
) -> None:
    async with _replicas(tmp_path, knowledge_dir, postgres_url, USER_RATE_LIMIT="3") as group:
        tg = group.tg
        pushed = [tg.push_message(SEED_QUESTION, chat_id=5100, user_id=5100) for _ in range(8)]
        await _until(lambda: len(group.proxy.served) == len(pushed))
        await asyncio.sleep(1.0)   # every update is handled, and nothing more is coming
        texts = [m["text"] for m in tg.sent(5100)]
        assert sum(SEED_SENTENCE in text for text in texts) == 3
        assert 1 <= texts.count(SLOW_DOWN) <= 2   # one polite reply per replica at most
        assert group.proxy.by(0) and group.proxy.by(1)


# --- a broadcast is shared work ---------------------------------------------------------------------------

SUBSCRIBERS = range(7001, 7501)
DELIVERED = re.compile(r"bot\.notify: broadcast: BroadcastReport\(delivered=(\d+)")


def _subscribe_all(database_url: str, tmp_path: Path) -> None:
    store = open_store(database_url, tmp_path / "unused.sqlite3")
    try:
        for chat in SUBSCRIBERS:
            store.subscribe(chat)
    finally:
        store.close()


def _copies(tg: FakeTelegram) -> dict[int, int]:
    """Chat -> how many notifications about the new article it got."""
    copies = dict.fromkeys(SUBSCRIBERS, 0)
    for message in tg.sent():
        if message["chat_id"] in copies and "Library renovation approved" in message["text"]:
            copies[message["chat_id"]] += 1
    return copies


async def _reload_with_a_new_article(group: Replicas, add_article: Callable[..., Article]) -> int:
    """/reload with a new article on one replica; which replica took it."""
    add_article("library-renovation", "Library renovation approved", LIBRARY)
    report, by = await group.ask("/reload", ADMIN)
    assert "Library renovation approved" in report["text"]
    return by


async def test_a_broadcast_to_500_subscribers_is_split_between_replicas_without_duplicates(
    tmp_path: Path, knowledge_dir: Path, postgres_url: str, add_article: Callable[..., Article],
) -> None:
    _subscribe_all(postgres_url, tmp_path)
    async with _replicas(tmp_path, knowledge_dir, postgres_url) as group:
        group.tg.set_rate_limit(30, per_chat_per_second=1)   # Telegram's limits, for both replicas together
        await _reload_with_a_new_article(group, add_article)
        await _until(lambda: all(_copies(group.tg).values()), timeout=120)
        await asyncio.sleep(2)   # anything still in flight lands
        assert set(_copies(group.tg).values()) == {1}
        assert group.tg.rate_limited == 0
    delivered = [sum(int(n) for n in DELIVERED.findall(log.read_text())) for log in group.logs]
    assert sum(delivered) == len(SUBSCRIBERS) and all(delivered), delivered


async def test_a_replica_killed_mid_broadcast_loses_nothing(
    tmp_path: Path, knowledge_dir: Path, postgres_url: str, add_article: Callable[..., Article],
) -> None:
    _subscribe_all(postgres_url, tmp_path)
    async with _replicas(tmp_path, knowledge_dir, postgres_url) as group:
        group.tg.set_rate_limit(30, per_chat_per_second=1)
        reloaded_by = await _reload_with_a_new_article(group, add_article)
        await _until(lambda: sum(_copies(group.tg).values()) >= 100, timeout=60)
        group.processes[reloaded_by].kill()   # SIGKILL: no clean stop, its claimed chats stay leased
        await group.processes[reloaded_by].wait()
        await _until(lambda: all(_copies(group.tg).values()), timeout=180)
        await asyncio.sleep(2)
        copies = _copies(group.tg)
        assert min(copies.values()) == 1
        # A second copy only for a send that was in flight when the replica died.
        assert sum(n - 1 for n in copies.values()) <= notify.CONCURRENCY
