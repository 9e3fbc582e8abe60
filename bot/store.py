"""Everything that must survive a restart: subscriptions, the delivery log, question statistics.

SQLite from the standard library, in WAL mode so that reads never wait for the
writer, with each write in one short transaction. The bot calls these methods
from its event loop, so each is a few indexed statements; a locked or full
database raises StoreError at once (after a short busy timeout) rather than
stalling the bot, and a failed write leaves what was stored untouched.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bot.text import words as word_tokens

MAX_QUESTION_CHARS = 500  # statistics need the gist, not a pasted 4,096-character message
TOP = 10

# Each entry moves the schema from version i to i + 1 (PRAGMA user_version).
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE subscriptions (
        id INTEGER PRIMARY KEY,
        chat_id INTEGER NOT NULL,
        words TEXT NOT NULL,              -- '' means every new article
        created REAL NOT NULL,
        UNIQUE (chat_id, words)
    );
    CREATE TABLE deliveries (
        seq INTEGER PRIMARY KEY,          -- queue order
        chat_id INTEGER NOT NULL,
        article_id TEXT NOT NULL,
        queued REAL NOT NULL,
        delivered REAL,                   -- NULL while pending
        UNIQUE (chat_id, article_id)
    );
    CREATE INDEX deliveries_pending ON deliveries (chat_id, seq) WHERE delivered IS NULL;
    CREATE TABLE questions (
        key TEXT PRIMARY KEY,             -- case- and space-folded question
        text TEXT NOT NULL,
        answered INTEGER NOT NULL DEFAULT 0,
        unanswered INTEGER NOT NULL DEFAULT 0,
        last REAL NOT NULL
    );
    CREATE INDEX questions_unanswered ON questions (unanswered) WHERE unanswered > 0;
    CREATE TABLE feedback (
        key TEXT NOT NULL,
        article_id TEXT NOT NULL,         -- '' when the answer was not an article
        text TEXT NOT NULL,
        helpful INTEGER NOT NULL DEFAULT 0,
        unhelpful INTEGER NOT NULL DEFAULT 0,
        last REAL NOT NULL,
        PRIMARY KEY (key, article_id)
    );
    CREATE INDEX feedback_unhelpful ON feedback (unhelpful) WHERE unhelpful > 0;
    """,
    """
    CREATE TABLE announced (
        article_id TEXT PRIMARY KEY       -- subscribers were told of it, or it was there before the first start
    );
    CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    INSERT INTO meta (key, value) VALUES ('announced_baseline', 'pending');
    """,
    """
    CREATE TABLE chat_languages (
        chat_id INTEGER PRIMARY KEY,
        language TEXT NOT NULL            -- a catalog's code: en, ru, kk
    );
    """,
)


class StoreError(Exception):
    """The database could not do what was asked (locked, full, unreadable); nothing stored was changed."""


@dataclass(frozen=True, slots=True)
class Subscription:
    id: int
    chat_id: int
    words: str | None  # None: every new article


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


class Store:
    """One SQLite connection, serialised by a lock so a worker thread may share it with the event loop."""

    def __init__(self, path: Path | str, *, timeout: float = 1.0) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the database {self.path}: {exc}") from exc
        try:
            self._db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: a crash of the process loses nothing
            self._migrate()
        except (sqlite3.Error, StoreError) as exc:
            self._db.close()
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"cannot use the database {self.path}: {exc}") from exc

    def _migrate(self) -> None:
        with self._write() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise StoreError(f"{self.path} was written by a newer version of the bot (schema {version})")
            for number in range(version, len(MIGRATIONS)):
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {number + 1}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: takes the write lock up front so it cannot deadlock halfway."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(f"database busy or unavailable: {exc}") from exc
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"database write failed, nothing was changed: {exc}") from exc
                raise

    def _read(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:  # type: ignore[type-arg]
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"database read failed: {exc}") from exc

    # --- subscriptions ---------------------------------------------------

    def subscribe(self, chat_id: int, words: str | None = None) -> Subscription:
        """Idempotent: subscribing twice with the same words returns the existing subscription."""
        key = normalise_words(words) or ""
        with self._write() as db:
            db.execute(
                "INSERT OR IGNORE INTO subscriptions (chat_id, words, created) VALUES (?, ?, ?)",
                (chat_id, key, time.time()),
            )
            (sub_id,) = db.execute(
                "SELECT id FROM subscriptions WHERE chat_id = ? AND words = ?", (chat_id, key)
            ).fetchone()
        return Subscription(sub_id, chat_id, key or None)

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
        rows = self._read("SELECT id, chat_id, words FROM subscriptions WHERE chat_id = ? ORDER BY id", (chat_id,))
        return [Subscription(i, c, w or None) for i, c, w in rows]

    def all_subscriptions(self) -> list[Subscription]:
        rows = self._read("SELECT id, chat_id, words FROM subscriptions ORDER BY id")
        return [Subscription(i, c, w or None) for i, c, w in rows]

    def forget_chat(self, chat_id: int) -> None:
        """The chat blocked the bot or is gone: drop its subscriptions and whatever was queued for it."""
        with self._write() as db:
            db.execute("DELETE FROM subscriptions WHERE chat_id = ?", (chat_id,))
            db.execute("DELETE FROM deliveries WHERE chat_id = ? AND delivered IS NULL", (chat_id,))

    def chat_language(self, chat_id: int) -> str | None:
        """The language the chat chose with /language (or subscribed in); None when it never did."""
        rows = self._read("SELECT language FROM chat_languages WHERE chat_id = ?", (chat_id,))
        return rows[0][0] if rows else None

    def set_chat_language(self, chat_id: int, language: str | None) -> None:
        with self._write() as db:
            if language is None:
                db.execute("DELETE FROM chat_languages WHERE chat_id = ?", (chat_id,))
            else:
                db.execute("INSERT OR REPLACE INTO chat_languages (chat_id, language) VALUES (?, ?)",
                           (chat_id, language))

    def migrate_chat(self, old_chat_id: int, new_chat_id: int) -> None:
        """A group became a supergroup (new id): its subscriptions and queue follow it."""
        with self._write() as db:
            db.execute(
                "UPDATE OR IGNORE subscriptions SET chat_id = ? WHERE chat_id = ?", (new_chat_id, old_chat_id)
            )
            db.execute("DELETE FROM subscriptions WHERE chat_id = ?", (old_chat_id,))
            db.execute("UPDATE OR IGNORE deliveries SET chat_id = ? WHERE chat_id = ?", (new_chat_id, old_chat_id))
            db.execute("DELETE FROM deliveries WHERE chat_id = ?", (old_chat_id,))
            db.execute("UPDATE OR IGNORE chat_languages SET chat_id = ? WHERE chat_id = ?", (new_chat_id, old_chat_id))

    # --- statistics ------------------------------------------------------

    def record_question(self, question: str, answered: bool) -> None:
        """Count a question by its text only: no user or chat id is kept."""
        if not question.strip():
            return
        column = "answered" if answered else "unanswered"
        with self._write() as db:
            db.execute(
                f"INSERT INTO questions (key, text, {column}, last) VALUES (?, ?, 1, ?) "
                f"ON CONFLICT (key) DO UPDATE SET {column} = {column} + 1, text = excluded.text, last = excluded.last",
                (_question_key(question), _clip(question), time.time()),
            )

    def record_feedback(self, question: str, article_id: str | None, helpful: bool) -> None:
        column = "helpful" if helpful else "unhelpful"
        with self._write() as db:
            db.execute(
                f"INSERT INTO feedback (key, article_id, text, {column}, last) VALUES (?, ?, ?, 1, ?) "
                f"ON CONFLICT (key, article_id) DO UPDATE SET {column} = {column} + 1, last = excluded.last",
                (_question_key(question), article_id or "", _clip(question), time.time()),
            )

    def stats(self) -> Stats:
        with self._lock:
            ((chats, subscriptions),) = self._read("SELECT COUNT(DISTINCT chat_id), COUNT(*) FROM subscriptions")
            ((answered, unanswered),) = self._read(
                "SELECT COALESCE(SUM(answered), 0), COALESCE(SUM(unanswered), 0) FROM questions"
            )
            ((helpful, unhelpful),) = self._read(
                "SELECT COALESCE(SUM(helpful), 0), COALESCE(SUM(unhelpful), 0) FROM feedback"
            )
            top_unanswered = self._read(
                "SELECT text, unanswered FROM questions WHERE unanswered > 0 "
                "ORDER BY unanswered DESC, last DESC LIMIT ?",
                (TOP,),
            )
            top_unhelpful = self._read(
                "SELECT MAX(text), SUM(unhelpful) AS n FROM feedback WHERE unhelpful > 0 "
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
        with self._write() as db:
            db.executemany("INSERT OR IGNORE INTO announced (article_id) VALUES (?)", ((i,) for i in article_ids))
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO deliveries (chat_id, article_id, queued) VALUES (?, ?, ?)",
                ((chat_id, article_id, now) for chat_id, article_id in deliveries),
            )
            return db.total_changes - before

    def unannounced(self, article_ids: Iterable[str]) -> list[str]:
        """The ids subscribers were never told about, in the order given.

        The first call on a new database records every id as announced and returns none: what
        the knowledge base holds before the bot's first start is not news.
        """
        ids = list(article_ids)
        if self._read("SELECT 1 FROM meta WHERE key = 'announced_baseline' AND value = 'pending'"):
            with self._write() as db:
                if db.execute("UPDATE meta SET value = 'done' WHERE key = 'announced_baseline' AND value = 'pending'"
                              ).rowcount:
                    db.executemany("INSERT OR IGNORE INTO announced (article_id) VALUES (?)", ((i,) for i in ids))
                    return []
        known = {row[0] for row in self._read("SELECT article_id FROM announced")}
        return [i for i in ids if i not in known]

    def pending(self) -> dict[int, list[str]]:
        """chat id -> article ids queued and not yet delivered, oldest first."""
        queue: dict[int, list[str]] = {}
        for chat_id, article_id in self._read(
            "SELECT chat_id, article_id FROM deliveries WHERE delivered IS NULL ORDER BY seq"
        ):
            queue.setdefault(chat_id, []).append(article_id)
        return queue

    def mark_delivered(self, chat_id: int, article_ids: Sequence[str]) -> None:
        now = time.time()
        with self._write() as db:
            db.executemany(
                "UPDATE deliveries SET delivered = ? WHERE chat_id = ? AND article_id = ? AND delivered IS NULL",
                ((now, chat_id, article_id) for article_id in article_ids),
            )
