"""The bot's core, with no Telegram in it: what the handlers and `python -m bot shell` share.

`Service` holds the current index and the store. Answering is synchronous and
fast; a reload reads and indexes the knowledge base in a worker thread and
swaps the result in with one assignment, so questions keep being answered from
the old index meanwhile, and a knowledge base with problems is never swapped in.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import html
import logging
import sys
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bot import knowledge
from bot.answer import Answer, answer_question, render_text
from bot.knowledge import Article, Changes, KnowledgeBase, KnowledgeError, Problem
from bot.knowledge_cache import ArticleCache, Stamp
from bot.search import Hit, Index
from bot.store import Stats, Store, StoreError, normalise_words
from bot.text import telegram_length

log = logging.getLogger(__name__)

MAX_QUESTION_CHARS = 1000   # Telegram allows 4096; no honest question is longer, and ranking cost grows with length
MAX_LIST = 10               # /latest and /search results
MAX_SUBSCRIPTIONS = 20      # per chat: enough for real use, bounded against abuse
MAX_SUBSCRIPTION_CHARS = 200
MAX_MESSAGE = 4096
EMPTY_QUESTION = "Send me a question in words, for example: what happened with the action plan?"
STATS_PAUSE = 30.0          # seconds without recording statistics after the database refused a write
CALLBACK_KEY_BYTES = 56     # callback data is at most 64 bytes, and the longest prefix we put before a key is "f:1:"


def clean_question(text: str) -> str:
    """One line of printable text, at most MAX_QUESTION_CHARS, cut at a word boundary."""
    text = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in text)
    text = " ".join(text.split())
    if len(text) > MAX_QUESTION_CHARS:
        cut = text.rfind(" ", 0, MAX_QUESTION_CHARS + 1)
        text = text[: cut if cut > MAX_QUESTION_CHARS // 2 else MAX_QUESTION_CHARS]
    return text


def callback_key(article_id: str) -> str:
    """An article id as it travels in callback data: itself when short, else a stable hash of it."""
    if len(article_id.encode()) <= CALLBACK_KEY_BYTES and not article_id.startswith("#"):
        return article_id
    return "#" + hashlib.blake2b(article_id.encode(), digest_size=12).hexdigest()


class RateLimiter:
    """A token bucket per user: `per_minute` questions in a burst, refilled evenly over a minute.

    `allow` says whether to answer; `warn` is true on the first refusal of a
    run only, so a flood gets one polite reply rather than one per message.
    """

    MAX_USERS = 10_000   # forget users whose bucket has refilled once this many are tracked

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
    """What one reload produces and one assignment swaps in: the index and its callback keys."""

    index: Index
    long_keys: dict[str, str] = field(default_factory=dict)   # hashed key -> article id, for ids too long to send

    @classmethod
    def build(cls, kb: KnowledgeBase) -> _Loaded:
        keys = {callback_key(i): i for i in kb.articles if callback_key(i) != i}
        return cls(Index.build(kb), keys)


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

    def scan(self, knowledge_dir: Path) -> tuple[KnowledgeBase, list[Problem]]:
        read_problems: list[Problem] = []
        entries: dict[str, tuple[Stamp, Article]] = {}

        def articles() -> Iterable[tuple[Path, Article | None]]:
            for path in knowledge.article_paths(knowledge_dir):
                try:
                    stat = path.stat()
                except OSError:
                    stamp = (-1, -1)
                else:
                    stamp = (stat.st_mtime_ns, stat.st_size)
                key = str(path)
                cached = self._entries.get(key)
                if cached is not None and cached[0] == stamp:
                    article: Article | None = cached[1]
                else:
                    article = knowledge.read_article(path, read_problems)
                if article is not None and stamp[0] >= 0:
                    entries[key] = (stamp, article)
                yield path, article

        kb, problems = knowledge.scan(knowledge_dir, articles() if knowledge_dir.is_dir() else None)
        self._entries = entries
        if self._persistent is not None:
            settled = time.time_ns() - self.RACY_SECONDS * 1_000_000_000
            self._persistent.save({key: entry for key, entry in entries.items() if entry[0][0] < settled})
        return kb, read_problems + problems


RELOAD_SWITCH_INTERVAL = 0.0005  # seconds; CPython's default is 0.005


@contextlib.contextmanager
def _answering_first() -> Iterator[None]:
    """While a reload reads and indexes in worker threads, keep the event loop's waits for the GIL short.

    A full cyclic collection holds the GIL for its whole pass over the heap (0.1-0.6 s with
    10k-100k articles loaded), so it is paused; reference counting still frees what is not
    in a cycle. And every time answering releases the GIL (SQLite, larger numpy operations)
    it waits up to the switch interval to get it back from the busy builder; at the default
    5 ms those waits add up to hundreds of milliseconds per answer.
    """
    enabled, interval = gc.isenabled(), sys.getswitchinterval()
    gc.disable()
    sys.setswitchinterval(min(interval, RELOAD_SWITCH_INTERVAL))
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
        if enabled:
            gc.enable()


class Service:
    """The knowledge base being served, the answering, the statistics and the limits."""

    def __init__(self, knowledge_dir: Path, store: Store, *, user_rate_limit: int = 0,
                 cache_path: Path | None = None) -> None:
        """Load the knowledge base now; KnowledgeError lists every problem (then nothing is served).

        `cache_path` keeps the articles parsed from files across restarts (see `bot.knowledge_cache`).
        """
        self.knowledge_dir = knowledge_dir
        self.store = store
        self.limiter = RateLimiter(user_rate_limit)
        self._files = _FileCache(ArticleCache(cache_path, knowledge_dir) if cache_path else None)
        self._reload_lock = asyncio.Lock()
        self._stats_paused_until = 0.0
        kb, problems = self._files.scan(knowledge_dir)
        if problems:
            raise KnowledgeError(problems)
        self._loaded = _Loaded.build(kb)
        gc.freeze()  # the index lives until the next reload: keep it out of every later full collection

    @property
    def index(self) -> Index:
        return self._loaded.index

    @property
    def kb(self) -> KnowledgeBase:
        return self._loaded.index.kb

    # --- answering -----------------------------------------------------------

    def ask(self, question: str) -> Answer:
        """Answer, and count the question as answered or not for /stats (question text only)."""
        question = clean_question(question)
        answer = answer_question(self.index, question)
        if question:
            self._record(lambda: self.store.record_question(question, answer.found))
        return answer

    def feedback(self, question: str, article_id: str | None, helpful: bool) -> None:
        self._record(lambda: self.store.record_feedback(clean_question(question), article_id, helpful))

    def _record(self, write: Callable[[], None]) -> None:
        """Statistics are best effort: after a failed write they pause for a while, logged once, rather than
        make every question wait out the busy timeout of a locked database on the event loop."""
        now = time.monotonic()
        if now < self._stats_paused_until:
            return
        try:
            write()
        except StoreError as exc:
            self._stats_paused_until = now + STATS_PAUSE
            log.warning("could not record statistics for /stats; not trying again for %.0f s: %s", STATS_PAUSE, exc)

    def search(self, query: str, k: int = MAX_LIST) -> list[Hit]:
        return self.index.search(clean_question(query), k)

    def latest(self, n: int) -> list[Article]:
        return self.kb.latest(max(1, min(n, MAX_LIST)))

    def article(self, key: str) -> Article | None:
        """The article a callback key names, or None for an unknown, stale or forged key."""
        loaded = self._loaded
        article_id = loaded.long_keys.get(key) if key.startswith("#") else key
        return loaded.index.kb.articles.get(article_id) if article_id is not None else None

    # --- reloading -----------------------------------------------------------

    async def reload(self) -> ReloadResult:
        """Reread the knowledge base off the event loop; swap it in only if it has no problems.

        Reloads run one at a time; the index is rebuilt only when something changed.
        """
        async with self._reload_lock:
            old = self._loaded
            with _answering_first():
                kb, problems, changes = await asyncio.to_thread(self._read, old.index.kb)
                if problems:
                    return ReloadResult(old.index.kb, old.index.kb, problems=tuple(problems))
                if changes or kb.faq != old.index.kb.faq:
                    self._loaded = await asyncio.to_thread(_Loaded.build, kb)
            gc.freeze()
            return ReloadResult(old.index.kb, self.kb, changes)

    def _read(self, current: KnowledgeBase) -> tuple[KnowledgeBase, list[Problem], Changes]:
        kb, problems = self._files.scan(self.knowledge_dir)
        return kb, problems, (Changes() if problems else knowledge.diff(current, kb))

    # --- subscriptions -------------------------------------------------------

    def subscribe(self, chat_id: int, words: str | None) -> str:
        """Plain-text outcome of /subscribe [words]."""
        key = normalise_words(words[:MAX_SUBSCRIPTION_CHARS]) if words and words.strip() else None
        if words and words.strip() and key is None:
            return "I found no words to watch for in that. Send /subscribe alone to get every new article."
        existing = self.store.subscriptions(chat_id)
        if len(existing) >= MAX_SUBSCRIPTIONS and all(s.words != key for s in existing):
            return f"This chat already has {MAX_SUBSCRIPTIONS} subscriptions; remove one with /subscriptions first."
        subscription = self.store.subscribe(chat_id, key)
        if subscription.words is None:
            return "Subscribed: this chat will get every new article."
        return f"Subscribed: this chat will get new articles about “{subscription.words}”."


# --- reply texts (HTML for Telegram, plain for the shell) ---------------------

def _fit(lines: Sequence[str], limit: int = MAX_MESSAGE) -> str:
    """Join whole lines while they fit, then say how many were left out."""
    out: list[str] = []
    used = 0
    for number, line in enumerate(lines):
        rest = len(lines) - number
        tail = f"… and {rest} more"
        if used + telegram_length(line) + (0 if rest == 1 else telegram_length(tail) + 1) > limit:
            out.append(tail)
            break
        out.append(line)
        used += telegram_length(line) + 1
    return "\n".join(out)


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def reload_html(result: ReloadResult, knowledge_dir: Path) -> str:
    """What a reload changed, or why nothing was swapped in (file:line: message per problem)."""
    esc = html.escape
    if not result.ok:
        head = (f"<b>Not reloaded:</b> {len(result.problems)} problem(s) in the knowledge base. "
                "The previous version keeps serving. Fix these and /reload again:")
        problems = [
            f"<code>{esc(_relative(p.path, knowledge_dir))}:{p.line}</code>: {esc(p.message[:300])}"
            for p in result.problems
        ]
        return _fit([head, *problems])
    changes = result.changes
    head = (f"<b>Reloaded:</b> {len(result.new.articles)} articles "
            f"({len(changes.added)} added, {len(changes.updated)} updated, {len(changes.removed)} removed).")
    if not changes:
        return head + "\nNothing changed."
    lines = [head]
    for label, ids, kb in (("added", changes.added, result.new), ("updated", changes.updated, result.new),
                           ("removed", changes.removed, result.old)):
        lines.extend(f"{label}: {esc(kb.articles[i].title[:200])}" for i in ids)
    if changes.added:
        lines.append("Subscribers are being notified of the added articles.")
    return _fit(lines)


def stats_html(stats: Stats, articles: int, top: int = 5) -> str:
    esc = html.escape
    asked = stats.answered + stats.unanswered
    lines = [
        "<b>Statistics</b>",
        f"Articles: {articles}",
        f"Subscribed chats: {stats.subscribed_chats} ({stats.subscriptions} subscriptions)",
        f"Questions: {asked} ({stats.answered} answered, {stats.unanswered} not answered)",
        f"Feedback: {stats.helpful} helpful, {stats.unhelpful} not helpful",
    ]
    for title, rows in (("Asked but not answered", stats.top_unanswered),
                        ("Answers marked not helpful", stats.top_unhelpful)):
        if rows:
            lines.append(f"<b>{title}:</b>")
            lines.extend(f"{count}× {esc(question[:200])}" for question, count in rows[:top])
    return _fit(lines)


def no_match(query: str) -> str:
    return f"No article matches “{clean_question(query)[:100]}”. Try other words, or /latest."


def hits_text(title: str, articles: Sequence[Article]) -> str:
    """The plain-text twin of answer.hits_html, for the shell."""
    if not articles:
        return f"{title}\nNothing found. Try other words, or /latest."
    lines = [title]
    for number, article in enumerate(articles, 1):
        date = f" · {article.published.day} {article.published:%B %Y}" if article.published else ""
        lines.append(f"{number}. {article.title}{date}")
        if article.url:
            lines.append(f"   {article.url}")
    return "\n".join(lines)


SHELL_HELP = """Type a question, or:
/latest [n]     the newest articles
/search words   articles about these words
/quit           leave (or Ctrl-D)"""


def count_arg(text: str, default: int = 5) -> int:
    """The `n` of /latest n; anything that is not a number means the default."""
    text = text.strip()
    return int(text) if text.isdigit() else default


def shell_reply(service: Service, line: str) -> str | None:
    """The reply `python -m bot shell` prints for one line: the same answers as in Telegram, as plain text.

    None means the user asked to leave; "" means there is nothing to say.
    """
    line = line.strip()
    command, _, rest = line.partition(" ")
    command = command.lower()
    if not line:
        return ""
    if command in ("/quit", "/exit"):
        return None
    if command in ("/help", "/start"):
        return SHELL_HELP
    if command == "/latest":
        return hits_text("Latest articles", service.latest(count_arg(rest)))
    if command == "/search":
        query = clean_question(rest)
        if not query:
            return "Tell me what to look for, for example: /search action plan"
        hits = service.search(query, k=5)
        return hits_text(f"Articles about “{query[:100]}”", [h.article for h in hits]) if hits else no_match(query)
    if command == "/ask":
        line = rest
    elif command.startswith("/"):
        return f"Unknown command {command}.\n{SHELL_HELP}"
    question = clean_question(line)
    return render_text(service.ask(question)) if question else EMPTY_QUESTION
