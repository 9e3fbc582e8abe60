"""The fetcher against a real HTTP server on 127.0.0.1: validators, caps, timeouts, redirects, address checks."""

from __future__ import annotations

import gzip
import ipaddress
import time
from collections.abc import AsyncIterator

import pytest

from bot.fetch import Address, Fetcher, FetchError, FetchLimits
from bot.knowledge import public_address
from tests.feed_server import MB, FeedServer, rss

LIMITS = FetchLimits(allow_private=True, total_timeout=5.0, read_timeout=2.0, connect_timeout=2.0)
FEED = rss([{"title": "Night buses", "link": "https://lakeside.example/night-buses",
             "description": "The night buses run again."}])


@pytest.fixture
async def fetcher() -> AsyncIterator[Fetcher]:
    async with Fetcher(LIMITS) as client:
        yield client


async def test_a_feed_then_304_with_its_validators(server: FeedServer, fetcher: Fetcher) -> None:
    url = server.serve("/feed.xml", FEED, etag='"v1"', last_modified=1_700_000_000)
    first = await fetcher.get(url)
    assert (first.status, first.content, first.etag) == (200, FEED.encode(), '"v1"')
    assert first.last_modified == "Tue, 14 Nov 2023 22:13:20 GMT"
    assert first.content_type == "application/rss+xml"
    again = await fetcher.get(url, etag=first.etag, last_modified=first.last_modified)
    assert again.not_modified and again.content == b""
    assert server.not_modified["/feed.xml"] == 1
    by_date = await fetcher.get(url, last_modified=first.last_modified)
    assert by_date.not_modified


async def test_a_50_mb_answer_is_cut_off_at_the_cap_without_reading_it_all(server: FeedServer) -> None:
    server.endless.add("/huge.xml")
    async with Fetcher(FetchLimits(allow_private=True, max_bytes=1 * MB)) as fetcher:
        with pytest.raises(FetchError, match="over the 1 MB limit: not read further"):
            await fetcher.get(server.url("/huge.xml"))
    assert server.bytes_sent["/huge.xml"] < 20 * MB  # what the sockets buffered, not the 50 MB


async def test_a_compressed_bomb_is_cut_off_by_what_it_expands_to(server: FeedServer) -> None:
    bomb = gzip.compress(b"<rss>" + b" " * (50 * MB), compresslevel=9)
    url = server.serve("/bomb.xml", bomb, encoding="gzip")
    async with Fetcher(FetchLimits(allow_private=True, max_bytes=1 * MB)) as fetcher:
        with pytest.raises(FetchError, match="over the 1 MB limit: not read further"):
            await fetcher.get(url)
    assert len(bomb) < MB


async def test_a_declared_length_over_the_cap_is_refused_before_reading(server: FeedServer) -> None:
    url = server.serve("/big.xml", b"x" * (2 * MB))
    async with Fetcher(FetchLimits(allow_private=True, max_bytes=1 * MB)) as fetcher:
        with pytest.raises(FetchError, match=r"the answer is 2.0 MB, over the 1 MB limit"):
            await fetcher.get(url)


async def test_an_answer_that_never_comes_times_out(server: FeedServer) -> None:
    server.hangs.add("/slow.xml")
    started = time.monotonic()
    async with Fetcher(FetchLimits(allow_private=True, read_timeout=0.5, total_timeout=10)) as fetcher:
        with pytest.raises(FetchError, match=r"no data for 0.5 s"):
            await fetcher.get(server.url("/slow.xml"))
    assert time.monotonic() - started < 5
    async with Fetcher(FetchLimits(allow_private=True, read_timeout=10, total_timeout=0.5)) as fetcher:
        with pytest.raises(FetchError, match=r"no complete answer within 0.5 s"):
            await fetcher.get(server.url("/slow.xml"))


async def test_redirects_are_followed_and_capped(server: FeedServer, fetcher: Fetcher) -> None:
    url = server.serve("/feed.xml", FEED)
    server.redirects["/old"] = "/feed.xml"
    fetched = await fetcher.get(server.url("/old"))
    assert (fetched.url, fetched.content) == (url, FEED.encode())
    for hop in range(10):
        server.redirects[f"/loop{hop}"] = f"/loop{hop + 1}"
    with pytest.raises(FetchError, match="more than 5 redirects"):
        await fetcher.get(server.url("/loop0"))
    assert server.hits["/loop6"] == 0


@pytest.mark.parametrize("target", ["file:///etc/passwd", "ftp://example.org/feed", "gopher://x/"])
async def test_only_http_and_https_on_every_hop(server: FeedServer, fetcher: Fetcher, target: str) -> None:
    server.redirects["/away"] = target
    with pytest.raises(FetchError, match="only http and https are fetched"):
        await fetcher.get(server.url("/away"))
    with pytest.raises(FetchError, match="only http and https are fetched"):
        await fetcher.get(target)


async def test_http_errors_say_what_happened(server: FeedServer, fetcher: Fetcher) -> None:
    with pytest.raises(FetchError, match=r"HTTP 404 Not Found from http://127\.0\.0\.1:\d+/missing"):
        await fetcher.get(server.url("/missing"))
    with pytest.raises(FetchError, match="ConnectError"):
        await fetcher.get("http://127.0.0.1:9/feed")  # the discard port: nothing listens


async def test_loopback_is_refused_without_allow_private_sources(server: FeedServer) -> None:
    url = server.serve("/feed.xml", FEED)
    async with Fetcher(FetchLimits()) as fetcher:
        for refused in (url, url.replace("127.0.0.1", "localhost"), f"http://2130706433:{server.port}/feed.xml"):
            with pytest.raises(FetchError, match="private or local address: refused"):
                await fetcher.get(refused)
    assert server.hits["/feed.xml"] == 0


async def test_a_redirect_to_127_0_0_1_is_refused_at_the_resolved_address() -> None:
    """127.0.0.2 stands in for the internet here; the hop to 127.0.0.1 meets the real rule."""
    stand_in = ipaddress.ip_address("127.0.0.2")

    def internet(address: Address) -> bool:
        return address == stand_in or public_address(address)

    async with FeedServer(host="127.0.0.2") as outside, FeedServer() as inside:
        inside.serve("/admin", "secret")
        outside.redirects["/feed.xml"] = inside.url("/admin")
        outside.redirects["/by-name"] = f"http://localhost:{inside.port}/admin"
        async with Fetcher(FetchLimits(), address_allowed=internet) as fetcher:
            with pytest.raises(FetchError, match=r"127\.0\.0\.1 is at 127\.0\.0\.1, a private or local address"):
                await fetcher.get(outside.url("/feed.xml"))
            with pytest.raises(FetchError, match=r"localhost is at .*, a private or local address"):
                await fetcher.get(outside.url("/by-name"))
        assert outside.hits["/feed.xml"] == 1
        assert inside.hits["/admin"] == 0
        async with Fetcher(FetchLimits(allow_private=True)) as fetcher:
            assert (await fetcher.get(outside.url("/feed.xml"))).content == b"secret"
