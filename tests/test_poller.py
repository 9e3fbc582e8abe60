"""Following sources against a real HTTP server on 127.0.0.1: new items added once, across restarts; a source
that hangs, floods or breaks fails alone, counted and backed off; teasers replaced by their page's text."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot import cli, knowledge
from bot import poller as poller_module
from bot.fetch import Address, Fetcher, FetchLimits
from bot.knowledge import public_address
from bot.poller import (
    MAX_BACKOFF,
    STATE_PREFIX,
    Health,
    Poller,
    PollOutcome,
    SourceState,
    after_failure,
    after_success,
    backoff,
)
from bot.store import Store
from tests.feed_server import MB, FeedServer, rss

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "ingest"
LIMITS = FetchLimits(allow_private=True, total_timeout=10.0, read_timeout=5.0, connect_timeout=2.0)
BUS = {"title": "Night buses run again", "link": "https://lakeside.example/night-buses", "guid": "bus-1",
       "description": "The night buses of Lakeside run again from Monday. The council paid for two new routes "
                      "after residents asked for them at the spring meeting. Drivers were hired in March. "
                      "The buses stop at the station, the hospital and the university campus every half hour. "
                      "A ticket costs the same as by day. The council will count the passengers until "
                      "autumn and decide then whether the routes stay for good. Residents can suggest new stops "
                      "on the council's website until the end of the month, the transport office said."}
PARK = {"title": "Volunteers plant trees in the river park", "link": "https://lakeside.example/river-park",
        "guid": "park-1",
        "description": "Two hundred volunteers planted oaks and limes in the river park on Saturday. The park "
                       "lost many trees in the winter storms, and the city volunteer council asked residents to "
                       "help replace them. Schools sent pupils, and a local nursery gave the saplings for free. "
                       "The council said the volunteers would water the young trees through the summer. Another "
                       "planting day is planned for the autumn, when the weather is cooler and wetter."}


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def kb(tmp_path: Path) -> Path:
    (tmp_path / "kb" / "articles").mkdir(parents=True)
    return tmp_path / "kb"


@pytest.fixture
def store_file(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "bot.sqlite3")
    yield store
    store.close()


def follow(kb: Path, *urls: str, every: str = "15m") -> None:
    (kb / "sources.yaml").write_text("".join(f"- url: {u}\n  every: {every}\n" for u in urls))


def articles(kb: Path) -> dict[str, knowledge.Article]:
    return knowledge.load(kb).articles


async def test_a_new_feed_item_is_added_once(server: FeedServer, kb: Path, store_file: Store) -> None:
    follow(kb, server.serve("/feed.xml", rss([BUS])))
    async with Poller(kb, store_file, limits=LIMITS) as poller:
        (outcome,) = await poller.poll_all()
        assert outcome.ok and not outcome.failed
        ((article_id, title),) = [(a.id, a.title) for a in outcome.added]
        assert title == "Night buses run again"
        assert list(articles(kb)) == [article_id]
        assert articles(kb)[article_id].source == "Lakeside Civic News"
        server.serve("/feed.xml", rss([PARK, BUS]))
        (outcome,) = await poller.poll_all()
        assert [a.title for a in outcome.added] == ["Volunteers plant trees in the river park"]
        (outcome,) = await poller.poll_all()
        assert outcome.added == outcome.updated == ()
    assert len(articles(kb)) == 2


async def test_an_unchanged_feed_answers_304_and_nothing_is_parsed(server: FeedServer, kb: Path,
                                                                   store_file: Store) -> None:
    follow(kb, server.serve("/feed.xml", rss([BUS]), etag='"v1"'))
    async with Poller(kb, store_file, limits=LIMITS) as poller:
        (first,) = await poller.poll_all()
        assert len(first.added) == 1 and first.state.etag == '"v1"'
        (second,) = await poller.poll_all()
    assert second.not_modified and second.ok and second.added == ()
    assert server.not_modified["/feed.xml"] == 1


async def test_a_hanging_source_does_not_hold_up_another(server: FeedServer, kb: Path, store_file: Store) -> None:
    server.hangs.add("/hangs.xml")
    follow(kb, server.url("/hangs.xml"), server.serve("/feed.xml", rss([BUS])))
    async with Poller(kb, store_file, limits=FetchLimits(allow_private=True), source_timeout=8) as poller:
        polling = asyncio.create_task(poller.poll_due())
        while not list((kb / "articles").glob("*.yaml")):
            assert not polling.done(), "the good source waited for the hanging one"
            await asyncio.sleep(0.05)
        assert not polling.done()  # the hanging source is still being waited for
        hanging, good = await polling
    assert len(good.added) == 1
    assert hanging.error == "no answer within 8 s"
    assert hanging.health is Health.FAILING


async def test_a_50_mb_answer_is_cut_off_and_counted_as_a_failure(server: FeedServer, kb: Path,
                                                                  store_file: Store) -> None:
    server.endless.add("/huge.xml")
    follow(kb, server.url("/huge.xml"))
    async with Poller(kb, store_file, limits=FetchLimits(allow_private=True, max_bytes=2 * MB)) as poller:
        (outcome,) = await poller.poll_all()
    assert outcome.error == "the answer is over the 2 MB limit: not read further"
    assert outcome.state.failures == 1
    assert server.bytes_sent["/huge.xml"] < 20 * MB


async def test_a_redirect_to_127_0_0_1_is_refused_without_allow_private_sources(kb: Path, store_file: Store) -> None:
    stand_in = ipaddress.ip_address("127.0.0.2")  # plays a public site

    def internet(address: Address) -> bool:
        return address == stand_in or public_address(address)

    async with FeedServer(host="127.0.0.2") as outside, FeedServer() as inside:
        inside.serve("/feed.xml", rss([BUS]))
        outside.redirects["/feed.xml"] = inside.url("/feed.xml")
        follow(kb, outside.url("/feed.xml"))
        async with Poller(kb, store_file, fetcher=Fetcher(FetchLimits(), address_allowed=internet)) as poller:
            (outcome,) = await poller.poll_all()
        assert outcome.error is not None and "127.0.0.1 is at 127.0.0.1, a private or local address" in outcome.error
        assert inside.hits["/feed.xml"] == 0
        async with Poller(kb, store_file, limits=LIMITS) as poller:  # ALLOW_PRIVATE_SOURCES=1
            (outcome,) = await poller.poll_all()
        assert len(outcome.added) == 1


async def test_a_malformed_feed_fails_clearly_backs_off_and_recovers(server: FeedServer, kb: Path,
                                                                     store_file: Store) -> None:
    url = server.serve("/feed.xml", '<rss version="2.0"><channel><<<>>>&&&')
    follow(kb, url, every="1m")
    clock = Clock()
    async with Poller(kb, store_file, limits=LIMITS, clock=clock) as poller:
        (first,) = await poller.poll_due()
        assert first.error is not None
        assert first.error.startswith("the feed has no items (") and "not well-formed (invalid token)" in first.error
        assert (first.health, first.state.failures, first.state.next_due) == (Health.FAILING, 1, clock.now + 120)
        assert await poller.poll_due() == []  # backing off
        clock.now += 120
        (second,) = await poller.poll_due()
        assert (second.health, second.state.failures, second.state.next_due) == (None, 2, clock.now + 240)
        server.serve("/feed.xml", rss([BUS]))
        clock.now += 240
        (third,) = await poller.poll_due()
    assert (third.health, third.state.failures, third.state.last_error) == (Health.RECOVERED, 0, None)
    assert third.state.last_success == third.state.last_new_article == clock.now
    assert len(third.added) == 1
    saved = SourceState.from_json(store_file.get_state(STATE_PREFIX + url))
    assert saved == third.state


async def test_a_teaser_item_gets_its_pages_text(server: FeedServer, kb: Path, store_file: Store) -> None:
    page = server.serve("/story.html", (FIXTURES / "page.html").read_bytes(), "text/html; charset=utf-8")
    teaser = {"title": "Library opens a repair café", "link": page, "guid": "story-1",
              "description": "The library opened a repair café…"}
    follow(kb, server.serve("/feed.xml", rss([teaser, BUS])))
    async with Poller(kb, store_file, limits=LIMITS) as poller:
        (outcome,) = await poller.poll_all()
    assert len(outcome.added) == 2
    by_title = {a.title: a for a in articles(kb).values()}
    story = by_title["Library opens a repair café"]
    assert story.url == page
    assert story.body.startswith("The central library of Northbridge opened a repair café on Saturday")
    assert "Residents who want to volunteer can sign up" in story.body
    assert "Donate" not in story.body
    assert server.hits["/story.html"] == 1
    assert by_title["Night buses run again"].body.startswith("The night buses of Lakeside")  # full item: kept


async def test_a_restart_adds_nothing_again_and_deleted_articles_stay_deleted(server: FeedServer, kb: Path,
                                                                              tmp_path: Path) -> None:
    follow(kb, server.serve("/feed.xml", rss([BUS, PARK])))
    store = Store(tmp_path / "bot.sqlite3")
    async with Poller(kb, store, limits=LIMITS) as poller:
        (outcome,) = await poller.poll_all()
    store.close()
    assert len(outcome.added) == 2
    park = next(a for a in outcome.added if a.title.startswith("Volunteers"))
    knowledge.article_path(kb, park.id).unlink()  # an editor removes one
    server.serve("/feed.xml", rss([BUS, PARK]) + "\n")  # a changed body: the feed is read again
    store = Store(tmp_path / "bot.sqlite3")
    async with Poller(kb, store, limits=LIMITS) as poller:
        (outcome,) = await poller.poll_all()
    store.close()
    assert outcome.ok and outcome.added == outcome.updated == ()
    assert [a.title for a in articles(kb).values()] == ["Night buses run again"]


async def test_a_changed_item_updates_its_article_and_keeps_an_editors_summary(server: FeedServer, kb: Path,
                                                                               store_file: Store) -> None:
    follow(kb, server.serve("/feed.xml", rss([BUS])))
    async with Poller(kb, store_file, limits=LIMITS) as poller:
        ((ref,),) = [o.added for o in await poller.poll_all()]
        path = knowledge.article_path(kb, ref.id)
        edited = knowledge.dump_yaml({**knowledge.read_article(path, []).to_yaml_dict(),  # type: ignore[union-attr]
                                      "summary": "Night buses are back."})
        knowledge.write_atomic(path, edited)
        corrected = {**BUS, "description": BUS["description"].replace("two new routes", "three new routes")}
        server.serve("/feed.xml", rss([corrected]))
        (outcome,) = await poller.poll_all()
    assert [a.id for a in outcome.updated] == [ref.id] and outcome.added == ()
    article = articles(kb)[ref.id]
    assert "three new routes" in article.body
    assert article.summary == "Night buses are back."


async def test_add_url_reads_one_page_now(server: FeedServer, kb: Path, store_file: Store) -> None:
    page = server.serve("/story.html", (FIXTURES / "page.html").read_bytes(), "text/html")
    async with Poller(kb, store_file, limits=LIMITS) as poller:
        outcome = await poller.add_url(page)
        assert [a.title for a in outcome.added] == ["Library opens a repair café"]
        again = await poller.add_url(page)
        assert again.ok and again.added == again.updated == ()
        missing = await poller.add_url(server.url("/nothing.html"))
    assert missing.error is not None and missing.error.startswith("HTTP 404 Not Found")
    assert len(articles(kb)) == 1


async def test_paused_sources_are_not_polled(server: FeedServer, kb: Path, store_file: Store) -> None:
    url = server.serve("/feed.xml", rss([BUS]))
    follow(kb, url)
    async with Poller(kb, store_file, limits=LIMITS) as poller:
        assert (await poller.set_paused(url, True)).paused
        assert await poller.poll_due() == [] and await poller.poll_all() == []
        assert await poller.next_due() is None
        await poller.set_paused(url, False)
        (outcome,) = await poller.poll_due()
    assert len(outcome.added) == 1 and server.hits["/feed.xml"] == 1


def test_backoff_doubles_up_to_a_cap_never_below_the_schedule() -> None:
    assert [backoff(60, n) for n in range(4)] == [60, 120, 240, 480]
    assert backoff(60, 50) == MAX_BACKOFF
    assert backoff(2 * MAX_BACKOFF, 3) == 2 * MAX_BACKOFF


def test_health_changes_are_reported_once_each_way() -> None:
    state = SourceState()
    healths = []
    for ok in (True, False, False, False, True, True, False):
        if ok:
            state, health = after_success(state, 0.0, 60)
        else:
            state, health = after_failure(state, "down", 0.0, 60)
        healths.append(health)
    assert healths == [None, Health.FAILING, None, None, Health.RECOVERED, None, Health.FAILING]
    assert SourceState.from_json(state.to_json()) == state
    assert SourceState.from_json("{not json") == SourceState() == SourceState.from_json('{"unknown": 1}')


async def test_cli_poll_once(server: FeedServer, kb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DATABASE_PATH", str(tmp_path / "cli.sqlite3"))
    monkeypatch.setenv("ALLOW_PRIVATE_SOURCES", "1")
    assert await asyncio.to_thread(cli.main, ["poll", "--once", "--knowledge", str(kb)]) == 2
    assert capsys.readouterr().err.startswith(f"No sources to poll: list them in {kb / 'sources.yaml'}")
    follow(kb, server.serve("/feed.xml", rss([BUS])))
    assert await asyncio.to_thread(cli.main, ["poll", "--once", "--knowledge", str(kb)]) == 0
    ((article_id, _),) = articles(kb).items()
    assert capsys.readouterr().out == f"added {article_id}: Night buses run again\n"
    assert await asyncio.to_thread(cli.main, ["poll", "--once", "--knowledge", str(kb)]) == 0
    assert capsys.readouterr().out == ""
    follow(kb, server.url("/feed.xml"), server.url("/gone.xml"))
    assert await asyncio.to_thread(cli.main, ["poll", "--once", "--knowledge", str(kb)]) == 1
    captured = capsys.readouterr()
    assert captured.err == f"failed: {server.url('/gone.xml')}: HTTP 404 Not Found from {server.url('/gone.xml')}\n"
    (kb / "sources.yaml").write_text(f"- url: {server.url('/feed.xml')}\n- url: ftp://x/\n")
    assert await asyncio.to_thread(cli.main, ["poll", "--once", "--knowledge", str(kb)]) == 1
    assert capsys.readouterr().err == (f"{kb / 'sources.yaml'}:2: field 'url' must be an http(s) link, "
                                       "not 'ftp://x/'\n")  # and the valid source was polled: nothing new
    monkeypatch.setenv("ALLOW_PRIVATE_SOURCES", "0")
    assert await asyncio.to_thread(cli.main, ["poll", "--once", "--knowledge", str(kb)]) == 1
    assert "a private or local address: refused" in capsys.readouterr().err


async def test_run_polls_on_the_schedule_until_cancelled(server: FeedServer, kb: Path, store_file: Store) -> None:
    follow(kb, server.serve("/feed.xml", rss([BUS]), etag='"v1"'), every="1s")
    rounds: list[list[PollOutcome]] = []
    async with Poller(kb, store_file, limits=LIMITS) as poller:
        running = asyncio.create_task(poller.run(rounds.append))
        while len(rounds) < 2:
            await asyncio.sleep(0.05)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
    assert [len(r[0].added) for r in rounds[:2]] == [1, 0]
    assert rounds[1][0].not_modified and server.hits["/feed.xml"] >= 2


async def test_sources_yaml_is_parsed_again_only_when_it_changed(kb: Path, store_file: Store,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Every round looks at sources.yaml, so an edit applies at once; an unchanged file is not parsed again."""
    parsed: list[Path] = []
    read = poller_module.read_sources
    monkeypatch.setattr(poller_module, "read_sources", lambda directory: (parsed.append(directory), read(directory))[1])
    follow(kb, "https://a.example.org/feed.xml")
    old = time.time_ns() - 10 * 10**9
    os.utime(kb / "sources.yaml", ns=(old, old))
    async with Poller(kb, store_file) as poller:
        for _ in range(3):
            assert [s.url for s in (await poller.sources())[0]] == ["https://a.example.org/feed.xml"]
        assert len(parsed) == 1
        follow(kb, "https://a.example.org/feed.xml", "https://b.example.org/feed.xml")   # just now: not yet settled
        for _ in range(2):
            assert len((await poller.sources())[0]) == 2
        assert len(parsed) == 3
