"""Following sources in the running bot: the polling job, taking new articles in, and the admins' /add and /sources.

A repeating JobQueue job checks every `TICK` whether a source is due or sources.yaml was edited; then it rereads
sources.yaml (so an edit applies without a restart) and starts each due source's poll as its own task, so a slow
or hanging source holds up nothing but itself. Each outcome is handled as soon as it is known: new articles go
through `take_in`, the one path that swaps them into the index and announces them exactly as /reload does; a
source that starts failing or recovers is told to every admin once (the poller reports each change of health once).

The poller, and the builder it brings (feedparser, trafilatura, ftfy, lxml), is imported at the first tick in a
worker thread rather than with this module: a restart's first answer need not wait a quarter of a second for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from telegram import Bot, InlineKeyboardMarkup, Message, Update
from telegram.constants import ParseMode
from telegram.error import TelegramError
from telegram.ext import Application, ContextTypes

from bot import i18n
from bot.config import Settings
from bot.i18n import Translator
from bot.knowledge import http_url
from bot.render import add_report, health_message, sources_report
from bot.service import Service, answering_first
from bot.sources import SOURCES_FILE, Source
from bot.store import StoreError
from bot.telegram import replicas
from bot.telegram.common import NO_PREVIEW, SERVICE, SETTINGS, Context, announce_new
from bot.telegram.keyboards import source_key, sources_keyboard

if TYPE_CHECKING:
    from bot.poller import Poller, PollOutcome, SourceState

log = logging.getLogger(__name__)

T = TypeVar("T")

FOLLOWING = "following"
LOOK = "sources-look"   # the tick's look under way
TICK = 1.0   # seconds between looks at the clock; sources.yaml and the states are read only when one is due


class _Worker:
    """An event loop of its own, in a thread, for the fetches: a round of many polls is many small steps, and on
    the bot's loop each answer would wait behind all of them; here they only share the interpreter with it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="sources", daemon=True)
        self._thread.start()

    async def run(self, work: Coroutine[Any, Any, T]) -> T:
        """`work` on the worker's loop; cancelling the caller cancels it there."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, self.loop))

    async def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        await asyncio.to_thread(self._thread.join)
        self.loop.close()


class Following:
    """The sources being followed by this application: what is being polled now, and when to look again."""

    def __init__(self, poller: Poller) -> None:
        self.poller = poller
        self._worker = _Worker()
        self.wake = 0.0                                  # epoch seconds of the next round
        self._edited: tuple[int, int] | None = None      # sources.yaml's (mtime, size) when last read
        self._polling: dict[str, asyncio.Task[None]] = {}   # url -> its poll under way
        self._pausing: dict[str, bool] = {}              # url -> paused, pressed while its poll was under way
        self._taking_in = asyncio.Lock()
        self._asked = 0                                  # take-ins asked for, in order
        self._served = 0                                 # the last of them that a finished take-in covered
        self._written: set[Path] = set()                 # files written by the take-ins asked for and not begun

    def due(self) -> bool:
        """Whether a round is due: a source's time has come, or sources.yaml was edited (one stat, no reading)."""
        try:
            stat = (self.poller.knowledge_dir / SOURCES_FILE).stat()
            edited: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            edited = None
        if edited != self._edited:
            self._edited = edited
            return True
        return time.time() >= self.wake

    async def round(self, application: Application) -> None:  # type: ignore[type-arg]
        """Start a poll of every due source that is not paused or still being polled."""
        from bot.poller import IDLE  # imported already: the poller is

        sources, _problems = await self.poller.sources()
        states = await self.poller.states(sources)
        now = time.time()
        wake = now + IDLE
        for source in sources:
            state = states[source.url]
            if state.paused or source.url in self._polling:
                continue
            if state.next_due <= now:
                self._polling[source.url] = asyncio.create_task(self._poll(application, source, state),
                                                                name=f"poll {source.url}")
            else:
                wake = min(wake, state.next_due)
        self.wake = wake

    async def _poll(self, application: Application, source: Source, state: SourceState) -> None:  # type: ignore[type-arg]
        try:
            with answering_first():
                outcome = await self._worker.run(self.poller.poll(source, state))
            self.wake = min(self.wake, outcome.state.next_due)
            await self.settle(application, outcome)
        except Exception:   # a poll task has no caller to report to: log it, keep following the others
            log.exception("handling source %s failed", source.url)
        finally:
            self._polling.pop(source.url, None)
        if source.url in self._pausing:   # the poll saved the state it started from: the press wins
            await self.poller.set_paused(source.url, self._pausing.pop(source.url))

    async def add_url(self, url: str) -> PollOutcome:
        return await self._worker.run(self.poller.add_url(url))

    async def set_paused(self, url: str, paused: bool) -> None:
        if url in self._polling:
            self._pausing[url] = paused
        await self.poller.set_paused(url, paused)
        if not paused:
            self.wake = 0.0   # a resumed source that is due is polled at the next tick

    async def settle(self, application: Application, outcome: PollOutcome) -> None:  # type: ignore[type-arg]
        if outcome.health is not None:
            await tell_admins(application, outcome)
        if outcome.added or outcome.updated:
            await self.take_in(application, outcome)

    async def take_in(self, application: Application, outcome: PollOutcome) -> None:  # type: ignore[type-arg]
        """The outcome's new article files into the running index, then to subscribers, exactly as /reload does it,
        but reading only those files (a reload would stat every file of the knowledge base).

        One at a time, so two sources' articles are never queued for announcement twice; a caller whose files
        were written before a waiting take-in began is served by that one (many sources with new items at once
        cost a few reloads, not one each).
        """
        self._asked += 1
        ticket = self._asked
        self._written.update(ref.path for ref in (*outcome.added, *outcome.updated))
        service = cast(Service, application.bot_data[SERVICE])
        async with self._taking_in:
            if self._served >= ticket:
                return
            covers, written = self._asked, self._written
            self._written = set()
            result = await service.reload(written)
            self._served = covers
            if not result.ok:
                log.warning("new articles not taken in: the knowledge base has %d problems (see /reload)",
                            len(result.problems))
                return
            await announce_new(application, service, result.new)

    async def aclose(self) -> None:
        """Stop polling: polls under way are cancelled (their sources are polled again at the next start)."""
        tasks = list(self._polling.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._worker.run(self.poller.aclose())
        await self._worker.close()


async def following_of(application: Application) -> Following:  # type: ignore[type-arg]
    """The application's `Following`, made at its first use (see the module's docstring)."""
    if FOLLOWING not in application.bot_data:
        polling = await asyncio.to_thread(importlib.import_module, "bot.poller")
        fetch = importlib.import_module("bot.fetch")
        if FOLLOWING not in application.bot_data:   # another caller may have made it while this one imported
            settings = cast(Settings, application.bot_data[SETTINGS])
            service = cast(Service, application.bot_data[SERVICE])
            limits = fetch.FetchLimits(allow_private=settings.allow_private_sources)
            application.bot_data[FOLLOWING] = Following(polling.Poller(settings.knowledge_dir, service.store,
                                                                       limits=limits))
    return cast(Following, application.bot_data[FOLLOWING])


def start(application: Application) -> None:  # type: ignore[type-arg]
    """At start-up: follow the knowledge base's sources with a repeating job."""
    assert application.job_queue is not None
    application.job_queue.run_repeating(replicas.leader_only(_tick), interval=TICK, first=0, name="sources")


async def stop(application: Application) -> None:  # type: ignore[type-arg]
    following: Following | None = application.bot_data.pop(FOLLOWING, None)
    if following is not None:
        await following.aclose()


async def _tick(context: ContextTypes.DEFAULT_TYPE) -> None:
    """Start a look in a task of its own, unless the last is still under way: a look can outlast a tick (the
    first imports the poller; a loaded machine, a slow store), and then the ticks meanwhile have nothing to do."""
    application = context.application
    look: asyncio.Task[None] | None = application.bot_data.get(LOOK)
    if look is None or look.done():
        application.bot_data[LOOK] = application.create_task(_look(application), name=LOOK)


async def _look(application: Application) -> None:  # type: ignore[type-arg]
    following = await following_of(application)
    if following.due():
        try:
            await following.round(application)
        except StoreError as exc:   # the sources' states cannot be read: try again later, not every tick
            from bot.poller import IDLE  # imported already: the poller is

            following.wake = time.time() + IDLE
            log.warning("sources not polled: %s", exc)


async def tell_admins(application: Application, outcome: PollOutcome) -> None:  # type: ignore[type-arg]
    """One message to every admin, in the language their private chat with the bot uses."""
    settings = cast(Settings, application.bot_data[SETTINGS])
    service = cast(Service, application.bot_data[SERVICE])
    bot: Bot = application.bot
    for admin_id in sorted(settings.admin_ids):
        try:
            language = await asyncio.to_thread(service.chat_language, admin_id)
        except StoreError as exc:
            log.warning("could not read admin %s's language: %s", admin_id, exc)
            language = None
        try:
            await bot.send_message(admin_id, health_message(outcome, i18n.translator(language)),
                                   parse_mode=ParseMode.HTML, link_preview_options=NO_PREVIEW)
        except TelegramError as exc:  # e.g. an admin who never opened a chat with the bot
            log.warning("could not tell admin %s about source %s: %s", admin_id, outcome.source.url, exc)


# --- the admins' commands ------------------------------------------------------------


async def add(update: Update, context: Context, tr: Translator) -> None:
    """/add URL: one page or feed now; its articles are answerable when the reply comes, and subscribers are told."""
    message = update.effective_message
    if message is None:
        return
    url = http_url(context.args[0]) if context.args and len(context.args) == 1 else None
    if url is None:
        await message.reply_text(tr("add.usage"))
        return
    following = await following_of(context.application)
    outcome = await following.add_url(url)
    if outcome.added or outcome.updated:
        await following.take_in(context.application, outcome)
    await message.reply_html(add_report(url, outcome, tr), link_preview_options=NO_PREVIEW)


async def _listing(context: Context, tr: Translator) -> tuple[str, InlineKeyboardMarkup | None]:
    poller = (await following_of(context.application)).poller
    sources, problems = await poller.sources()
    states = await poller.states(sources)
    paused = {url for url, state in states.items() if state.paused}
    return sources_report(sources, states, len(problems), tr), sources_keyboard(sources, paused, tr)


async def sources(update: Update, context: Context, tr: Translator) -> None:
    """/sources: every source's health, with a pause or resume button each."""
    message = update.effective_message
    if message is None:
        return
    text, keyboard = await _listing(context, tr)
    await message.reply_html(text, reply_markup=keyboard, link_preview_options=NO_PREVIEW)


async def pause_button(update: Update, context: Context, tr: Translator, message: Message, rest: str) -> None:
    """p:<1|0>:<key>: pause or resume the source whose URL has this key, if sources.yaml still lists it."""
    query = update.callback_query
    assert query is not None
    flag, _, key = rest.partition(":")
    following = await following_of(context.application)
    listed, _problems = await following.poller.sources()
    source = next((s for s in listed if source_key(s.url) == key), None)
    if source is None or flag not in ("0", "1"):
        await query.answer(tr("button.gone"))
        return
    paused = flag == "1"
    await following.set_paused(source.url, paused)
    await query.answer(tr("sources.paused_now" if paused else "sources.resumed_now", name=source.label[:100]))
    text, keyboard = await _listing(context, tr)
    with contextlib.suppress(TelegramError):  # e.g. "message is not modified" after two quick presses
        await message.edit_text(text, parse_mode=ParseMode.HTML, reply_markup=keyboard,
                                link_preview_options=NO_PREVIEW)
