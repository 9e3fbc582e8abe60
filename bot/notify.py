"""Telling subscribers about new articles: who gets what (pure), and the broadcast (how it reads, in each
chat's language: `bot.render.render_notification`).

The broadcast is driven by the store's delivery log. Every (chat, article) pair is queued, and the articles
recorded as announced, before anything is sent. Broadcasters (one per process; several replicas on one
database) claim chats from the log with a lease, send each chat ONE message per forum topic (a card, or a
digest page of the newest articles with "and N more"), and mark it delivered right after Telegram confirms it.
Pacing is shared through the store's token buckets, so all replicas together keep Telegram's limits; within a
process, a message counts from its send until a second after Telegram answered it (`_Arrivals`), so that
uneven network delays cannot bunch its turns into one second either.

The guarantee is at-least-once, never at-most-once: a chat gets each article, and a second copy only when a send
reached Telegram but its confirmation or its record did not reach us: a send in flight when the process died,
a send that timed out (left pending, not resent until its lease has passed), a send whose record the database
refused through every retry. Duplicates are bounded by those sends; nothing confirmed-undelivered is dropped.
A dead replica's chats go to the others when its leases expire.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import secrets
import socket
import time
import warnings
import weakref
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

import telegram
from telegram import LinkPreviewOptions
from telegram.constants import FloodLimit, ParseMode
from telegram.error import BadRequest, ChatMigrated, Forbidden, NetworkError, RetryAfter, TelegramError, TimedOut
from telegram.ext import AIORateLimiter
from telegram.request import HTTPXRequest
from telegram.warnings import PTBDeprecationWarning

from bot import i18n
from bot.knowledge import Article, KnowledgeBase
from bot.render import render_notification
from bot.store import Store, StoreError, Subscription
from bot.text import stem_words, terms, words

log = logging.getLogger(__name__)
T = TypeVar("T")

CONCURRENCY = 16  # enough in flight to keep 30 msg/s going at Telegram's ~0.3 s round trip
ATTEMPTS = 4  # tries for refused connections and 5xx before leaving a message pending
MAX_FLOOD_WAITS = 8  # 429s in a row for one message before it is left pending
BACKOFF = 1.0  # seconds before the first retry; doubles each time


# --- who gets what ---------------------------------------------------------

@lru_cache(maxsize=4096)
def _filter_terms(words_: str, language: str) -> frozenset[str]:
    found = terms(words_, language)
    return frozenset(found or stem_words(words(words_), language))  # only stopwords: match them as words


def _article_terms(article: Article) -> frozenset[str]:
    text = " ".join((article.title, article.summary, article.body, *article.topics))
    return frozenset(stem_words(words(text), article.language))


def matches(words: str | None, article: Article) -> bool:
    """Every word of the subscription occurs in the article (stemmed in the article's language)."""
    if not words:
        return True
    return _filter_terms(words, article.language) <= _article_terms(article)


def plan(articles: Sequence[Article], subscriptions: Sequence[Subscription]) -> list[tuple[int, str]]:
    """(chat id, article id) for every chat that has a subscription matching an article, each pair once."""
    out: list[tuple[int, str]] = []
    seen: set[tuple[int, str]] = set()
    for article in articles:
        article_terms = _article_terms(article)
        for sub in subscriptions:
            pair = (sub.chat_id, article.id)
            if pair in seen:
                continue
            if not sub.words or _filter_terms(sub.words, article.language) <= article_terms:
                seen.add(pair)
                out.append(pair)
    return out


# --- the broadcast ---------------------------------------------------------

@dataclass
class BroadcastReport:
    delivered: int = 0  # messages sent and confirmed by Telegram
    chats: int = 0  # chats that received at least one message
    removed_chats: int = 0  # chats that blocked the bot or are gone for good, forgotten
    retried: int = 0  # sends tried again (429, network errors, 5xx)
    failed: int = 0  # chats left pending for a later broadcast (refused for now, unconfirmed)
    unconfirmed: int = 0  # sends that timed out: maybe delivered, left pending, not resent in this broadcast
    unrecorded: int = 0  # sends confirmed whose record the store refused even after retries (may repeat)


@dataclass(frozen=True, slots=True)
class Pacing:
    """Telegram's per-bot limits, kept by every broadcaster on one database through the store's shared buckets.

    A send takes a place in line in the overall bucket (capacity c, rate r) and goes at its turn. Turns are
    1 / r apart however late each sender wakes up, so the rate reached is r; a sliding second then holds at
    most floor(c + r * (1 + j)) sends when their delays to Telegram differ by up to j seconds, and c + r = the
    limit keeps that at the limit for any j under 1 / r. A send that wakes up more than `late` after its turn
    takes a new one, so that a stall (a garbage collection, a slow database) cannot release a bunch at once.
    Answers to users take their places in the same line (`AnswerPacing`), so that answers and broadcasts, of
    every replica, keep to the limit together. Delays that differ by more than 1 / r (a congested network, a
    busy machine) are `_Arrivals`' to absorb.
    """

    per_second: float = FloodLimit.MESSAGES_PER_SECOND  # 30, overall
    per_chat_second: float = FloodLimit.MESSAGES_PER_SECOND_PER_CHAT  # 1
    per_group_minute: float = FloodLimit.MESSAGES_PER_MINUTE_PER_GROUP  # 20
    burst: float = 1.0  # c of the overall bucket

    @property
    def rate(self) -> float:
        return self.per_second - self.burst

    @property
    def late(self) -> float:
        """Seconds after its turn that a send may still go: half the 1 / r of spread the limit tolerates."""
        return 0.5 / self.rate

    def chat_rate(self, chat_id: int) -> float:
        """One token at a time (capacity 1): a rate a little under the limit leaves room for a late request."""
        if chat_id < 0:
            return (self.per_group_minute - 1) / 60
        return self.per_chat_second * 0.9


GLOBAL_BUCKET = "send:global"
LEASE = 30.0  # seconds a claimed chat is ours: also the pause before a send left pending is tried again
SWEEP = 60.0  # seconds between the running bot's looks for deliveries left pending or by a dead replica
POLL = 0.25  # seconds between looks at what other replicas still hold, once this one has nothing to claim
LEASE_USE = 0.5  # a claimed chat not started within this share of its lease is left for the next claim
STORE_ATTEMPTS = 5  # tries of a store call that failed (locked, connection lost) before giving up
STORE_BACKOFF = 0.1  # seconds before the first store retry; doubles each time
LINE_PAUSE = 30.0  # seconds answers skip the shared line after the store refused a turn

# Telegram's descriptions of a chat that is gone for good (lower case): blocked, kicked, deleted, deactivated,
# never started. Anything else (not enough rights, a temporary restriction, a closed topic) keeps the
# subscription and leaves the message pending.
CHAT_GONE = (
    "bot was blocked by the user", "bot was kicked", "user is deactivated", "chat not found", "user not found",
    "peer_id_invalid", "group chat was deleted", "chat was deleted", "bot is not a member",
    "bot can't initiate conversation", "bot can't send messages to bots",
)
TOPIC_GONE = "message thread not found"

# Who claims deliveries: one id per process, so leases say which replica holds a chat.
WORKER = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def chat_gone(error: TelegramError) -> bool:
    """Telegram says the chat will never take a message from the bot again (ChatMigrated is not that)."""
    return isinstance(error, Forbidden | BadRequest) and any(gone in error.message.lower() for gone in CHAT_GONE)


class _FloodGate:
    """Telegram's 429 `retry_after` holds back the whole bot, not one chat: every sender waits here."""

    def __init__(self) -> None:
        self.resume_at = 0.0

    def pause(self, seconds: float) -> None:
        self.resume_at = max(self.resume_at, time.monotonic() + seconds)

    @property
    def closed(self) -> bool:
        return self.resume_at > time.monotonic()

    async def wait(self) -> None:
        while (delay := self.resume_at - time.monotonic()) > 0:
            await asyncio.sleep(delay)


def _retry_after_seconds(error: RetryAfter) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = error.retry_after
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


async def _stored(call: Callable[..., T], *args: object, **kwargs: object) -> T:
    """A store call off the event loop, tried again with backoff when the database fails for a moment."""
    for attempt in range(STORE_ATTEMPTS - 1):
        try:
            return await asyncio.to_thread(call, *args, **kwargs)
        except StoreError as exc:
            log.warning("store call %s failed, retrying: %s", getattr(call, "__name__", call), exc)
            await asyncio.sleep(STORE_BACKOFF * 2**attempt)
    return await asyncio.to_thread(call, *args, **kwargs)


class _Pacer:
    """Takes a place in line in the shared buckets for each send and waits for its turn."""

    def __init__(self, store: Store, pacing: Pacing) -> None:
        self.store = store
        self.pacing = pacing

    async def _take(self, bucket: str, capacity: float, rate: float) -> float:
        """Wait for this send's turn; returns how late it woke up (seconds)."""
        wait = await _stored(self.store.take_token, bucket, capacity, rate, queue=True)
        turn = time.monotonic() + wait   # never before the turn, however long the store took to answer
        await asyncio.sleep(wait)
        return time.monotonic() - turn

    async def chat(self, chat_id: int) -> None:
        await self._take(f"send:chat:{chat_id}", 1, self.pacing.chat_rate(chat_id))

    async def overall(self) -> bool:
        """False when this turn came too late to use: sends held up together (a stalled event loop, a slow
        database) must not go out together, so each takes a new place in line instead."""
        return await self._take(GLOBAL_BUCKET, self.pacing.burst, self.pacing.rate) <= self.pacing.late


class _Arrivals:
    """This process's messages that Telegram may count in the current second. A message reaches Telegram
    somewhere between its send and Telegram's answer, so it counts from the send until one second after the
    answer; a send waits while `limit` are counted. Then no sliding second at Telegram holds more than `limit` of
    them, however unevenly they travel, at the price of the round trip: limit / (1 s + round trip) a second at
    most, which the shared line's turns reach only on a slow network."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._in_flight = 0
        self._answered: deque[float] = deque()   # when each answer of the last second came
        self._freed = asyncio.Event()

    @asynccontextmanager
    async def counted(self) -> AsyncIterator[None]:
        while (wait := self._wait()) is not None:
            if wait:
                await asyncio.sleep(wait)
            else:
                await self._freed.wait()
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1
            self._answered.append(time.monotonic())
            self._freed.set()
            self._freed = asyncio.Event()

    def _wait(self) -> float | None:
        """None: send now; else seconds until an answer leaves the count (0: until a send in flight ends)."""
        now = time.monotonic()
        while self._answered and self._answered[0] <= now - 1:
            self._answered.popleft()
        if self._in_flight + len(self._answered) < self.limit:
            return None
        return self._answered[0] + 1 - now if self._answered else 0.0


_arrivals_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, _Arrivals]] = (
    weakref.WeakKeyDictionary())


def _arrivals(pacing: Pacing) -> _Arrivals:
    """The process's count at this limit (one per event loop: its waits belong to that loop)."""
    counts = _arrivals_by_loop.setdefault(asyncio.get_running_loop(), {})
    limit = int(pacing.per_second)
    if limit not in counts:
        counts[limit] = _Arrivals(limit)
    return counts[limit]


def _counted(call: Callable[..., Awaitable[T]], pacing: Pacing) -> Callable[..., Awaitable[T]]:
    async def send(*args: Any, **kwargs: Any) -> T:
        async with _arrivals(pacing).counted():
            return await call(*args, **kwargs)
    return send


# One broadcast at a time per store object: a second one waits and then finds whatever is still queued.
_locks: weakref.WeakKeyDictionary[Store, asyncio.Lock] = weakref.WeakKeyDictionary()


def _lock_for(store: Store) -> asyncio.Lock:
    lock = _locks.get(store)
    if lock is None:
        lock = _locks[store] = asyncio.Lock()
    return lock


class AnswerPacing(AIORateLimiter):
    """python-telegram-bot's AIORateLimiter for answers (per chat and per group, and its retries of a 429), whose
    messages also take their turns in the bot-wide line the broadcasts keep (`Pacing`, in the store): Telegram
    counts both against one limit, and with replicas, every process's together. During a broadcast an answer
    waits behind the sends already in line, a fraction of a second. When the store refuses (locked, down),
    answers go without turns for `LINE_PAUSE`, paced by this process alone, rather than each waiting for it."""

    def __init__(self, pacing: Pacing = Pacing()) -> None:
        super().__init__(overall_max_rate=pacing.per_second, max_retries=3)
        self.pacing = pacing
        self.store: Store | None = None   # set once the store is open; nothing is sent to a chat before
        self._paused_until = 0.0
        self._taking = asyncio.Lock()   # one turn taken at a time: a locked store costs one busy wait, not one each

    async def process_request(self, callback: Callable[..., Any], args: Any, kwargs: dict[str, Any], endpoint: str,
                              data: dict[str, Any], rate_limit_args: int | None) -> Any:
        if data.get("chat_id") is not None:   # a message, as AIORateLimiter counts them
            if self.store is not None:
                async with self._taking:
                    wait = await self._turn(self.store)
                await asyncio.sleep(wait)
            callback = _counted(callback, self.pacing)
        return await super().process_request(callback, args, kwargs, endpoint, data, rate_limit_args)

    async def _turn(self, store: Store) -> float:
        """Seconds until this answer's turn; 0 while the store is refusing."""
        if time.monotonic() < self._paused_until:
            return 0.0
        try:
            return await asyncio.to_thread(store.take_token, GLOBAL_BUCKET, self.pacing.burst, self.pacing.rate,
                                           queue=True)
        except StoreError as exc:
            self._paused_until = time.monotonic() + LINE_PAUSE
            log.warning("answers go without turns in the shared line for %.0f s: %s", LINE_PAUSE, exc)
            return 0.0


def sender(token: str, base_url: str | None = None) -> telegram.Bot:
    """The Bot that broadcasts: paced by the shared buckets, so without python-telegram-bot's AIORateLimiter.
    That one retries a 429 by holding every request through it for the wait and then letting them all go at
    once, and the burst trips the limit again; a broadcast waits out a 429 itself and resumes one turn at a time.
    """
    request = HTTPXRequest(connection_pool_size=CONCURRENCY)
    if base_url is None:
        return telegram.Bot(token, request=request)
    return telegram.Bot(token, base_url=base_url, request=request)


def _newest_first(articles: list[Article]) -> list[Article]:
    return sorted(articles, key=lambda a: a.published or dt.date.min, reverse=True)


def _by_thread(articles: list[Article], subscriptions: Sequence[Subscription]) -> dict[int | None, list[Article]]:
    """Articles per forum topic: each goes where the chat's first subscription that wants it points."""
    threads = {s.thread_id for s in subscriptions}
    if len(threads) <= 1:
        return {next(iter(threads), None): articles}
    out: dict[int | None, list[Article]] = {}
    for article in articles:
        thread = next((s.thread_id for s in subscriptions if matches(s.words, article)), None)
        out.setdefault(thread, []).append(article)
    return out


class _Broadcast:
    """Claims chats from the delivery log, sends each one message per topic, records it; see `broadcast`."""

    def __init__(
        self, bot: telegram.Bot, store: Store, articles: Mapping[str, Article], *,
        worker: str, concurrency: int, attempts: int, backoff: float, lease: float, pacing: Pacing,
    ) -> None:
        self.bot = bot
        self.store = store
        self.articles = articles
        self.worker = worker
        self.concurrency = concurrency
        self.attempts = attempts
        self.backoff = backoff
        self.lease = lease
        self.report = BroadcastReport()
        self.gate = _FloodGate()
        self.pacer = _Pacer(store, pacing)
        self.claimed: deque[tuple[int, list[str], float]] = deque()
        self.claiming = asyncio.Lock()
        self.left: set[int] = set()  # chats this broadcast leaves pending: not tried again until it ends
        self.newer: set[int] = set()  # chats with articles a newer reload announced: given back to its broadcast
        self.reached: set[int] = set()
        self.unrecorded: list[tuple[int, tuple[str, ...]]] = []
        self.logged: set[str] = set()
        self.pages: dict[tuple[tuple[str, ...], str], str] = {}

    def log_once(self, level: int, kind: str, message: str, *args: object) -> None:
        """A failure that hits thousands of chats is logged once per kind, not once per chat."""
        if kind not in self.logged:
            self.logged.add(kind)
            log.log(level, message, *args)

    async def run(self) -> BroadcastReport:
        """Until nothing is queued but what this broadcast left pending; a dead replica's chats are taken over
        when their leases expire. Cancelled (a clean stop): in-flight sends finish and are recorded, and the
        leases go back at once."""
        try:
            while True:
                async with asyncio.TaskGroup() as group:
                    for _ in range(self.concurrency):
                        group.create_task(self.work())
                if not await self.others_pending():
                    break
                await asyncio.sleep(min(POLL, self.lease / 4))
        except asyncio.CancelledError:
            await self.record_again()
            await _stored(self.store.release_deliveries, self.worker)
            raise
        except ExceptionGroup as failure:  # a store that stays down: stop; the leases expire
            raise failure.exceptions[0] from None
        await self.record_again()
        return self.report

    async def others_pending(self) -> bool:
        """Anything queued that this broadcast may still send; called with nothing in flight."""
        pending = (await _stored(self.store.pending)).keys() - self.left - self.newer
        if pending & self.reached:
            # Queued again while this broadcast held them: its leases go back, so the next claim takes them
            # (a chat it left pending is claimed again and skipped, which renews its pause).
            await _stored(self.store.release_deliveries, self.worker)
        return bool(pending)

    async def next_chat(self) -> tuple[int, list[str], float] | None:
        async with self.claiming:
            if not self.claimed:
                batch = await _stored(self.store.claim_deliveries, self.worker, self.concurrency, self.lease)
                start_by = time.monotonic() + self.lease * LEASE_USE
                if given_back := batch.keys() & self.newer:
                    # Claimed again: back at once. A batch of nothing else ends this round (it would come again).
                    await _stored(self.store.release_deliveries, self.worker, given_back)
                self.claimed.extend((chat_id, ids, start_by) for chat_id, ids in batch.items()
                                    if chat_id not in given_back)
            return self.claimed.popleft() if self.claimed else None

    async def work(self) -> None:
        while (item := await self.next_chat()) is not None:
            await self.deliver_chat(*item)

    def leave(self, chat_id: int) -> None:
        if chat_id not in self.left:
            self.left.add(chat_id)
            self.report.failed += 1

    def leave_topic(self, chat_id: int, thread_id: int) -> None:
        for subscription in self.store.subscriptions(chat_id):
            if subscription.thread_id == thread_id:
                self.store.subscribe(chat_id, subscription.words, None)

    def chat_context(self, chat_id: int) -> tuple[str, list[Subscription]]:
        return self.store.chat_language(chat_id) or i18n.DEFAULT, self.store.subscriptions(chat_id)

    async def deliver_chat(self, chat_id: int, ids: list[str], start_by: float) -> None:
        if chat_id in self.left:
            return  # claimed again while waiting for other replicas: its pause is not over
        known = [self.articles[i] for i in ids if i in self.articles]
        if len(known) < len(ids):
            # Announced by a newer reload, here or on another replica, whose broadcast sends them: once this one
            # has sent what it knows, the chat's lease goes back at once rather than when it expires.
            self.log_once(logging.INFO, "unknown", "pending articles not in this knowledge base are left to the "
                          "broadcast of the reload that announced them")
            self.newer.add(chat_id)
        if known:
            await self.deliver_known(chat_id, known, start_by)
        if chat_id in self.newer and chat_id not in self.left:
            await _stored(self.store.release_deliveries, self.worker, [chat_id])

    async def deliver_known(self, chat_id: int, known: list[Article], start_by: float) -> None:
        language, subscriptions = await _stored(self.chat_context, chat_id)
        sent = False
        for thread_id, articles in _by_thread(_newest_first(known), subscriptions).items():
            outcome = await self.send(chat_id, thread_id, articles, language, start_by)
            if outcome != "sent":
                break
            sent = True
        if sent:
            self.report.chats += 1
            self.reached.add(chat_id)

    async def send(
        self, chat_id: int, thread_id: int | None, articles: list[Article], language: str, start_by: float
    ) -> str:
        """One message until delivered ("sent"), the chat is gone or moved, or it is left pending ("left").

        No attempt starts after `start_by`: by then the lease may run out mid-send and another claim take it.
        """
        ids = tuple(a.id for a in articles)
        text = self.pages.get((ids, language))
        if text is None:   # after a big reload most chats get the same page: rendered once
            text = self.pages[(ids, language)] = render_notification(articles, language)
        errors = floods = 0
        await self.pacer.chat(chat_id)
        while True:
            await self.gate.wait()
            on_time = await self.pacer.overall()
            if time.monotonic() > start_by:
                self.log_once(logging.WARNING, "late", "a claimed chat waited past its lease; left pending")
                self.leave(chat_id)
                return "left"
            if not on_time or self.gate.closed:
                continue   # late for its turn, or a 429 came while it waited: that turn is void
            try:
                await self.attempt(chat_id, thread_id, text, ids)
                self.report.delivered += 1
                return "sent"
            except RetryAfter as exc:
                floods += 1
                seconds = _retry_after_seconds(exc)
                self.gate.pause(seconds)
                self.log_once(logging.WARNING, "429", "Telegram flood limit: waiting %.0f s as asked", seconds)
                if floods > MAX_FLOOD_WAITS:
                    self.leave(chat_id)
                    return "left"
            except ChatMigrated as exc:
                # Its queue follows it to the new id, where the next claim finds it.
                await _stored(self.store.migrate_chat, chat_id, exc.new_chat_id)
                return "moved"
            except TimedOut as exc:
                # Telegram may have delivered it: sending again now could repeat it for every retry.
                self.log_once(logging.WARNING, "timeout", "a notification timed out; left pending: %s", exc)
                self.report.unconfirmed += 1
                self.leave(chat_id)
                return "left"
            except (Forbidden, BadRequest) as exc:
                if thread_id is not None and TOPIC_GONE in exc.message.lower():
                    # The topic was deleted: its subscriptions, and this message, go to the chat itself.
                    await _stored(self.leave_topic, chat_id, thread_id)
                    thread_id = None
                    continue
                if chat_gone(exc):
                    self.log_once(logging.INFO, "gone", "forgetting a chat that is gone: %s", exc.message)
                    await _stored(self.store.forget_chat, chat_id)
                    self.report.removed_chats += 1
                    return "gone"
                # Not allowed for now (rights, a restriction), or our message refused: it stays pending.
                self.log_once(logging.WARNING, f"refused {exc.message}", "notification refused: %s", exc.message)
                self.leave(chat_id)
                return "left"
            except NetworkError as exc:  # refused connections, resets, 5xx: Telegram did not take it
                errors += 1
                self.log_once(logging.WARNING, "network", "sending a notification failed, retrying: %s", exc)
                if errors >= self.attempts:
                    self.leave(chat_id)
                    return "left"
                await asyncio.sleep(self.backoff * 2 ** (errors - 1))
            except TelegramError as exc:
                self.log_once(logging.ERROR, type(exc).__name__, "notification not sent: %r", exc)
                self.leave(chat_id)
                return "left"
            self.report.retried += 1

    async def attempt(self, chat_id: int, thread_id: int | None, text: str, ids: tuple[str, ...]) -> None:
        """One send, and its record, as a unit that cancellation cannot split.

        If the broadcast is cancelled while a message is in flight, the send is
        let finish and recorded first, so a restart neither repeats nor skips it.
        """
        async def send_and_record() -> None:
            async with _arrivals(self.pacer.pacing).counted():
                await self.bot.send_message(
                    chat_id, text, parse_mode=ParseMode.HTML, message_thread_id=thread_id,
                    link_preview_options=LinkPreviewOptions(is_disabled=True),
                )
            await self.record(chat_id, ids)

        task = asyncio.ensure_future(send_and_record())
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():
                await asyncio.wait([task])
            raise

    async def record(self, chat_id: int, ids: tuple[str, ...]) -> None:
        try:
            await _stored(self.store.mark_delivered, chat_id, ids)
        except StoreError as exc:  # sent, but not recorded: tried again at the end, sent again if that fails
            self.log_once(logging.ERROR, "unrecorded", "a delivery could not be recorded: %s", exc)
            self.unrecorded.append((chat_id, ids))
            self.left.add(chat_id)

    async def record_again(self) -> None:
        still = []
        for chat_id, ids in self.unrecorded:
            try:
                await _stored(self.store.mark_delivered, chat_id, ids)
            except StoreError:
                still.append((chat_id, ids))
        self.unrecorded = still
        self.report.unrecorded = len(still)


async def broadcast(
    bot: telegram.Bot, store: Store, kb: KnowledgeBase, *,
    worker: str = WORKER, concurrency: int = CONCURRENCY, attempts: int = ATTEMPTS, backoff: float = BACKOFF,
    lease: float = LEASE, pacing: Pacing = Pacing(),
) -> BroadcastReport:
    """Deliver everything queued: after a reload, at start-up, and now and then to take over a dead replica's
    share and retry what was left pending."""
    return await _run(bot, store, kb.articles, worker=worker, concurrency=concurrency, attempts=attempts,
                      backoff=backoff, lease=lease, pacing=pacing)


async def notify_new(
    bot: telegram.Bot, store: Store, kb: KnowledgeBase, articles: Sequence[Article], *,
    worker: str = WORKER, concurrency: int = CONCURRENCY, attempts: int = ATTEMPTS, backoff: float = BACKOFF,
    lease: float = LEASE, pacing: Pacing = Pacing(),
) -> BroadcastReport:
    """Queue the new articles for every matching subscriber and record them as announced (durably, first, in a
    worker thread: thousands of articles take seconds), then broadcast."""
    if articles:
        subscriptions = await _stored(store.all_subscriptions)
        pairs = await asyncio.to_thread(plan, articles, subscriptions)
        await _stored(store.announce, [a.id for a in articles], pairs)
    lookup = {**kb.articles, **{a.id: a for a in articles}}
    return await _run(bot, store, lookup, worker=worker, concurrency=concurrency, attempts=attempts,
                      backoff=backoff, lease=lease, pacing=pacing)


def unannounced(store: Store, kb: KnowledgeBase) -> list[Article]:
    """Articles of `kb` that subscribers were never told about, for `notify_new`.

    Besides what a reload adds, this catches up what a crash between a reload and its
    queueing left out, and articles added while the bot was down.
    """
    return [kb.articles[i] for i in store.unannounced(kb.articles)]


async def _run(
    bot: telegram.Bot, store: Store, articles: Mapping[str, Article], *,
    worker: str, concurrency: int, attempts: int, backoff: float, lease: float, pacing: Pacing,
) -> BroadcastReport:
    async with _lock_for(store):
        job = _Broadcast(bot, store, articles, worker=worker, concurrency=concurrency, attempts=attempts,
                         backoff=backoff, lease=lease, pacing=pacing)
        report = await job.run()
    log.info("broadcast: %s", report)
    return report
