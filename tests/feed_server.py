"""A real HTTP server on 127.0.0.1 serving feeds and pages the way real sites do: validators and 304,
redirects, bodies that never end, answers that never come. Each test sets the routes it needs."""

from __future__ import annotations

import asyncio
import email.utils
from collections import Counter
from dataclasses import dataclass, field
from types import TracebackType

from aiohttp import web

MB = 1024 * 1024


@dataclass
class Page:
    body: bytes
    content_type: str = "application/rss+xml"
    etag: str | None = None
    last_modified: float | None = None  # epoch seconds
    encoding: str | None = None  # Content-Encoding of `body` as given


@dataclass
class FeedServer:
    host: str = "127.0.0.1"
    pages: dict[str, Page] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)
    hangs: set[str] = field(default_factory=set)
    endless: set[str] = field(default_factory=set)  # 50 MB sent in chunks, no Content-Length
    hits: Counter[str] = field(default_factory=Counter)
    not_modified: Counter[str] = field(default_factory=Counter)
    bytes_sent: Counter[str] = field(default_factory=Counter)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def serve(self, path: str, body: str | bytes, content_type: str = "application/rss+xml", *,
              etag: str | None = None, last_modified: float | None = None, encoding: str | None = None) -> str:
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.pages[path] = Page(data, content_type, etag, last_modified, encoding)
        return self.url(path)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.hits[path] += 1
        if path in self.hangs:
            await asyncio.sleep(3600)
        if path in self.redirects:
            raise web.HTTPFound(self.redirects[path])
        if path in self.endless:
            return await self._endless(request)
        page = self.pages.get(path)
        if page is None:
            raise web.HTTPNotFound()
        headers = {"Content-Type": page.content_type}
        if page.encoding:
            headers["Content-Encoding"] = page.encoding
        if page.etag:
            headers["ETag"] = page.etag
        if page.last_modified is not None:
            headers["Last-Modified"] = email.utils.formatdate(page.last_modified, usegmt=True)
        unchanged = (page.etag and request.headers.get("If-None-Match") == page.etag) or (
            page.last_modified is not None and request.headers.get("If-Modified-Since") == headers["Last-Modified"])
        if unchanged:
            self.not_modified[path] += 1
            return web.Response(status=304, headers={k: v for k, v in headers.items() if k != "Content-Type"})
        return web.Response(body=page.body, headers=headers)

    async def _endless(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/rss+xml"})
        await response.prepare(request)
        chunk = b"<rss>" + b" " * (64 * 1024 - 5)
        try:
            while self.bytes_sent[request.path] < 50 * MB:
                await response.write(chunk)
                self.bytes_sent[request.path] += len(chunk)
        except (ConnectionError, asyncio.CancelledError):
            pass
        return response

    async def __aenter__(self) -> FeedServer:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, kind: type[BaseException] | None, value: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self._runner.cleanup()


def rss(items: list[dict[str, str]], title: str = "Lakeside Civic News") -> str:
    """An RSS 2.0 feed of items with title, link, description and optionally guid and pubDate."""
    entries = "".join(
        "<item>" + "".join(f"<{key}>{value}</{key}>" for key, value in item.items()) + "</item>" for item in items
    )
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>{title}</title>'
            f"<link>https://lakeside.example/</link><description>News</description>{entries}</channel></rss>")
