"""The Telegram-free core: answering with statistics, reloading, limits, article keys, subscriptions, languages."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bot import service as service_module
from bot.knowledge import Article, Changes, KnowledgeBase, KnowledgeError
from bot.service import (
    MAX_QUESTION_CHARS,
    MAX_SUBSCRIPTIONS,
    RateLimiter,
    Service,
    SharedRateLimiter,
    SubscribeOutcome,
    answering_first,
    clean_question,
)
from bot.store import Store
from bot.telegram.keyboards import callback_key
from tests.conftest import OFF_TOPIC_QUESTION, SEED_QUESTION, SEED_SENTENCE

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
    service.feedback(SEED_QUESTION, [article], helpful=False)
    service.feedback(SEED_QUESTION, [article], helpful=True)
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
    service = Service(knowledge_dir, store, article_key=callback_key)
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


def test_the_shared_limit_warns_once_however_its_checks_interleave(store: Store,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Replicas check the limit in worker threads: an allowed check whose answer comes back late must not clear
    the warning a later refusal already gave."""
    limiter = SharedRateLimiter(store, per_minute=1)
    take = store.take_token

    def slow_when_allowed(*args: object, **kwargs: object) -> float:
        wait = take(*args, **kwargs)  # type: ignore[arg-type]
        if not wait:
            time.sleep(0.2)
        return wait

    monkeypatch.setattr(store, "take_token", slow_when_allowed)
    with ThreadPoolExecutor(2) as pool:
        allowed = pool.submit(limiter.check, 7)
        time.sleep(0.05)
        refused = pool.submit(limiter.check, 7)
        assert [allowed.result(), refused.result()] == [(True, False), (False, True)]
    assert limiter.check(7) == (False, False)   # warned once already


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
    update = service_module.Index.updated

    def slow_update(index: service_module.Index, kb: KnowledgeBase, changes: Changes) -> service_module.Index:
        assert release.wait(timeout=10), "the event loop was blocked while the index was being built"
        return update(index, kb, changes)

    monkeypatch.setattr(service_module.Index, "updated", slow_update)
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
    everything = service.subscribe(7, None)
    assert everything.outcome is SubscribeOutcome.SUBSCRIBED and everything.subscription is not None
    assert everything.subscription.words is None
    climate = service.subscribe(7, "  Climate!! ").subscription
    assert climate is not None and climate.words == "climate"
    assert service.subscribe(7, "!!!").outcome is SubscribeOutcome.NO_WORDS
    for n in range(MAX_SUBSCRIPTIONS - 2):
        service.subscribe(7, f"topic{n}")
    assert service.subscribe(7, "one more").outcome is SubscribeOutcome.TOO_MANY
    assert service.subscribe(7, "climate").outcome is SubscribeOutcome.SUBSCRIBED   # an existing one is not refused
    assert len(store.subscriptions(7)) == MAX_SUBSCRIPTIONS


def test_a_subscription_in_a_language_no_article_is_in_is_flagged(service: Service) -> None:
    assert service.languages == ("en",)
    russian = service.subscribe(7, "волонтёры")
    assert russian.outcome is SubscribeOutcome.SUBSCRIBED
    assert russian.foreign_language == "ru" and russian.kb_languages == ("en",)
    assert service.subscribe(7, "volunteers").foreign_language is None


def test_a_question_in_another_language_says_so_and_is_still_answered_on_a_strong_match(service: Service) -> None:
    assert service.ask(SEED_QUESTION).foreign_language is None
    russian = service.ask("Что такое ООН?")
    assert russian.foreign_language == "ru" and russian.kb_languages == ("en",)


def test_the_chat_language_is_remembered(service: Service, store: Store) -> None:
    assert service.chat_language(5) is None
    service.set_chat_language(5, "kk")
    assert service.chat_language(5) == "kk" and store.chat_language(5) == "kk"
    service.migrate_chat(5, -1005)
    assert service.chat_language(-1005) == "kk"


def test_latest_is_newest_first_and_bounded(service: Service) -> None:
    newest = service.latest(100)
    dated = [a.published for a in newest if a.published is not None]
    assert dated == sorted(dated, reverse=True) and len(newest) <= 10
    assert service.latest(1) == newest[:1]


def test_overlapping_background_jobs_restore_the_switch_interval_only_when_the_last_ends() -> None:
    """A poll round ending while a reload still runs must not hand answers back the long GIL waits."""
    before = sys.getswitchinterval()
    reload, poll_round = answering_first(), answering_first()
    reload.__enter__()
    poll_round.__enter__()
    reload.__exit__(None, None, None)
    assert sys.getswitchinterval() < before
    poll_round.__exit__(None, None, None)
    assert sys.getswitchinterval() == before
