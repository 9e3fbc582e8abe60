"""The knowledge-base cache across restarts: a shortcut that never changes what the bot serves."""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import stat
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from bot import cli, index_cache, knowledge, knowledge_cache
from bot.knowledge import Article, KnowledgeError
from bot.search import Index
from bot.service import Service
from bot.store import Store
from tests.conftest import make_article

OLD = time.time_ns() - 3600 * 1_000_000_000   # an hour ago: long settled on any file system

ARTICLES = (
    make_article("library", "Library renovation approved",
                 "The city council approved the renovation of the central library. Works start in May.",
                 topics=("culture", "city")),
    make_article("bridge", "Bridge closed for repairs",
                 "The river bridge closes for three weeks. Buses take the northern detour.", published=None,
                 source=None),
    make_article("park", "New park opens", "A new park with a playground opened in the east district.",
                 url=None, language="en"),
)


@pytest.fixture
def kb_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "knowledge"
    for article in ARTICLES:
        write(directory, article)
    return directory


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "data" / knowledge_cache.CACHE_FILE


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every YAML article file the bot parses."""
    paths: list[Path] = []
    original = knowledge.read_article

    def counting(path: Path, problems: list[knowledge.Problem]) -> Article | None:
        paths.append(path)
        return original(path, problems)

    monkeypatch.setattr(knowledge, "read_article", counting)
    return paths


def write(directory: Path, article: Article, mtime_ns: int = OLD) -> Path:
    path = knowledge.write_article(directory, article)
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def start(kb_dir: Path, store: Store, cache: Path | None) -> Service:
    return Service(kb_dir, store, cache_path=cache)


def test_a_cached_start_serves_exactly_what_a_cold_start_does_without_reading_the_files(
        kb_dir: Path, cache: Path, store: Store, reads: list[Path]) -> None:
    cold = start(kb_dir, store, None)
    start(kb_dir, store, cache)
    reads.clear()
    warm = start(kb_dir, store, cache)
    assert reads == []
    assert warm.kb == cold.kb == knowledge.load(kb_dir)
    assert warm.ask("when does the library renovation start?") == cold.ask("when does the library renovation start?")


def test_edited_removed_and_added_files_are_picked_up_at_the_next_start(
        kb_dir: Path, cache: Path, store: Store, reads: list[Path]) -> None:
    start(kb_dir, store, cache)
    edited = dataclasses.replace(ARTICLES[0], title="Library renovation postponed")
    edited_path = write(kb_dir, edited, OLD + 1)
    knowledge.article_path(kb_dir, "bridge").unlink()
    added = make_article("market", "Market moves", "The Sunday market moves to the station square.")
    added_path = write(kb_dir, added)
    reads.clear()
    warm = start(kb_dir, store, cache)
    assert sorted(reads) == sorted([edited_path, added_path])
    assert warm.kb == knowledge.load(kb_dir)
    assert warm.kb.articles["library"].title == "Library renovation postponed"
    assert set(warm.kb.articles) == {"library", "park", "market"}


async def test_a_reload_updates_the_cache_for_the_next_start(
        kb_dir: Path, cache: Path, store: Store, reads: list[Path]) -> None:
    service = start(kb_dir, store, cache)
    write(kb_dir, dataclasses.replace(ARTICLES[2], body="The new park in the east district has a pond."), OLD + 1)
    result = await service.reload()
    assert result.changes.updated == ("park",)
    reads.clear()
    warm = start(kb_dir, store, cache)
    assert reads == []
    assert warm.kb == knowledge.load(kb_dir)


@pytest.mark.parametrize("told", [False, True], ids=["reload", "told the files written"])
async def test_reloads_after_any_mix_of_file_changes_serve_what_a_fresh_read_does(
        kb_dir: Path, cache: Path, store: Store, reads: list[Path], monkeypatch: pytest.MonkeyPatch,
        told: bool) -> None:
    """A reload reads only the files that changed, yet its articles, its problems (file:line) and its changes (in
    the order of the files) are those of reading everything afresh; and the cache it leaves serves the same on a
    restart. Told which files the builder wrote (new articles from a source), it does not even walk the others,
    unless something is wrong; then it reports the problems as the walk does."""
    service = start(kb_dir, store, cache)
    articles = kb_dir / "articles"
    stamp = iter(range(OLD + 10**9, OLD + 100 * 10**9, 10**9))
    walks: list[Path] = []
    walk = knowledge.article_files
    monkeypatch.setattr(knowledge, "article_files", lambda directory, known: (walks.append(directory),
                                                                              walk(directory, known))[1])

    def put(path: Path, text: str) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        os.utime(path, ns=(next(stamp), next(stamp)))
        return path

    def add_two() -> list[Path]:
        return [write(kb_dir, make_article("yak", "Yak shaving contest", "The yak shaving contest drew a crowd."),
                      next(stamp)),
                write(kb_dir, make_article("aardvark", "Aardvark born at the zoo", "The zoo has a new aardvark."),
                      next(stamp))]

    def edit_one_remove_one() -> list[Path]:
        (articles / "park.yaml").unlink()
        return [write(kb_dir, dataclasses.replace(ARTICLES[1], title="Bridge reopened"), next(stamp)),
                articles / "park.yaml"]

    def move_into_a_subdirectory_and_change_an_id() -> list[Path]:
        (articles / "city").mkdir()
        (articles / "library.yaml").rename(articles / "city" / "library.yaml")
        text = (articles / "bridge.yaml").read_text(encoding="utf-8").replace("id: bridge", "id: bridge-north")
        return [articles / "library.yaml", articles / "city" / "library.yaml", put(articles / "bridge.yaml", text)]

    def duplicate_an_id() -> list[Path]:
        return [put(articles / "zebra.yaml", (articles / "aardvark.yaml").read_text(encoding="utf-8"))]

    def break_a_file() -> list[Path]:
        (articles / "zebra.yaml").unlink()
        return [articles / "zebra.yaml", put(articles / "broken.yaml", "id: broken\ntitle: [unclosed\nbody: x\n")]

    def mend_it() -> list[Path]:
        return [put(articles / "broken.yaml", "id: mended\ntitle: Mended\nsummary: Mended.\nbody: Mended at last.\n")]

    for step in (add_two, edit_one_remove_one, move_into_a_subdirectory_and_change_an_id, duplicate_an_id,
                 break_a_file, mend_it):
        served = service.kb
        written = step()
        expected, problems = knowledge.scan(kb_dir)
        reads.clear()
        walks.clear()
        result = await service.reload(written if told else None)
        assert [str(p) for p in result.problems] == [str(p) for p in problems], step.__name__
        if problems:
            assert service.kb is served
            continue
        assert service.kb == expected, step.__name__
        assert result.changes == knowledge.diff(served, expected), step.__name__
        assert service.latest(len(expected.articles)) == expected.latest(len(expected.articles))
        assert service.search("aardvark zoo")[0].article.id == "aardvark"
        assert walks == ([] if told and step is not mend_it else [kb_dir]), step.__name__  # after a problem: walk
    assert reads == [articles / "broken.yaml"]   # the last reload read the one file edited, nothing else
    assert service.kb.articles["mended"].title == "Mended"
    restarted = start(kb_dir, store, cache)
    assert restarted.kb == service.kb


def test_a_second_edit_in_the_same_clock_tick_is_not_missed(
        kb_dir: Path, cache: Path, store: Store) -> None:
    """Same size, same modification time: only a file that changed long enough ago is trusted by its stamp."""
    now = time.time_ns()
    path = write(kb_dir, dataclasses.replace(ARTICLES[1], title="Bridge closed on Monday"), now)
    size = path.stat().st_size
    start(kb_dir, store, cache)
    write(kb_dir, dataclasses.replace(ARTICLES[1], title="Bridge opened on Monday"), now)
    assert (path.stat().st_mtime_ns, path.stat().st_size) == (now, size)
    assert start(kb_dir, store, cache).kb.articles["bridge"].title == "Bridge opened on Monday"


def garbage(cache: Path) -> None:
    cache.write_bytes(b"this is not a database at all\n" * 100)


def truncated(cache: Path) -> None:
    cache.write_bytes(cache.read_bytes()[:2048])


def wrong_types(cache: Path) -> None:
    with sqlite3.connect(cache) as db:
        db.execute("UPDATE articles SET title = 42, topics = '{\"not\": \"a list\"}'")


def other_version(cache: Path) -> None:
    with sqlite3.connect(cache) as db:
        db.execute("UPDATE meta SET value = 'another reader' WHERE key = 'version'")


def tables_dropped(cache: Path) -> None:
    with sqlite3.connect(cache) as db:
        db.execute("DROP TABLE articles")


@pytest.mark.parametrize("damage", [garbage, truncated, wrong_types, other_version, tables_dropped])
def test_a_broken_cache_is_ignored_and_rebuilt(
        damage: Callable[[Path], None], kb_dir: Path, cache: Path, store: Store, reads: list[Path]) -> None:
    expected = knowledge.load(kb_dir)
    start(kb_dir, store, cache)
    damage(cache)
    reads.clear()
    assert start(kb_dir, store, cache).kb == expected
    assert len(reads) == len(ARTICLES)
    reads.clear()
    assert start(kb_dir, store, cache).kb == expected
    assert reads == []


def test_a_cache_for_another_knowledge_directory_is_not_used(
        kb_dir: Path, cache: Path, store: Store, tmp_path: Path) -> None:
    other = tmp_path / "other"
    write(other, dataclasses.replace(ARTICLES[0], title="Another library"))
    start(other, store, cache)
    assert start(kb_dir, store, cache).kb == knowledge.load(kb_dir)


def test_a_cache_that_cannot_be_written_does_not_stop_the_bot(
        kb_dir: Path, tmp_path: Path, store: Store, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "blocked").write_text("a file where the cache's directory should be")
    service = start(kb_dir, store, tmp_path / "blocked" / knowledge_cache.CACHE_FILE)
    assert service.kb == knowledge.load(kb_dir)
    assert "could not write the knowledge-base cache" in caplog.text


def test_files_with_problems_are_reported_on_every_start(kb_dir: Path, cache: Path, store: Store) -> None:
    bad = kb_dir / knowledge.ARTICLES_DIR / "broken.yaml"
    bad.write_text("id: broken\ntitle: [unclosed\n", encoding="utf-8")
    os.utime(bad, ns=(OLD, OLD))
    for _ in range(2):
        with pytest.raises(KnowledgeError) as caught:
            start(kb_dir, store, cache)
        assert [p.path for p in caught.value.problems] == [bad]


def test_the_cache_is_readable_by_its_owner_only(kb_dir: Path, cache: Path, store: Store) -> None:
    start(kb_dir, store, cache)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.parent.stat().st_mode) == 0o700


def test_a_cache_left_world_readable_by_an_earlier_version_is_made_owner_only(
        kb_dir: Path, cache: Path, store: Store) -> None:
    start(kb_dir, store, cache)
    cache.chmod(0o644)
    write(kb_dir, make_article("market", "Market moves", "The Sunday market moves to the station square."))
    start(kb_dir, store, cache)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600


# --- the saved index ---------------------------------------------------------------

QUESTION = "when does the library renovation start?"


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every index built from the articles (rather than loaded)."""
    sizes: list[int] = []
    original = Index.build.__func__   # type: ignore[attr-defined]

    def counting(cls: type[Index], kb: knowledge.KnowledgeBase, *args: object) -> Index:
        sizes.append(len(kb.articles))
        return original(cls, kb, *args)

    monkeypatch.setattr(Index, "build", classmethod(counting))
    return sizes


def index_file(cache: Path) -> Path:
    return index_cache.beside(cache)


def test_a_restart_with_unchanged_files_loads_the_saved_index_and_answers_the_same(
        kb_dir: Path, cache: Path, store: Store, builds: list[int]) -> None:
    first = start(kb_dir, store, cache)
    assert builds == [3] and stat.S_IMODE(index_file(cache).stat().st_mode) == 0o600
    again = start(kb_dir, store, cache)
    assert builds == [3]
    assert again.ask(QUESTION) == first.ask(QUESTION) == start(kb_dir, store, None).ask(QUESTION)
    assert again.index.search("bridge detour", 1)[0].article.id == "bridge"


def test_articles_changed_while_the_bot_was_down_are_indexed_alone_and_answered_as_by_a_cold_start(
        kb_dir: Path, cache: Path, store: Store, builds: list[int]) -> None:
    start(kb_dir, store, cache)
    write(kb_dir, dataclasses.replace(ARTICLES[1], body="The river bridge reopened after the storm repairs."))
    write(kb_dir, make_article("market", "Farmers market moves", "The farmers market moves to the square."))
    knowledge.article_path(kb_dir, "park").unlink()
    restarted = start(kb_dir, store, cache)
    assert builds == [3]
    cold = start(kb_dir, store, None)
    for question in ("storm repairs reopened", "where does the farmers market go?", "new park playground", QUESTION):
        assert restarted.ask(question) == cold.ask(question)
    assert restarted.index.search("storm repairs reopened", 1)[0].article.body.startswith("The river bridge reopened")


@pytest.mark.parametrize("damage", ["truncated", "garbage", "other fingerprint", "missing array"])
def test_a_damaged_or_foreign_saved_index_is_never_trusted(
        kb_dir: Path, cache: Path, store: Store, builds: list[int], damage: str) -> None:
    cold = start(kb_dir, store, cache)
    path = index_file(cache)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage":
        path.write_bytes(b"PK\x03\x04" + os.urandom(2000))
    else:
        with np.load(path) as saved:
            arrays = {name: saved[name] for name in saved.files}
        if damage == "other fingerprint":
            arrays["fingerprint"] = np.frombuffer(b"0" * 40, dtype=np.uint8)
        else:
            del arrays["tf_data"]
        with path.open("wb") as out:
            np.savez(out, **arrays)
    restarted = start(kb_dir, store, cache)
    assert builds == [3, 3]
    assert restarted.ask(QUESTION) == cold.ask(QUESTION)
    start(kb_dir, store, cache)
    assert builds == [3, 3]   # and the rebuilt index was saved again


def test_a_saved_index_of_another_knowledge_directory_is_not_used(
        kb_dir: Path, tmp_path: Path, cache: Path, store: Store, builds: list[int]) -> None:
    start(kb_dir, store, cache)
    other = tmp_path / "other"
    write(other, ARTICLES[0])
    assert [hit.article.id for hit in start(other, store, cache).index.search("library bridge park", 5)] == ["library"]
    assert builds == [3, 1]


def test_ask_on_the_command_line_keeps_and_reuses_the_saved_index(
        kb_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        builds: list[int]) -> None:
    database = tmp_path / "data" / "bot.sqlite3"
    monkeypatch.setenv("DATABASE_PATH", str(database))
    database.parent.mkdir()   # the bot's data directory; ask makes none of its own
    outputs = []
    for _ in range(2):
        assert cli.main(["ask", "--knowledge", str(kb_dir), "--json", QUESTION]) == 0
        outputs.append(capsys.readouterr().out)
    assert builds == [3]
    assert index_cache.beside(knowledge_cache.beside(database)).exists()  # type: ignore[arg-type]
    assert outputs[0] == outputs[1] and '"library"' in outputs[0]
