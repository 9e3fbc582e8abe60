"""The built index, kept across restarts in one numpy file beside the knowledge-base cache.

Indexing is most of a start once the articles come from `bot.knowledge_cache`;
an index built from the same articles by the same code with the same settings
is the same index, so a start loads it instead, and indexes only the articles
added, edited or removed since (`Index.updated`: what a reload does). The file
holds plain arrays only (`np.savez`, read with `allow_pickle=False`: a cache file
must never be able to run code), a digest of each article and a fingerprint of
the settings and the code; it is written whole to a temporary file and renamed, readable by
its owner only. Missing, truncated, corrupt, or made by other settings or code, it
is ignored and rebuilt; failing to write it is logged and otherwise
changes nothing.
"""

from __future__ import annotations

import hashlib
import logging
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np

from bot import search, text, word_frequencies
from bot.knowledge import Changes, KnowledgeBase
from bot.search import Index, Settings
from bot.store.files import replace_privately

log = logging.getLogger(__name__)

INDEX_FILE = "index-cache.npz"
FORMAT = 2   # of the arrays `Index.to_arrays` writes
_PACKAGES = ("numpy", "scipy", "rapidfuzz", "PyStemmer", "wordfreq", "wordllama")


def beside(knowledge_cache: Path) -> Path:
    """Where the index is kept: next to the parsed-article cache (see `bot.knowledge_cache.beside`)."""
    return knowledge_cache.with_name(INDEX_FILE)


def fingerprint(settings: Settings, knowledge_dir: Path) -> str:
    """Changes whenever the index built from the same articles might (the settings, the code, the libraries),
    and for another knowledge directory (whose articles a saved index would only be updated to at length)."""
    digest = hashlib.blake2b(digest_size=20)
    digest.update(f"{FORMAT}\0{settings!r}\0{knowledge_dir.resolve()}\0".encode())
    for module in (search, text, word_frequencies):
        digest.update(Path(module.__file__ or "").read_bytes())
    for package in _PACKAGES:
        try:
            digest.update(f"{package}={metadata.version(package)}\0".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{package}=?\0".encode())
    return digest.hexdigest()


def digests(kb: KnowledgeBase) -> dict[str, bytes]:
    """Per article id, a digest of what the index reads of it (title, body, topics, language)."""
    return {
        a.id: hashlib.blake2b("\0".join((a.title, a.body, a.language, *a.topics)).encode(), digest_size=16).digest()
        for a in kb.articles.values()
    }


def load(path: Path, knowledge_dir: Path, kb: KnowledgeBase,
         settings: Settings = search.DEFAULT_SETTINGS) -> Index | None:
    """The index of `kb`, read from `knowledge_dir`: the saved one, updated with the articles changed since it
    was saved; None when there is none that can be trusted, or too much changed (then build it whole, and save)."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as saved:
            if bytes(saved["fingerprint"]).decode() != fingerprint(settings, knowledge_dir):
                log.info("the saved index %s is for other code, settings or knowledge: rebuilding it", path)
                return None
            arrays = {name: saved[name] for name in saved.files}
        ids = bytes(arrays["ids"]).decode().split("\n") if len(arrays["ids"]) else []
        kept = arrays["digests"]
        if kept.shape != (len(ids), 16):
            raise ValueError("one digest per article expected")
        now = digests(kb)
        before = dict(zip(ids, map(bytes, kept), strict=True))
        changes = Changes(
            added=tuple(sorted(now.keys() - before.keys())),
            updated=tuple(sorted(i for i, d in now.items() if i in before and before[i] != d)),
            removed=tuple(sorted(before.keys() - now.keys())),
        )
        if len(changes.added) + len(changes.updated) + len(changes.removed) > search.DELTA_LIMIT:
            return None
        return Index.from_arrays(kb, settings, arrays, changes)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        log.info("ignoring the saved index %s and rebuilding it: %s", path, exc)
        return None


def save(path: Path, knowledge_dir: Path, index: Index) -> None:
    """Keep `index` of the articles in `knowledge_dir` for the next start (only an index built whole is kept);
    never raises."""
    arrays = index.to_arrays()
    if arrays is None:
        return
    kept = digests(index.kb)
    arrays["digests"] = np.frombuffer(b"".join(kept[i] for i in sorted(kept)), dtype=np.uint8).reshape(-1, 16)
    arrays["fingerprint"] = np.frombuffer(fingerprint(index.settings, knowledge_dir).encode(), dtype=np.uint8)
    try:
        replace_privately(path, lambda out: np.savez(out, **arrays))
    except OSError as exc:
        log.warning("could not save the index to %s (the next start builds it again): %s", path, exc)
