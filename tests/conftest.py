"""Shared fixtures: a private copy of the shipped knowledge base, articles written on demand, and the fake
Bot API server with the bot's settings and running application pointed at it."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from telegram.ext import Application

from bot import knowledge
from bot.config import Settings
from bot.knowledge import Article
from bot.store import Store
from bot.testing.fake_telegram import FakeTelegram
from tests.driver import ADMIN, RATE_LIMIT, REPO, running
from tests.feed_server import FeedServer
from tests.postgres import postgres_server, postgres_url  # noqa: F401  (fixtures: a real PostgreSQL server)

# The shipped seed article answers this with exactly this sentence (issue 3).
SEED_QUESTION = "how many plan items were executed?"
SEED_SENTENCE = "In total, of the 53 items of the Plan, 18 were executed, and 35 are in the process of execution."
OFF_TOPIC_QUESTION = "what's the weather in Almaty tomorrow?"

# An article the tests add to the knowledge base (our own words).
LIBRARY = ("The city council approved the renovation of the central library on Monday. "
           "Works will cost 40 million tenge and the reading rooms reopen in September. "
           "The library keeps lending books from a temporary hall during the works.")


@pytest.fixture
def knowledge_dir(tmp_path: Path) -> Path:
    """A copy of the repository's knowledge/ that a test may change freely."""
    return Path(shutil.copytree(REPO / "knowledge", tmp_path / "knowledge"))


def make_article(article_id: str, title: str, body: str, **fields: object) -> Article:
    """An article with sensible defaults; the summary is the body's first sentence unless given."""
    defaults: dict[str, object] = {
        "published": dt.date(2024, 3, 1), "source": "Test Gazette", "url": f"https://example.org/{article_id}",
        "language": "en", "summary": body.split(". ")[0].rstrip(".") + ".",
    }
    defaults.update(fields)
    return Article(id=article_id, title=title, body=body, **defaults)  # type: ignore[arg-type]


@pytest.fixture
def add_article(knowledge_dir: Path) -> Callable[..., Article]:
    """Write an article into the test's knowledge dir, as an editor (or the builder) would."""

    def add(article_id: str, title: str, body: str, **fields: object) -> Article:
        article = make_article(article_id, title, body, **fields)
        knowledge.write_article(knowledge_dir, article)
        return article

    return add


@pytest.fixture
def store() -> Iterator[Store]:
    """An in-memory store; tests of the store itself and of broadcasts use a file instead."""
    store = Store(":memory:")
    yield store
    store.close()


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


@pytest.fixture
def settings(tg: FakeTelegram, knowledge_dir: Path, tmp_path: Path) -> Settings:
    return Settings(token=tg.token, base_url=tg.base_url, knowledge_dir=knowledge_dir,
                    database_path=tmp_path / "data" / "bot.sqlite3", admin_ids=frozenset({ADMIN}),
                    user_rate_limit=RATE_LIMIT)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Application]:  # type: ignore[type-arg]
    async with running(settings) as application:
        yield application


@pytest.fixture
async def server() -> AsyncIterator[FeedServer]:
    """A feed and page server on 127.0.0.1 for the followed-sources tests."""
    async with FeedServer() as running:
        yield running
