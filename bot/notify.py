"""Telling subscribers about new articles: who gets what (pure), and the broadcast (how it reads, in each
chat's language: `bot.render.render_messages`).

The broadcast is driven by the store's delivery log: every (chat, article)
pair is queued before anything is sent and marked delivered right after the
send succeeds, so a restart resumes with what is still pending, and an
article reaches a chat at most once per queue entry. Many articles for one
chat go out as one digest, not a flood.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import warnings
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import telegram
from aiolimiter import AsyncLimiter
from telegram import LinkPreviewOptions
from telegram.constants import FloodLimit, ParseMode
from telegram.error import BadRequest, ChatMigrated, Forbidden, NetworkError, RetryAfter, TelegramError
from telegram.warnings import PTBDeprecationWarning

from bot import i18n
from bot.knowledge import Article, KnowledgeBase
from bot.render import render_messages
from bot.store import Store, Subscription
from bot.text import stem_words, terms, words

log = logging.getLogger(__name__)

CONCURRENCY = 16  # enough in flight to keep 30 msg/s going at Telegram's ~0.3 s round trip
ATTEMPTS = 4  # tries for timeouts, network errors and 5xx before leaving a message pending
MAX_FLOOD_WAITS = 8  # 429s in a row for one message before it is left pending
BACKOFF = 1.0  # seconds before the first retry; doubles each time
_GONE = ("chat not found", "user not found", "peer_id_invalid", "chat_write_forbidden", "not enough rights")


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
    delivered: int = 0  # messages sent
    chats: int = 0  # chats that received at least one message
    removed_chats: int = 0  # chats that blocked the bot or are gone, unsubscribed
    retried: int = 0  # sends tried again (429, timeouts, network errors, 5xx)
    failed: int = 0  # chats left with messages still pending (tried again at the next broadcast)


class _FloodGate:
    """Telegram's 429 `retry_after` holds back the whole bot, not one chat: every sender waits here."""

    def __init__(self) -> None:
        self.resume_at = 0.0

    def pause(self, seconds: float) -> None:
        self.resume_at = max(self.resume_at, time.monotonic() + seconds)

    async def wait(self) -> None:
        while (delay := self.resume_at - time.monotonic()) > 0:
            await asyncio.sleep(delay)


def _retry_after_seconds(error: RetryAfter) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = error.retry_after
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


# One broadcast at a time per store: two would both read the same pending rows and send them twice.
_locks: weakref.WeakKeyDictionary[Store, asyncio.Lock] = weakref.WeakKeyDictionary()


def _lock_for(store: Store) -> asyncio.Lock:
    lock = _locks.get(store)
    if lock is None:
        lock = _locks[store] = asyncio.Lock()
    return lock


class _Broadcast:
    def __init__(
        self, bot: telegram.Bot, store: Store, articles: Mapping[str, Article], *,
        concurrency: int, attempts: int, backoff: float,
    ) -> None:
        self.bot = bot
        self.store = store
        self.articles = articles
        self.concurrency = concurrency
        self.attempts = attempts
        self.backoff = backoff
        self.report = BroadcastReport()
        self.gate = _FloodGate()
        # A bot built with AIORateLimiter paces itself; a plain Bot is held to Telegram's 30 messages a second.
        self.pace = None if getattr(bot, "rate_limiter", None) else AsyncLimiter(FloodLimit.MESSAGES_PER_SECOND, 1)
        self.logged: set[str] = set()

    def log_once(self, level: int, kind: str, message: str, *args: object) -> None:
        """A failure that hits thousands of chats is logged once per kind, not once per chat."""
        if kind not in self.logged:
            self.logged.add(kind)
            log.log(level, message, *args)

    async def run(self) -> BroadcastReport:
        work = []
        for chat_id, ids in self.store.pending().items():
            known = [self.articles[i] for i in ids if i in self.articles]
            if len(known) < len(ids):
                self.log_once(logging.INFO, "unknown", "pending articles not in the knowledge base are kept pending")
            if known:
                work.append((chat_id, known))
        queue = iter(work)

        async def worker() -> None:
            for chat_id, articles in queue:
                await self.deliver_chat(chat_id, articles)

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(self.concurrency, len(work))):
                    group.create_task(worker())
        except ExceptionGroup as failure:  # e.g. StoreError: the log cannot be written, so sending must stop
            raise failure.exceptions[0] from None
        return self.report

    async def deliver_chat(self, chat_id: int, articles: list[Article]) -> None:
        sent = False
        language = self.store.chat_language(chat_id) or i18n.DEFAULT
        for ids, text in render_messages(articles, language):
            outcome = await self.send(chat_id, ids, text)
            if isinstance(outcome, int):
                chat_id, sent = outcome, True
                continue
            if outcome == "failed":
                self.report.failed += 1
            break
        if sent:
            self.report.chats += 1

    async def send(self, chat_id: int, ids: tuple[str, ...], text: str) -> int | str:
        """Send one message until it is delivered (-> the chat id), the chat is gone, or retries run out."""
        errors = floods = 0
        while True:
            await self.gate.wait()
            try:
                if self.pace is not None:
                    async with self.pace:
                        await self.attempt(chat_id, ids, text)
                else:
                    await self.attempt(chat_id, ids, text)
                self.report.delivered += 1
                return chat_id
            except RetryAfter as exc:
                floods += 1
                seconds = _retry_after_seconds(exc)
                self.gate.pause(seconds)
                self.log_once(logging.WARNING, "429", "Telegram flood limit: waiting %.0f s as asked", seconds)
                if floods > MAX_FLOOD_WAITS:
                    return "failed"
            except ChatMigrated as exc:
                self.store.migrate_chat(chat_id, exc.new_chat_id)
                chat_id = exc.new_chat_id
            except Forbidden as exc:
                self.log_once(logging.INFO, "gone", "unsubscribing a chat that blocked the bot: %s", exc.message)
                self.store.forget_chat(chat_id)
                self.report.removed_chats += 1
                return "removed"
            except BadRequest as exc:
                if any(reason in exc.message.lower() for reason in _GONE):
                    self.log_once(logging.INFO, "gone", "unsubscribing a chat that is gone: %s", exc.message)
                    self.store.forget_chat(chat_id)
                    self.report.removed_chats += 1
                    return "removed"
                # Our message was refused: a bug to fix, not to retry. It stays pending for the next run.
                self.log_once(logging.ERROR, f"400 {exc.message}", "notification refused: %s", exc.message)
                return "failed"
            except NetworkError as exc:  # timeouts, connection errors, 5xx
                errors += 1
                self.log_once(logging.WARNING, "network", "sending a notification failed, retrying: %s", exc)
                if errors >= self.attempts:
                    return "failed"
                await asyncio.sleep(self.backoff * 2 ** (errors - 1))
            except TelegramError as exc:
                self.log_once(logging.ERROR, type(exc).__name__, "notification not sent: %r", exc)
                return "failed"
            self.report.retried += 1

    async def attempt(self, chat_id: int, ids: tuple[str, ...], text: str) -> None:
        """One send, and its record, as a unit that cancellation cannot split.

        If the broadcast is cancelled while a message is in flight, the send is
        let finish and recorded first, so a restart neither repeats nor skips it.
        """
        async def send_and_record() -> None:
            await self.bot.send_message(
                chat_id, text, parse_mode=ParseMode.HTML, link_preview_options=LinkPreviewOptions(is_disabled=True)
            )
            self.store.mark_delivered(chat_id, ids)

        task = asyncio.ensure_future(send_and_record())
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():
                await asyncio.wait([task])
            raise


async def broadcast(
    bot: telegram.Bot, store: Store, kb: KnowledgeBase, *,
    concurrency: int = CONCURRENCY, attempts: int = ATTEMPTS, backoff: float = BACKOFF,
) -> BroadcastReport:
    """Deliver everything pending; called after a reload and at start-up to finish a cut-short broadcast."""
    return await _run(bot, store, kb.articles, concurrency=concurrency, attempts=attempts, backoff=backoff)


async def notify_new(
    bot: telegram.Bot, store: Store, kb: KnowledgeBase, articles: Sequence[Article], *,
    concurrency: int = CONCURRENCY, attempts: int = ATTEMPTS, backoff: float = BACKOFF,
) -> BroadcastReport:
    """Queue the new articles for every matching subscriber and record them as announced (durably, first), then
    broadcast."""
    store.announce([a.id for a in articles], plan(articles, store.all_subscriptions()))
    lookup = {**kb.articles, **{a.id: a for a in articles}}
    return await _run(bot, store, lookup, concurrency=concurrency, attempts=attempts, backoff=backoff)


def unannounced(store: Store, kb: KnowledgeBase) -> list[Article]:
    """Articles of `kb` that subscribers were never told about, for `notify_new`.

    Besides what a reload adds, this catches up what a crash between a reload and its
    queueing left out, and articles added while the bot was down.
    """
    return [kb.articles[i] for i in store.unannounced(kb.articles)]


async def _run(
    bot: telegram.Bot, store: Store, articles: Mapping[str, Article], *,
    concurrency: int, attempts: int, backoff: float,
) -> BroadcastReport:
    async with _lock_for(store):
        job = _Broadcast(bot, store, articles, concurrency=concurrency, attempts=attempts, backoff=backoff)
        report = await job.run()
    log.info("broadcast: %s", report)
    return report
