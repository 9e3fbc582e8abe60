"""The built index, kept across restarts in one numpy file beside the knowledge-base cache.

Indexing is most of a start once the articles come from `bot.knowledge_cache`;
an index built from the same articles by the same code with the same settings
is the same index, so a start with nothing changed loads it instead. The file
holds plain arrays only (`np.savez`, read with `allow_pickle=False`: a cache file
must never be able to run code) and a fingerprint of the articles, the settings
and the code; it is written whole to a temporary file and renamed, readable by
its owner only. Missing, truncated, corrupt, or made for other articles, settings
or code, it is ignored and rebuilt; failing to write it is logged and otherwise
changes nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np

from bot import search, text
from bot.knowledge import KnowledgeBase
from bot.search import Index, Settings
from bot.store.files import owner_only, restrict

log = logging.getLogger(__name__)

INDEX_FILE = "index-cache.npz"
FORMAT = 1   # of the arrays `Index.to_arrays` writes
_PACKAGES = ("numpy", "scipy", "rapidfuzz", "PyStemmer", "wordfreq", "wordllama")


def beside(knowledge_cache: Path) -> Path:
    """Where the index is kept: next to the parsed-article cache (see `bot.knowledge_cache.beside`)."""
    return knowledge_cache.with_name(INDEX_FILE)


def fingerprint(kb: KnowledgeBase, settings: Settings) -> str:
    """Changes whenever the index built from `kb` might: any article's indexed text, the settings, the code."""
    digest = hashlib.blake2b(digest_size=20)
    digest.update(f"{FORMAT}\0{settings!r}\0".encode())
    for module in (search, text):
        digest.update(Path(module.__file__ or "").read_bytes())
    for package in _PACKAGES:
        try:
            digest.update(f"{package}={metadata.version(package)}\0".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{package}=?\0".encode())
    for article_id in sorted(kb.articles):
        a = kb.articles[article_id]
        digest.update("\0".join((a.id, a.title, a.body, a.language, *a.topics, "\1")).encode())
    return digest.hexdigest()


def load(path: Path, kb: KnowledgeBase, settings: Settings = search.DEFAULT_SETTINGS) -> Index | None:
    """The saved index of exactly `kb`, or None when there is none that can be trusted."""
    if not path.exists():
        return None
    try:
        wanted = fingerprint(kb, settings)
        with np.load(path, allow_pickle=False) as saved:
            if bytes(saved["fingerprint"]).decode() != wanted:
                log.info("the saved index %s is for other articles, settings or code: rebuilding it", path)
                return None
            return Index.from_arrays(kb, settings, {name: saved[name] for name in saved.files})
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        log.info("ignoring the saved index %s and rebuilding it: %s", path, exc)
        return None


def save(path: Path, index: Index) -> None:
    """Keep `index` for the next start (only an index built whole is kept); never raises."""
    arrays = index.to_arrays()
    if arrays is None:
        return
    arrays["fingerprint"] = np.frombuffer(fingerprint(index.kb, index.settings).encode(), dtype=np.uint8)
    fresh = path.with_name(f".{path.name}.new")
    try:
        with owner_only():
            path.parent.mkdir(parents=True, exist_ok=True)
            with fresh.open("wb") as out:
                np.savez(out, **arrays)
        restrict([fresh])
        fresh.replace(path)
    except OSError as exc:
        log.warning("could not save the index to %s (the next start builds it again): %s", path, exc)
        with contextlib.suppress(OSError):
            fresh.unlink(missing_ok=True)
