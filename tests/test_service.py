"""The Telegram-free core: answering with statistics, reloading, limits, callback keys, reply texts, the shell."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from bot import service as service_module
from bot.knowledge import Article, Changes, KnowledgeBase, KnowledgeError, Problem
from bot.service import (
    MAX_QUESTION_CHARS,
    MAX_SUBSCRIPTIONS,
    RateLimiter,
    ReloadResult,
    Service,
    callback_key,
    clean_question,
    reload_html,
    shell_reply,
    stats_html,
)
from bot.store import Stats, Store
from tests.conftest import OFF_TOPIC_QUESTION, REPO, SEED_QUESTION, SEED_SENTENCE, make_article

LIBRARY = ("The city council approved the renovation of the central library on Monday. "
           "Works will cost 40 million tenge and the reading rooms reopen in September.")


@pytest.fixture
def service(knowledge_dir: Path, store: Store) -> Service:
    return Service(knowledge_dir, store, user_rate_limit=3)


# --- answering and statistics --------------------------------------------------

def test_a_seed_question_is_answered_and_counted(service: Service, store: Store) -> None:
    answer = service.ask(SEED_QUESTION)
    assert answer.found
    assert SEED_SENTENCE in answer.sentences
    assert store.stats().answered == 1


def test_an_unanswerable_question_is_refused_and_shown_in_stats(service: Service, store: Store) -> None:
    assert not service.ask(OFF_TOPIC_QUESTION).found
    assert not service.ask(OFF_TOPIC_QUESTION.upper()).found
    stats = store.stats()
    assert stats.unanswered == 2 and stats.answered == 0
    assert stats.top_unanswered[0][1] == 2


def test_feedback_is_recorded(service: Service, store: Store) -> None:
    article = next(iter(service.kb.articles))
    service.feedback(SEED_QUESTION, article, helpful=False)
    service.feedback(SEED_QUESTION, article, helpful=True)
    stats = store.stats()
    assert (stats.helpful, stats.unhelpful) == (1, 1)
    assert stats.top_unhelpful == [(SEED_QUESTION, 1)]


def test_a_broken_database_does_not_stop_answers(service: Service, store: Store) -> None:
    store.close()
    assert service.ask(SEED_QUESTION).found


def test_questions_are_cleaned_and_bounded() -> None:
    assert clean_question("  how\x00 many\n\titems?\u200b ") == "how many items?"
    long = clean_question("word " * 2000)
    assert len(long) <= MAX_QUESTION_CHARS and long.endswith("word")
    assert len(clean_question("x" * 5000)) == MAX_QUESTION_CHARS
    assert clean_question("\x07\x1b[31m") == "[31m"


def test_a_five_thousand_character_question_is_answered(service: Service) -> None:
    answer = service.ask(SEED_QUESTION + " " + "please " * 700)
    assert len(answer.question) <= MAX_QUESTION_CHARS


# --- callback keys ---------------------------------------------------------------

def test_callback_keys_fit_telegram_and_resolve(knowledge_dir: Path, store: Store,
                                                add_article: Callable[..., Article]) -> None:
    long_id = "a-very-long-article-identifier-" + "x" * 80
    add_article(long_id, "Library renovation approved", LIBRARY)
    service = Service(knowledge_dir, store)
    for article_id in service.kb.articles:
        key = callback_key(article_id)
        assert len(f"f:1:{key}".encode()) <= 64
        assert service.article(key) == service.kb.articles[article_id]
    assert callback_key(long_id) != long_id
    assert callback_key(long_id) == callback_key(long_id)


@pytest.mark.parametrize("forged", ["../../etc/passwd", "#0000", "#", "", "knowledge/articles/x.yaml", "\x00"])
def test_forged_keys_name_nothing(service: Service, forged: str) -> None:
    assert service.article(forged) is None


# --- the per-user limit -----------------------------------------------------------

def test_the_rate_limit_refuses_a_flood_politely_once_and_recovers() -> None:
    now = [0.0]
    limiter = RateLimiter(3, clock=lambda: now[0])
    assert [limiter.check(1) for _ in range(3)] == [(True, False)] * 3
    assert limiter.check(1) == (False, True)    # first refusal: say so
    assert limiter.check(1) == (False, False)   # then stay quiet
    assert limiter.check(2) == (True, False)    # others are not affected
    now[0] += 20.0                               # a minute refills 3, so 20 s refill one
    assert limiter.check(1) == (True, False)
    assert limiter.check(1) == (False, True)


def test_a_zero_limit_means_unlimited() -> None:
    limiter = RateLimiter(0)
    assert all(limiter.check(1) == (True, False) for _ in range(1000))


# --- reloading ----------------------------------------------------------------------

async def test_reload_adds_an_article_and_answers_from_it(service: Service, add_article: Callable[..., Article]
                                                          ) -> None:
    add_article("library", "Library renovation approved", LIBRARY)
    result = await service.reload()
    assert result.ok and result.changes.added == ("library",)
    assert [a.id for a in result.added] == ["library"]
    answer = service.ask("when do the library reading rooms reopen?")
    assert answer.found and answer.article is not None and answer.article.id == "library"


async def test_reload_with_problems_keeps_the_old_knowledge(service: Service, knowledge_dir: Path,
                                                            add_article: Callable[..., Article]) -> None:
    add_article("library", "Library renovation approved", LIBRARY)
    (knowledge_dir / "articles" / "broken.yaml").write_text("id: broken\ntitle: [unclosed\nbody: x\n", "utf-8")
    before = service.kb
    result = await service.reload()
    assert not result.ok
    assert any(p.path.name == "broken.yaml" and p.line >= 2 for p in result.problems)
    assert service.kb is before and "library" not in service.kb.articles
    assert service.ask(SEED_QUESTION).found


async def test_reload_without_changes_keeps_the_index(service: Service) -> None:
    index = service.index
    result = await service.reload()
    assert result.ok and not result.changes
    assert service.index is index


async def test_reload_sees_an_edited_file(service: Service, knowledge_dir: Path,
                                          add_article: Callable[..., Article]) -> None:
    add_article("library", "Library renovation approved", LIBRARY)
    await service.reload()
    add_article("library", "Library renovation postponed", LIBRARY.replace("September", "December"))
    result = await service.reload()
    assert result.changes.updated == ("library",)
    assert service.kb.articles["library"].title == "Library renovation postponed"


async def test_questions_are_answered_while_a_reload_builds(service: Service, add_article: Callable[..., Article],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The index is built in a worker thread: the event loop keeps answering until the new one is swapped in."""
    release = threading.Event()
    build = service_module.Index.build

    def slow_build(kb: KnowledgeBase) -> service_module.Index:
        assert release.wait(timeout=10), "the event loop was blocked while the index was being built"
        return build(kb)

    monkeypatch.setattr(service_module.Index, "build", slow_build)
    add_article("library", "Library renovation approved", LIBRARY)
    reload = asyncio.create_task(service.reload())
    await asyncio.sleep(0.05)
    assert not reload.done()
    assert service.ask(SEED_QUESTION).found        # the old index answers meanwhile
    assert "library" not in service.kb.articles
    release.set()
    assert (await reload).changes.added == ("library",)
    assert "library" in service.kb.articles


def test_a_broken_knowledge_base_refuses_to_start(knowledge_dir: Path, store: Store) -> None:
    (knowledge_dir / "articles" / "bad.yaml").write_bytes(b"id: bad\ntitle: \xff\xfe\n")
    with pytest.raises(KnowledgeError) as error:
        Service(knowledge_dir, store)
    assert "bad.yaml:1" in str(error.value)


# --- subscriptions -------------------------------------------------------------------

def test_subscriptions_are_bounded_per_chat(service: Service, store: Store) -> None:
    assert "every new article" in service.subscribe(7, None)
    assert "“climate”" in service.subscribe(7, "  Climate!! ")
    assert "no words" in service.subscribe(7, "!!!")
    for n in range(MAX_SUBSCRIPTIONS - 2):
        service.subscribe(7, f"topic{n}")
    assert "already has" in service.subscribe(7, "one more")
    assert "Subscribed" in service.subscribe(7, "climate")   # an existing one is not refused
    assert len(store.subscriptions(7)) == MAX_SUBSCRIPTIONS


# --- reply texts -------------------------------------------------------------------------

def _visible_length(html_text: str) -> int:
    return len(html_text.encode("utf-16-le")) // 2


def test_the_reload_report_names_files_and_lines_and_fits(tmp_path: Path) -> None:
    kb = KnowledgeBase()
    problems = tuple(Problem(tmp_path / "articles" / f"a{n}.yaml", n, "bad YAML: <oops> & more") for n in range(500))
    text = reload_html(ReloadResult(kb, kb, problems=problems), tmp_path)
    assert "<code>articles/a3.yaml:3</code>" in text
    assert "&lt;oops&gt; &amp; more" in text
    assert _visible_length(text) <= 4096
    assert text.rstrip().endswith("more")


def test_the_reload_report_lists_what_changed() -> None:
    old = KnowledgeBase({"gone": make_article("gone", "Old <news>", "Body.")})
    new = KnowledgeBase({"new": make_article("new", "Fresh & new", "Body.")})
    text = reload_html(ReloadResult(old, new, Changes(added=("new",), removed=("gone",))), Path("."))
    assert "added: Fresh &amp; new" in text and "removed: Old &lt;news&gt;" in text
    assert "1 added, 0 updated, 1 removed" in text


def test_stats_escape_what_readers_typed() -> None:
    stats = Stats(2, 3, 10, 4, 1, 2, [("<script>alert(1)</script>", 3)], [("why & how", 2)])
    text = stats_html(stats, articles=5)
    assert "Articles: 5" in text and "14 (10 answered, 4 not answered)" in text
    assert "&lt;script&gt;" in text and "<script>" not in text and "why &amp; how" in text


# --- the shell -------------------------------------------------------------------------------

def test_shell_replies(service: Service) -> None:
    assert SEED_SENTENCE in (shell_reply(service, SEED_QUESTION) or "")
    assert SEED_SENTENCE in (shell_reply(service, "/ask " + SEED_QUESTION) or "")
    latest = shell_reply(service, "/latest 3") or ""
    assert next(iter(service.kb.articles.values())).title in latest
    assert "/search" in (shell_reply(service, "/search") or "")
    assert "No article matches “zzzqqq”" in (shell_reply(service, "/search zzzqqq") or "")
    assert "Unknown command /frobnicate" in (shell_reply(service, "/frobnicate") or "")
    assert shell_reply(service, "   ") == ""
    assert shell_reply(service, "/quit") is None


def test_the_shell_command_reads_questions_from_stdin(knowledge_dir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "bot", "shell", "--knowledge", str(knowledge_dir)],
        input=f"{SEED_QUESTION}\n{OFF_TOPIC_QUESTION}\n/latest\n", capture_output=True, text=True, env=env,
        timeout=120, cwd=knowledge_dir.parent,
    )
    assert result.returncode == 0, result.stderr
    assert SEED_SENTENCE in result.stdout
    assert result.stdout.count(SEED_SENTENCE) == 1   # the off-topic question is not answered with the seed
    assert "Latest articles" in result.stdout


def test_the_shell_lists_problems_instead_of_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "kb" / "articles").mkdir(parents=True)
    (tmp_path / "kb" / "articles" / "x.yaml").write_text("title: no id\n", "utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "bot", "shell", "--knowledge", str(tmp_path / "kb")],
                            input="", capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 1
    assert "x.yaml:1" in result.stderr and "Traceback" not in result.stderr
