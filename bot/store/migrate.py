"""`python -m bot migrate-db`: copy a store into another, e.g. a SQLite deployment into PostgreSQL.

Everything durable is copied: subscriptions (with their ids, which buttons already sent carry), the delivery
log (sent and queued), announced articles, meta (the first-start baseline, the knowledge-base version),
question and feedback statistics, chat languages and state. Token buckets and leases are moments, not data.
The copy is one transaction on the target, so it lands whole or not at all, and it is idempotent: running it
again changes nothing, and a row already in the target keeps it there (values the source also has are the
source's). Stop the bot on the source first, so nothing is written there during the copy.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from bot.store.core import Store, Transaction

PAGE = 5000   # rows read from the source at a time: a large delivery log is never held whole


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[str, ...]
    order: tuple[str, ...]   # a unique key to page through the source by
    insert: str              # the statement that writes one source row into the target


TABLES: tuple[Table, ...] = (
    Table("subscriptions", ("id", "chat_id", "words", "created", "thread_id"), ("id",),
          # keep the id unless the target gave it to another subscription; same chat and words: already there
          "INSERT INTO subscriptions (id, chat_id, words, created, thread_id) SELECT ?, ?, ?, ?, ? "
          "WHERE NOT EXISTS (SELECT 1 FROM subscriptions WHERE id = ?) ON CONFLICT DO NOTHING"),
    Table("deliveries", ("chat_id", "article_id", "queued", "delivered"), ("seq",),
          "INSERT INTO deliveries (chat_id, article_id, queued, delivered) VALUES (?, ?, ?, ?) "
          "ON CONFLICT (chat_id, article_id) DO UPDATE SET delivered = COALESCE(deliveries.delivered, "
          "excluded.delivered)"),
    Table("announced", ("article_id",), ("article_id",),
          "INSERT INTO announced (article_id) VALUES (?) ON CONFLICT DO NOTHING"),
    Table("meta", ("key", "value"), ("key",),
          "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"),
    Table("questions", ("key", "text", "answered", "unanswered", "last"), ("key",),
          "INSERT INTO questions (key, text, answered, unanswered, last) VALUES (?, ?, ?, ?, ?) "
          "ON CONFLICT (key) DO UPDATE SET text = excluded.text, answered = excluded.answered, "
          "unanswered = excluded.unanswered, last = excluded.last"),
    Table("feedback", ("key", "article_id", "text", "helpful", "unhelpful", "last"), ("key", "article_id"),
          "INSERT INTO feedback (key, article_id, text, helpful, unhelpful, last) VALUES (?, ?, ?, ?, ?, ?) "
          "ON CONFLICT (key, article_id) DO UPDATE SET text = excluded.text, helpful = excluded.helpful, "
          "unhelpful = excluded.unhelpful, last = excluded.last"),
    Table("chat_languages", ("chat_id", "language"), ("chat_id",),
          "INSERT INTO chat_languages (chat_id, language) VALUES (?, ?) "
          "ON CONFLICT (chat_id) DO UPDATE SET language = excluded.language"),
    Table("state", ("key", "value"), ("key",),
          "INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"),
)

# A subscription whose id the target had given to another one: copied under a new id.
_RENUMBERED = ("INSERT INTO subscriptions (chat_id, words, created, thread_id) VALUES (?, ?, ?, ?) "
               "ON CONFLICT DO NOTHING")


def _pages(source: Store, table: Table) -> Iterator[list[tuple[Any, ...]]]:
    """The source table's rows in key order, PAGE at a time (the key columns come last in each row)."""
    columns = ", ".join(table.columns + table.order)
    keys = ", ".join(table.order)
    after: Sequence[object] = ()
    while True:
        where = f"WHERE ({keys}) > ({', '.join('?' * len(after))}) " if after else ""
        rows = source._read(f"SELECT {columns} FROM {table.name} {where}ORDER BY {keys} LIMIT ?", (*after, PAGE))
        if not rows:
            return
        yield [row[:len(table.columns)] for row in rows]
        after = rows[-1][len(table.columns):]


def _write(target: Store, db: Transaction, table: Table, rows: list[tuple[Any, ...]]) -> None:
    if table.name == "subscriptions":
        db.executemany(table.insert, [(*row, row[0]) for row in rows])
        target._backend.follow_ids(db)   # new ids start after the copied ones
        db.executemany(_RENUMBERED, [row[1:] for row in rows])
    else:
        db.executemany(table.insert, rows)


def copy(source: Store, target: Store) -> dict[str, int]:
    """Copy every durable table of `source` into `target`; returns the rows read per table."""
    counts = dict.fromkeys((table.name for table in TABLES), 0)
    with target._write() as db:
        for table in TABLES:
            for rows in _pages(source, table):
                _write(target, db, table, rows)
                counts[table.name] += len(rows)
        db.execute("INSERT INTO delivery_leases (chat_id, owner, expires, queued) SELECT DISTINCT chat_id, '', 0, "
                   "TRUE FROM deliveries WHERE delivered IS NULL ON CONFLICT (chat_id) DO UPDATE SET queued = TRUE")
        target._backend.follow_ids(db)
    return counts
