"""Articles parsed from the knowledge base's YAML files, kept across restarts in one SQLite file.

Parsing 10,000 YAML files is most of a cold start; a file whose size and
modification time are unchanged parses to the same article, so a start reads
those from here instead. The cache lives beside the bot's database (the
knowledge directory may be read-only), holds plain columns (no pickle: a cache
file must never be able to run code), and is written in one transaction, so a
crash leaves the old contents or the new. It is only ever a shortcut: missing,
unreadable, corrupt, written by another version of the reader or for another
knowledge directory, it is ignored and rebuilt, and a failure to write it is
logged and otherwise changes nothing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import sqlite3
from collections.abc import Collection, Mapping
from pathlib import Path

import yaml

from bot import knowledge
from bot.knowledge import Article
from bot.store.files import owner_only, restrict

log = logging.getLogger(__name__)

CACHE_FILE = "knowledge-cache.sqlite3"
FORMAT = 1   # of the tables below
TIMEOUT = 0.5   # seconds to wait for another process writing the cache; after that, this start goes without

Stamp = knowledge.Stamp   # of the file an article was parsed from
Entries = Mapping[str, tuple[Stamp, Article]]   # by str() of the path as `knowledge.article_paths` gives it

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE articles (
    path TEXT PRIMARY KEY, mtime_ns INTEGER NOT NULL, size INTEGER NOT NULL,
    id TEXT NOT NULL, title TEXT NOT NULL, published TEXT, source TEXT, url TEXT,
    language TEXT NOT NULL, summary TEXT NOT NULL, body TEXT NOT NULL, topics TEXT NOT NULL
);
"""
_COLUMNS = "path, mtime_ns, size, id, title, published, source, url, language, summary, body, topics"


def beside(database_path: Path) -> Path | None:
    """Where the bot keeps the cache: in the directory of its database, which it writes anyway (none in memory)."""
    return None if str(database_path) == ":memory:" else database_path.with_name(CACHE_FILE)


def reader_version() -> str | None:
    """Changes whenever the way files become articles may have: this format, the reader's code, PyYAML.

    None when the reader's code cannot be read (then nothing is cached, as a change could not be noticed).
    """
    try:
        source = Path(knowledge.__file__).read_bytes()
    except OSError:
        return None
    return f"{FORMAT}:{yaml.__version__}:{hashlib.blake2b(source, digest_size=16).hexdigest()}"


class _Invalid(Exception):
    """The cache file exists but cannot be trusted."""


def _row(relative: str, stamp: Stamp, article: Article) -> tuple[object, ...]:
    published = article.published.isoformat() if article.published else None
    return (relative, *stamp, article.id, article.title, published, article.source, article.url,
            article.language, article.summary, article.body, json.dumps(list(article.topics), ensure_ascii=False))


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    raise _Invalid(f"expected text, found {type(value).__name__}")


def _optional(value: object) -> str | None:
    return None if value is None else _text(value)


def _article(row: tuple[object, ...]) -> tuple[Stamp, Article]:
    _, mtime_ns, size, article_id, title, published, source, url, language, summary, body, topics = row
    if not isinstance(mtime_ns, int) or not isinstance(size, int):
        raise _Invalid("bad file stamp")
    try:
        date = None if published is None else dt.date.fromisoformat(_text(published))
        topic_list = [] if topics == "[]" else json.loads(_text(topics))   # most articles have none: skip the parser
    except ValueError as exc:
        raise _Invalid(str(exc)) from exc
    if not isinstance(topic_list, list):
        raise _Invalid("bad topics")
    article = Article(
        id=_text(article_id), title=_text(title), published=date, source=_optional(source), url=_optional(url),
        language=_text(language), summary=_text(summary), body=_text(body), topics=tuple(map(_text, topic_list)),
    )
    return (mtime_ns, size), article


class ArticleCache:
    """The parsed articles of one knowledge directory, by file; `load` once, then `save` after each scan."""

    def __init__(self, path: Path, knowledge_dir: Path) -> None:
        self.path = path
        self.knowledge_dir = knowledge_dir
        self._owner = str(knowledge_dir.resolve())
        self._prefix = str(knowledge_dir / "x")[:-1]   # what str(knowledge_dir / name) puts before name
        self._version = reader_version()
        self._saved: dict[str, Stamp] | None = None   # what the file holds, as far as we know; None: rebuild it
        if self._version is None:
            log.warning("not caching the knowledge base: cannot read the code of %s", knowledge.__file__)

    def load(self) -> dict[str, tuple[Stamp, Article]]:
        """Every cached article by file path (see `Entries`); {} if there is no usable cache.

        Paths are plain strings, here and in `save`: building and hashing 100,000 `Path` objects would
        cost more than the rest of a cached start's bookkeeping.
        """
        self._saved = None
        if self._version is None or not self.path.exists():
            return {}
        try:
            with self._connect() as db:
                meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
                if meta != {"version": self._version, "knowledge_dir": self._owner}:
                    raise _Invalid("written by another version of the reader or for another knowledge directory")
                parsed = {_text(row[0]): _article(row) for row in db.execute(f"SELECT {_COLUMNS} FROM articles")}
        except (sqlite3.Error, _Invalid) as exc:
            log.info("ignoring the knowledge-base cache %s and rebuilding it: %s", self.path, exc)
            return {}
        prefix = self._prefix
        entries = {prefix + key: entry for key, entry in parsed.items()}
        self._saved = {path: stamp for path, (stamp, _) in entries.items()}
        return entries

    @property
    def in_step(self) -> bool:
        """Whether the file holds what was last loaded or saved, so that `save` may be told only what changed."""
        return self._saved is not None

    def save(self, entries: Entries, changed: Collection[str] | None = None) -> None:
        """Make the cache hold exactly `entries`, writing only what changed, in one transaction; never raises.

        `changed` (only when `in_step`): the paths whose entries may differ from the last save, so that a
        reload pays for what it changed: `entries` then needs to hold only those of them to keep, and the
        cache keeps every other path as it is.
        """
        saved = self._saved
        if self._version is None:
            return
        prefix, start = self._prefix, len(self._prefix)
        if changed is not None and saved is not None:
            paths = [path for path in changed if path.startswith(prefix)]
            rows = [_row(path[start:], *entry) for path in paths
                    if (entry := entries.get(path)) is not None and saved.get(path) != entry[0]]
            gone = [path for path in paths if path not in entries and path in saved]
            if (rows or gone) and self._write(rows, [(path[start:],) for path in gone]):
                for path in paths:
                    if path in entries:
                        saved[path] = entries[path][0]
                    else:
                        saved.pop(path, None)
            return
        if saved is not None and saved.keys() == entries.keys() and all(
                saved[path] == stamp for path, (stamp, _) in entries.items()):
            return
        if saved is None:
            try:
                self._recreate()
            except (OSError, sqlite3.Error) as exc:
                self._failed(exc)
                return
            saved = {}
        rows = [_row(path[start:], stamp, article) for path, (stamp, article) in entries.items()
                if saved.get(path) != stamp and path.startswith(prefix)]
        removed = [(path[start:],) for path in saved if path not in entries]
        if self._write(rows, removed):
            self._saved = {path: stamp for path, (stamp, _) in entries.items() if path.startswith(prefix)}

    def _write(self, rows: list[tuple[object, ...]], removed: list[tuple[str]]) -> bool:
        try:
            restrict([self.path])   # a cache an earlier version left readable by everyone
            with self._connect() as db:
                db.execute("BEGIN IMMEDIATE")
                db.executemany("DELETE FROM articles WHERE path = ?", removed)
                db.executemany(f"INSERT OR REPLACE INTO articles ({_COLUMNS}) VALUES ({', '.join('?' * 12)})", rows)
                db.execute("COMMIT")
        except (OSError, ValueError, sqlite3.Error) as exc:   # ValueError: text SQLite cannot store
            self._failed(exc)
            return False
        return True

    def _failed(self, exc: Exception) -> None:
        self._saved = None
        log.warning("could not write the knowledge-base cache %s (the next start reads every file): %s", self.path, exc)

    def _recreate(self) -> None:
        """An empty cache for this reader and directory, swapped in whole over whatever was there.

        Readable by its owner only, like the bot's database (its journal inherits the file's mode).
        """
        with owner_only():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fresh = self.path.with_name(f".{self.path.name}.new")
            for stale in (fresh, fresh.with_name(fresh.name + "-journal")):
                stale.unlink(missing_ok=True)
            db = sqlite3.connect(fresh, isolation_level=None)
            try:
                restrict([fresh])
                db.executescript(_SCHEMA)
                db.executemany("INSERT INTO meta (key, value) VALUES (?, ?)",
                               [("version", str(self._version)), ("knowledge_dir", self._owner)])
            finally:
                db.close()
        self.path.with_name(self.path.name + "-journal").unlink(missing_ok=True)
        fresh.replace(self.path)

    def _connect(self) -> contextlib.closing[sqlite3.Connection]:
        """Closed on leaving `with` (sqlite3's own context manager only commits); autocommit unless BEGIN."""
        return contextlib.closing(sqlite3.connect(self.path, timeout=TIMEOUT, isolation_level=None))
