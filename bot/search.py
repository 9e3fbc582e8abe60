"""The in-memory search index: which articles answer a question, and how sure we are.

Ranking is BM25 (bm25s's Lucene formula, k1=0.9, b=0.9, title indexed twice) over
Snowball-stemmed terms in each article's own language, after correcting misspelt
query words against the knowledge base's vocabulary with rapidfuzz. The index is
built from sparse word-count matrices with whole-array numpy/scipy operations
(which release the GIL, so the bot keeps answering during a reload) rather than
per-article Python lists: 100,000 articles index in seconds within a few hundred MB. The BM25 top 50 are then
re-ranked with a static sentence embedding (WordLlama, shipped inside its wheel),
which finds the articles that say the same thing in other words.

Confidence weighs three pieces of evidence, so that it means the same at one
article and at 100,000:

- how much of the question's content the answering sentences (and the title)
  hold, each word weighted by how rare it is in the language at large
  (wordfreq), not in the knowledge base: "who is Kozhakhmetov?" is all
  covered by an article naming him, "weather in Almaty tomorrow?" only in its
  least telling part;
- the BM25 score calibrated against off-topic probe questions asked of this
  very index at build time (some carrying the knowledge base's own words, as
  a real off-topic question often shares one incidental word): the share of
  probes it beats, which is what makes a score comparable between a small and
  a large index;
- the embedding cosine of question and article, for the same thing said in
  other words.

A logistic model joins them into the probability that the answer is right,
fitted on the development halves of the evaluation data (knowledge bases of 1
to 240 encyclopaedia paragraphs in English and Russian against everyday and
news questions, and 4,977 news passages against encyclopaedia questions; see
`python -m bot eval --sweep`).
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import random
import threading
import zlib
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import numpy as np
from rapidfuzz import fuzz, process, utils
from rapidfuzz.distance import Levenshtein
from scipy import sparse

from bot import text, word_frequencies
from bot.knowledge import Article, Changes, FaqEntry, KnowledgeBase

__all__ = ["FaqMatch", "Hit", "Index", "Ranking", "Settings"]


@dataclass(frozen=True, slots=True)
class Hit:
    article: Article
    score: float  # ranking score (higher is better)


@dataclass(frozen=True, slots=True)
class Candidate:
    """One ranked article with the evidence behind its score, for answers and calibration."""

    article: Article
    score: float  # fused ranking score
    bm25: float  # raw BM25 score
    cosine: float  # embedding cosine of question and article


@dataclass(frozen=True, slots=True)
class Ranking:
    """Everything a ranked question yields: the candidates, and the terms the answer needs."""

    query: str
    language: str
    terms: tuple[str, ...]  # stemmed query terms after typo correction, stopwords dropped
    candidates: tuple[Candidate, ...]
    raw_confidence: float  # of the first candidate; 0.0 when there is none
    weights: tuple[float, ...] = ()  # per term: how much it says, by its rarity in the language at large
    kind: text.QuestionKind | None = None  # what the question asks for, when its wording says so


@dataclass(frozen=True, slots=True)
class Judgement:
    """How sure the index is of its best candidate, and the sentences that answer."""

    confidence: float  # probability that the best candidate answers the question
    sentences: tuple[str, ...]  # the answering sentence(s) of the best candidate, in article order
    coverage: float  # the rarity-weighted share of the question's content those sentences hold


@dataclass(frozen=True, slots=True)
class FaqMatch:
    entry: FaqEntry
    score: float  # rapidfuzz similarity, 0..100


@dataclass(frozen=True, slots=True)
class Settings:
    """Tunable constants, chosen on the rtqa_news dev split (see benchmarks/retrieval.py)."""

    k1: float = 0.9
    b: float = 0.9
    title_repeats: int = 2
    rerank_depth: int = 50
    bm25_weight: float = 0.4  # fused = w * bm25 / max(bm25) + (1 - w) * cosine
    cosine_in_confidence: float = 0.6  # raw confidence = bm25 / idf of a one-article term + this * cosine
    embeddings: bool = True
    typo_min_length: int = 4
    faq_threshold: float = 80.0


DEFAULT_SETTINGS = Settings()
FOUND = 0.5  # confidence (probability that the answer is right) at which the bot answers (sure or unsure tier)
SURE = 0.75  # ... and at which it answers with one article only
RELATED = 0.1  # below this the closest article is unrelated to the question and not worth offering
# Logistic model: intercept, probe-calibrated score (0..1), coverage (0..1), article cosine.
_EVIDENCE_WEIGHTS = (-9.19, 5.92, 8.9, 3.36)
_PROBE_QUANTILE_FOUND = 0.88  # the share of off-topic probes that FOUND refuses
_PROBE_QUANTILE_SURE = 0.99
_PROBE_SLOTS = 3  # knowledge-base words tried in each templated probe
_MIN_LANGUAGE_SHARE = 0.05  # a question is read in one of the languages of at least this share of articles
_TITLE_TERM_SHARE = 0.5  # weight of a question word that is also in the title, when choosing the sentence
_COMMON_ZIPF = 3.0  # wordfreq: at least once per million words
_EMBED_BATCH = 16384  # words tokenized per call
_EMBED_ROWS = 4096  # articles embedded per sparse product
_STEM_CHUNK = 2000  # words stemmed per call: a millisecond or two of holding the GIL


# --- embeddings ----------------------------------------------------------------


class Embedder:
    """Mean-pooled WordLlama token vectors, L2-normalised; 256 floats per text.

    The model is the one `WordLlama.load()` gives ("l2_supercat", 256 dimensions): the
    tokenizer and the vectors in WordLlama's wheel, read here as it reads them but
    without importing wordllama, whose configuration machinery took a third of a
    second of every start (and whose import calls `logging.basicConfig`, switching on
    INFO logging for the whole bot). The tokenizer file sets no padding, which WordLlama
    switches on: padding tokens must not enter the mean. A test checks the token ids
    and the vectors against `WordLlama.load()`.
    """

    def __init__(self) -> None:
        from safetensors import safe_open  # imported by the warm-up thread, not by every start's imports
        from tokenizers import Tokenizer

        package = _package_dir("wordllama")
        self._tokenizer = Tokenizer.from_file(str(package / "tokenizers" / "l2_supercat_tokenizer_config.json"))
        with safe_open(str(package / "weights" / "l2_supercat_256.safetensors"), framework="np") as weights:
            self._vectors = np.ascontiguousarray(weights.get_tensor("embedding.weight"), dtype=np.float32)

    def embed_counts(self, counts: sparse.csr_matrix, words: Sequence[str]) -> np.ndarray:
        """One row per row of `counts` (texts x `words`, how often each word occurs in each text).

        In half precision: cosines need three digits, and 100,000 articles then
        take 50 MB rather than 100.

        No token spans a space, so a text's tokens are its words' tokens: each
        distinct word is tokenized once, and the texts are summed by sparse
        products, a few thousand rows at a time to keep memory flat (the sparse
        products and the tokenizer release the GIL, so the bot keeps answering).
        """
        out = np.zeros((counts.shape[0], self._vectors.shape[1]), dtype=np.float16)
        if not len(words) or not counts.nnz:
            return out
        token_ids, token_lengths = array("i"), array("q")
        for start in range(0, len(words), _EMBED_BATCH):
            for encoding in self._tokenizer.encode_batch(list(words[start : start + _EMBED_BATCH]),
                                                         add_special_tokens=False):
                token_ids.extend(encoding.ids)
                token_lengths.append(len(encoding.ids))
        lengths = np.frombuffer(token_lengths, dtype=np.int64)
        word_tokens = sparse.csr_matrix(
            (np.ones(len(token_ids), dtype=np.float32),
             np.clip(np.frombuffer(token_ids, dtype=np.int32), 0, self._vectors.shape[0] - 1),
             np.concatenate(([0], np.cumsum(lengths)))),
            shape=(len(words), self._vectors.shape[0]),
        )
        for start in range(0, counts.shape[0], _EMBED_ROWS):
            tokens = counts[start : start + _EMBED_ROWS] @ word_tokens
            tokens.has_sorted_indices = False
            tokens.sort_indices()  # sum each text's tokens in one order, whatever order its words were numbered in
            rows = tokens @ self._vectors
            norms = np.linalg.norm(rows, axis=1, keepdims=True)
            np.divide(rows, norms, out=rows, where=norms > 0)
            out[start : start + _EMBED_ROWS] = rows
        return out

    def embed_one(self, query: str) -> np.ndarray:
        """The same vector as `embed_counts` gives for the words of `query`."""
        ids = self._tokenizer.encode(" ".join(query.split()), add_special_tokens=False).ids
        if not ids:
            return np.zeros(self._vectors.shape[1], dtype=np.float32)
        vector = self._vectors[np.clip(ids, 0, self._vectors.shape[0] - 1)].sum(axis=0)
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm else vector


T = TypeVar("T")
_LOADED: dict[object, Any] = {}
_LOADING = threading.Lock()


def _once(key: object, load: Callable[[], T]) -> T:
    """`load()` once per process, even when the warm-up thread and an answer ask for it at once."""
    try:
        return _LOADED[key]  # type: ignore[no-any-return]
    except KeyError:
        with _LOADING:
            if key not in _LOADED:
                _LOADED[key] = load()
            return _LOADED[key]  # type: ignore[no-any-return]


def embedder() -> Embedder:
    """Loaded once per process (0.15 s, mostly building the tokenizer); every index shares it."""
    return _once("embedder", Embedder)


def _package_dir(name: str) -> Path:
    """Where an installed package's files are, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"{name} is not installed", name=name)
    return Path(spec.origin).parent


def warm_up(articles: Iterable[Article], settings: Settings = DEFAULT_SETTINGS, cache_dir: Path | None = None) -> None:
    """Load what the first answer needs and no index holds (the word frequencies of the languages questions are
    read in, the embedding model), so that it need not wait for them: a start runs this in a thread while it
    loads the index. With `cache_dir`, the word frequencies are kept there from now on (see
    `bot.word_frequencies`): a restart then loads them in milliseconds."""
    global _frequencies_dir
    if cache_dir is not None:
        _frequencies_dir = cache_dir
    languages = Counter(article.language for article in articles)
    total = sum(languages.values())
    for language, n in sorted(languages.items()):
        if n >= _MIN_LANGUAGE_SHARE * total and language in _wordfreq_languages():
            _frequencies(language)
    if settings.embeddings:
        embedder()


def warm_up_spelling(languages: Iterable[str]) -> None:
    """Import wordfreq and load the small lists typo correction checks words against (`Index._correct`): a start
    runs this in a thread once its index is loaded, so that neither the first answer nor the first question
    with an unknown word waits for it (0.2-0.3 s, on the event loop)."""
    for language in languages:
        if language in _wordfreq_languages():
            _wordfreq().zipf_frequency("a", language, "small")


def _wordfreq() -> ModuleType:
    """wordfreq, imported when first needed (see `warm_up_spelling`), not before a start can answer."""
    import wordfreq

    return wordfreq


# --- typo correction -------------------------------------------------------------


class Speller:
    """Spelling candidates among one segment's words (see `Index` for the choice among them).

    A word is misspelt when the knowledge base does not have it and it is not a
    common word of its language either (wordfreq's Zipf frequency under 3, i.e.
    rarer than once in a million words; its "small" lists hold exactly those and
    load in milliseconds): "cake" is not a typo for "take" merely because the
    knowledge base never mentions cakes. Only words of `min_length`+ letters are
    corrected; words of up to five letters allow one edit, longer ones two; the
    most frequent knowledge-base word at the fewest edits wins.

    Candidates come from a symmetric-deletion index (every word with one letter
    deleted; the SymSpell idea), which finds every single typo (insertion,
    deletion, substitution, transposition) in microseconds; rapidfuzz's
    Levenshtein distance then checks each candidate. The index holds CRC-32
    hashes of the deletions in one sorted array rather than the strings in a
    dict: a few megabytes instead of hundreds at 100,000 articles (a collision
    only adds a candidate that the distance check then drops), and, unlike
    Python's own string hash, the same in every process, so it can be saved.
    """

    def __init__(self, words: Sequence[str], min_length: int,
                 arrays: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        self.words = words
        self.min_length = min_length
        if arrays is not None:
            self.keys, self.positions = arrays
            return
        hashes, positions = array("q"), array("i")
        for position, word in enumerate(words):
            word = utils.default_process(word)
            if len(word) >= min_length - 1:
                variants = _deletions(word)
                hashes.extend(map(zlib.crc32, map(str.encode, variants)))
                positions.extend([position] * len(variants))
        keys = np.frombuffer(hashes, dtype=np.int64)
        by_key = np.argsort(keys, kind="stable")
        self.keys = keys[by_key]
        self.positions = np.frombuffer(positions, dtype=np.int32)[by_key]

    def candidates(self, query: str, max_edits: int) -> Iterator[tuple[int, str, str]]:
        """(edits, word, word as rapidfuzz compares it) of every word within `max_edits` of `query`."""
        wanted = np.fromiter(map(zlib.crc32, map(str.encode, _deletions(query))), dtype=np.int64)
        lows = np.searchsorted(self.keys, wanted, "left")
        highs = np.searchsorted(self.keys, wanted, "right")
        found = {int(p) for low, high in zip(lows, highs, strict=True) for p in self.positions[low:high]}
        for position in found:
            word = utils.default_process(self.words[position])
            distance = Levenshtein.distance(query, word, score_cutoff=max_edits)
            if distance <= max_edits:
                yield distance, self.words[position], word


def _wordfreq_languages() -> frozenset[str]:
    """The languages wordfreq has a list for: the names of its data files, read as its `available_languages()`
    reads them but without importing it (a test checks that the two agree)."""
    return _once("wordfreq languages", lambda: frozenset(
        path.name.split(".")[0].split("_")[1] for path in (_package_dir("wordfreq") / "data").glob("*.msgpack.gz")
        if path.name.split("_")[0] in ("small", "large")))


def _deletions(word: str) -> set[str]:
    """The word itself and every string made by deleting one of its letters."""
    return {word, *(word[:i] + word[i + 1 :] for i in range(len(word)))}


# --- tokenising and BM25 ---------------------------------------------------------


@dataclass(slots=True)
class _Counts:
    """How often each surface word (lower-cased, as `text.words` gives it) occurs in each article."""

    words: list[str]  # surface vocabulary, by column
    total: sparse.csr_matrix  # articles x words: occurrences in title, body and topics
    weighted: sparse.csr_matrix | None  # the same with title words counted `title_repeats` times, for BM25


def _count_words(articles: Sequence[Article], title_repeats: int) -> _Counts:
    """Every article's words as columns of one vocabulary, in two sparse count matrices.

    Ids rather than strings per word and no per-article containers: 100,000
    articles hold some 7 million words, and lists of them would cost gigabytes
    and long garbage-collector pauses (which hold the GIL and stall the bot).
    """
    vocabulary: dict[str, int] = {}
    title_ids, body_ids = array("i"), array("i")
    title_lengths, body_lengths = array("q"), array("q")
    for article in articles:
        title = text.words(article.title)
        body = text.words(article.body)
        for topic in article.topics:
            body += text.words(topic)
        for found, ids, lengths in ((title, title_ids, title_lengths), (body, body_ids, body_lengths)):
            for word in set(found).difference(vocabulary):
                vocabulary[word] = len(vocabulary)
            ids.extend(map(vocabulary.__getitem__, found))
            lengths.append(len(found))
    shape = (len(articles), len(vocabulary))

    def matrix(ids: array, lengths: array) -> sparse.csr_matrix:
        counts = np.frombuffer(lengths, dtype=np.int64)
        pointers = np.concatenate(([0], np.cumsum(counts)))
        result = sparse.csr_matrix(
            (np.ones(len(ids), dtype=np.float32), np.frombuffer(ids, dtype=np.int32), pointers), shape=shape
        )
        result.sum_duplicates()
        return result

    title = matrix(title_ids, title_lengths)
    del title_ids
    total = (title + matrix(body_ids, body_lengths)).tocsr()
    del body_ids
    weighted = (total + title * (title_repeats - 1)).tocsr() if title_repeats != 1 else total
    return _Counts(list(vocabulary), total, weighted)


def _stem_in_chunks(words: list[str], language: str) -> list[str]:
    """`text.stem_words`, a few thousand words per call: one call over a whole vocabulary holds the GIL for
    tens of milliseconds, a stall for the answers a reload must not hold up."""
    stems: list[str] = []
    for start in range(0, len(words), _STEM_CHUNK):
        stems += text.stem_words(words[start : start + _STEM_CHUNK], language)
    return stems


def _term_frequencies(counts: _Counts, languages: Sequence[str]) -> tuple[dict[str, int], sparse.csc_matrix]:
    """(stemmed term -> column, articles x terms: each term's occurrences, title words counted again).

    `languages[i]` is article i's: its words are stemmed and stop-listed in that language. Built with
    whole-array numpy and scipy operations, which release the GIL and need no per-article Python objects.
    """
    vocabulary: dict[str, int] = {}
    weighted = counts.weighted
    assert weighted is not None
    per_language: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    language_of = np.asarray(languages)
    for language in sorted(set(languages)):
        rows = np.flatnonzero(language_of == language)
        found = weighted.indices if len(rows) == weighted.shape[0] else weighted[rows].indices
        used = np.flatnonzero(np.bincount(found, minlength=weighted.shape[1]))
        stop = text.stopwords(language)
        kept = np.asarray([i for i in used.tolist() if counts.words[i] not in stop], dtype=np.int64)
        stems = _stem_in_chunks([counts.words[i] for i in kept.tolist()], language)
        terms = np.asarray([vocabulary.setdefault(stem, len(vocabulary)) for stem in stems], dtype=np.int64)
        per_language.append((rows, kept, terms))
    n_docs, n_terms = weighted.shape[0], max(len(vocabulary), 1)
    tf: sparse.csr_matrix | None = None
    for rows, kept, terms in per_language:
        word_to_term = sparse.csr_matrix(
            (np.ones(len(kept), dtype=np.float32), (kept, terms)), shape=(weighted.shape[1], n_terms)
        )
        if len(per_language) > 1:  # only this language's articles
            part = sparse.diags(np.isin(np.arange(n_docs), rows).astype(np.float32)) @ weighted @ word_to_term
        else:
            part = weighted @ word_to_term
        tf = part if tf is None else tf + part
    assert tf is not None
    postings = tf.tocsc()
    del tf
    postings.sum_duplicates()
    postings.eliminate_zeros()
    return vocabulary, postings


@dataclass(slots=True)
class _Segment:
    """Articles indexed together, immutable once built: a whole knowledge base, or the articles changed since.

    It holds counts rather than BM25 weights (which depend on every article through the document
    frequencies and the average length), so that segments combine: see `Index`.
    """

    ids: list[str]  # article ids, sorted, by row
    row_languages: list[str]  # by row
    vocabulary: dict[str, int]  # stemmed term -> column of `tf`
    tf: sparse.csc_matrix  # articles x terms: occurrences, title words counted `title_repeats` times
    lengths: np.ndarray  # per article: its BM25 length, the sum of its row of `tf`
    words: dict[str, int]  # surface word -> occurrences in title, body and topics (the speller's vocabulary)
    counts: sparse.csr_matrix | None = None  # articles x `words`: occurrences, to take an article's share out
    speller: Speller | None = None
    vectors: np.ndarray | None = None  # per article, its embedding (float16)
    pool: tuple[list[str], np.ndarray] = ([], np.zeros(0, dtype=np.int64))  # the probes' words, sorted, and counts

    @classmethod
    def build(cls, articles: list[Article], settings: Settings) -> _Segment:
        counts = _count_words(articles, settings.title_repeats)
        languages = [a.language for a in articles]
        vocabulary, tf = _term_frequencies(counts, languages)
        counts.weighted = None  # memory: only the embeddings need counts from here on
        lengths = np.asarray(tf.sum(axis=1), dtype=np.float32).ravel()
        frequencies = np.asarray(counts.total.sum(axis=0), dtype=np.int64).ravel()
        words = dict(zip(counts.words, frequencies.tolist(), strict=True))
        segment = cls([a.id for a in articles], languages, vocabulary, tf, lengths, words, counts.total)
        segment.speller = Speller(counts.words, settings.typo_min_length)
        if settings.embeddings:
            segment.vectors = embedder().embed_counts(counts.total, counts.words)
        pool = sorted((w, n) for w, n in words.items() if _in_pool(w))
        segment.pool = [w for w, _ in pool], np.fromiter((n for _, n in pool), dtype=np.int64, count=len(pool))
        return segment

    def share(self, rows: np.ndarray) -> _Segment:
        """What the articles at `rows` contribute to the statistics (document frequencies, lengths, word counts),
        taken from this segment's own counts, so that it can be subtracted when they are masked."""
        assert self.counts is not None
        occurrences = np.asarray(self.counts[rows].sum(axis=0), dtype=np.int64).ravel()
        used = np.flatnonzero(occurrences)
        words = list(self.words)
        return _Segment([self.ids[i] for i in rows.tolist()], [self.row_languages[i] for i in rows.tolist()],
                        self.vocabulary, self.tf[rows].tocsc(), self.lengths[rows],
                        dict(zip([words[i] for i in used.tolist()], occurrences[used].tolist(), strict=True)))

    @property
    def languages(self) -> Counter[str]:
        return Counter(self.row_languages)

    def df(self, term: str) -> int:
        column = self.vocabulary.get(term)
        return 0 if column is None else int(self.tf.indptr[column + 1] - self.tf.indptr[column])

    def add_scores(self, out: np.ndarray, term: str, idf: np.floating, norms: np.ndarray) -> None:
        """Add each article's BM25 score for `term`: idf * tf / (tf + k1 * (1 - b + b * length / average))."""
        column = self.vocabulary.get(term)
        if column is None:
            return
        start, end = self.tf.indptr[column], self.tf.indptr[column + 1]
        rows, tf = self.tf.indices[start:end], self.tf.data[start:end]
        out[rows] += tf * idf / (norms[rows] + tf)


def _joined(strings: list[str]) -> np.ndarray:
    """Words or terms (which never hold a line break) as one array of UTF-8 bytes."""
    return np.frombuffer("\n".join(strings).encode(), dtype=np.uint8)


def _split_joined(joined: np.ndarray) -> list[str]:
    if joined.dtype != np.uint8:
        raise ValueError("expected bytes")
    return joined.tobytes().decode().split("\n") if len(joined) else []


def _in_pool(word: str) -> bool:
    """Whether a knowledge-base word may fill a probe question's slot."""
    return word.isalpha() and len(word) > 3


# --- the index -------------------------------------------------------------------


@cache
def _probe_lines() -> dict[str, list[str]]:
    """Off-topic probe questions by language; `{}` marks where a knowledge-base word goes."""
    probes: dict[str, list[str]] = {}
    language = "en"
    for line in resources.files("bot").joinpath("probes.txt").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            language = line[1:-1]
            continue
        probes.setdefault(language, []).append(line)
    return probes


DELTA_LIMIT = 1000  # articles changed since the last full build beyond which `Index.updated` rebuilds


@dataclass(slots=True)
class Index:
    """The articles of a knowledge base, ranked by BM25 fused with embeddings, with calibrated confidence.

    Built whole (`build`), then kept up to date by `updated`: the big segment built
    whole stays as it is, its replaced and removed articles are masked, and the
    articles added or changed since form a small delta segment, rebuilt on each
    update. BM25 weights are computed at question time from counts (document
    frequencies = whole - masked + delta, and the average length likewise), the
    speller chooses by the same combined word counts, embeddings are per article,
    and the probes are asked again of the combined index: so an updated index
    answers exactly as one built whole from the same articles would.
    """

    kb: KnowledgeBase
    settings: Settings = DEFAULT_SETTINGS
    _base: _Segment | None = None  # built whole
    _masked: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # rows of _base replaced/removed
    _removed: _Segment | None = None  # the masked articles' statistics, subtracted
    _delta: _Segment | None = None  # articles added or changed since _base was built
    _size: int = 0
    _norms: tuple[np.ndarray, ...] = ()  # per segment (base, delta): k1 * (1 - b + b * length / average length)
    _idf_scale: float = 1.0  # idf of a term found in one article: puts BM25 in the same units at any size
    _languages: frozenset[str] = frozenset()
    _probe_scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    _thresholds: tuple[float, float] = (0.0, 0.0)  # raw scores at FOUND and at SURE
    _faq_choices: list[str] = field(default_factory=list)
    _faq_entries: list[FaqEntry] = field(default_factory=list)

    @classmethod
    def build(cls, kb: KnowledgeBase, settings: Settings = DEFAULT_SETTINGS) -> Index:
        """Tokenise, index, embed and calibrate; CPU-bound, so the bot calls it in a worker thread."""
        articles = sorted(kb.articles.values(), key=lambda a: a.id)
        base = _Segment.build(articles, settings) if articles else None
        return cls._assemble(kb, settings, base)

    @classmethod
    def _assemble(cls, kb: KnowledgeBase, settings: Settings, base: _Segment | None,
                  masked: np.ndarray | None = None, delta: _Segment | None = None,
                  calibration: tuple[np.ndarray, tuple[float, float]] | None = None) -> Index:
        """The index over these segments, with its combined statistics; calibrated unless `calibration` is given."""
        index = cls(kb=kb, settings=settings, _base=base, _delta=delta)
        index._faq_entries = [entry for entry in kb.faq for _ in entry.questions]
        index._faq_choices = [utils.default_process(q) for entry in kb.faq for q in entry.questions]
        if base is None:
            return index
        if masked is not None and len(masked):
            index._masked = masked
            index._removed = base.share(masked)
        parts = index._parts()
        index._size = sum(sign * len(part.ids) for part, sign in parts)
        if not index._size:
            return index
        # A question is read in one of the knowledge base's main languages; one stray
        # article detected as, say, Nigerian Pidgin must not make English questions ambiguous.
        languages: Counter[str] = Counter()
        for part, sign in parts:
            for language, n in part.languages.items():
                languages[language] += sign * n
        index._languages = frozenset(
            language for language, n in languages.items() if n >= _MIN_LANGUAGE_SHARE * index._size
        ) or frozenset({max(sorted(languages), key=languages.__getitem__)})
        total = sum(sign * float(part.lengths.sum(dtype=np.float64)) for part, sign in parts)
        average = total / index._size or 1.0
        k1, b = settings.k1, settings.b
        index._norms = tuple((k1 * ((1 - b) + b * part.lengths.astype(np.float64) / average)).astype(np.float32)
                             for part in (base, delta) if part is not None)
        index._idf_scale = math.log(1 + (index._size - 1 + 0.5) / (1 + 0.5))
        if calibration is None:
            index._calibrate()
        else:
            index._probe_scores, index._thresholds = calibration
        return index

    def updated(self, kb: KnowledgeBase, changes: Changes, limit: int = DELTA_LIMIT) -> Index:
        """The index of `kb`, which differs from this one's knowledge base by `changes`.

        Only the articles changed since the last full build are indexed (in a delta segment);
        once they are more than `limit`, everything is built again.
        """
        base = self._base
        if base is None:
            return Index.build(kb, self.settings)
        gone = set(changes.updated) | set(changes.removed)
        delta_ids = set(self._delta.ids) if self._delta is not None else set()
        delta_ids = (delta_ids - set(changes.removed)) | set(changes.added) | set(changes.updated)
        base_ids = base.ids
        masked = set(self._masked.tolist())
        for article_id in gone | set(changes.added):  # an added id may have been removed from the base before
            row = bisect_left(base_ids, article_id)
            if row < len(base_ids) and base_ids[row] == article_id:
                masked.add(row)
        if len(delta_ids) + len(masked) > limit:
            return Index.build(kb, self.settings)
        delta = _Segment.build([kb.articles[i] for i in sorted(delta_ids)], self.settings) if delta_ids else None
        return Index._assemble(kb, self.settings, base, np.asarray(sorted(masked), dtype=np.int64), delta)

    # --- saving ---

    def to_arrays(self) -> dict[str, np.ndarray] | None:
        """The index as plain arrays (for `bot.index_cache`); None unless it was built whole."""
        base = self._base
        if base is None or self._delta is not None or self._removed is not None or base.speller is None:
            return None
        assert base.counts is not None
        arrays = {
            "ids": _joined(base.ids), "languages": _joined(base.row_languages), "terms": _joined(list(base.vocabulary)),
            "tf_data": base.tf.data, "tf_indices": base.tf.indices, "tf_indptr": base.tf.indptr,
            "lengths": base.lengths, "words": _joined(list(base.words)),
            "counts_data": base.counts.data, "counts_indices": base.counts.indices, "counts_indptr": base.counts.indptr,
            "speller_keys": base.speller.keys, "speller_positions": base.speller.positions,
            "pool_words": _joined(base.pool[0]), "pool_counts": base.pool[1],
            "probe_scores": self._probe_scores, "thresholds": np.asarray(self._thresholds, dtype=np.float64),
        }
        if base.vectors is not None:
            arrays["vectors"] = base.vectors
        return arrays

    @classmethod
    def from_arrays(cls, kb: KnowledgeBase, settings: Settings, arrays: Mapping[str, np.ndarray],
                    changes: Changes) -> Index:
        """The index of `kb` from what `to_arrays` saved for a knowledge base that differs from it by `changes`
        (then updated as by `updated`); ValueError or KeyError when the arrays do not fit together."""
        ids, languages, terms, words, pool_words = (
            _split_joined(arrays[name]) for name in ("ids", "languages", "terms", "words", "pool_words"))
        if not ids:
            return cls.build(kb, settings)
        tf = sparse.csc_matrix((arrays["tf_data"], arrays["tf_indices"], arrays["tf_indptr"]),
                               shape=(len(ids), len(terms)))
        counts = sparse.csr_matrix((arrays["counts_data"], arrays["counts_indices"], arrays["counts_indptr"]),
                                   shape=(len(ids), len(words)))
        for matrix in (tf, counts):
            matrix.check_format(full_check=True)
        lengths, pool_counts = arrays["lengths"], arrays["pool_counts"]
        vectors = arrays["vectors"] if settings.embeddings else None
        keys, positions = arrays["speller_keys"], arrays["speller_positions"]
        if (lengths.shape != (len(ids),) or len(languages) != len(ids) or tf.dtype != np.float32
                or counts.dtype != np.float32 or pool_counts.shape != (len(pool_words),)
                or keys.shape != positions.shape
                or (len(positions) and not 0 <= positions.min() <= positions.max() < len(words))
                or (vectors is not None and vectors.shape[0] != len(ids))
                or ids != sorted(set(ids))):
            raise ValueError("the saved arrays do not fit together")
        occurrences = np.asarray(counts.sum(axis=0), dtype=np.int64).ravel()
        base = _Segment(ids, languages, {term: i for i, term in enumerate(terms)}, tf, lengths,
                        dict(zip(words, occurrences.tolist(), strict=True)), counts,
                        Speller(words, settings.typo_min_length, (keys, positions)), vectors,
                        (pool_words, pool_counts))
        found, sure = arrays["thresholds"].tolist()
        calibration = (arrays["probe_scores"], (found, sure))
        if not changes:
            return cls._assemble(kb, settings, base, calibration=calibration)
        return cls._assemble(KnowledgeBase(), settings, base, calibration=calibration).updated(kb, changes)

    def _parts(self) -> list[tuple[_Segment, int]]:
        """Every segment with the sign its statistics count with."""
        parts = [(self._base, 1), (self._removed, -1), (self._delta, 1)]
        return [(part, sign) for part, sign in parts if part is not None]

    def __len__(self) -> int:
        return self._size

    def _article(self, row: int) -> Article:
        """The article at `row` of the base followed by the delta."""
        assert self._base is not None
        size = len(self._base.ids)
        ids = self._base.ids if row < size else self._delta.ids  # type: ignore[union-attr]
        return self.kb.articles[ids[row if row < size else row - size]]

    # --- ranking ---

    def parse(self, query: str) -> tuple[str, str, tuple[str, ...]]:
        """(language, corrected text, stemmed terms): the question as the index sees it."""
        language, corrected, terms, _ = self._parse(query)
        return language, corrected, terms

    def _parse(self, query: str) -> tuple[str, str, tuple[str, ...], tuple[float, ...]]:
        language = text.detect_language(query, self._languages or None)
        stop = text.stopwords(language)
        raw = text.words(query)
        corrected = [self._correct(w, language) for w in raw] if self._size else raw
        content = [w for w in corrected if w not in stop]
        terms = text.stem_words(content, language)
        weights = tuple(information(w, language) for w in content)
        return language, " ".join(corrected), tuple(terms), weights

    def _count(self, word: str) -> int:
        """Occurrences of a surface word in the knowledge base."""
        return sum(sign * part.words.get(word, 0) for part, sign in self._parts())

    def _correct(self, word: str, language: str) -> str:
        """The word, or the knowledge-base word it misspells (see `Speller`)."""
        if len(word) < self.settings.typo_min_length or not word.isalpha() or self._count(word) > 0:
            return word
        if language in _wordfreq_languages() and _wordfreq().zipf_frequency(word, language, "small") >= _COMMON_ZIPF:
            return word
        query = utils.default_process(word)
        max_edits = 1 if len(query) <= 5 else 2
        best = min(
            (
                (distance, -count, raw, processed)
                for part in (self._base, self._delta) if part is not None and part.speller is not None
                for distance, raw, processed in part.speller.candidates(query, max_edits)
                if (count := self._count(raw)) > 0
            ),
            default=None,
        )
        return best[3] if best else word

    def _scores(self, terms: Sequence[str]) -> np.ndarray | None:
        """BM25 score of every row (base, then delta) for these terms; None when no article holds any of them."""
        assert self._base is not None
        parts = self._parts()
        segments = [part for part in (self._base, self._delta) if part is not None]
        outs = [np.zeros(len(part.ids), dtype=np.float32) for part in segments]
        known = False
        for term in terms:  # a repeated term counts again
            df = sum(sign * part.df(term) for part, sign in parts)
            if df <= 0:
                continue
            known = True
            idf = np.float32(math.log(1 + (self._size - df + 0.5) / (df + 0.5)))
            for part, out, norms in zip(segments, outs, self._norms, strict=True):
                part.add_scores(out, term, idf, norms)
        if not known:
            return None
        outs[0][self._masked] = 0.0
        return np.concatenate(outs) if len(outs) > 1 else outs[0]

    def _vectors(self, rows: np.ndarray) -> np.ndarray | None:
        base, delta = self._base, self._delta
        if base is None or base.vectors is None:
            return None
        size = len(base.ids)
        if delta is None or delta.vectors is None:
            return base.vectors[rows]
        return np.concatenate((base.vectors[rows[rows < size]], delta.vectors[rows[rows >= size] - size]))

    def rank(self, query: str, k: int = 10) -> Ranking:
        """The best `k` candidates for `query`, fused and with their raw evidence."""
        if not self._size or not query.strip():
            return Ranking(query, "en", (), (), 0.0)
        language, corrected, terms, weights = self._parse(query)
        kind = text.question_kind(query, language)
        scores = self._scores(terms)
        if scores is None:
            return Ranking(query, language, terms, (), 0.0, weights, kind)
        depth = min(max(k, self.settings.rerank_depth), len(scores))
        top = np.argpartition(-scores, depth - 1)[:depth] if depth < len(scores) else np.arange(len(scores))
        top = np.sort(top[scores[top] > 0])  # base rows, then delta rows
        if not len(top):
            return Ranking(query, language, terms, (), 0.0, weights, kind)
        articles = [self._article(row) for row in top.tolist()]
        by_id = sorted(range(len(top)), key=lambda i: articles[i].id)
        vectors = self._vectors(top)
        top, articles = top[by_id], [articles[i] for i in by_id]
        bm25 = scores[top].astype(np.float64)
        if vectors is not None:
            query_vector = embedder().embed_one(corrected).astype(np.float64)
            cosine = (vectors[by_id].astype(np.float64) * query_vector).sum(axis=1)
            w = self.settings.bm25_weight
            fused = w * bm25 / bm25.max() + (1 - w) * cosine
        else:
            cosine = np.zeros(len(top))
            fused = bm25 / bm25.max()
        # Candidates are in id order here, so a stable sort gives ties to the lower id.
        order = np.argsort(-fused, kind="stable")[:k]
        candidates = tuple(
            Candidate(articles[i], float(fused[i]), float(bm25[i]), float(cosine[i])) for i in order
        )
        first = candidates[0]
        raw = first.bm25 / self._idf_scale + self.settings.cosine_in_confidence * first.cosine
        return Ranking(query, language, terms, candidates, raw, weights, kind)

    def search(self, query: str, k: int = 10) -> list[Hit]:
        """The best `k` articles for `query`, best first; [] for an empty query or knowledge base."""
        return [Hit(c.article, c.score) for c in self.rank(query, k).candidates]

    # --- confidence ---

    def _pool(self) -> tuple[list[str], list[int]]:
        """The words that fill the probes' slots, sorted, with the running total of their occurrences.

        The base's pool adjusted by the masked and the delta articles' words: the pool of the same
        articles indexed whole.
        """
        assert self._base is not None
        words, counts = self._base.pool
        adjust: Counter[str] = Counter()
        for part, sign in self._parts()[1:]:
            for word, n in part.words.items():
                if _in_pool(word):
                    adjust[word] += sign * n
        if adjust:
            counts = counts.copy()
            new: list[tuple[str, int]] = []
            for word, n in adjust.items():
                row = bisect_left(words, word)
                if row < len(words) and words[row] == word:
                    counts[row] += n
                elif n > 0:
                    new.append((word, n))
            kept = counts > 0
            words = list(itertools.compress(words, kept.tolist())) if not kept.all() else list(words)
            counts = counts[kept]
            new.sort()
            rows = [bisect_left(words, word) for word, _ in new]
            for row, (word, _) in reversed(list(zip(rows, new, strict=True))):
                words.insert(row, word)
            counts = np.insert(counts, rows, [n for _, n in new]) if new else counts
        return words, np.cumsum(counts).tolist()

    def _calibrate(self) -> None:
        """Score the off-topic probes against this very index (see the module docstring)."""
        probes = _probe_lines()
        rng = random.Random(0)
        # Words drawn as often as they occur, so that common words are the usual incidental overlap.
        words, running = self._pool()
        questions: list[str] = []
        for language in sorted(self._languages):
            for line in probes.get(language, probes["en"]):
                if "{}" not in line:
                    questions.append(line)
                elif words:
                    fills = rng.choices(words, cum_weights=running, k=_PROBE_SLOTS)
                    questions.extend(line.replace("{}", word, 1) for word in fills)
        raws = [self.rank(q, 1).raw_confidence for q in questions]
        self._probe_scores = np.sort(np.asarray(raws, dtype=np.float64))
        found = float(np.quantile(self._probe_scores, _PROBE_QUANTILE_FOUND))
        sure = float(np.quantile(self._probe_scores, _PROBE_QUANTILE_SURE))
        self._thresholds = (found, max(sure, found * 1.25, found + 1e-6))

    def judge(self, ranking: Ranking) -> Judgement:
        """The confidence in the best candidate of `ranking` (see the module docstring) and its sentences."""
        if not ranking.candidates:
            return Judgement(0.0, (), 0.0)
        best = ranking.candidates[0]
        sentences = self.best_sentences(best.article, ranking)
        coverage = self.coverage(ranking, best.article, sentences)
        intercept, w_probe, w_coverage, w_cosine = _EVIDENCE_WEIGHTS
        z = intercept + w_probe * self.confidence(ranking.raw_confidence) + w_coverage * coverage \
            + w_cosine * best.cosine
        return Judgement(1.0 / (1.0 + math.exp(-z)), sentences, coverage)

    def confidence(self, raw: float) -> float:
        """Map a raw score to 0..1: below FOUND by the share of probes it beats, FOUND and SURE at the
        probes' quantiles, approaching 1 beyond."""
        probes = self._probe_scores
        if raw <= 0 or not len(probes):
            return 0.0
        found, sure = self._thresholds
        if raw < found:
            share = int(np.searchsorted(probes, raw)) / len(probes)
            return FOUND * min(share / _PROBE_QUANTILE_FOUND, 1.0 - 1e-9)
        if raw < sure:
            return FOUND + (SURE - FOUND) * (raw - found) / (sure - found)
        return 1.0 - (1.0 - SURE) * math.exp(-(raw - sure) / (sure - found))

    # --- FAQ ---

    def match_faq(self, question: str) -> FaqMatch | None:
        """The curated entry whose phrasing is closest to `question`, if it is close enough."""
        if not self._faq_choices:
            return None
        best = process.extractOne(
            utils.default_process(question), self._faq_choices, scorer=_faq_similarity,
            processor=None, score_cutoff=self.settings.faq_threshold,
        )
        if best is None:
            return None
        _, score, position = best
        return FaqMatch(self._faq_entries[position], float(score))

    # --- sentences ---

    def best_sentences(self, article: Article, ranking: Ranking, limit: int = 2) -> tuple[str, ...]:
        """The sentence(s) of `article` that answer the ranked question, the answering one first.

        Each sentence scores the weights of the question terms it contains (how
        rare each word is in the language at large, so the same at any size of
        knowledge base; half as much for words of the title, which name the
        article's topic rather than answer within it), plus half the heaviest term's weight when it holds what
        the question asks for (a time for "when", a number for "how many", a
        name for "who"); a second sentence joins only when it adds question
        terms the first lacks. Ties go to the earlier sentence, usually the lead.
        """
        sentences = sentences_of(article)
        if not sentences:
            return ()
        title = _title_terms(article.title, article.language)
        weights = {t: w * _TITLE_TERM_SHARE if t in title else w for t, w in _term_weights(ranking).items()}
        sentence_terms = _sentence_terms(article.body, article.language)
        bonus = 0.5 * max(weights.values(), default=0.0)
        fits = [text.answers_kind(s, ranking.kind, article.language, sentence_terms[i])
                for i, s in enumerate(sentences)]

        def gain(i: int, covered: set[str]) -> float:
            return sum(w for t, w in weights.items() if t in sentence_terms[i] and t not in covered)

        first = max(range(len(sentences)), key=lambda i: (gain(i, set()) + bonus * fits[i], -i))
        chosen = [first]
        covered = sentence_terms[first] & weights.keys()
        if limit > 1 and gain(first, set()) > 0:
            second = max(range(len(sentences)), key=lambda i: (gain(i, covered), -i))
            if second != first and gain(second, covered) >= 0.5 * gain(first, set()):
                chosen.append(second)
        return tuple(sentences[i] for i in chosen)

    def coverage(self, ranking: Ranking, article: Article, sentences: Sequence[str]) -> float:
        """The share of the question's content, weighted by rarity in the language, that `sentences` and the
        title of `article` hold: 1.0 when every telling word of the question is there, whatever the size of
        the knowledge base."""
        weights = _term_weights(ranking)
        total = sum(weights.values())
        if not total:
            return 0.0
        found = set(_title_terms(article.title, article.language))
        wanted = set(sentences)
        for sentence, terms in zip(sentences_of(article), _sentence_terms(article.body, article.language),
                                   strict=True):
            if sentence in wanted:
                found |= terms
        return sum(w for t, w in weights.items() if t in found) / total


@lru_cache(maxsize=4096)
def _title_terms(title: str, language: str) -> frozenset[str]:
    return frozenset(text.terms(title, language))


def _term_weights(ranking: Ranking) -> dict[str, float]:
    """Each distinct question term's weight (the heaviest of the words that stem to it)."""
    weights: dict[str, float] = {}
    for term, weight in zip(ranking.terms, ranking.weights, strict=False):
        weights[term] = max(weight, weights.get(term, 0.0))
    return weights


_INFORMATION_CEILING = 7.0  # Zipf 7 = once in 10 words ("the"); a word never seen has Zipf 0


def information(word: str, language: str) -> float:
    """How much a word tells, by how rare it is in the language at large (wordfreq): 7 minus its Zipf
    frequency, so "the" says nothing, "weather" about 2, a name never seen 7. Languages wordfreq lacks
    (Kazakh) give every word the same weight."""
    if language not in _wordfreq_languages():
        return 1.0
    frequency = _frequencies(language).get(word, 0.0)
    zipf = max(math.log10(frequency) + 9, 0.0) if frequency else 0.0
    return max(_INFORMATION_CEILING - zipf, 0.0)


_frequencies_dir: Path | None = None  # where word-frequency tables are kept (set by `warm_up`); None: wordfreq's dict


def _frequencies(language: str) -> word_frequencies.Frequencies | dict[str, float]:
    """wordfreq's own table (word -> frequency): a lookup rather than its per-call tokenizer, which cost a third
    of a millisecond per question."""
    return _once(("frequencies", language), lambda: word_frequencies.load(language, _frequencies_dir))


def _faq_similarity(question: str, phrasing: str, **_: object) -> float:
    """Edit similarity, forgiving reordered or extra words but not a single shared word.

    `token_set_ratio` alone is 100 whenever one side's words are a subset of the
    other's ("subscribe" against "how do I unsubscribe"); averaging it with the
    plain ratio keeps that forgiveness for paraphrases and drops it for fragments.
    """
    return (fuzz.ratio(question, phrasing) + fuzz.token_set_ratio(question, phrasing)) / 2


@lru_cache(maxsize=4096)
def _split(body: str, language: str) -> tuple[str, ...]:
    return tuple(text.split_sentences(body, language))


@lru_cache(maxsize=4096)
def _sentence_terms(body: str, language: str) -> tuple[frozenset[str], ...]:
    return tuple(frozenset(text.terms(s, language)) for s in _split(body, language))


def sentences_of(article: Article) -> tuple[str, ...]:
    """The article's sentences, split once and cached for the articles asked about most."""
    return _split(article.body, article.language)
