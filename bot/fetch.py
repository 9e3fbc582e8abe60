"""Fetching a followed source over HTTP, safely: whatever the remote end does, the bot stays in control.

httpx with conditional requests (an unchanged feed answers 304 and costs nothing), connect/read/total timeouts,
a size cap enforced while streaming (a huge or endless body is cut off, never read whole), redirects followed one
hop at a time with every hop checked, http and https only. Every address a connection is made to, on every hop,
is the resolved address, checked where the connection is made: a name that resolves to a loopback, private,
link-local or otherwise non-global address is refused unless private sources are allowed (intranet feeds, tests),
and a name cannot resolve to one address for the check and another for the connection.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType

import httpcore
import httpx

from bot.knowledge import public_address

USER_AGENT = "civic-news-bot/0.1 (feed reader)"
ACCEPT = "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/html;q=0.8, */*;q=0.5"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class FetchError(Exception):
    """The source could not be fetched; the message says why, for the admin who follows it."""


@dataclass(frozen=True, slots=True)
class FetchLimits:
    max_bytes: int = 10 * 1024 * 1024
    max_redirects: int = 5
    connect_timeout: float = 10.0
    read_timeout: float = 20.0  # between two reads, not for the whole body: see total_timeout
    total_timeout: float = 60.0  # every hop and the whole body
    allow_private: bool = False  # ALLOW_PRIVATE_SOURCES=1: intranet sources, and tests on 127.0.0.1


@dataclass(frozen=True, slots=True)
class Fetched:
    url: str  # after redirects
    status: int  # 200, or 304 when the source is unchanged since the validators given
    content: bytes
    content_type: str
    etag: str | None
    last_modified: str | None

    @property
    def not_modified(self) -> bool:
        return self.status == 304


class _CheckedBackend(httpcore.AsyncNetworkBackend):
    """Resolves each host itself, refuses non-global addresses, and connects to the very address it checked."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend, allowed: Callable[[Address], bool]) -> None:
        self._inner = inner
        self._allowed = allowed

    async def connect_tcp(
        self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
        socket_options: Iterable[tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]]
        | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, TimeoutError) as exc:
            raise FetchError(f"cannot resolve {host}: {exc}") from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos))
        for address in addresses:
            if not self._allowed(address):
                raise FetchError(f"{host} is at {address}, a private or local address: refused "
                                 "(ALLOW_PRIVATE_SOURCES=1 allows intranet sources)")
        error: Exception = FetchError(f"cannot resolve {host}")
        for address in addresses:
            try:
                return await self._inner.connect_tcp(str(address), port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        raise error

    async def connect_unix_socket(self, *args: object, **kwargs: object) -> httpcore.AsyncNetworkStream:
        raise FetchError("unix sockets are never fetched")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _transport(allowed: Callable[[Address], bool]) -> httpx.AsyncHTTPTransport:
    transport = httpx.AsyncHTTPTransport(trust_env=False, retries=0)
    # httpx does not pass httpcore's documented network_backend on; its pool takes it (httpx range pinned).
    pool = transport._pool
    pool._network_backend = _CheckedBackend(pool._network_backend, allowed)
    return transport


def _any_address(_address: Address) -> bool:
    return True


class Fetcher:
    """One HTTP client for every source: connections are reused, limits are the same for all."""

    def __init__(self, limits: FetchLimits | None = None, *, address_allowed: Callable[[Address], bool] | None = None
                 ) -> None:
        """`address_allowed` replaces the rule `limits.allow_private` picks (tests stand one loopback address in
        for the internet)."""
        self.limits = limits or FetchLimits()
        if address_allowed is None:
            address_allowed = _any_address if self.limits.allow_private else public_address
        timeout = httpx.Timeout(self.limits.read_timeout, connect=self.limits.connect_timeout)
        self._client = httpx.AsyncClient(
            transport=_transport(address_allowed), timeout=timeout, follow_redirects=False,
            trust_env=False, headers={"User-Agent": USER_AGENT, "Accept": ACCEPT},
        )

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, value: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def get(self, url: str, *, etag: str | None = None, last_modified: str | None = None) -> Fetched:
        """The body of `url` (or 304 when the validators still match); FetchError with the reason otherwise."""
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        try:
            async with asyncio.timeout(self.limits.total_timeout):
                return await self._follow(url, headers)
        except TimeoutError:
            raise FetchError(f"no complete answer within {self.limits.total_timeout:g} s") from None
        except httpx.ConnectTimeout:
            raise FetchError(f"no connection within {self.limits.connect_timeout:g} s") from None
        except httpx.ReadTimeout:
            raise FetchError(f"no data for {self.limits.read_timeout:g} s") from None
        except httpx.TimeoutException as exc:
            raise FetchError(f"timed out ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            raise FetchError(f"{type(exc).__name__}: {exc}") from None

    async def _follow(self, url: str, headers: dict[str, str]) -> Fetched:
        current = httpx.URL(url)
        for _hop in range(self.limits.max_redirects + 1):
            if current.scheme not in ("http", "https"):
                raise FetchError(f"only http and https are fetched, not {current.scheme or 'a relative link'}: "
                                 f"{current}")
            async with self._client.stream("GET", current, headers=headers) as response:
                if response.status_code in REDIRECT_STATUSES and "location" in response.headers:
                    current = current.join(response.headers["location"])
                    continue
                if response.status_code == 304:
                    return self._fetched(response, b"")
                if response.status_code != 200:
                    raise FetchError(f"HTTP {response.status_code} {response.reason_phrase} from {current}")
                return self._fetched(response, await self._body(response))
        raise FetchError(f"more than {self.limits.max_redirects} redirects")

    async def _body(self, response: httpx.Response) -> bytes:
        """The body, read in chunks and abandoned the moment it passes the cap (decompressed bytes count)."""
        cap = self.limits.max_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap and "content-encoding" not in response.headers:
            raise FetchError(f"the answer is {int(declared) / 1048576:.1f} MB, over the {cap / 1048576:g} MB limit")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > cap:
                raise FetchError(f"the answer is over the {cap / 1048576:g} MB limit: not read further")
            chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    def _fetched(response: httpx.Response, content: bytes) -> Fetched:
        return Fetched(
            url=str(response.url), status=response.status_code, content=content,
            content_type=response.headers.get("content-type", ""), etag=response.headers.get("etag"),
            last_modified=response.headers.get("last-modified"),
        )
