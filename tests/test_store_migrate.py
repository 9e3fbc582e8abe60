"""`python -m bot migrate-db` moves a SQLite deployment onto PostgreSQL with nothing lost, and may be repeated."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.store import Store, Subscription, open_store
from tests.driver import REPO


def migrate_db(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot", "migrate-db", *args], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)


def snapshot(store: Store) -> dict[str, object]:
    """Everything a user or an admin could see of the store, plus the raw delivery log."""
    return {
        "subscriptions": store.all_subscriptions(),
        "pending": store.pending(),
        "log": sorted(store._read("SELECT chat_id, article_id, queued, delivered FROM deliveries")),
        "stats": store.stats(),
        "languages": (store.chat_language(-100), store.chat_language(7)),
        "state": store.get_state("source:gazette"),
        "kb_version": store.kb_version(),
        "unannounced": store.unannounced(["a", "b", "c", "fresh"]),
    }


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "bot.sqlite3"
    store = Store(path)
    store.unannounced(["seed"])   # the first start's baseline
    store.subscribe(-100)
    store.subscribe(-100, "courts", thread_id=4)
    removed = store.subscribe(7, "water")
    store.subscribe(7, "elections")
    store.unsubscribe(7, removed.id)   # ids with a gap, as a real deployment has
    store.announce(["a", "b", "c"], [(-100, "a"), (-100, "b"), (7, "b"), (-100, "c")])
    store.mark_delivered(-100, ["a", "b"])
    store.record_question("Who funds NGOs?", answered=False)
    store.record_question("Election law", answered=True)
    store.record_feedback("Election law", "b", helpful=False)
    store.set_chat_language(-100, "kk")
    store.set_state("source:gazette", '{"etag": "W/1"}')
    store.bump_kb_version()
    store.close()
    return path


def test_migrate_db_copies_everything_and_can_be_repeated(sqlite_db: Path, postgres_url: str) -> None:
    source = Store(sqlite_db)
    expected = snapshot(source)
    source.close()
    first = migrate_db("--from", str(sqlite_db), "--to", postgres_url)
    assert first.returncode == 0, first.stderr
    assert "subscriptions: 3" in first.stdout and "deliveries: 4" in first.stdout
    again = migrate_db("--from", str(sqlite_db), "--to", postgres_url)
    assert again.returncode == 0, again.stderr
    target = open_store(postgres_url, sqlite_db)
    try:
        assert snapshot(target) == expected
        assert target.enqueue([(-100, "a")]) == 0   # delivered before the move: never again
        assert target.claim_deliveries("replica-1", 10, 60) == {-100: ["c"], 7: ["b"]}
        fresh = target.subscribe(99)   # new ids continue after the copied ones
        assert fresh.id > max(s.id for s in expected["subscriptions"])  # type: ignore[attr-defined]
        assert target.subscriptions(-100)[1] == Subscription(2, -100, "courts", 4)
    finally:
        target.close()


def test_migrate_db_keeps_what_the_target_already_holds(sqlite_db: Path, postgres_url: str) -> None:
    target = open_store(postgres_url, sqlite_db)
    mine = target.subscribe(555, "budget")   # takes id 1, which the source also uses
    target.close()
    assert migrate_db("--from", str(sqlite_db), "--to", postgres_url).returncode == 0
    target = open_store(postgres_url, sqlite_db)
    try:
        subscriptions = {(s.chat_id, s.words): s for s in target.all_subscriptions()}
        assert subscriptions[(555, "budget")] == mine
        assert set(subscriptions) == {(555, "budget"), (-100, None), (-100, "courts"), (7, "elections")}
        assert len({s.id for s in subscriptions.values()}) == 4
    finally:
        target.close()


def test_migrate_db_errors_are_clear_and_copy_nothing(tmp_path: Path, postgres_url: str) -> None:
    missing = migrate_db("--from", str(tmp_path / "none.sqlite3"), "--to", postgres_url)
    assert missing.returncode == 2 and "No SQLite database" in missing.stderr
    assert not (tmp_path / "none.sqlite3").exists()
    store = Store(tmp_path / "bot.sqlite3")
    store.subscribe(1)
    store.close()
    started = time.monotonic()
    unreachable = migrate_db("--from", str(tmp_path / "bot.sqlite3"),
                             "--to", f"postgresql://bot:s3cret@/civic?host={tmp_path}&port=5")
    assert unreachable.returncode == 1 and "Nothing was copied" in unreachable.stderr
    assert "s3cret" not in unreachable.stderr + unreachable.stdout
    assert time.monotonic() - started < 60
