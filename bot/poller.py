"""Following sources: each due source fetched, its new items built into the knowledge base, its health kept.

Telegram-free, so the running bot, ``python -m bot poll`` and the tests drive the same object:
``await poller.poll_due(now)`` polls what is due, ``await poller.add_url(url)`` fetches one page or feed now; both
say which articles they added or updated, for the bot to swap into its index and announce. Items go through the
same builder as ``python -m bot build`` (same ids, same dedupe, hand edits respected).

A source never hurts the others: sources are polled concurrently, each within its own timeout, and a failure is
counted in that source's state (kept in the store, so it survives restarts) and backs it off. `after_failure` and
`after_success` say when a source starts failing and when it recovers, so admins get one message for each.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

from bot import ingest
from bot.fetch import Fetched, Fetcher, FetchError, FetchLimits
from bot.ingest import ArticleFiles, BuildReport, Draft, Failure, InputError
from bot.knowledge import Problem
from bot.sources import SOURCES_FILE, Source, read_sources
from bot.store import Store

log = logging.getLogger(__name__)

STATE_PREFIX = "source:"
MAX_BACKOFF = 6 * 3600.0  # a dead source is still tried a few times a day
SOURCE_TIMEOUT = 120.0  # one source's feed and the pages of its teaser items
CONCURRENCY = 8
TEASER_CHARS = 500  # a feed item shorter than this is a teaser when it links to a page
PAGES_AT_ONCE = 4  # teasers' pages fetched at once, per source
MAX_SEEN = 2000  # item keys remembered per source: far more than a feed lists at once
IDLE = 60.0  # the longest `run` sleeps, so that an edited sources.yaml is noticed
SETTLE = 2  # seconds after which a file's stamp can be trusted (the coarsest modification-time granularity)
_ELLIPSES = ("…", "...", "[…]", "[...]")


@dataclass(frozen=True, slots=True)
class SourceState:
    """What the store keeps for one followed source, as JSON under `source:<url>`."""

    etag: str | None = None
    last_modified: str | None = None
    failures: int = 0  # consecutive
    next_due: float = 0.0  # epoch seconds
    last_success: float | None = None
    last_new_article: float | None = None
    last_error: str | None = None
    paused: bool = False
    seen: dict[str, str] = field(default_factory=dict)  # item key -> digest of the item as the source gave it

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | None) -> SourceState:
        """Tolerant: fields it does not know are dropped, a damaged value starts the source afresh."""
        try:
            data = json.loads(text) if text else {}
            names = {f.name for f in dataclasses.fields(cls)}
            return cls(**{k: v for k, v in data.items() if k in names}) if isinstance(data, dict) else cls()
        except (ValueError, TypeError):
            return cls()


class Health(Enum):
    FAILING = "failing"  # the first failure after a success (or ever)
    RECOVERED = "recovered"  # the first success after failures


def backoff(every: float, failures: int) -> float:
    """Seconds until the next poll: the schedule while healthy, doubled per consecutive failure up to a cap."""
    if failures <= 0:
        return every
    return min(every * 2.0 ** min(failures, 32), max(every, MAX_BACKOFF))


def after_failure(state: SourceState, error: str, now: float, every: float) -> tuple[SourceState, Health | None]:
    failures = state.failures + 1
    new = replace(state, failures=failures, last_error=error, next_due=now + backoff(every, failures))
    return new, Health.FAILING if state.failures == 0 else None


def after_success(state: SourceState, now: float, every: float, **changes: Any) -> tuple[SourceState, Health | None]:
    new = replace(state, failures=0, last_error=None, last_success=now, next_due=now + every, **changes)
    return new, Health.RECOVERED if state.failures > 0 else None


@dataclass(frozen=True, slots=True)
class ArticleRef:
    id: str
    title: str
    path: Path   # the file written: the running bot reads only these into its index


@dataclass(frozen=True, slots=True)
class PollOutcome:
    source: Source
    state: SourceState
    added: tuple[ArticleRef, ...] = ()
    updated: tuple[ArticleRef, ...] = ()
    failed: tuple[Failure, ...] = ()  # items that could not become articles; the source itself worked
    not_modified: bool = False
    error: str | None = None  # the source could not be polled at all
    health: Health | None = None  # set when the source starts failing or recovers

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class _Item:
    draft: Draft
    key: str
    seen: bool  # the source gave this item before (so a missing article was deleted by an editor)


class Poller:
    """Polls the sources of one knowledge base; one shared HTTP client, builds one at a time off the event loop."""

    def __init__(self, knowledge_dir: Path, store: Store, *, limits: FetchLimits | None = None,
                 fetcher: Fetcher | None = None, source_timeout: float = SOURCE_TIMEOUT,
                 concurrency: int = CONCURRENCY, clock: Callable[[], float] = time.time) -> None:
        self.knowledge_dir = knowledge_dir
        self.store = store
        self.source_timeout = source_timeout
        self._fetcher = fetcher or Fetcher(limits)
        self._clock = clock
        self._slots = asyncio.Semaphore(concurrency)
        self._builder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="poller-build")
        self._files: ArticleFiles | None = None
        self._parsed: tuple[tuple[int, int, int] | None, tuple[list[Source], list[Problem]]] | None = None

    async def aclose(self) -> None:
        await self._fetcher.aclose()
        await asyncio.to_thread(self._builder.shutdown)  # waits for a build under way, off the event loop

    async def __aenter__(self) -> Poller:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    # --- what the bot and the command line call ----------------------------

    async def sources(self) -> tuple[list[Source], list[Problem]]:
        """Looked at on every poll, so an edited sources.yaml takes effect without a restart; parsed again only
        when its stamp changed (200 sources take milliseconds of CPU to parse, once a second while they are due).
        A file modified within SETTLE seconds is always parsed: a second edit in the same tick of the file
        system's clock could keep the stamp."""
        return await asyncio.to_thread(self._read_sources)

    def _read_sources(self) -> tuple[list[Source], list[Problem]]:
        try:
            info = (self.knowledge_dir / SOURCES_FILE).stat()
            stamp: tuple[int, int, int] | None = (info.st_mtime_ns, info.st_size, info.st_ino)
        except OSError:
            stamp = None
        if stamp is not None and self._parsed is not None and self._parsed[0] == stamp:
            return self._parsed[1]
        read = read_sources(self.knowledge_dir)
        settled = stamp is not None and stamp[0] < time.time_ns() - SETTLE * 1_000_000_000
        self._parsed = (stamp, read) if settled else None
        return read

    async def states(self, sources: Sequence[Source]) -> dict[str, SourceState]:
        def load() -> dict[str, SourceState]:
            return {s.url: SourceState.from_json(self.store.get_state(STATE_PREFIX + s.url)) for s in sources}

        return await asyncio.to_thread(load)

    async def poll_due(self, now: float | None = None) -> list[PollOutcome]:
        """Every source that is due and not paused, concurrently."""
        now = self._clock() if now is None else now
        sources, _problems = await self.sources()  # `check` reports the problems; the valid sources still run
        states = await self.states(sources)
        due = [s for s in sources if not states[s.url].paused and states[s.url].next_due <= now]
        return list(await asyncio.gather(*(self.poll(s, states[s.url]) for s in due)))

    async def poll_all(self) -> list[PollOutcome]:
        """Every source that is not paused, once, whatever its schedule (`python -m bot poll --once`)."""
        sources, _problems = await self.sources()
        states = await self.states(sources)
        active = [s for s in sources if not states[s.url].paused]
        return list(await asyncio.gather(*(self.poll(s, states[s.url]) for s in active)))

    async def add_url(self, url: str) -> PollOutcome:
        """One page or feed now, in full: no validators, and items seen before are built again (so updated)."""
        sources, _problems = await self.sources()
        source = next((s for s in sources if s.url == url), Source(url))
        state = (await self.states([source]))[source.url]
        return await self.poll(source, state, force=True)

    async def set_paused(self, url: str, paused: bool) -> SourceState:
        state = replace((await self.states([Source(url)]))[url], paused=paused)
        await self._save(url, state)
        return state

    async def next_due(self) -> float | None:
        """When the next source is due (epoch seconds), or None when none is followed."""
        sources, _problems = await self.sources()
        states = await self.states(sources)
        return min((states[s.url].next_due for s in sources if not states[s.url].paused), default=None)

    async def run(self, report: Callable[[list[PollOutcome]], Awaitable[None] | None]) -> None:
        """Poll on the sources' schedules until cancelled; `report` gets each round's outcomes."""
        while True:
            outcomes = await self.poll_due()
            if outcomes:
                result = report(outcomes)
                if result is not None:
                    await result
            due = await self.next_due()
            wait = IDLE if due is None else min(IDLE, max(0.0, due - self._clock()))
            await asyncio.sleep(max(wait, 0.5))

    # --- one source --------------------------------------------------------------

    async def poll(self, source: Source, state: SourceState, *, force: bool = False) -> PollOutcome:
        """One source now; the bot calls this per source so that each outcome is handled as soon as it is known."""
        now = self._clock()
        try:
            async with self._slots, asyncio.timeout(self.source_timeout):
                fetched = await self._fetcher.get(source.url, etag=None if force else state.etag,
                                                  last_modified=None if force else state.last_modified)
                items, current = ([], {}) if fetched.not_modified else await self._items(source, fetched, state,
                                                                                         force=force)
        except Exception as exc:  # whatever a source does, it fails alone
            error = _reason(exc, self.source_timeout)
            log.warning("source %s failed: %s", source.url, error)
            failed_state, health = after_failure(state, error, now, source.every)
            await self._save(source.url, failed_state)
            return PollOutcome(source, failed_state, error=error, health=health)
        validators = {"etag": fetched.etag, "last_modified": fetched.last_modified}
        if fetched.not_modified:
            new_state, health = after_success(state, now, source.every)
            await self._save(source.url, new_state)
            return PollOutcome(source, new_state, not_modified=True, health=health)
        report, refs = await asyncio.get_running_loop().run_in_executor(self._builder, self._build, items, force)
        failed_origins = {f.origin for f in report.failed}
        failed_keys = {i.key for i in items if i.draft.origin in failed_origins}
        seen = {k: v for k, v in state.seen.items() if k not in current}  # what the source lists now goes last
        seen.update((k, v) for k, v in current.items() if k not in failed_keys)  # a failed item is tried again
        seen = dict(list(seen.items())[-MAX_SEEN:])
        changes: dict[str, Any] = {"seen": seen, **validators}
        if report.added:
            changes["last_new_article"] = now
        new_state, health = after_success(state, now, source.every, **changes)
        await self._save(source.url, new_state)
        return PollOutcome(source, new_state, added=tuple(refs[i] for i in report.added),
                           updated=tuple(refs[i] for i in report.updated), failed=tuple(report.failed),
                           health=health)

    async def _items(self, source: Source, fetched: Fetched, state: SourceState, *, force: bool
                     ) -> tuple[list[_Item], dict[str, str]]:
        """The items to build (new or changed; a teaser's page fetched for its full text), and every item's key and
        digest as the source gives it now."""
        drafts = await asyncio.to_thread(_drafts, source.url, fetched)  # parsing is CPU work: off the event loop
        items = []
        current: dict[str, str] = {}
        for draft in drafts:
            draft = replace(draft, language=draft.language or source.language, source=draft.source or source.name,
                            topics=tuple(dict.fromkeys(draft.topics + source.topics)))
            key, digest = ingest.article_id(draft), _digest(draft)
            current[key] = digest
            if force or state.seen.get(key) != digest:
                items.append(_Item(draft, key, seen=key in state.seen and not force))
        pages = asyncio.Semaphore(PAGES_AT_ONCE)
        full = await asyncio.gather(*(self._full_text(item.draft, pages) for item in items))
        return [replace(item, draft=draft) for item, draft in zip(items, full, strict=True)], current

    async def _full_text(self, draft: Draft, pages: asyncio.Semaphore) -> Draft:
        """A teaser item's text replaced by its page's main text; the teaser stays when the page cannot be read."""
        if draft.url is None or not _is_teaser(draft.body):
            return draft
        try:
            async with pages:
                fetched = await self._fetcher.get(draft.url)
            page = await asyncio.to_thread(ingest.parse_html, draft.url, ingest.decode(fetched.content))
        except (FetchError, InputError) as exc:
            log.info("teaser of %s kept: its page cannot be read (%s)", draft.url, exc)
            return draft
        if len(page.body) <= len(draft.body):
            return draft
        return replace(draft, body=page.body, published=draft.published or page.published)

    def _build(self, items: list[_Item], force: bool) -> tuple[BuildReport, dict[str, ArticleRef]]:
        """In the builder thread: one build at a time, with the article files found once and reread per article."""
        if self._files is None:
            self._files = ArticleFiles.scan(self.knowledge_dir, reread=True)
        files = self._files
        # An item seen before whose article is gone was deleted by an editor: it stays deleted. (An item with neither
        # link nor guid has a key that is not its article's id, so once seen, it is not built again.)
        drafts = [i.draft for i in items if force or not i.seen or files.exists(i.key)]
        report = ingest.build_drafts(drafts, files)
        refs = {i: ArticleRef(i, files.by_id[i][1].title, files.by_id[i][0]) for i in report.added + report.updated}
        return report, refs

    async def _save(self, url: str, state: SourceState) -> None:
        await asyncio.to_thread(self.store.set_state, STATE_PREFIX + url, state.to_json())


def _drafts(name: str, fetched: Fetched) -> list[Draft]:
    """The items of a feed, or the one article of a page; InputError when the answer is neither."""
    text = ingest.decode(fetched.content)
    kind = ingest.detect_format(text, "")
    if kind == "feed":
        return [entry for entry in ingest.parse_feed(name, fetched.content) if isinstance(entry, Draft)]
    if kind == "html":
        page = ingest.parse_html(name, text)
        return [replace(page, url=page.url or fetched.url)]
    raise InputError("neither an RSS/Atom feed nor an HTML page")


def _is_teaser(body: str) -> bool:
    return len(ingest.one_line(body)) < TEASER_CHARS or body.rstrip().endswith(_ELLIPSES)


def _digest(draft: Draft) -> str:
    given = json.dumps([draft.title, draft.body, draft.url, str(draft.published), draft.key], ensure_ascii=False)
    return hashlib.sha1(given.encode("utf-8")).hexdigest()[:16]


def _reason(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, FetchError | InputError):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    return f"{type(exc).__name__}: {exc}"
