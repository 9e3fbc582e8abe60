"""The running bot follows its sources: the real Application against the fake Bot API server, feeds served by a
real HTTP server on 127.0.0.1 (ALLOW_PRIVATE_SOURCES on). New items reach subscribers once, across restarts; a
hanging source holds up nothing; admins hear once when a source fails and once when it recovers; /add and
/sources are for admins only, and a paused source is not polled."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot import i18n
from bot.config import ConfigError, Settings, load_settings, local_settings
from bot.render import NEW
from bot.testing.fake_telegram import FakeTelegram
from tests.driver import ADMIN, ADMINS_ONLY, EN, REAL_LOOKING_TOKEN, USER, reply, running, say, service, until
from tests.feed_server import FeedServer, rss
from tests.test_poller import BUS

# Full items (no teaser, so no page is fetched): our own words.
PARK = {"title": "Volunteers plant trees in the river park", "link": "https://lakeside.example/river-park",
        "guid": "park-1",
        "description": "Two hundred volunteers planted oaks and limes in the river park on Saturday. The park "
                       "lost many trees in the winter storms, and the city volunteer council asked residents to "
                       "help replace them. Schools sent pupils, and a local nursery gave the saplings for free. "
                       "The council said the volunteers would water the young trees through the summer. Another "
                       "planting day is planned for the autumn, when the weather is cooler and wetter. Residents "
                       "who want to join can write to the council's volunteer office before September."}

RU_ADMIN = 9002
SLOW = 30   # seconds for what goes through a poll: a loaded machine's first build imports the parsers
BUS_QUESTION = "when do the night buses run again?"
PARK_QUESTION = "how many volunteers planted trees in the river park?"


@pytest.fixture
async def server() -> AsyncIterator[FeedServer]:
    async with FeedServer() as running_server:
        yield running_server


@pytest.fixture
def following(settings: Settings) -> Settings:
    return dataclasses.replace(settings, allow_private_sources=True, admin_ids=frozenset({ADMIN, RU_ADMIN}))


def follow(knowledge_dir: Path, *sources: tuple[str, str], every: str = "1s") -> None:
    """sources.yaml as an editor writes it: (name, url) per source."""
    (knowledge_dir / "sources.yaml").write_text(
        "".join(f"- url: {url}\n  name: {name}\n  every: {every}\n" for name, url in sources), "utf-8")


def notifications(tg: FakeTelegram, title: str, chat_id: int = USER) -> list[dict[str, Any]]:
    return [m for m in tg.sent(chat_id) if m["text"].startswith(NEW) and title in m["text"]]


async def ask(tg: FakeTelegram, question: str) -> str:
    """The bot's answer, told apart from a notification that may arrive meanwhile."""
    tg.push_message(question, chat_id=USER, user_id=USER)
    answer = await tg.wait_for("sendMessage", lambda p: p["chat_id"] == USER and not p["text"].startswith(NEW))
    return str(answer["text"])


async def polled(server: FeedServer, path: str, times: int, timeout: float = 20) -> None:
    """Wait until the source has been fetched `times` more times."""
    target = server.hits[path] + times
    await until(lambda: server.hits[path] >= target, timeout)


async def test_a_new_item_is_announced_once_and_answerable_by_then(tg: FakeTelegram, server: FeedServer,
                                                                    following: Settings) -> None:
    async with running(following):
        await say(tg, "/subscribe")
        follow(following.knowledge_dir, ("Lakeside", server.serve("/feed.xml", rss([BUS]))))  # applies unrestarted
        await reply(tg, USER, BUS["title"], timeout=SLOW)
        assert BUS["title"] in await ask(tg, BUS_QUESTION)

        server.serve("/feed.xml", rss([PARK, BUS]))
        await reply(tg, USER, PARK["title"], timeout=SLOW)
        assert PARK["title"] in await ask(tg, PARK_QUESTION)
        await polled(server, "/feed.xml", 3)
        await asyncio.sleep(0.5)   # time for a wrong second announcement to be sent
    assert len(notifications(tg, BUS["title"])) == len(notifications(tg, PARK["title"])) == 1
    assert len(list((following.knowledge_dir / "articles").glob("*.yaml"))) == 3   # the seed article and two


async def test_a_restart_announces_nothing_again(tg: FakeTelegram, server: FeedServer, following: Settings) -> None:
    async with running(following):
        await say(tg, "/subscribe")
        follow(following.knowledge_dir, ("Lakeside", server.serve("/feed.xml", rss([BUS]))))
        await reply(tg, USER, BUS["title"], timeout=SLOW)
    server.serve("/feed.xml", rss([PARK, BUS]))   # published while the bot was down
    async with running(following):
        await reply(tg, USER, PARK["title"], timeout=SLOW)
        await polled(server, "/feed.xml", 3)
        await asyncio.sleep(0.5)
    async with running(following):
        await polled(server, "/feed.xml", 3)
        await asyncio.sleep(0.5)
    assert len(notifications(tg, BUS["title"])) == len(notifications(tg, PARK["title"])) == 1


async def test_a_hanging_source_delays_neither_answers_nor_other_sources(tg: FakeTelegram, server: FeedServer,
                                                                         following: Settings) -> None:
    server.hangs.add("/hangs.xml")
    async with running(following):
        await say(tg, "/subscribe")
        follow(following.knowledge_dir, ("Stuck", server.url("/hangs.xml")),
               ("Lakeside", server.serve("/feed.xml", rss([BUS]))))
        await reply(tg, USER, BUS["title"], timeout=SLOW)
        assert BUS["title"] in await ask(tg, BUS_QUESTION)
        server.serve("/feed.xml", rss([PARK, BUS]))
        await reply(tg, USER, PARK["title"], timeout=SLOW)
        assert server.hits["/hangs.xml"] == 1   # still waiting for its first answer, and not polled twice at once
        assert "Stuck" not in "".join(m["text"] for m in tg.sent(ADMIN))   # it has not failed yet
        assert PARK["title"] in await ask(tg, PARK_QUESTION)
        assert server.hits["/hangs.xml"] == 1


async def test_admins_hear_once_when_a_source_fails_and_once_when_it_recovers(
        tg: FakeTelegram, server: FeedServer, following: Settings) -> None:
    async with running(following) as app:
        await asyncio.to_thread(service(app).set_chat_language, RU_ADMIN, "ru")
        follow(following.knowledge_dir, ("Lakeside", server.url("/feed.xml")))   # 404 for now
        failing = await reply(tg, ADMIN, "Lakeside", timeout=SLOW)
        failing_ru = await reply(tg, RU_ADMIN, "Lakeside", timeout=SLOW)
        await polled(server, "/feed.xml", 1)   # failed again (backing off): nobody is told twice
        server.serve("/feed.xml", rss([BUS]))
        recovered = await reply(tg, ADMIN, "Lakeside", timeout=SLOW)
        recovered_ru = await reply(tg, RU_ADMIN, "Lakeside", timeout=SLOW)
        await polled(server, "/feed.xml", 2)
        await asyncio.sleep(0.5)
    ru = i18n.translator("ru")
    assert "404" in failing["text"] and "is failing" in failing["text"]
    assert ru("health.failing").split("<b>")[0] in failing_ru["text"]
    assert "works again" in recovered["text"]
    assert ru("health.recovered").split("<b>")[0] in recovered_ru["text"]
    assert server.hits["/feed.xml"] >= 4
    assert len(tg.sent(ADMIN)) == len(tg.sent(RU_ADMIN)) == 2


async def test_add_is_refused_to_others(tg: FakeTelegram, server: FeedServer, following: Settings) -> None:
    url = server.serve("/feed.xml", rss([BUS]))
    async with running(following) as app:
        assert (await say(tg, f"/add {url}"))["text"] == ADMINS_ONLY
        assert (await say(tg, "/sources"))["text"] == ADMINS_ONLY
        assert server.hits["/feed.xml"] == 0
        assert all(a.title != BUS["title"] for a in service(app).kb.articles.values())


async def test_add_by_an_admin_adds_replies_and_notifies(tg: FakeTelegram, server: FeedServer,
                                                         following: Settings) -> None:
    url = server.serve("/feed.xml", rss([BUS, PARK]))
    async with running(following):
        await say(tg, "/subscribe")
        report = (await say(tg, f"/add {url}", chat_id=ADMIN))["text"]
        lines = report.splitlines()
        assert lines[0] == f"<b>From {url}:</b>"
        added = sorted(line for line in lines if line.startswith("added: "))
        assert [line.split(" — ")[0] for line in added] == [f"added: {BUS['title']}", f"added: {PARK['title']}"]
        ids = [line.split(" — ")[1].removeprefix("<code>").removesuffix("</code>") for line in added]
        assert all((following.knowledge_dir / "articles" / f"{i}.yaml").is_file() for i in ids)   # each with its id
        assert BUS["title"] in await ask(tg, BUS_QUESTION)   # answerable when the reply comes
        digest = await reply(tg, USER, PARK["title"], timeout=SLOW)
        assert digest["text"].startswith(NEW) and BUS["title"] in digest["text"]

        again = (await say(tg, f"/add {url}", chat_id=ADMIN))["text"]
        assert again == EN("add.nothing", url=url)
        missing = (await say(tg, f"/add {server.url('/gone.xml')}", chat_id=ADMIN))["text"]
        assert missing.startswith("Could not add") and "404" in missing
        assert (await say(tg, "/add not-a-link", chat_id=ADMIN))["text"] == EN("add.usage")
        await asyncio.sleep(0.5)
    assert len([m for m in tg.sent(USER) if m["text"].startswith(NEW)]) == 1


def _buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for row in (message.get("reply_markup") or {}).get("inline_keyboard", []) for b in row]


async def test_sources_lists_and_pause_stops_polling_until_resumed(tg: FakeTelegram, server: FeedServer,
                                                                   following: Settings) -> None:
    async with running(following) as app:
        follow(following.knowledge_dir, ("Lakeside", server.serve("/a.xml", rss([BUS]))),
               ("Riverside", server.serve("/b.xml", rss([PARK]))))
        await until(lambda: {BUS["title"], PARK["title"]} <= {a.title for a in service(app).kb.articles.values()})
        listing = await say(tg, "/sources", chat_id=ADMIN)
        text = listing["text"]
        assert text.startswith("<b>2 followed sources:</b>")
        assert "1. <b>Lakeside</b>" in text and "2. <b>Riverside</b>" in text and server.url("/a.xml") in text
        assert "last successful poll: never" not in text and "last new article: never" not in text
        pause_a, pause_b = _buttons(listing)
        assert pause_a["text"] == "⏸ Pause 1. Lakeside" and pause_b["text"] == "⏸ Pause 2. Riverside"
        assert all(len(b["callback_data"].encode()) <= 64 for b in (pause_a, pause_b))

        tg.push_callback(pause_a["callback_data"], chat_id=ADMIN, user_id=ADMIN)
        toast = await tg.wait_for("answerCallbackQuery", lambda p: "Lakeside" in p.get("text", ""))
        assert toast["text"] == "Paused: Lakeside"
        edited = await tg.wait_for("editMessageText", lambda p: p["chat_id"] == ADMIN)
        assert "1. <b>Lakeside</b> — paused" in edited["text"]
        await asyncio.sleep(1.5)   # a poll under way when the button was pressed ends
        paused_at = server.hits["/a.xml"]
        await polled(server, "/b.xml", 3)
        assert server.hits["/a.xml"] == paused_at   # not polled while paused

        resume_a = _buttons(edited)[0]
        assert resume_a["text"] == "▶ Resume 1. Lakeside"
        tg.push_callback(resume_a["callback_data"], chat_id=ADMIN, user_id=ADMIN)
        assert (await tg.wait_for("answerCallbackQuery", lambda p: "Lakeside" in p.get("text", "")))["text"] \
            == "Resumed: Lakeside"
        await polled(server, "/a.xml", 1, timeout=5)

        follow(following.knowledge_dir, ("Lakeside", server.url("/a.xml")))   # Riverside no longer followed
        tg.push_callback(pause_b["callback_data"], chat_id=ADMIN, user_id=ADMIN)
        assert (await tg.wait_for("answerCallbackQuery", lambda p: "text" in p))["text"] == EN("button.gone")


def test_allow_private_sources_is_off_unless_set() -> None:
    token = {"TELEGRAM_BOT_TOKEN": REAL_LOOKING_TOKEN}
    assert not load_settings(token, env_file=None).allow_private_sources
    assert load_settings({**token, "ALLOW_PRIVATE_SOURCES": "1"}, env_file=None).allow_private_sources
    assert local_settings({"ALLOW_PRIVATE_SOURCES": "1"}, env_file=None).allow_private_sources
    with pytest.raises(ConfigError, match=re.escape("ALLOW_PRIVATE_SOURCES must be 1 (on) or 0 (off), not 'maybe'")):
        load_settings({**token, "ALLOW_PRIVATE_SOURCES": "maybe"}, env_file=None)
