"""The SQLite store keeps subscriptions, the delivery log and statistics across restarts and failures."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.store import Store, StoreError, Subscription


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "bot.sqlite3"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    opened = Store(db_path)
    yield opened
    opened.close()


def test_creates_parent_directory_schema_and_wal(db_path: Path, store: Store) -> None:
    assert db_path.exists()
    raw = sqlite3.connect(db_path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert raw.execute("PRAGMA user_version").fetchone()[0] >= 1
    raw.close()


def test_memory_database_works() -> None:
    store = Store(":memory:")
    assert store.subscribe(1).words is None
    store.close()


def test_subscribe_is_idempotent_and_normalises_words(store: Store) -> None:
    everything = store.subscribe(5)
    topic = store.subscribe(5, "  Water   QUALITY! ")
    assert topic.words == "water quality"
    assert store.subscribe(5, "water quality") == topic
    assert store.subscribe(5) == everything
    assert store.subscriptions(5) == [Subscription(everything.id, 5, None), topic]
    assert store.subscribe(5, "   ") == everything  # no words left: the same as no filter


def test_unsubscribe_one_or_all(store: Store) -> None:
    first = store.subscribe(1, "elections")
    store.subscribe(1, "courts")
    store.subscribe(2)
    assert store.unsubscribe(1, first.id) == 1
    assert [s.words for s in store.subscriptions(1)] == ["courts"]
    assert store.unsubscribe(1, first.id) == 0
    assert store.unsubscribe(2, store.subscriptions(1)[0].id) == 0  # another chat's subscription is not ours
    assert store.unsubscribe(1) == 1
    assert store.subscriptions(1) == []
    assert [s.chat_id for s in store.all_subscriptions()] == [2]


def test_subscriptions_survive_reopening(db_path: Path) -> None:
    store = Store(db_path)
    store.subscribe(-100, "ngo law")
    store.close()
    again = Store(db_path)
    assert [(s.chat_id, s.words) for s in again.all_subscriptions()] == [(-100, "ngo law")]
    again.close()


def test_delivery_queue_is_exactly_once(db_path: Path) -> None:
    store = Store(db_path)
    assert store.enqueue([(1, "a"), (2, "a"), (1, "b"), (1, "a")]) == 3
    assert store.pending() == {1: ["a", "b"], 2: ["a"]}
    store.mark_delivered(1, ["a"])
    assert store.enqueue([(1, "a"), (1, "c")]) == 1  # "a" was delivered already: never again
    store.close()
    reopened = Store(db_path)
    assert reopened.pending() == {1: ["b", "c"], 2: ["a"]}
    reopened.mark_delivered(1, ["b", "c"])
    reopened.mark_delivered(2, ["a"])
    assert reopened.pending() == {}
    reopened.close()


def test_forget_chat_drops_subscriptions_and_queue_only_for_that_chat(store: Store) -> None:
    store.subscribe(1)
    store.subscribe(2, "press")
    store.enqueue([(1, "a"), (2, "a")])
    store.forget_chat(1)
    assert [s.chat_id for s in store.all_subscriptions()] == [2]
    assert store.pending() == {2: ["a"]}


def test_unsubscribing_everything_drops_the_chats_queue(store: Store) -> None:
    store.subscribe(1)
    store.enqueue([(1, "a")])
    store.unsubscribe(1)
    assert store.pending() == {}


def test_migrate_chat_moves_subscriptions_and_queue(store: Store) -> None:
    store.subscribe(-5, "media")
    store.subscribe(-100500, "media")
    store.subscribe(-5)
    store.enqueue([(-5, "a")])
    store.migrate_chat(-5, -100500)
    assert sorted((s.chat_id, s.words or "") for s in store.all_subscriptions()) == [
        (-100500, ""), (-100500, "media")
    ]
    assert store.pending() == {-100500: ["a"]}


def test_stats_count_questions_by_text_only(store: Store, db_path: Path) -> None:
    store.subscribe(1)
    store.subscribe(1, "x")
    store.subscribe(2)
    for _ in range(3):
        store.record_question("Who funds   NGOs?", answered=False)
    store.record_question("who funds ngos?", answered=False)
    store.record_question("What is new?", answered=False)
    store.record_question("Election law", answered=True)
    store.record_feedback("Election law", "art-1", helpful=False)
    store.record_feedback("election law", "art-2", helpful=False)
    store.record_feedback("Budget", "art-3", helpful=True)
    stats = store.stats()
    assert (stats.subscribed_chats, stats.subscriptions) == (2, 3)
    assert (stats.answered, stats.unanswered, stats.helpful, stats.unhelpful) == (1, 5, 1, 2)
    assert stats.top_unanswered == [("who funds ngos?", 4), ("What is new?", 1)]
    assert [n for _text, n in stats.top_unhelpful] == [2]
    assert stats.top_unhelpful[0][0].casefold() == "election law"


def test_long_questions_are_clipped(store: Store) -> None:
    store.record_question("word " * 2000, answered=False)
    (text, count), = store.stats().top_unanswered
    assert count == 1 and len(text) <= 500


def test_locked_database_raises_store_error_and_keeps_reading(db_path: Path) -> None:
    store = Store(db_path, timeout=0.1)
    store.subscribe(1)
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    with pytest.raises(StoreError, match=r"busy|locked"):
        store.subscribe(2)
    assert [s.chat_id for s in store.subscriptions(1)] == [1]  # WAL: reads go on
    other.execute("ROLLBACK")
    other.close()
    store.subscribe(2)
    assert len(store.all_subscriptions()) == 2
    store.close()


def test_full_database_raises_store_error_and_loses_nothing(db_path: Path) -> None:
    store = Store(db_path)
    store.subscribe(1, "kept")
    store.enqueue([(1, "kept-article")])
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages + 2}")  # the disk is (nearly) full
    with pytest.raises(StoreError, match="full"):
        store.enqueue((chat, f"article-{n}") for chat in range(100) for n in range(100))
    assert store.pending() == {1: ["kept-article"]}  # the failed batch left no half of itself
    assert [s.words for s in store.subscriptions(1)] == ["kept"]
    store.close()
    check = sqlite3.connect(db_path)
    assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    check.close()


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bot.sqlite3"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match=r"bot\.sqlite3"):
        Store(bad)


def test_database_from_a_newer_version_is_refused(db_path: Path) -> None:
    Store(db_path).close()
    raw = sqlite3.connect(db_path)
    raw.execute("PRAGMA user_version = 99")
    raw.close()
    with pytest.raises(StoreError, match="newer version"):
        Store(db_path)
