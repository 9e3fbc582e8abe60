"""Faults the bot must survive: killed mid-build and mid-reload, a locked or full disk, a broken knowledge base.

Telegram's own failures (timeouts, resets, 5xx, 429, 403, 400) and a SIGKILL in the middle of a broadcast are
covered in test_notify.py; the end-to-end flows reused here come from test_bot.py.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import resource
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bot import ingest, knowledge
from bot.config import Settings
from bot.knowledge import Article
from bot.store import Store, StoreError
from bot.testing.fake_telegram import FakeTelegram, utf16_length
from tests.conftest import LIBRARY, REPO, SEED_QUESTION, SEED_SENTENCE, make_article
from tests.driver import ADMIN, REAL_LOOKING_TOKEN, SORRY, reply, run_env, running, say, service, until

LIBRARY_QUESTION = "when do the library reading rooms reopen?"
LIBRARY_TITLE = "Library renovation approved"


def _files(knowledge_dir: Path) -> dict[str, bytes]:
    """Every article file, by name, as bytes (hidden temporary files left out)."""
    return {p.name: p.read_bytes() for p in (knowledge_dir / "articles").glob("*.yaml")}


def _write_jsonl(path: Path, records: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), "utf-8")
    return path


def _record(article_id: str, topic: str, edition: int) -> dict[str, str]:
    text = (f"The {topic} committee met for the {edition} time this year. Members voted on the {topic} budget. "
            f"The next {topic} meeting is planned for the autumn.")
    return {"id": article_id, "title": f"{topic.title()} committee meets", "text": text, "language": "en",
            "url": f"https://example.org/{article_id}", "published": "2024-05-01"}


def _bot_check(knowledge_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot", "check", "--knowledge", str(knowledge_dir)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)


# --- SIGKILL in the middle of `python -m bot build` -------------------------------------------

def test_sigkill_during_a_build_leaves_every_file_old_or_new_and_check_passes(tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    ingest.build([str(_write_jsonl(tmp_path / "first.jsonl", [_record(f"old-{n}", "water", 1) for n in range(20)]))],
                 kb)
    old = _files(kb)
    second = _write_jsonl(tmp_path / "second.jsonl", [_record(f"old-{n}", "water", 2) for n in range(20)]
                          + [_record(f"new-{n:04d}", "school", 1) for n in range(800)])
    reference = tmp_path / "reference"   # what the build writes when nothing interrupts it
    ingest.build([str(second)], Path(shutil.copytree(kb, reference)))
    new = _files(reference)

    build = subprocess.Popen([sys.executable, "-m", "bot", "build", str(second), "--knowledge", str(kb)], cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(list((kb / "articles").glob("new-*.yaml"))) < 40:
            assert build.poll() is None, "the build ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.002)
    finally:
        build.send_signal(signal.SIGKILL)
        build.wait()

    killed = _files(kb)
    written = [name for name in killed if name.startswith("new-")]
    assert 40 <= len(written) < 800                        # killed in the middle
    for name, data in killed.items():                      # each file the old one or the new one, never half
        assert data in (old.get(name), new[name]), name
    leftovers = [p.name for p in (kb / "articles").iterdir() if p.name not in killed]
    assert all(name.startswith(".") and name.endswith(".tmp") for name in leftovers), leftovers
    check = _bot_check(kb)
    assert check.returncode == 0, check.stdout
    assert check.stdout.startswith(f"OK: {len(killed)} articles")

    ingest.build([str(second)], kb)                        # building again finishes the job
    assert _files(kb) == new


# --- SIGKILL in the middle of a /reload of `python -m bot run` --------------------------------

async def _start_bot(tg: FakeTelegram, knowledge_dir: Path, tmp_path: Path) -> asyncio.subprocess.Process:
    env = {**run_env(tg, knowledge_dir, tmp_path, tg.token), "LOG_LEVEL": "INFO"}
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "run", cwd=tmp_path, env=env,
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)


def _fetched(tg: FakeTelegram, update_id: int) -> bool:
    return any(c.method == "getUpdates" and c.result and any(u["update_id"] == update_id for u in c.result)
               for c in tg.calls)


def _pad(knowledge_dir: Path, count: int) -> None:
    """Articles enough that an index rebuild takes a moment: the window in which the reload is killed."""
    for n in range(count):
        article = make_article(f"pad-{n}", f"Regional budget hearing {n}",
                               f"The regional council heard budget item {n}. Deputies asked about roads {n}.")
        path = knowledge.article_path(knowledge_dir, article.id)
        knowledge.write_atomic(path, knowledge.dump_yaml(article.to_yaml_dict()), fsync=False)


async def test_sigkill_during_a_reload_loses_no_subscription_and_no_notification(
    knowledge_dir: Path, tmp_path: Path,
) -> None:
    _pad(knowledge_dir, 3000)
    chats = range(2001, 2006)
    async with FakeTelegram(token=REAL_LOOKING_TOKEN) as tg:
        first = await _start_bot(tg, knowledge_dir, tmp_path)
        try:
            tg.push_message("/subscribe", chat_id=chats[0], user_id=chats[0])
            assert "every new article" in (await reply(tg, chats[0], timeout=60))["text"]
            for chat in chats[1:]:
                assert "every new article" in (await say(tg, "/subscribe", chat_id=chat))["text"]
            knowledge.write_article(knowledge_dir, make_article("library-renovation", LIBRARY_TITLE, LIBRARY))
            update = tg.push_message("/reload", chat_id=ADMIN, user_id=ADMIN)
            await until(lambda: _fetched(tg, update["update_id"]), timeout=30)
            await asyncio.sleep(0.05)
        finally:
            first.send_signal(signal.SIGKILL)
            await first.wait()
        assert not any(LIBRARY_TITLE in m["text"] for m in tg.sent())   # killed before anyone was told

        second = await _start_bot(tg, knowledge_dir, tmp_path)
        try:
            for chat in chats:   # the restarted bot tells every subscriber, once
                await reply(tg, chat, contains=LIBRARY_TITLE, timeout=60)
            assert LIBRARY_TITLE in (await say(tg, LIBRARY_QUESTION, chat_id=3001))["text"]
            assert "Nothing changed" in (await say(tg, "/reload", chat_id=ADMIN))["text"]
            await asyncio.sleep(0.5)
        finally:
            second.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.wait_for(second.communicate(), 60)
    assert second.returncode == 0, stderr.decode()
    for chat in chats:   # the confirmation and the one notification: nothing about what was there before
        assert len(tg.sent(chat)) == 2 and tg.sent(chat)[1]["text"].count(LIBRARY_TITLE) == 1
    store = Store(tmp_path / "db" / "bot.sqlite3")
    assert sorted(s.chat_id for s in store.all_subscriptions()) == list(chats)
    assert store.pending() == {}
    store.close()
    assert _bot_check(knowledge_dir).returncode == 0


async def test_a_reload_whose_reply_fails_still_notifies_every_subscriber(
    tg: FakeTelegram, settings: Settings, add_article: Callable[..., Article],
) -> None:
    async with running(settings) as app:
        for chat in (2001, 2002):
            await say(tg, "/subscribe", chat_id=chat)
        add_article("library-renovation", LIBRARY_TITLE, LIBRARY)
        tg.fail_next("sendMessage", 502, "Bad Gateway", chat_id=ADMIN)   # the report to the admin is lost
        tg.push_message("/reload", chat_id=ADMIN, user_id=ADMIN)
        for chat in (2001, 2002):
            await reply(tg, chat, contains=LIBRARY_TITLE)
        await until(lambda: not service(app).store.pending())
        tg.push_message("/reload", chat_id=ADMIN, user_id=ADMIN)
        assert "Nothing changed" in (await reply(tg, ADMIN, contains="Reloaded"))["text"]
    for chat in (2001, 2002):
        assert sum(LIBRARY_TITLE in m["text"] for m in tg.sent(chat)) == 1


# --- a locked or full database --------------------------------------------------------------

def _integrity(path: Path) -> str:
    db = sqlite3.connect(path)
    try:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        db.close()


async def _everyone_is_answered(tg: FakeTelegram, users: range) -> None:
    for user in users:
        tg.push_message(SEED_QUESTION, chat_id=user, user_id=user)
    for user in users:
        assert SEED_SENTENCE in (await reply(tg, user))["text"]


async def test_a_locked_database_is_a_clear_error_and_questions_go_on(
    tg: FakeTelegram, settings: Settings, caplog: pytest.LogCaptureFixture,
) -> None:
    async with running(settings) as app:
        await say(tg, "/subscribe water", chat_id=2002)
        other = sqlite3.connect(settings.database_path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")   # another program holds the write lock
        try:
            with caplog.at_level(logging.WARNING, logger="bot"):
                started = time.monotonic()
                await _everyone_is_answered(tg, range(5001, 5021))
                answering = time.monotonic() - started
                assert (await say(tg, "/subscribe", chat_id=2003))["text"] == SORRY
                assert SEED_SENTENCE in (await say(tg, SEED_QUESTION, chat_id=2003))["text"]
        finally:
            other.execute("ROLLBACK")
            other.close()
        # 20 questions while the lock was held cost one busy wait, not one each (1 s apiece, blocking everyone)
        assert answering < 10
        assert sum("could not record" in r.getMessage() for r in caplog.records) == 1   # logged once
        assert "Subscribed" in (await say(tg, "/subscribe", chat_id=2003))["text"]
        assert [s.words for s in service(app).store.subscriptions(2002)] == ["water"]
    assert _integrity(settings.database_path) == "ok"


async def test_a_full_disk_is_a_clear_error_nothing_stored_is_lost_and_questions_go_on(
    tg: FakeTelegram, settings: Settings,
) -> None:
    async with running(settings) as app:
        store = service(app).store
        await say(tg, "/subscribe water", chat_id=2002)
        pages = store._db.execute("PRAGMA page_count").fetchone()[0]
        store._db.execute(f"PRAGMA max_page_count = {pages}")   # the disk has room for no more pages
        with pytest.raises(StoreError, match="full"):            # ... and the pages there fill up
            for chat in itertools.count(10**6):
                store.subscribe(chat, " ".join(f"topic{n}" for n in range(25)))
        stored = store.all_subscriptions()
        words = " ".join(f"word{n}" for n in range(40))
        assert (await say(tg, f"/subscribe {words}", chat_id=2003))["text"] == SORRY
        await _everyone_is_answered(tg, range(5001, 5006))
        stats = await say(tg, "/stats", chat_id=ADMIN)   # reading goes on
        assert f"({len(stored)} subscriptions)" in stats["text"]
        assert store.all_subscriptions() == stored
        assert [s.words for s in store.subscriptions(2002)] == ["water"]
    assert _integrity(settings.database_path) == "ok"


def _limit_file_size(limit: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))   # writes past it fail with EFBIG, as on a full disk
    return apply


def test_a_build_that_cannot_write_reports_the_article_and_writes_the_rest(tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    ingest.build([str(_write_jsonl(tmp_path / "first.jsonl", [_record("kept", "water", 1)]))], kb)
    kept = _files(kb)
    long_text = " ".join(f"Sentence number {n} about the long water report." for n in range(400))
    source = _write_jsonl(tmp_path / "in.jsonl", [
        {"id": "too-long", "title": "A long report", "text": long_text, "language": "en"},
        _record("kept", "water and sanitation", 2),   # an update that no longer fits either
        _record("short", "school", 1),
    ])
    build = subprocess.run([sys.executable, "-m", "bot", "build", str(source), "--knowledge", str(kb)],
                           cwd=REPO, capture_output=True, text=True, timeout=60,
                           preexec_fn=_limit_file_size(len(kept["kept.yaml"]) + 40))
    assert build.returncode == 1
    assert "Traceback" not in build.stderr
    failed = [line for line in build.stdout.splitlines() if line.startswith("failed:")]
    assert len(failed) == 2 and all("not written" in line and "File too large" in line for line in failed), failed
    assert "added 1" in build.stdout
    files = _files(kb)
    assert files["kept.yaml"] == kept["kept.yaml"]      # the old file, untouched
    assert set(files) == {"kept.yaml", "short.yaml"}
    assert not [p for p in (kb / "articles").iterdir() if p.name.startswith(".")]
    assert _bot_check(kb).returncode == 0


def test_articles_built_by_an_editor_are_readable_by_a_bot_running_as_another_user(tmp_path: Path) -> None:
    """The Docker image runs the bot as its own user over a knowledge base an editor built."""
    kb = tmp_path / "kb"
    source = _write_jsonl(tmp_path / "in.jsonl", [_record("water", "water", 1), _record("school", "school", 1)])
    ingest.build([str(source)], kb)
    umask = os.umask(0o022)
    os.umask(umask)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (kb / "articles").glob("*.yaml")}
    assert modes == {"water.yaml": 0o666 & ~umask, "school.yaml": 0o666 & ~umask}
    (kb / "articles" / "water.yaml").chmod(0o640)   # an editor's own choice is kept on update
    ingest.build([str(_write_jsonl(source, [_record("water", "water", 2)]))], kb)
    assert stat.S_IMODE((kb / "articles" / "water.yaml").stat().st_mode) == 0o640


# --- a knowledge base broken on reload ------------------------------------------------------

_ALIAS_BOMB = "\n".join(
    ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    + [f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 10)}]" for n in range(1, 9)]
)


async def test_a_broken_knowledge_base_on_reload_keeps_the_old_one_and_lists_every_problem(
    tg: FakeTelegram, settings: Settings, knowledge_dir: Path, add_article: Callable[..., Article],
) -> None:
    async with running(settings) as app:
        await say(tg, "/subscribe", chat_id=2002)
        before = dict(service(app).kb.articles)
        articles = knowledge_dir / "articles"
        add_article("library-renovation", LIBRARY_TITLE, LIBRARY)
        (articles / "bad-yaml.yaml").write_text("id: bad-yaml\ntitle: [unclosed\nbody: text\n", "utf-8")
        (articles / "copy.yaml").write_bytes((articles / "library-renovation.yaml").read_bytes())
        (articles / "huge.yaml").write_text("id: huge\ntitle: Huge\nsummary: s\nbody: " + "word " * 10_500_000,
                                            "utf-8")
        (articles / "latin1.yaml").write_bytes("id: latin1\ntitle: Café\nsummary: s\nbody: b\n".encode("latin-1"))
        (articles / "bomb.yaml").write_text(f"{_ALIAS_BOMB}\nid: bomb\ntitle: T\nsummary: S\nbody: B\npublished: *l8\n",
                                            "utf-8")
        tg.push_message("/reload", chat_id=ADMIN, user_id=ADMIN)
        report = (await reply(tg, ADMIN, timeout=30))["text"]
        assert report.startswith("<b>Not reloaded:</b>")
        for name, why in (("bad-yaml.yaml:", "bad YAML"), (".yaml:1", "duplicate id &#x27;library-renovation&#x27;"),
                          ("huge.yaml:1", "larger than 5 MB"), ("latin1.yaml:1", "not UTF-8"),
                          ("bomb.yaml:", "not a date")):
            assert any(name in line and why in line for line in report.splitlines()), (name, report)
        assert utf16_length(report) <= 4096
        assert service(app).kb.articles == before                      # the old one keeps serving
        assert LIBRARY_TITLE not in (await say(tg, LIBRARY_QUESTION))["text"]
        assert SEED_SENTENCE in (await say(tg, SEED_QUESTION))["text"]
        for name in ("bad-yaml", "copy", "huge", "latin1", "bomb"):
            (articles / f"{name}.yaml").unlink()
        assert "1 added" in (await say(tg, "/reload", chat_id=ADMIN))["text"]
        assert LIBRARY_TITLE in (await reply(tg, 2002, contains=LIBRARY_TITLE))["text"]
        assert LIBRARY_TITLE in (await say(tg, LIBRARY_QUESTION))["text"]
