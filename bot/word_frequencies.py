"""wordfreq's word frequencies of a language, in a form a restart loads in milliseconds.

`wordfreq.get_frequency_dict("ru")` builds a dict of 713,000 words (0.9 s), after importing wordfreq (0.3 s):
most of what the first answer after a start used to wait for. The same table is kept as two plain arrays, the
words' 64-bit BLAKE2b hashes, sorted, and each word's frequency bucket (wordfreq's centibels, negated), found
by binary search. A frequency is computed from its bucket as wordfreq computes it, so it is the very same
float. Two listed words with one hash would share a frequency (the tests check that none do in English or
Russian); a word wordfreq does not list matches a listed one's hash about once in 10^13 words.

The table is kept in one `np.savez` file (whose members carry CRC-32 checksums), read with `allow_pickle=False`
(a cache file must never be able to run code), written whole to a temporary file and renamed, readable by its
owner only, and named by wordfreq's version, so an upgrade builds a new one (and removes the old). Missing or
unreadable, it is rebuilt from wordfreq; failing to write it is logged and otherwise changes nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np

from bot.store.files import replace_privately

log = logging.getLogger(__name__)

FORMAT = 1  # of the arrays (and of the hash) below


class Frequencies:
    """One language's word -> frequency (0 to 1), as `wordfreq.get_frequency_dict` maps them."""

    def __init__(self, hashes: np.ndarray, buckets: np.ndarray) -> None:
        self._hashes = hashes
        self._buckets = buckets

    def get(self, word: str, default: float = 0.0) -> float:
        """The word's frequency; `default` for a word wordfreq does not list (as `dict.get`)."""
        key = int.from_bytes(_digest(word), "little", signed=True)
        at = int(self._hashes.searchsorted(key))
        if at == len(self._hashes) or int(self._hashes[at]) != key:
            return default
        return 10 ** (-int(self._buckets[at]) / 100)  # wordfreq's cB_to_freq(-bucket), to the last bit


def load(language: str, directory: Path | None) -> Frequencies | dict[str, float]:
    """The table of `language` (one wordfreq has), kept in `directory`. Without one, wordfreq's own dict: building
    the table takes longer than the dict (hashing every word), which pays off only when it is kept."""
    if directory is None:
        import wordfreq

        return wordfreq.get_frequency_dict(language)
    path = directory / f"wordfreq{FORMAT}-{language}-{metadata.version('wordfreq')}.npz"
    try:
        with np.load(path, allow_pickle=False) as saved:
            hashes, buckets = saved["hashes"], saved["buckets"]
        if hashes.dtype != np.int64 or buckets.dtype != np.uint16 or hashes.ndim != 1 \
                or hashes.shape != buckets.shape:
            raise ValueError("not a word-frequency table")
        return Frequencies(hashes, buckets)
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        log.info("ignoring the word frequencies %s and rebuilding them: %s", path, exc)
    hashes, buckets = _build(language)
    _save(path, language, hashes, buckets)
    return Frequencies(hashes, buckets)


def _digest(word: str) -> bytes:
    """64 bits, the same in every process (unlike Python's own `hash`), so that they can be saved."""
    return hashlib.blake2b(word.encode("utf-8", "surrogatepass"), digest_size=8).digest()


def _build(language: str) -> tuple[np.ndarray, np.ndarray]:
    """(sorted hashes, buckets) of wordfreq's list; a word listed twice keeps its last bucket, as the dict does."""
    import wordfreq  # 0.3 s, paid only when the table is built

    lists = wordfreq.get_frequency_list(language)
    keys = np.frombuffer(b"".join(_digest(word) for words in lists for word in words), dtype="<i8")
    buckets = np.repeat(np.arange(len(lists), dtype=np.uint16), [len(words) for words in lists])
    order = np.argsort(keys, kind="stable")
    keys, values = keys[order].astype(np.int64), buckets[order]
    last = np.append(keys[1:] != keys[:-1], True)
    return keys[last], values[last]


def _save(path: Path, language: str, hashes: np.ndarray, buckets: np.ndarray) -> None:
    """Keep the table at `path` in place of any other version's (never raises)."""
    try:
        replace_privately(path, lambda out: np.savez(out, hashes=hashes, buckets=buckets))
    except OSError as exc:
        log.warning("could not save the word frequencies to %s (the next start builds them again): %s", path, exc)
        return
    for stale in path.parent.glob(f"wordfreq*-{language}-*.npz"):
        if stale != path:  # another wordfreq version's
            with contextlib.suppress(OSError):
                stale.unlink()
