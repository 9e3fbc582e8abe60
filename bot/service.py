"""The bot's core, with no Telegram and no user-facing text in it: what the handlers and `python -m bot shell` share.

`Service` holds the current index and the store. Answering is synchronous and
fast; a reload reads and indexes the knowledge base in a worker thread and
swaps the result in with one assignment, so questions keep being answered from
the old index meanwhile, and a knowledge base with problems is never swapped in.
Methods that touch the store block on the database: async callers run them with
`asyncio.to_thread`. Outcomes are data; `bot.render` and the catalogs say them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import sys
import threading
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path

from bot import i18n, index_cache, knowledge, search
from bot.answer import Answer, answer_question, with_guess_sentences
from bot.knowledge import Article, Changes, KnowledgeBase, KnowledgeError, Problem
from bot.knowledge_cache import ArticleCache, Stamp
from bot.search import Hit, Index
from bot.store import Stats, Store, StoreError, Subscription, normalise_words
from bot.text import detect_language

log = logging.getLogger(__name__)

MAX_QUESTION_CHARS = 1000   # Telegram allows 4096; no honest question is longer, and ranking cost grows with length
MAX_LIST = 10               # /latest and /search results
MAX_SUBSCRIPTIONS = 20      # per chat: enough for real use, bounded against abuse
MAX_SUBSCRIPTION_CHARS = 200
STATS_PAUSE = 30.0          # seconds without recording statistics after the database refused a write


def clean_question(text: str) -> str:
    """One line of printable text, at most MAX_QUESTION_CHARS, cut at a word boundary."""
    text = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in text)
    text = " ".join(text.split())
    if len(text) > MAX_QUESTION_CHARS:
        cut = text.rfind(" ", 0, MAX_QUESTION_CHARS + 1)
        text = text[: cut if cut > MAX_QUESTION_CHARS // 2 else MAX_QUESTION_CHARS]
    return text


def same_id(article_id: str) -> str:
    return article_id


class RateLimiter:
    """A token bucket per user: `per_minute` questions in a burst, refilled evenly over a minute.

    `allow` says whether to answer; `warn` is true on the first refusal of a
    run only, so a flood gets one polite reply rather than one per message.
    """

    MAX_USERS = 10_000   # forget users whose bucket has refilled once this many are tracked
    blocking = False     # in memory: cheap enough to call on the event loop

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._clock = clock
        self._buckets: dict[int, tuple[float, float, bool]] = {}   # user -> (tokens, stamp, warned)

    def check(self, user_id: int) -> tuple[bool, bool]:
        """(allowed, warn)."""
        if self.capacity <= 0:
            return True, False
        now = self._clock()
        tokens, stamp, warned = self._buckets.get(user_id, (self.capacity, now, False))
        tokens = min(self.capacity, tokens + (now - stamp) * self.rate)
        if tokens >= 1:
            self._buckets[user_id] = (tokens - 1, now, False)
            self._forget_idle(now)
            return True, False
        self._buckets[user_id] = (tokens, now, True)
        return False, not warned

    def _forget_idle(self, now: float) -> None:
        if len(self._buckets) <= self.MAX_USERS:
            return
        self._buckets = {
            user: state for user, state in self._buckets.items()
            if state[0] + (now - state[1]) * self.rate < self.capacity
        }


class SharedRateLimiter:
    """The same limit kept in the store's token buckets, so that replicas on one database share it: a user
    cannot multiply it by the number of replicas. `check` is a database round trip: call it off the event loop.

    Each replica warns once per run of refusals (so a flood spread over replicas gets one reply per replica at
    most). A database that cannot be reached lets the question through: the limit protects the bot, an outage
    must not silence it.
    """

    blocking = True
    MAX_WARNED = 10_000   # forget who was warned beyond this many (at worst one more polite reply each)

    def __init__(self, store: Store, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._store = store
        self._warned: set[int] = set()
        self._lock = threading.Lock()

    def check(self, user_id: int) -> tuple[bool, bool]:
        """(allowed, warn)."""
        if self.capacity <= 0:
            return True, False
        # The lock spans the round trip: checks running at once must see the answers in the database's order, or
        # an allowed one finishing after a refused one would clear its warning and the next refusal warn again.
        with self._lock:
            try:
                wait = self._store.take_token(f"user:{user_id}", self.capacity, self.rate)
            except StoreError as exc:
                log.warning("could not check the rate limit in the database; letting the request through: %s", exc)
                return True, False
            if not wait:
                self._warned.discard(user_id)
                return True, False
            if user_id in self._warned:
                return False, False
            if len(self._warned) >= self.MAX_WARNED:
                self._warned.clear()
            self._warned.add(user_id)
            return False, True


@dataclass(frozen=True, slots=True)
class ReloadResult:
    old: KnowledgeBase
    new: KnowledgeBase                  # == old when there were problems
    changes: Changes = field(default_factory=Changes)
    problems: tuple[Problem, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def added(self) -> list[Article]:
        return [self.new.articles[i] for i in self.changes.added]


@dataclass(frozen=True, slots=True)
class _Loaded:
    """What one reload produces and one assignment swaps in: the index, and what is computed once per knowledge base
    rather than per request (the newest-first order, the articles' languages, the keys of long ids)."""

    index: Index
    newest: tuple[Article, ...] = ()
    languages: tuple[str, ...] = ()
    long_keys: dict[str, str] = field(default_factory=dict)   # short key -> article id, for ids too long to send
    language_counts: dict[str, int] = field(default_factory=dict)   # articles per language

    @classmethod
    def build(cls, kb: KnowledgeBase, article_key: Callable[[str], str], index: Index | None = None) -> _Loaded:
        """`index`: already built for `kb` (saved, or updated from the previous one)."""
        keys = {article_key(i): i for i in kb.articles if article_key(i) != i}
        newest = tuple(kb.latest(len(kb.articles)))
        counts = Counter(a.language for a in kb.articles.values())
        return cls(index if index is not None else Index.build(kb), newest, tuple(sorted(counts)), keys, dict(counts))

    def updated(self, index: Index, changes: Changes, article_key: Callable[[str], str]) -> _Loaded:
        """The same for `index`, whose knowledge base differs from this one's by `changes`, at their cost: the
        few articles changed are taken out of the newest-first order and put back in their places."""
        old, new = self.index.kb.articles, index.kb.articles
        newest = list(self.newest)
        counts = dict(self.language_counts)
        keys = dict(self.long_keys)
        for article_id in (*changes.updated, *changes.removed):
            article = old[article_id]
            del newest[_newest_position(newest, article)]
            counts[article.language] -= 1
            if not counts[article.language]:
                del counts[article.language]
        for article_id in changes.removed:
            if (key := article_key(article_id)) != article_id:
                keys.pop(key, None)
        for article_id in (*changes.added, *changes.updated):
            article = new[article_id]
            newest.insert(_newest_position(newest, article), article)
            counts[article.language] = counts.get(article.language, 0) + 1
        for article_id in changes.added:
            if (key := article_key(article_id)) != article_id:
                keys[key] = article_id
        return _Loaded(index, tuple(newest), tuple(sorted(counts)), keys, counts)


def _newest_position(newest: list[Article], article: Article) -> int:
    """Where `article` is (or goes) in `newest`, ordered as `KnowledgeBase.latest` orders: by a key unique to it."""
    wanted, low, high = knowledge.newest_key(article), 0, len(newest)
    while low < high:
        middle = (low + high) // 2
        if knowledge.newest_key(newest[middle]) > wanted:
            low = middle + 1
        else:
            high = middle
    return low


class SubscribeOutcome(Enum):
    SUBSCRIBED = "subscribed"
    NO_WORDS = "no_words"          # words given, but nothing left to watch for once normalised
    TOO_MANY = "too_many"          # the chat already has MAX_SUBSCRIPTIONS others


@dataclass(frozen=True, slots=True)
class Subscribed:
    outcome: SubscribeOutcome
    subscription: Subscription | None = None
    # The words' language when no article is in it (such a subscription will rarely, if ever, match).
    foreign_language: str | None = None
    kb_languages: tuple[str, ...] = ()


class _FileCache:
    """Articles parsed from files unchanged since the last read (same size and mtime), so a reload reads only edits.

    With an `ArticleCache` the same holds across restarts: a start reads only the files edited since.
    A file modified within RACY_SECONDS of a scan is not kept across a restart: a second edit in the
    same tick of the file system's clock, keeping the size, would otherwise go unseen until the next edit.
    """

    RACY_SECONDS = 2   # the coarsest modification-time granularity in use (FAT)

    def __init__(self, persistent: ArticleCache | None = None) -> None:
        self._persistent = persistent
        self._entries: dict[str, tuple[Stamp, Article]] = persistent.load() if persistent else {}   # by str(path)
        self._articles: dict[str, Article] | None = None   # of the last scan, if it had no article problems
        # the articles the last scan started from, and the ids it may have changed in the new and in those
        self._touched: tuple[dict[str, Article], tuple[tuple[str, ...], tuple[str, ...]]] | None = None
        self._unsaved: set[str] = set()   # paths left out of the last save as modified too recently

    def scan(self, knowledge_dir: Path) -> tuple[KnowledgeBase, list[Problem]]:
        """The knowledge base and its problems exactly as `knowledge.scan` gives them, at the cost of what changed.

        Every file is still stat-ed, but only new and modified ones are read; the articles are the last scan's
        dict with the changed ones taken out and put back (at its end: nothing depends on the order of the
        articles, and `knowledge.diff` is told the order of their files), or the same dict when no file
        changed; the persistent cache is told only the paths that changed. Anything unusual (a file with
        problems, an id twice) is left to `knowledge.scan`, and the next scan starts afresh.
        """
        self._touched = None
        if not knowledge_dir.is_dir():
            self._entries, self._articles = {}, None
            self._save(None)
            return knowledge.scan(knowledge_dir)
        old, previous = self._entries, self._articles
        present, stamps = knowledge.article_files(knowledge_dir, old)
        changed = sorted(stamps, key=knowledge.path_order)
        added = sum(path not in old for path in changed)
        removed = (sorted(old.keys() - set(present), key=knowledge.path_order)
                   if len(present) - added < len(old) else [])
        read_problems: list[Problem] = []
        read = {path: knowledge.read_article(Path(path), read_problems) for path in changed}
        articles = None if previous is None or read_problems else self._updated(previous, read, stamps, removed)
        if articles is not None:
            assert previous is not None
            self._touch(previous, old, changed, removed)
            problems: list[Problem] = []
            return KnowledgeBase(articles, knowledge.read_faq(knowledge_dir, problems)), problems
        order = sorted(present, key=knowledge.path_order)
        found = [(path, read[path] if path in read else old[path][1]) for path in order]
        entries = {}
        for path, article in found:
            stamp = stamps[path] if path in stamps else old[path][0]
            if article is not None and stamp[0] >= 0:
                entries[path] = (stamp, article)
        self._entries = entries
        self._save({*changed, *removed})
        articles = {article.id: article for _, article in entries.values()}
        if not read_problems and len(articles) == len(entries) == len(found):   # nothing for knowledge.scan to say
            self._articles = articles
            problems = []
            return KnowledgeBase(articles, knowledge.read_faq(knowledge_dir, problems)), problems
        self._articles = None
        kb, problems = knowledge.scan(knowledge_dir, ((Path(path), article) for path, article in found))
        return kb, read_problems + problems

    def rescan(self, knowledge_dir: Path, paths: Iterable[Path], current: KnowledgeBase) -> tuple[KnowledgeBase,
                                                                                               list[Problem]]:
        """As `scan`, from `current` (the last scan's), when only the files at `paths` can have changed: the
        builder just wrote them. Only those are stat-ed and read, not every file; anything unusual (the last
        scan or one of these files had problems, an id twice) is left to `scan`, which reports it."""
        previous, old = self._articles, self._entries
        if previous is None or previous is not current.articles:
            return self.scan(knowledge_dir)
        stamps: dict[str, Stamp] = {}
        removed: list[str] = []
        articles_dir = str(knowledge_dir / knowledge.ARTICLES_DIR) + os.sep
        for path in sorted({str(path) for path in paths}, key=knowledge.path_order):
            if not (path.startswith(articles_dir) and path.endswith(".yaml")):   # not where a scan looks
                return self.scan(knowledge_dir)
            try:
                info = os.stat(path)
            except FileNotFoundError:
                if path in old:
                    removed.append(path)
                continue
            except OSError:
                return self.scan(knowledge_dir)
            if (cached := old.get(path)) is None or cached[0] != (info.st_mtime_ns, info.st_size):
                stamps[path] = (info.st_mtime_ns, info.st_size)
        read_problems: list[Problem] = []
        read = {path: knowledge.read_article(Path(path), read_problems) for path in stamps}
        articles = None if read_problems else self._updated(previous, read, stamps, removed)
        if articles is None:
            return self.scan(knowledge_dir)
        self._touch(previous, old, list(stamps), removed)
        return KnowledgeBase(articles, current.faq), []

    def _touch(self, previous: dict[str, Article], old: dict[str, tuple[Stamp, Article]], changed: list[str],
               removed: list[str]) -> None:
        """After `_updated`: note what may have changed since `previous` (for `touched_since`), and save it."""
        then = sorted([*removed, *(path for path in changed if path in old)], key=knowledge.path_order)
        self._touched = previous, (tuple(self._entries[path][1].id for path in changed),
                                   tuple(old[path][1].id for path in then))
        self._save({*changed, *removed})

    def _updated(self, previous: dict[str, Article], read: dict[str, Article | None], stamps: dict[str, Stamp],
                 removed: list[str]) -> dict[str, Article] | None:
        """The last scan's articles with those of the changed files taken out and put back, and `_entries` so
        updated; None (and nothing updated) when a file could not be read or an id is there twice."""
        if not read and not removed:
            return previous
        old = self._entries
        articles = dict(previous)
        for path in (*removed, *read):
            if path in old:
                del articles[old[path][1].id]
        for path, article in read.items():
            if article is None or stamps[path][0] < 0 or article.id in articles:
                return None
            articles[article.id] = article
        entries = dict(old)
        for path in removed:
            del entries[path]
        for path, article in read.items():
            entries[path] = (stamps[path], article)  # type: ignore[assignment]
        self._entries, self._articles = entries, articles
        return articles

    def touched_since(self, kb: KnowledgeBase) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        """What the last scan may have changed if it started from the articles of `kb` (see `knowledge.diff`);
        None if it did not, or cannot tell."""
        if self._touched is None or self._touched[0] is not kb.articles:
            return None
        return self._touched[1]

    def _save(self, changed: set[str] | None) -> None:
        """Keep the entries for the next start, but those of files modified too recently to be trusted;
        `changed`: the only paths changed since the last save (None: any may have)."""
        if self._persistent is None:
            return
        settled = time.time_ns() - self.RACY_SECONDS * 1_000_000_000
        if changed is None or not self._persistent.in_step:
            kept = {key: entry for key, entry in self._entries.items() if entry[0][0] < settled}
            self._unsaved = self._entries.keys() - kept.keys()
            self._persistent.save(kept)
            return
        changed |= self._unsaved
        if not changed:
            return
        entries = self._entries
        kept = {path: entry for path in changed if (entry := entries.get(path)) is not None and entry[0][0] < settled}
        self._unsaved = {path for path in changed if path in entries and path not in kept}
        self._persistent.save(kept, changed)


BUSY_SWITCH_INTERVAL = 0.0005  # seconds; CPython's default is 0.005
_busy = 0   # background jobs (reloads, poll rounds) running: the switch interval is short while any is
_busy_lock = threading.Lock()
_idle_interval = sys.getswitchinterval()


@contextlib.contextmanager
def answering_first() -> Iterator[None]:
    """While a reload or a poll round works in other threads, keep the event loop's waits for the GIL short.

    Every time answering releases the GIL (a socket, SQLite, larger numpy operations) it waits up to the switch
    interval to get it back from the busy thread; at the default 5 ms those waits add up to hundreds of
    milliseconds per answer. Counted, so that overlapping jobs restore the interval only when the last ends.
    """
    global _busy, _idle_interval
    with _busy_lock:
        if not _busy:
            _idle_interval = sys.getswitchinterval()
            sys.setswitchinterval(min(_idle_interval, BUSY_SWITCH_INTERVAL))
        _busy += 1
    try:
        yield
    finally:
        with _busy_lock:
            _busy -= 1
            if not _busy:
                sys.setswitchinterval(_idle_interval)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """A full cyclic collection holds the GIL for its whole pass over the heap (0.1-0.6 s with 10k-100k articles
    loaded): it waits until a reload ends; reference counting still frees what is not in a cycle."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class Service:
    """The knowledge base being served, the answering, the statistics and the limits."""

    def __init__(self, knowledge_dir: Path, store: Store, *, user_rate_limit: int = 0, shared: bool = False,
                 cache_path: Path | None = None, article_key: Callable[[str], str] = same_id) -> None:
        """Load the knowledge base now; KnowledgeError lists every problem (then nothing is served).

        `shared`: other replicas use the same store, so the rate limit and each chat's language are kept there
        rather than in this process (where another replica's change would go unseen).
        `cache_path` keeps the articles parsed from files across restarts (see `bot.knowledge_cache`).
        `article_key` shortens an article id for a front end with a size limit (Telegram's callback data);
        `article` takes either.
        """
        self.knowledge_dir = knowledge_dir
        self.store = store
        self.limiter: RateLimiter | SharedRateLimiter = (
            SharedRateLimiter(store, user_rate_limit) if shared else RateLimiter(user_rate_limit))
        self._article_key = article_key
        self._files = _FileCache(ArticleCache(cache_path, knowledge_dir) if cache_path else None)
        self._index_path = index_cache.beside(cache_path) if cache_path else None
        self._reload_lock = asyncio.Lock()
        self._stats_paused_until = 0.0
        self._record_lock = threading.Lock()
        # chat -> its chosen language, as read from the store; None: always read the store (replicas)
        self._languages: dict[int, str | None] | None = None if shared else {}
        self._kb_version = store.kb_version()   # read before the files: a change published later is followed
        kb, problems = self._files.scan(knowledge_dir)
        if problems:
            raise KnowledgeError(problems)
        threading.Thread(target=search.warm_up, args=(list(kb.articles.values()),), name="warm-up", daemon=True,
                         kwargs={"cache_dir": cache_path and cache_path.parent}).start()
        index = index_cache.load(self._index_path, knowledge_dir, kb) if self._index_path else None
        self._loaded = _Loaded.build(kb, article_key, index)
        threading.Thread(target=search.warm_up_spelling, args=(self.languages,), name="warm-up", daemon=True).start()
        if index is None:
            self._save_index()
        gc.freeze()  # the index lives until the next reload: keep it out of every later full collection

    @property
    def index(self) -> Index:
        return self._loaded.index

    @property
    def kb(self) -> KnowledgeBase:
        return self._loaded.index.kb

    # --- answering -----------------------------------------------------------

    @property
    def languages(self) -> tuple[str, ...]:
        """The languages the articles are written in."""
        return self._loaded.languages

    def foreign_language(self, text: str) -> str | None:
        """The language of `text` when no article is written in it (None when some is, or there are no articles)."""
        loaded = self._loaded
        if not loaded.languages or not text.strip():
            return None
        language = detect_language(text, frozenset(i18n.languages()) | frozenset(loaded.languages))
        return None if language in loaded.languages else language

    def ask(self, question: str) -> Answer:
        """Answer, and count the question as answered or not for /stats (question text only)."""
        question = clean_question(question)
        answer = with_guess_sentences(self.index, answer_question(self.index, question))
        foreign = self.foreign_language(question)
        if foreign is not None:
            answer = replace(answer, foreign_language=foreign, kb_languages=self.languages)
        if question:
            self._record(lambda: self.store.record_question(question, answer.found))
        return answer

    def feedback(self, question: str, article_ids: Sequence[str], helpful: bool) -> None:
        """One verdict on what one message showed: its article, or every guess of an unsure answer (ids joined)."""
        shown = ", ".join(article_ids) or None
        self._record(lambda: self.store.record_feedback(clean_question(question), shown, helpful))

    def _record(self, write: Callable[[], None]) -> None:
        """Statistics are best effort: after a failed write they pause for a while, logged once, rather than
        make every question wait out the busy timeout of a locked database. Writes take turns (the store
        serialises them anyway), so questions answered at once in worker threads see the pause too."""
        with self._record_lock:
            now = time.monotonic()
            if now < self._stats_paused_until:
                return
            try:
                write()
            except StoreError as exc:
                self._stats_paused_until = time.monotonic() + STATS_PAUSE
                log.warning("could not record statistics for /stats; not trying again for %.0f s: %s",
                            STATS_PAUSE, exc)

    def search(self, query: str, k: int = MAX_LIST) -> list[Hit]:
        return self.index.search(clean_question(query), k)

    def latest(self, n: int) -> list[Article]:
        """Newest first (ordered once per knowledge base, not per call)."""
        return list(self._loaded.newest[: max(1, min(n, MAX_LIST))])

    def article(self, key: str) -> Article | None:
        """The article a callback key names, or None for an unknown, stale or forged key."""
        loaded = self._loaded
        article_id = loaded.long_keys.get(key) if key.startswith("#") else key
        return loaded.index.kb.articles.get(article_id) if article_id is not None else None

    # --- reloading -----------------------------------------------------------

    async def reload(self, paths: Iterable[Path] | None = None) -> ReloadResult:
        """Reread the knowledge base off the event loop; swap it in only if it has no problems.

        Reloads run one at a time; the index is rebuilt only when something changed, and then the change is
        published (the store's knowledge-base version) for other replicas to `follow`. `paths`: the only
        article files that can have changed (the builder just wrote them), so that only they are read.
        """
        return await self._reload(publish=True, paths=None if paths is None else tuple(paths))

    async def follow(self) -> ReloadResult | None:
        """Reload if another replica (or `python -m bot poll`) published a change since this one last read the
        files (they share KNOWLEDGE_DIR); None when nothing was published."""
        if await asyncio.to_thread(self.store.kb_version) == self._kb_version:
            return None
        return await self._reload(publish=False)

    async def _reload(self, *, publish: bool, paths: tuple[Path, ...] | None = None) -> ReloadResult:
        async with self._reload_lock:
            version = await asyncio.to_thread(self._published_version)   # before the files are read
            old = self._loaded
            with answering_first(), _collector_paused():
                kb, problems, changes = await asyncio.to_thread(self._read, old.index.kb, paths)
                if problems:
                    self._kb_version = version   # a broken knowledge base is not tried again until the next change
                    return ReloadResult(old.index.kb, old.index.kb, problems=tuple(problems))
                changed = bool(changes) or kb.faq != old.index.kb.faq
                if changed:
                    self._loaded = await asyncio.to_thread(self._update, old, kb, changes)
                    await asyncio.to_thread(self._save_index)
            gc.freeze()
            self._kb_version = await asyncio.to_thread(self._publish, version) if changed and publish else version
            return ReloadResult(old.index.kb, self.kb, changes)

    def _published_version(self) -> int:
        try:
            return self.store.kb_version()
        except StoreError as exc:
            log.warning("could not read the knowledge-base version; this reload is not shared: %s", exc)
            return self._kb_version

    def _publish(self, read: int) -> int:
        """Bump the shared version. If another replica bumped it since `read`, keep `read` as ours, so that
        this replica follows that change too (it may have been written after our files were read)."""
        try:
            bumped = self.store.bump_kb_version()
        except StoreError as exc:
            log.warning("could not publish the reload; other replicas follow it at the next one: %s", exc)
            return read
        return bumped if bumped == read + 1 else read

    def _update(self, loaded: _Loaded, kb: KnowledgeBase, changes: Changes) -> _Loaded:
        """Index only what changed (see `Index.updated`): a new article costs what it holds, not what the rest do."""
        return loaded.updated(loaded.index.updated(kb, changes), changes, self._article_key)

    def _save_index(self) -> None:
        if self._index_path is not None:
            index_cache.save(self._index_path, self.knowledge_dir, self._loaded.index)

    def _read(self, current: KnowledgeBase, paths: tuple[Path, ...] | None) -> tuple[KnowledgeBase, list[Problem],
                                                                                    Changes]:
        kb, problems = (self._files.scan(self.knowledge_dir) if paths is None
                        else self._files.rescan(self.knowledge_dir, paths, current))
        if problems:
            return kb, problems, Changes()
        return kb, problems, knowledge.diff(current, kb, self._files.touched_since(current))

    # --- chats (each of these reads or writes the store) ------------------------

    def subscribe(self, chat_id: int, words: str | None, thread_id: int | None = None) -> Subscribed:
        """/subscribe [words]: every new article, or only those about the words (into the forum topic
        `thread_id` when it was sent from one)."""
        key = normalise_words(words[:MAX_SUBSCRIPTION_CHARS]) if words and words.strip() else None
        if words and words.strip() and key is None:
            return Subscribed(SubscribeOutcome.NO_WORDS)
        existing = self.store.subscriptions(chat_id)
        if len(existing) >= MAX_SUBSCRIPTIONS and all(s.words != key for s in existing):
            return Subscribed(SubscribeOutcome.TOO_MANY)
        subscription = self.store.subscribe(chat_id, key, thread_id)
        foreign = self.foreign_language(key) if key else None
        return Subscribed(SubscribeOutcome.SUBSCRIBED, subscription, foreign, self.languages if foreign else ())

    def unsubscribe(self, chat_id: int, subscription_id: int | None = None) -> int:
        """Remove one of the chat's subscriptions, or all of them; how many were removed."""
        return self.store.unsubscribe(chat_id, subscription_id)

    def subscriptions(self, chat_id: int) -> list[Subscription]:
        return self.store.subscriptions(chat_id)

    def migrate_chat(self, old_chat_id: int, new_chat_id: int) -> None:
        self.store.migrate_chat(old_chat_id, new_chat_id)
        if self._languages is not None:
            self._languages.pop(old_chat_id, None)
            self._languages.pop(new_chat_id, None)

    def forget_chat(self, chat_id: int) -> None:
        """/forget: everything stored about the chat goes, the language remembered here too."""
        self.store.forget_chat(chat_id)
        self._languages.pop(chat_id, None)

    def stats(self) -> Stats:
        return self.store.stats()

    def chat_language(self, chat_id: int) -> str | None:
        """The language the chat chose (or subscribed in), remembered after the first read (one process only)."""
        if self._languages is None:
            return self.store.chat_language(chat_id)
        if chat_id not in self._languages:
            self._languages[chat_id] = self.store.chat_language(chat_id)
        return self._languages[chat_id]

    def known_language(self, chat_id: int) -> tuple[bool, str | None]:
        """(known, language) without touching the store: whether `chat_language` has been read already."""
        if self._languages is None or chat_id not in self._languages:
            return False, None
        return True, self._languages[chat_id]

    def set_chat_language(self, chat_id: int, language: str | None) -> None:
        self.store.set_chat_language(chat_id, language)
        if self._languages is not None:
            self._languages[chat_id] = language
