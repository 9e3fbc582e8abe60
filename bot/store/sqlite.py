"""The embedded backend: one SQLite file from the standard library, for a single instance.

WAL mode, so reads never wait for the writer; each write one short IMMEDIATE transaction, which takes the
write lock up front so it cannot deadlock halfway. A locked or full database raises StoreError after a short
busy timeout rather than stalling the bot. The file and its -wal/-shm companions are readable by their owner
only (SQLite gives the companions the database file's mode).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bot.store.core import StoreError
from bot.store.files import owner_only, restrict

WAL_RETRY = 0.01  # seconds between tries to switch a new file to WAL

# Each entry moves the schema from version i to i + 1 (PRAGMA user_version). Never edit a published entry:
# databases in the field are at every one of these versions.
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
    ALTER TABLE subscriptions ADD COLUMN thread_id INTEGER;   -- forum topic, NULL for the chat itself
    CREATE TABLE delivery_leases (
        chat_id INTEGER PRIMARY KEY,      -- a row for every chat that ever had a delivery queued
        owner TEXT NOT NULL,              -- the worker sending the chat's queue, '' when free
        expires REAL NOT NULL,            -- free once this has passed
        queued INTEGER NOT NULL DEFAULT FALSE   -- deliveries are waiting for this chat
    );
    CREATE INDEX delivery_leases_queued ON delivery_leases (expires) WHERE queued;
    INSERT INTO delivery_leases (chat_id, owner, expires, queued)
        SELECT DISTINCT chat_id, '', 0, TRUE FROM deliveries WHERE delivered IS NULL;
    CREATE INDEX deliveries_delivered ON deliveries (delivered) WHERE delivered IS NOT NULL;
    CREATE INDEX questions_last ON questions (last);
    CREATE INDEX feedback_last ON feedback (last);
    CREATE TABLE chat_languages (
        chat_id INTEGER PRIMARY KEY,
        language TEXT NOT NULL
    );
    CREATE TABLE buckets (
        name TEXT PRIMARY KEY,
        tokens REAL NOT NULL,
        updated REAL NOT NULL
    );
    CREATE INDEX buckets_updated ON buckets (updated);
    CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        expires REAL NOT NULL
    );
    CREATE TABLE state (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
)


def _error(exc: sqlite3.Error, doing: str) -> StoreError:
    if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
        return StoreError(f"database busy (locked by another writer), {doing}: {exc}")
    return StoreError(f"database {doing}: {exc}")


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def execute(self, sql: str, params: Sequence[object] = ()) -> sqlite3.Cursor:
        return self._db.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> int:
        return self._db.executemany(sql, rows).rowcount


class SqliteBackend:
    """One connection, serialised by a lock so worker threads may share it with the event loop."""

    for_update = ""
    in_select = "{column} IN ({select})"
    skip_locked = ""

    def __init__(self, path: Path | str, *, timeout: float = 1.0) -> None:
        self.path = str(path)
        self.where = self.path
        self._lock = threading.RLock()
        files = [] if self.path == ":memory:" else [Path(self.path + suffix) for suffix in ("", "-wal", "-shm")]
        try:
            with owner_only():
                if files:
                    files[0].parent.mkdir(parents=True, exist_ok=True)
                self.db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None, check_same_thread=False)
                restrict(files)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the database {self.path}: {exc}") from exc
        try:
            self.db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            self._use_wal(timeout)
            self.db.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: a crash of the process loses nothing
            self._migrate()
            restrict(files)
        except (sqlite3.Error, StoreError) as exc:
            self.db.close()
            if isinstance(exc, StoreError):
                raise
            raise _error(exc, f"{self.path} cannot be used") from exc

    def _use_wal(self, timeout: float) -> None:
        """Switching a new file to WAL needs it to itself, and SQLite may refuse at once instead of waiting
        (replicas starting together): try again until the busy timeout."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with owner_only():
                    self.db.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(WAL_RETRY)

    def _migrate(self) -> None:
        """Bring the schema up to date inside one IMMEDIATE transaction: two processes starting together
        take turns, and the second finds the work done."""
        with self.transaction() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise StoreError(f"{self.path} was written by a newer version of the bot (schema {version})")
            for number in range(version, len(MIGRATIONS)):
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {number + 1}")

    def follow_ids(self, db: _Transaction) -> None:
        """Nothing to do: an INTEGER PRIMARY KEY continues after the largest id by itself."""

    def close(self) -> None:
        with self._lock:
            self.db.close()

    def write(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self.db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise _error(exc, "write failed, nothing was changed") from exc

    @contextmanager
    def transaction(self) -> Iterator[_Transaction]:
        with self._lock:
            try:
                self.db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise _error(exc, "busy or unavailable") from exc
            try:
                yield _Transaction(self.db)
                self.db.execute("COMMIT")
            except BaseException as exc:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise _error(exc, "write failed, nothing was changed") from exc
                raise

    def read(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self.db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise _error(exc, "read failed") from exc
