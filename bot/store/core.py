"""The store's behaviour, written once in SQL that SQLite and PostgreSQL both run the same way.

A `Backend` gives transactions and reads on one database; `Store` is everything the bot keeps across restarts,
and what several replicas coordinate through: subscriptions, the delivery log and its per-chat leases, statistics,
chat languages, token buckets, named leases, the knowledge-base version and small state blobs. Every method is
synchronous and thread-safe; async callers run it with `asyncio.to_thread`, so a database wait never blocks the
event loop. Every write is atomic (one statement, or one transaction): a failure raises StoreError and leaves
what was stored untouched.

Times are the caller's clock (`time.time()`): replicas sharing a database must keep their clocks in step (NTP)
to well within the lease times they use.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bot.text import words as word_tokens

MAX_QUESTION_CHARS = 500  # statistics need the gist, not a pasted 4,096-character message
TOP = 10
DAY = 86400.0
TOKEN_ROUNDING = 1e-6   # a token short by float error at epoch-sized times is a whole one


class StoreError(Exception):
    """The database could not do what was asked (locked, full, unreachable); nothing stored was changed."""


@dataclass(frozen=True, slots=True)
class Subscription:
    id: int
    chat_id: int
    words: str | None  # None: every new article
    thread_id: int | None = None  # the forum topic new articles go to; None: the chat itself


@dataclass(frozen=True, slots=True)
class Stats:
    subscribed_chats: int
    subscriptions: int
    answered: int
    unanswered: int
    helpful: int
    unhelpful: int
    top_unanswered: list[tuple[str, int]]
    top_unhelpful: list[tuple[str, int]]


def normalise_words(words: str | None) -> str | None:
    """The canonical form of a subscription filter: lower-case words, single spaces; None for 'everything'."""
    if words is None:
        return None
    return " ".join(word_tokens(words)) or None


def _question_key(question: str) -> str:
    return " ".join(question.casefold().split())[:MAX_QUESTION_CHARS]


def _clip(question: str) -> str:
    return " ".join(question.split())[:MAX_QUESTION_CHARS]


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Transaction(Protocol):
    """Statements in `?` placeholder style inside one open transaction."""

    def execute(self, sql: str, params: Sequence[object] = ()) -> Cursor: ...
    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> int: ...


class Backend(Protocol):
    """One database: the only part of the store that differs between SQLite and PostgreSQL."""

    where: str            # names the database in messages (never a password)
    for_update: str       # appended to a SELECT that reads a row the transaction will change
    skip_locked: str      # appended to a SELECT of queue rows, so concurrent claimers pass each other by
    in_select: str        # "{column} IN ({select})", as the planner handles a short list best

    def transaction(self) -> AbstractContextManager[Transaction]: ...
    def write(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]: ...
    def follow_ids(self, db: Transaction) -> None: ...
    def read(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]: ...
    def close(self) -> None: ...


class Store:
    """Everything that must survive a restart; `Store(path)` opens SQLite, `open_store` picks the backend."""

    _backend: Backend

    def __init__(self, path: Path | str, *, timeout: float = 1.0) -> None:
        from bot.store.sqlite import SqliteBackend  # here: that module imports StoreError from this one

        backend = SqliteBackend(path, timeout=timeout)
        self.path = backend.path
        self._db = backend.db   # the raw connection, for tests that simulate a full disk
        self._backend = backend

    @classmethod
    def on(cls, backend: Backend) -> Store:
        """A store on an opened backend (what `open_store` uses for PostgreSQL)."""
        store = cls.__new__(cls)
        store.path = backend.where
        store._backend = backend
        return store

    def __repr__(self) -> str:
        return f"<Store {self._backend.where}>"

    def close(self) -> None:
        self._backend.close()

    def _write(self) -> AbstractContextManager[Transaction]:
        return self._backend.transaction()

    def _write_one(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """One statement, atomic by itself: on PostgreSQL one round trip instead of a transaction's three."""
        return self._backend.write(sql, params)

    def _read(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        return self._backend.read(sql, params)

    # --- subscriptions ---------------------------------------------------

    def subscribe(self, chat_id: int, words: str | None = None, thread_id: int | None = None) -> Subscription:
        """Idempotent: the same words again return the existing subscription (moved to `thread_id`)."""
        key = normalise_words(words) or ""
        ((sub_id,),) = self._write_one(
            "INSERT INTO subscriptions (chat_id, words, created, thread_id) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (chat_id, words) DO UPDATE SET thread_id = excluded.thread_id RETURNING id",
            (chat_id, key, time.time(), thread_id),
        )
        return Subscription(sub_id, chat_id, key or None, thread_id)

    def unsubscribe(self, chat_id: int, subscription_id: int | None = None) -> int:
        """Remove one subscription or all of the chat's; a chat left with none gets nothing still queued."""
        with self._write() as db:
            if subscription_id is None:
                removed = db.execute("DELETE FROM subscriptions WHERE chat_id = ?", (chat_id,)).rowcount
            else:
                removed = db.execute(
                    "DELETE FROM subscriptions WHERE chat_id = ? AND id = ?", (chat_id, subscription_id)
                ).rowcount
            if not db.execute("SELECT 1 FROM subscriptions WHERE chat_id = ? LIMIT 1", (chat_id,)).fetchone():
                db.execute("DELETE FROM deliveries WHERE chat_id = ? AND delivered IS NULL", (chat_id,))
        return removed

    def subscriptions(self, chat_id: int) -> list[Subscription]:
        rows = self._read(
            "SELECT id, chat_id, words, thread_id FROM subscriptions WHERE chat_id = ? ORDER BY id", (chat_id,)
        )
        return [Subscription(i, c, w or None, t) for i, c, w, t in rows]

    def all_subscriptions(self) -> list[Subscription]:
        rows = self._read("SELECT id, chat_id, words, thread_id FROM subscriptions ORDER BY id")
        return [Subscription(i, c, w or None, t) for i, c, w, t in rows]

    def forget_chat(self, chat_id: int) -> None:
        """Delete everything kept about the chat: subscriptions, its deliveries (sent or not), its language.

        Called when a chat blocked the bot or is gone, and by /forget. Token buckets are left to expire: one
        deleted on request would let a user reset their own rate limit.
        """
        with self._write() as db:
            db.execute("DELETE FROM delivery_leases WHERE chat_id = ?", (chat_id,))   # first: see `_lease_chats`
            db.execute("DELETE FROM deliveries WHERE chat_id = ?", (chat_id,))
            db.execute("DELETE FROM subscriptions WHERE chat_id = ?", (chat_id,))
            db.execute("DELETE FROM chat_languages WHERE chat_id = ?", (chat_id,))

    def migrate_chat(self, old_chat_id: int, new_chat_id: int) -> None:
        """A group became a supergroup (new id): its subscriptions, queue and language follow it."""
        with self._write() as db:
            db.execute("DELETE FROM delivery_leases WHERE chat_id = ?", (old_chat_id,))
            db.execute(
                "UPDATE subscriptions SET chat_id = ? WHERE chat_id = ? AND words NOT IN "
                "(SELECT words FROM subscriptions WHERE chat_id = ?)",
                (new_chat_id, old_chat_id, new_chat_id),
            )
            db.execute("DELETE FROM subscriptions WHERE chat_id = ?", (old_chat_id,))
            db.execute(
                "UPDATE deliveries SET chat_id = ? WHERE chat_id = ? AND article_id NOT IN "
                "(SELECT article_id FROM deliveries WHERE chat_id = ?)",
                (new_chat_id, old_chat_id, new_chat_id),
            )
            db.execute("DELETE FROM deliveries WHERE chat_id = ?", (old_chat_id,))
            db.execute(
                "UPDATE chat_languages SET chat_id = ? WHERE chat_id = ? AND NOT EXISTS "
                "(SELECT 1 FROM chat_languages WHERE chat_id = ?)",
                (new_chat_id, old_chat_id, new_chat_id),
            )
            db.execute("DELETE FROM chat_languages WHERE chat_id = ?", (old_chat_id,))
            if db.execute("SELECT 1 FROM deliveries WHERE chat_id = ? AND delivered IS NULL LIMIT 1",
                          (new_chat_id,)).fetchone():
                self._lease_chats(db, [new_chat_id])

    # --- chat languages ----------------------------------------------------

    def chat_language(self, chat_id: int) -> str | None:
        rows = self._read("SELECT language FROM chat_languages WHERE chat_id = ?", (chat_id,))
        return rows[0][0] if rows else None

    def set_chat_language(self, chat_id: int, language: str | None) -> None:
        """The language the chat chose; None forgets the choice (the user's own language applies again)."""
        if language is None:
            self._write_one("DELETE FROM chat_languages WHERE chat_id = ?", (chat_id,))
        else:
            self._write_one(
                "INSERT INTO chat_languages (chat_id, language) VALUES (?, ?) "
                "ON CONFLICT (chat_id) DO UPDATE SET language = excluded.language",
                (chat_id, language),
            )

    # --- statistics ------------------------------------------------------

    def record_question(self, question: str, answered: bool) -> None:
        """Count a question by its text only: no user or chat id is kept."""
        if not question.strip():
            return
        column = "answered" if answered else "unanswered"
        self._write_one(
            f"INSERT INTO questions (key, text, {column}, last) VALUES (?, ?, 1, ?) "
            f"ON CONFLICT (key) DO UPDATE SET {column} = questions.{column} + 1, text = excluded.text, "
            "last = excluded.last",
            (_question_key(question), _clip(question), time.time()),
        )

    def record_feedback(self, question: str, article_id: str | None, helpful: bool) -> None:
        column = "helpful" if helpful else "unhelpful"
        self._write_one(
            f"INSERT INTO feedback (key, article_id, text, {column}, last) VALUES (?, ?, ?, 1, ?) "
            f"ON CONFLICT (key, article_id) DO UPDATE SET {column} = feedback.{column} + 1, "
            "last = excluded.last",
            (_question_key(question), article_id or "", _clip(question), time.time()),
        )

    def stats(self) -> Stats:
        ((chats, subscriptions),) = self._read("SELECT COUNT(DISTINCT chat_id), COUNT(*) FROM subscriptions")
        ((answered, unanswered),) = self._read(
            "SELECT CAST(COALESCE(SUM(answered), 0) AS BIGINT), CAST(COALESCE(SUM(unanswered), 0) AS BIGINT) "
            "FROM questions"
        )
        ((helpful, unhelpful),) = self._read(
            "SELECT CAST(COALESCE(SUM(helpful), 0) AS BIGINT), CAST(COALESCE(SUM(unhelpful), 0) AS BIGINT) "
            "FROM feedback"
        )
        top_unanswered = self._read(
            "SELECT text, unanswered FROM questions WHERE unanswered > 0 ORDER BY unanswered DESC, last DESC LIMIT ?",
            (TOP,),
        )
        top_unhelpful = self._read(
            "SELECT MAX(text), CAST(SUM(unhelpful) AS BIGINT) AS n FROM feedback WHERE unhelpful > 0 "
            "GROUP BY key ORDER BY n DESC, MAX(last) DESC LIMIT ?",
            (TOP,),
        )
        return Stats(
            subscribed_chats=chats,
            subscriptions=subscriptions,
            answered=answered,
            unanswered=unanswered,
            helpful=helpful,
            unhelpful=unhelpful,
            top_unanswered=[(text, n) for text, n in top_unanswered],
            top_unhelpful=[(text, n) for text, n in top_unhelpful],
        )

    # --- the delivery log ------------------------------------------------

    def enqueue(self, deliveries: Iterable[tuple[int, str]]) -> int:
        """Queue (chat, article) pairs in one transaction; a pair queued or delivered before is skipped.

        Returns how many were newly queued.
        """
        return self.announce((), deliveries)

    def announce(self, article_ids: Sequence[str], deliveries: Iterable[tuple[int, str]]) -> int:
        """Record articles as announced and queue their deliveries, in one transaction: both or neither.

        Returns how many deliveries were newly queued.
        """
        now = time.time()
        pairs = list(deliveries)
        with self._write() as db:
            db.executemany("INSERT INTO announced (article_id) VALUES (?) ON CONFLICT DO NOTHING",
                           ((i,) for i in article_ids))
            self._lease_chats(db, dict.fromkeys(chat_id for chat_id, _ in pairs))
            return db.executemany(
                "INSERT INTO deliveries (chat_id, article_id, queued) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                ((chat_id, article_id, now) for chat_id, article_id in pairs),
            )

    @staticmethod
    def _lease_chats(db: Transaction, chat_ids: Iterable[int]) -> None:
        """Mark each chat as having deliveries queued, on its lease row, which `claim_deliveries` looks for.

        Before the deliveries are written, and DO UPDATE: the row stays locked until this transaction ends,
        so a concurrent `forget_chat` (which deletes the lease row first) waits for the queued rows and
        deletes them too, and a concurrent `mark_delivered` cannot clear the mark over them.
        """
        db.executemany(
            "INSERT INTO delivery_leases (chat_id, owner, expires, queued) VALUES (?, '', 0, TRUE) "
            "ON CONFLICT (chat_id) DO UPDATE SET queued = TRUE",
            ((chat_id,) for chat_id in chat_ids),
        )

    def unannounced(self, article_ids: Iterable[str]) -> list[str]:
        """The ids subscribers were never told about, in the order given.

        The first call on a new database records every id as announced and returns none: what
        the knowledge base holds before the bot's first start is not news.
        """
        ids = list(article_ids)
        if self._read("SELECT 1 FROM meta WHERE key = 'announced_baseline' AND value = 'pending'"):
            with self._write() as db:
                if db.execute(
                    "UPDATE meta SET value = 'done' WHERE key = 'announced_baseline' AND value = 'pending'"
                ).rowcount:
                    db.executemany("INSERT INTO announced (article_id) VALUES (?) ON CONFLICT DO NOTHING",
                                   ((i,) for i in ids))
                    return []
        known = {row[0] for row in self._read("SELECT article_id FROM announced")}
        return [i for i in ids if i not in known]

    def pending(self) -> dict[int, list[str]]:
        """chat id -> article ids queued and not yet delivered, oldest first."""
        return self._queue(self._read(
            "SELECT chat_id, article_id FROM deliveries WHERE delivered IS NULL ORDER BY seq"
        ))

    @staticmethod
    def _queue(rows: Iterable[tuple[Any, ...]]) -> dict[int, list[str]]:
        queue: dict[int, list[str]] = {}
        for chat_id, article_id in rows:
            queue.setdefault(chat_id, []).append(article_id)
        return queue

    def mark_delivered(self, chat_id: int, article_ids: Sequence[str]) -> None:
        """Record sends; a chat with nothing left queued has its lease freed for whoever queues more."""
        if article_ids:
            marks = ", ".join("?" * len(article_ids))
            self._write_one(
                "UPDATE deliveries SET delivered = ? WHERE chat_id = ? AND delivered IS NULL "
                f"AND article_id IN ({marks})",
                (time.time(), chat_id, *article_ids),
            )
        self._write_one(
            "UPDATE delivery_leases SET queued = FALSE, owner = '', expires = 0 WHERE chat_id = ? AND queued "
            "AND NOT EXISTS (SELECT 1 FROM deliveries WHERE chat_id = ? AND delivered IS NULL)",
            (chat_id, chat_id),
        )

    def claim_deliveries(self, worker: str, max_chats: int, lease_seconds: float) -> dict[int, list[str]]:
        """Lease up to `max_chats` chats with queued deliveries to `worker` and return their queues.

        A chat is claimable when its lease is free or expired, so two workers never hold one chat, and the
        chats of a worker that died are handed out again once its leases expire. PostgreSQL passes over rows
        another claimer has locked (SKIP LOCKED); SQLite has one writer at a time anyway. Finding work costs
        the size of the batch, not of the queue: chats with deliveries queued are marked on their lease row.
        """
        now = time.time()
        free = self._backend.in_select.format(column="chat_id", select=(
            "SELECT chat_id FROM delivery_leases WHERE queued AND expires < ? ORDER BY expires LIMIT ?"
            + self._backend.skip_locked))
        chats = [row[0] for row in self._write_one(
            f"UPDATE delivery_leases SET owner = ?, expires = ? WHERE {free} RETURNING chat_id",
            (worker, now + lease_seconds, now, max_chats),
        )]
        if len(chats) < max_chats:
            # The queue looks drained: mark any chat whose mark was cleared while an announce queued more
            # (`mark_delivered` checks without a lock), so it is claimed next time. Cheap: little is queued.
            queued = self._backend.in_select.format(
                column="chat_id", select="SELECT chat_id FROM deliveries WHERE delivered IS NULL")
            self._write_one(f"UPDATE delivery_leases SET queued = TRUE WHERE NOT queued AND {queued}")
        if not chats:
            return {}
        marks = ", ".join("?" * len(chats))
        queue = self._queue(self._read(
            f"SELECT chat_id, article_id FROM deliveries WHERE delivered IS NULL AND chat_id IN ({marks}) "
            "ORDER BY seq",
            chats,
        ))
        if len(queue) < len(chats):   # chats whose queue went away (unsubscribed): clear their mark
            for chat_id in set(chats) - queue.keys():
                self.mark_delivered(chat_id, ())
        return queue

    def release_deliveries(self, worker: str, chat_ids: Collection[int] | None = None) -> None:
        """Give back the worker's leases (a clean shutdown), or those on `chat_ids`, so others need not wait for
        them to expire. Chats given back one by one go behind the chats already waiting for a claim."""
        if chat_ids is None:
            self._write_one("UPDATE delivery_leases SET owner = '', expires = 0 WHERE owner = ? AND expires >= ?",
                            (worker, time.time()))
            return
        marks = ", ".join("?" * len(chat_ids))
        self._write_one(f"UPDATE delivery_leases SET owner = '', expires = ? WHERE owner = ? AND chat_id IN ({marks})",
                        (time.time(), worker, *chat_ids))

    # --- coordination between replicas -------------------------------------

    def take_token(self, bucket: str, capacity: float, per_second: float, *, queue: bool = False) -> float:
        """Take one token from a bucket every replica shares: 0.0 when taken, else the seconds until one is.

        The bucket holds at most `capacity` tokens and refills at `per_second`; a new bucket starts full.
        Nothing is taken when the answer is a wait, unless `queue`: then the wait is a place in line (the
        token is taken now and due after the wait), so takers are spaced 1 / per_second apart in the order
        they asked, and one that wakes up late does not push the ones behind it back.
        """
        if capacity < 1 or per_second <= 0:
            raise ValueError("a token bucket needs capacity >= 1 and per_second > 0")
        with self._write() as db:
            db.execute("INSERT INTO buckets (name, tokens, updated) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                       (bucket, capacity, time.time()))
            tokens, updated = db.execute(
                f"SELECT tokens, updated FROM buckets WHERE name = ?{self._backend.for_update}", (bucket,)
            ).fetchone()
            now = time.time()  # read once the bucket is ours: a stamp taken before waiting for it lets sends bunch up
            tokens = min(capacity, tokens + max(0.0, now - updated) * per_second)   # below 0: places in line
            wait = 0.0 if tokens >= 1 - TOKEN_ROUNDING else (1 - tokens) / per_second
            if queue:
                tokens -= 1
            elif not wait:
                tokens = max(0.0, tokens - 1)
            db.execute("UPDATE buckets SET tokens = ?, updated = ? WHERE name = ?", (tokens, max(now, updated),
                                                                                    bucket))
        return wait

    def acquire_lease(self, name: str, owner: str, seconds: float) -> bool:
        """Take the named lease if it is free or expired, or renew it if `owner` holds it; True if owner has it."""
        now = time.time()
        return bool(self._write_one(
            "INSERT INTO leases (name, owner, expires) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE "
            "SET owner = excluded.owner, expires = excluded.expires "
            "WHERE leases.owner = excluded.owner OR leases.expires < ? RETURNING owner",
            (name, owner, now + seconds, now),
        ))

    def release_lease(self, name: str, owner: str) -> None:
        """Give the lease up at a clean shutdown, so another replica takes over at once."""
        self._write_one("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))

    def kb_version(self) -> int:
        rows = self._read("SELECT value FROM meta WHERE key = 'kb_version'")
        return int(rows[0][0]) if rows else 0

    def bump_kb_version(self) -> int:
        """The knowledge base changed (a /reload, new articles): every replica that polls `kb_version` reloads."""
        ((value,),) = self._write_one(
            "INSERT INTO meta (key, value) VALUES ('kb_version', '1') ON CONFLICT (key) DO UPDATE "
            "SET value = CAST(CAST(meta.value AS BIGINT) + 1 AS TEXT) RETURNING value"
        )
        return int(value)

    def get_state(self, key: str) -> str | None:
        rows = self._read("SELECT value FROM state WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def set_state(self, key: str, value: str) -> None:
        self._write_one("INSERT INTO state (key, value) VALUES (?, ?) "
                        "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    # --- retention --------------------------------------------------------

    def prune(self, retention_days: float) -> int:
        """Delete delivered deliveries, question and feedback counts and idle token buckets older than that.

        The `announced` log is kept, so a pruned delivery is never sent again. Returns how many rows went.
        """
        if retention_days < 0:
            raise ValueError("retention_days must not be negative")
        cutoff = time.time() - retention_days * DAY
        with self._write() as db:
            return sum(db.execute(sql, (cutoff,)).rowcount for sql in (
                "DELETE FROM deliveries WHERE delivered IS NOT NULL AND delivered < ?",
                "DELETE FROM questions WHERE last < ?",
                "DELETE FROM feedback WHERE last < ?",
                "DELETE FROM buckets WHERE updated < ?",
            ))

