"""The store keeps subscriptions, the delivery log and statistics across restarts and failures, and lets
replicas share work, limits and leases: every behaviour on both backends, a real SQLite file and a real
PostgreSQL server (bot/testing/postgres.py)."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from bot.store import Store, StoreError, Subscription, core, open_store
from bot.store.postgres import MIGRATIONS as PG_MIGRATIONS
from bot.store.sqlite import MIGRATIONS as SQLITE_MIGRATIONS

Opener = Callable[..., Store]


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "bot.sqlite3"


@pytest.fixture
def location(backend: str, db_path: Path, request: pytest.FixtureRequest) -> str:
    """This test's one database: a file path or a PostgreSQL URL (a fresh database)."""
    return str(db_path) if backend == "sqlite" else str(request.getfixturevalue("postgres_url"))


def open_at(location: str, **options: float) -> Store:
    if location.startswith("postgresql://"):
        return open_store(location, Path("unused"), **options)
    return Store(location, **options)


@pytest.fixture
def opener(location: str) -> Iterator[Opener]:
    """Opens this test's database (again: a restart, or another replica); all are closed at the end."""
    opened: list[Store] = []

    def open_(**options: float) -> Store:
        opened.append(open_at(location, **options))
        return opened[-1]

    yield open_
    for each in opened:
        each.close()


@pytest.fixture
def store(opener: Opener) -> Store:
    return opener()


class Clock:
    """Stands in for the store's `time` module: a clock the test moves."""

    def __init__(self) -> None:
        self.now = time.time()

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(core, "time", fake)
    return fake


# --- SQLite files ---------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_creates_parent_directory_schema_and_wal_readable_by_the_owner_only(db_path: Path) -> None:
    store = Store(db_path)
    store.subscribe(1)
    raw = sqlite3.connect(db_path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert raw.execute("PRAGMA user_version").fetchone()[0] == len(SQLITE_MIGRATIONS)
    raw.close()
    companions = [db_path, db_path.with_name("bot.sqlite3-wal"), db_path.with_name("bot.sqlite3-shm")]
    assert {path.name: _mode(path) for path in companions} == {path.name: 0o600 for path in companions}
    assert _mode(db_path.parent) == 0o700
    store.close()


def test_a_database_created_world_readable_is_made_owner_only(db_path: Path) -> None:
    db_path.parent.mkdir()
    old = os.umask(0o022)
    try:
        raw = sqlite3.connect(db_path)
        raw.execute("PRAGMA journal_mode = WAL")
        raw.execute("CREATE TABLE t (x)")
        raw.close()
        assert _mode(db_path) == 0o644
        Store(db_path).close()
        assert os.umask(0o022) == 0o022   # the store put the process's umask back
    finally:
        os.umask(old)
    assert _mode(db_path) == 0o600


def test_memory_database_works() -> None:
    store = Store(":memory:")
    assert store.subscribe(1).words is None
    store.close()


def test_a_database_of_the_previous_version_migrates_forward_with_nothing_lost(db_path: Path) -> None:
    """What the bot wrote before this version (schema 2): every row is still there and works."""
    db_path.parent.mkdir()
    raw = sqlite3.connect(db_path, isolation_level=None)
    for script in SQLITE_MIGRATIONS[:2]:
        raw.executescript(script)
    raw.execute("PRAGMA user_version = 2")
    raw.executescript("""
        INSERT INTO subscriptions (id, chat_id, words, created) VALUES (7, -100, '', 1), (9, 5, 'water', 2);
        INSERT INTO deliveries (chat_id, article_id, queued, delivered) VALUES
            (-100, 'old', 1, 2), (-100, 'new', 3, NULL), (5, 'new', 3, NULL);
        INSERT INTO questions (key, text, answered, unanswered, last) VALUES ('who?', 'Who?', 1, 2, 5);
        INSERT INTO feedback (key, article_id, text, helpful, unhelpful, last) VALUES ('who?', 'old', 'Who?', 0, 1, 5);
        INSERT INTO announced (article_id) VALUES ('old'), ('new');
        UPDATE meta SET value = 'done' WHERE key = 'announced_baseline';
    """)
    raw.close()
    store = Store(db_path)
    assert store.all_subscriptions() == [Subscription(7, -100, None), Subscription(9, 5, "water")]
    assert store.pending() == {-100: ["new"], 5: ["new"]}
    assert store.enqueue([(-100, "old")]) == 0   # delivered before the upgrade: never again
    stats = store.stats()
    assert (stats.answered, stats.unanswered, stats.unhelpful) == (1, 2, 1)
    assert store.unannounced(["old", "new", "newer"]) == ["newer"]
    assert store.claim_deliveries("w", 10, 60) == {-100: ["new"], 5: ["new"]}   # the queue is shared work now
    store.close()


# --- subscriptions --------------------------------------------------------------------------


def test_subscribe_is_idempotent_and_normalises_words(store: Store) -> None:
    everything = store.subscribe(5)
    topic = store.subscribe(5, "  Water   QUALITY! ")
    assert topic.words == "water quality"
    assert store.subscribe(5, "water quality") == topic
    assert store.subscribe(5) == everything
    assert store.subscriptions(5) == [Subscription(everything.id, 5, None), topic]
    assert store.subscribe(5, "   ") == everything  # no words left: the same as no filter


def test_a_subscription_keeps_its_forum_topic_and_follows_the_latest(store: Store) -> None:
    first = store.subscribe(-100, "courts", thread_id=12)
    assert first.thread_id == 12
    assert store.subscriptions(-100) == [first]
    moved = store.subscribe(-100, "courts", thread_id=40)
    assert (moved.id, moved.thread_id) == (first.id, 40)
    assert store.all_subscriptions() == [moved]


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


def test_subscriptions_survive_reopening(opener: Opener) -> None:
    store = opener()
    store.subscribe(-100, "ngo law")
    store.close()
    again = opener()
    assert [(s.chat_id, s.words) for s in again.all_subscriptions()] == [(-100, "ngo law")]


def test_chat_ids_beyond_32_bits(store: Store) -> None:
    supergroup = -1001234567890
    store.subscribe(supergroup)
    store.enqueue([(supergroup, "a")])
    assert store.pending() == {supergroup: ["a"]}


# --- the delivery log -----------------------------------------------------------------------


def test_delivery_queue_is_exactly_once(opener: Opener) -> None:
    store = opener()
    assert store.enqueue([(1, "a"), (2, "a"), (1, "b"), (1, "a")]) == 3
    assert store.pending() == {1: ["a", "b"], 2: ["a"]}
    store.mark_delivered(1, ["a"])
    assert store.enqueue([(1, "a"), (1, "c")]) == 1  # "a" was delivered already: never again
    store.close()
    reopened = opener()
    assert reopened.pending() == {1: ["b", "c"], 2: ["a"]}
    reopened.mark_delivered(1, ["b", "c"])
    reopened.mark_delivered(2, ["a"])
    assert reopened.pending() == {}


def test_announce_records_articles_and_queues_together(store: Store) -> None:
    assert store.unannounced(["seed"]) == []   # a new database: what is there is not news
    assert store.announce(["x", "y"], [(1, "x"), (2, "x"), (2, "y")]) == 3
    assert store.unannounced(["seed", "x", "y", "z"]) == ["z"]
    assert store.pending() == {1: ["x"], 2: ["x", "y"]}


def test_forget_chat_deletes_everything_about_that_chat_only(store: Store) -> None:
    store.subscribe(1)
    store.subscribe(2, "press")
    store.set_chat_language(1, "kk")
    store.set_chat_language(2, "ru")
    store.enqueue([(1, "a"), (2, "a"), (1, "b")])
    store.mark_delivered(1, ["b"])
    store.forget_chat(1)
    assert [s.chat_id for s in store.all_subscriptions()] == [2]
    assert store.pending() == {2: ["a"]}
    assert (store.chat_language(1), store.chat_language(2)) == (None, "ru")
    assert store.enqueue([(1, "b")]) == 1   # no trace of the delivered row either
    assert store.claim_deliveries("w", 10, 60) == {1: ["b"], 2: ["a"]}


def test_unsubscribing_everything_drops_the_chats_queue(store: Store) -> None:
    store.subscribe(1)
    store.enqueue([(1, "a")])
    store.unsubscribe(1)
    assert store.pending() == {}


def test_migrate_chat_moves_subscriptions_queue_and_language(store: Store) -> None:
    store.subscribe(-5, "media")
    store.subscribe(-100500, "media")
    store.subscribe(-5)
    store.set_chat_language(-5, "kk")
    store.enqueue([(-5, "a"), (-5, "b"), (-100500, "b")])
    store.migrate_chat(-5, -100500)
    assert sorted((s.chat_id, s.words or "") for s in store.all_subscriptions()) == [
        (-100500, ""), (-100500, "media")
    ]
    assert store.pending() == {-100500: ["a", "b"]}
    assert (store.chat_language(-5), store.chat_language(-100500)) == (None, "kk")
    assert store.claim_deliveries("w", 10, 60).keys() == {-100500}


# --- sharing a broadcast between workers ----------------------------------------------------


def test_claimed_chats_go_to_one_worker_with_their_whole_queue(store: Store) -> None:
    store.enqueue([(chat, article) for article in ("a", "b") for chat in (1, 2, 3)])
    first = store.claim_deliveries("w1", 2, 60)
    second = store.claim_deliveries("w2", 2, 60)
    assert len(first) == 2 and len(second) == 1 and not first.keys() & second.keys()
    assert all(ids == ["a", "b"] for ids in (*first.values(), *second.values()))
    assert store.claim_deliveries("w1", 5, 60) == {}   # a worker is not handed what it holds again
    assert store.claim_deliveries("w3", 5, 60) == {}


def test_a_chat_freed_by_its_last_delivery_is_claimed_again_for_new_articles(store: Store) -> None:
    store.enqueue([(1, "a"), (2, "a")])
    claimed = store.claim_deliveries("w1", 5, 60)
    store.mark_delivered(1, claimed[1])
    store.enqueue([(1, "b"), (2, "b")])
    assert store.claim_deliveries("w2", 5, 60) == {1: ["b"]}   # chat 2 is still w1's: it has "a" unsent


def test_released_chats_are_claimed_by_another_worker_at_once(store: Store) -> None:
    store.enqueue([(1, "a"), (2, "a")])
    assert store.claim_deliveries("w1", 5, 60).keys() == {1, 2}
    store.release_deliveries("w2")   # another worker's release gives nothing of w1's away
    assert store.claim_deliveries("w2", 5, 60) == {}
    store.release_deliveries("w1")
    assert store.claim_deliveries("w2", 5, 60) == {1: ["a"], 2: ["a"]}


def test_a_chat_whose_queue_was_dropped_is_not_handed_out(store: Store) -> None:
    store.subscribe(1)
    store.subscribe(2)
    store.enqueue([(1, "a"), (2, "a")])
    store.unsubscribe(1)
    assert store.claim_deliveries("w1", 5, 60) == {2: ["a"]}
    store.enqueue([(1, "b")])
    assert store.claim_deliveries("w2", 5, 60) == {1: ["b"]}   # its lease was not left held


def test_a_queued_chat_whose_mark_was_lost_is_found_again(store: Store) -> None:
    store.enqueue([(1, "a")])
    store._write_one("UPDATE delivery_leases SET queued = FALSE")   # what a clear racing an announce leaves
    assert store.claim_deliveries("w", 5, 60) == {}
    assert store.claim_deliveries("w", 5, 60) == {1: ["a"]}


def test_a_dead_workers_share_goes_to_another_when_its_lease_expires(opener: Opener, clock: Clock) -> None:
    dead, alive = opener(), opener()
    dead.enqueue([(chat, "a") for chat in range(10)])
    held = dead.claim_deliveries("dead", 6, 30)
    mine = alive.claim_deliveries("alive", 100, 60)
    assert len(held) == 6 and len(mine) == 4 and not mine.keys() & held.keys()
    clock.now += 29
    assert alive.claim_deliveries("alive", 100, 60) == {}
    clock.now += 2
    assert alive.claim_deliveries("alive", 100, 60) == held


def _drain(location: str, worker: str, sent: list[tuple[int, str]], errors: list[BaseException]) -> None:
    store = open_at(location, timeout=5.0)
    try:
        while batch := store.claim_deliveries(worker, 7, 60):
            for chat_id, ids in batch.items():
                sent.extend((chat_id, i) for i in ids)
                store.mark_delivered(chat_id, ids)
    except BaseException as exc:
        errors.append(exc)
    finally:
        store.close()


def test_workers_claiming_at_once_send_everything_exactly_once(store: Store, location: str) -> None:
    expected = Counter({(chat, f"art-{n}"): 1 for chat in range(400) for n in range(3)})
    store.enqueue(expected)
    sent: list[list[tuple[int, str]]] = [[], [], []]
    errors: list[BaseException] = []
    workers = [threading.Thread(target=_drain, args=(location, f"w{n}", sent[n], errors)) for n in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    assert Counter(pair for share in sent for pair in share) == expected
    assert sum(1 for share in sent if share) >= 2   # the work was shared
    assert store.pending() == {}


# --- coordination ---------------------------------------------------------------------------


def test_a_token_bucket_is_shared_by_every_store_on_the_database(opener: Opener) -> None:
    one, two = opener(), opener()
    slow = 1 / 3600   # refills one token an hour: nothing refills during the test
    assert [one.take_token("user:42", 3, slow), two.take_token("user:42", 3, slow),
            one.take_token("user:42", 3, slow)] == [0.0, 0.0, 0.0]
    wait = two.take_token("user:42", 3, slow)
    assert 3000 < wait <= 3600
    assert one.take_token("user:7", 3, slow) == 0.0   # another bucket is untouched


def test_a_token_bucket_refills_at_its_rate(store: Store, clock: Clock) -> None:
    assert store.take_token("send", 2, 10) == 0.0
    assert store.take_token("send", 2, 10) == 0.0
    assert store.take_token("send", 2, 10) == pytest.approx(0.1)
    assert store.take_token("send", 2, 10) == pytest.approx(0.1)   # a wait takes nothing
    clock.now += 0.05
    assert store.take_token("send", 2, 10) == pytest.approx(0.05)
    clock.now += 0.05
    assert store.take_token("send", 2, 10) == 0.0
    clock.now += 60
    assert [store.take_token("send", 2, 10) for _ in range(3)][:2] == [0.0, 0.0]   # never more than capacity


def test_queued_takers_get_turns_one_interval_apart_however_late_they_come(store: Store, clock: Clock) -> None:
    assert [store.take_token("send", 1, 10, queue=True) for _ in range(4)] == pytest.approx([0, 0.1, 0.2, 0.3])
    clock.now += 0.25   # two of those turns have passed
    assert store.take_token("send", 1, 10, queue=True) == pytest.approx(0.15)   # behind the ones in line
    assert store.take_token("send", 1, 10) == pytest.approx(0.25)   # not queueing: waits for the line, takes nothing
    clock.now += 60
    assert store.take_token("send", 1, 10, queue=True) == 0.0   # an idle line starts again at once


def test_concurrent_takers_never_get_more_than_the_bucket_holds(opener: Opener) -> None:
    stores = [opener(timeout=5.0), opener(timeout=5.0)]
    taken: list[float] = []

    def take(store: Store) -> None:
        for _ in range(15):
            taken.append(store.take_token("global", 12, 1 / 3600))

    threads = [threading.Thread(target=take, args=(stores[n % 2],)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(taken) == 60 and taken.count(0.0) == 12


def test_bad_bucket_settings_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="capacity"):
        store.take_token("x", 0, 1)
    with pytest.raises(ValueError, match="per_second"):
        store.take_token("x", 1, 0)


def test_a_lease_is_held_renewed_and_taken_over_after_it_expires(opener: Opener, clock: Clock) -> None:
    one, two = opener(), opener()
    assert one.acquire_lease("poller", "replica-1", 10)
    assert not two.acquire_lease("poller", "replica-2", 10)
    clock.now += 8
    assert one.acquire_lease("poller", "replica-1", 10)   # renewed: good for 10 s from now
    clock.now += 8
    assert not two.acquire_lease("poller", "replica-2", 10)
    clock.now += 3
    assert two.acquire_lease("poller", "replica-2", 10)   # replica-1 stopped renewing: taken over
    assert not one.acquire_lease("poller", "replica-1", 10)
    assert one.acquire_lease("other job", "replica-1", 10)
    two.release_lease("poller", "replica-1")   # not its lease to give
    assert not one.acquire_lease("poller", "replica-1", 10)
    two.release_lease("poller", "replica-2")
    assert one.acquire_lease("poller", "replica-1", 10)


def test_the_knowledge_base_version_is_seen_by_every_store(opener: Opener) -> None:
    one, two = opener(timeout=5.0), opener(timeout=5.0)
    assert one.kb_version() == two.kb_version() == 0
    assert one.bump_kb_version() == 1
    assert two.kb_version() == 1
    threads = [threading.Thread(target=lambda s=s: [s.bump_kb_version() for _ in range(10)]) for s in (one, two)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert one.kb_version() == two.kb_version() == 21


def test_state_and_chat_language_are_kept(opener: Opener) -> None:
    store = opener()
    assert store.get_state("source:a") is None
    store.set_state("source:a", '{"etag": "x"}')
    store.set_state("source:a", '{"etag": "y", "failures": 0}')
    assert store.chat_language(9) is None
    store.set_chat_language(9, "ru")
    store.set_chat_language(9, "kk")
    store.set_chat_language(10, "en")
    store.set_chat_language(10, None)
    store.close()
    again = opener()
    assert again.get_state("source:a") == '{"etag": "y", "failures": 0}'
    assert (again.chat_language(9), again.chat_language(10)) == ("kk", None)


# --- statistics and retention ---------------------------------------------------------------


def test_stats_count_questions_by_text_only(store: Store) -> None:
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


def test_prune_deletes_what_is_older_than_the_retention_and_keeps_the_rest(store: Store, clock: Clock) -> None:
    store.unannounced([])
    store.announce(["old"], [(1, "old"), (2, "old")])
    store.mark_delivered(1, ["old"])
    store.record_question("old question", answered=False)
    store.record_feedback("old question", "old", helpful=False)
    store.take_token("user:1", 5, 1)
    clock.now += 91 * core.DAY
    store.announce(["new"], [(1, "new")])
    store.mark_delivered(1, ["new"])
    store.record_question("new question", answered=True)
    assert store.prune(90) == 4   # the old delivered row, question, feedback and bucket
    stats = store.stats()
    assert (stats.answered, stats.unanswered, stats.unhelpful) == (1, 0, 0)
    assert store.pending() == {2: ["old"]}   # never sent: kept however old
    assert store.enqueue([(1, "new")]) == 0
    assert store.unannounced(["old", "new"]) == []   # a pruned delivery is not news again
    assert store.prune(90) == 0
    with pytest.raises(ValueError):
        store.prune(-1)


# --- failures -------------------------------------------------------------------------------


def _hold_write_lock(backend: str, location: str) -> Callable[[], None]:
    """Another program holds the lock our writes need; returns how to let go."""
    if backend == "sqlite":
        other = sqlite3.connect(location, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
    else:
        other = psycopg.connect(location)
        other.execute("LOCK TABLE subscriptions IN EXCLUSIVE MODE")   # reads go on, writes wait

    def release() -> None:
        other.rollback() if backend != "sqlite" else other.execute("ROLLBACK")
        other.close()

    return release


def test_locked_database_raises_store_error_quickly_and_keeps_reading(
        opener: Opener, backend: str, location: str) -> None:
    store = opener(timeout=0.1)
    store.subscribe(1)
    release = _hold_write_lock(backend, location)
    started = time.monotonic()
    with pytest.raises(StoreError, match=r"busy|locked"):
        store.subscribe(2)
    assert time.monotonic() - started < 5   # a wait of the busy timeout, not a hang
    assert [s.chat_id for s in store.subscriptions(1)] == [1]
    release()
    store.subscribe(2)
    assert len(store.all_subscriptions()) == 2


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


def test_a_batch_postgresql_refuses_halfway_leaves_nothing_of_itself(postgres_url: str) -> None:
    store = open_at(postgres_url)
    store.subscribe(1, "kept")
    store.enqueue([(1, "kept-article")])
    with pytest.raises(StoreError, match="nothing was changed"):   # PostgreSQL text cannot hold NUL
        store.announce(["fine", "bad\x00id"], [(1, "fine"), (2, "fine"), (3, "bad\x00id")])
    assert store.pending() == {1: ["kept-article"]}
    assert store.unannounced(["fine"]) == []   # the first call sets the baseline: proves nothing was recorded
    store.close()


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bot.sqlite3"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match=r"bot\.sqlite3"):
        Store(bad)


def test_an_unreachable_server_is_a_clear_error_that_hides_the_password(tmp_path: Path) -> None:
    url = f"postgresql://bot:s3cret@/civic?host={tmp_path}&port=5"
    with pytest.raises(StoreError, match="civic") as caught:
        open_store(url, Path("unused"), timeout=0.2)
    assert "s3cret" not in str(caught.value)


def _schema_version(backend: str, location: str) -> int:
    if backend == "sqlite":
        raw = sqlite3.connect(location)
        try:
            return int(raw.execute("PRAGMA user_version").fetchone()[0])
        finally:
            raw.close()
    with psycopg.connect(location) as raw:
        return int(raw.execute("SELECT version FROM schema_version").fetchone()[0])


def _set_schema_version(backend: str, location: str, version: int) -> None:
    if backend == "sqlite":
        raw = sqlite3.connect(location)
        raw.execute(f"PRAGMA user_version = {version}")
        raw.close()
    else:
        with psycopg.connect(location) as raw:
            raw.execute("UPDATE schema_version SET version = %s", (version,))


def test_database_from_a_newer_version_is_refused(opener: Opener, backend: str, location: str) -> None:
    opener().close()
    _set_schema_version(backend, location, 99)
    with pytest.raises(StoreError, match="newer version"):
        opener()


_OPEN_TOGETHER = """
import sys
from pathlib import Path
from bot.store import open_store
location = sys.argv[1]
print("ready", flush=True)
sys.stdin.readline()
url = location if location.startswith("postgresql://") else None
store = open_store(url, Path(location), timeout=10.0)
store.subscribe(1)
store.close()
"""


def test_replicas_starting_together_migrate_the_schema_once(backend: str, location: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    children = [subprocess.Popen([sys.executable, "-c", _OPEN_TOGETHER, location], env=env, text=True,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                for _ in range(4)]
    for child in children:   # every one has imported the bot: now they open the new database at once
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    failures = [child.communicate(timeout=60)[1] for child in children]
    assert [child.returncode for child in children] == [0, 0, 0, 0], failures
    store = open_at(location)
    assert [s.chat_id for s in store.all_subscriptions()] == [1]
    store.close()
    assert _schema_version(backend, location) == len(SQLITE_MIGRATIONS if backend == "sqlite" else PG_MIGRATIONS)


def test_the_store_is_usable_from_many_threads(store: Store) -> None:
    def work(chat: int) -> None:
        for n in range(20):
            store.subscribe(chat, f"topic {n}")
            store.record_question(f"question {n}", answered=bool(n % 2))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, range(8)))
    stats = store.stats()
    assert (stats.subscribed_chats, stats.subscriptions, stats.answered + stats.unanswered) == (8, 160, 160)


def test_postgresql_connections_cut_by_the_server_are_replaced(postgres_url: str, postgres_server: str) -> None:
    store = open_at(postgres_url)
    store.subscribe(1)
    with psycopg.connect(postgres_server, autocommit=True) as admin:   # e.g. a server restart or failover
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'")
    stored = [1]
    for chat in (2, 3):
        try:
            store.subscribe(chat)
            stored.append(chat)
        except StoreError:   # at most the call on the cut connection fails, and says so
            continue
    assert stored[-1] == 3
    assert [s.chat_id for s in store.all_subscriptions()] == stored
    store.close()
