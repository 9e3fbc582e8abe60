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

import logging
import math
import random
from array import array
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import wordfreq
from rapidfuzz import fuzz, process, utils
from rapidfuzz.distance import Levenshtein
from scipy import sparse

from bot import text
from bot.knowledge import Article, FaqEntry, KnowledgeBase

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

    WordLlama's own loader looks for its tokenizer under a path the wheel does not
    have and would go to the network; pointing `cache_dir` at the package loads it
    offline. Its package also calls `logging.basicConfig` on import, which would
    switch on INFO logging for the whole bot, so the root logger is restored.
    """

    def __init__(self) -> None:
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        try:
            import wordllama
        finally:
            root.handlers[:], root.level = handlers, level
        model = wordllama.WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True)
        self._tokenizer = model.tokenizer
        self._tokenizer.no_padding()  # WordLlama pads batches; padding tokens must not enter the mean
        self._vectors = np.ascontiguousarray(model.embedding, dtype=np.float32)

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
            rows = (counts[start : start + _EMBED_ROWS] @ word_tokens) @ self._vectors
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


@cache
def embedder() -> Embedder:
    """Loaded once per process (0.2 s); every index shares it."""
    return Embedder()


# --- typo correction -------------------------------------------------------------


class Speller:
    """Replace misspelt query words by the most frequent knowledge-base word within 1-2 edits.

    A word is misspelt when the knowledge base does not have it and it is not a
    common word of its language either (wordfreq's Zipf frequency under 3, i.e.
    rarer than once in a million words; its "small" lists hold exactly those and
    load in milliseconds): "cake" is not a typo for "take" merely because the
    knowledge base never mentions cakes. Only words of `min_length`+ letters are
    corrected; words of up to five letters allow one edit, longer ones two.

    Candidates come from a symmetric-deletion index (every word with one letter
    deleted; the SymSpell idea), which finds every single typo (insertion,
    deletion, substitution, transposition) in microseconds; rapidfuzz's
    Levenshtein distance then checks each candidate. The index holds the hashes
    of the deletions in one sorted array rather than the strings in a dict: a
    few megabytes instead of hundreds at 100,000 articles (a hash collision only
    adds a candidate that the distance check then drops).
    """

    def __init__(self, words: Sequence[str], counts: np.ndarray, min_length: int) -> None:
        self.known = dict(zip(words, counts.tolist(), strict=True))  # word -> occurrences in the knowledge base
        self.min_length = min_length
        order = sorted(range(len(words)), key=lambda i: (-self.known[words[i]], words[i]))
        self._words = [utils.default_process(words[i]) for i in order]
        hashes, positions = array("q"), array("i")
        for position, word in enumerate(self._words):
            if len(word) >= min_length - 1:
                variants = _deletions(word)
                hashes.extend(map(hash, variants))
                positions.extend([position] * len(variants))
        keys = np.frombuffer(hashes, dtype=np.int64)
        by_key = np.argsort(keys, kind="stable")
        self._keys = keys[by_key]
        self._positions = np.frombuffer(positions, dtype=np.int32)[by_key]

    def correct(self, word: str, language: str) -> str:
        if word in self.known or len(word) < self.min_length or not word.isalpha():
            return word
        if language in _wordfreq_languages() and wordfreq.zipf_frequency(word, language, "small") >= _COMMON_ZIPF:
            return word
        query = utils.default_process(word)
        max_edits = 1 if len(query) <= 5 else 2
        wanted = np.fromiter(map(hash, _deletions(query)), dtype=np.int64)
        lows = np.searchsorted(self._keys, wanted, "left")
        highs = np.searchsorted(self._keys, wanted, "right")
        positions = {int(p) for low, high in zip(lows, highs, strict=True) for p in self._positions[low:high]}
        best = min(
            (
                (distance, position)
                for position in positions
                if (distance := Levenshtein.distance(query, self._words[position], score_cutoff=max_edits))
                <= max_edits
            ),
            default=None,
        )
        return self._words[best[1]] if best else word


@cache
def _wordfreq_languages() -> frozenset[str]:
    return frozenset(wordfreq.available_languages())


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


@dataclass(frozen=True, slots=True)
class _Bm25:
    """Lucene BM25 (bm25s's default formula), precomputed per term and article in one sparse matrix.

    Built with whole-array numpy and scipy operations, which release the GIL and
    need no per-article Python objects.
    """

    vocabulary: dict[str, int]  # stemmed term -> column
    idf: np.ndarray  # per term
    postings: sparse.csc_matrix  # articles x terms: each term's BM25 weight in each article

    @classmethod
    def build(cls, counts: _Counts, languages: Sequence[str], settings: Settings) -> _Bm25:
        """`languages[i]` is article i's: its words are stemmed and stop-listed in that language."""
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
        lengths = np.asarray(tf.sum(axis=1), dtype=np.float32).ravel()
        postings = tf.tocsc()
        del tf
        postings.sum_duplicates()
        df = np.diff(postings.indptr)
        idf = np.log(1 + (n_docs - df + 0.5) / (df + 0.5))
        # score = idf * tf / (tf + k1 * (1 - b + b * length / average)), in place, in float32
        norm = settings.k1 * ((1 - settings.b) + settings.b * lengths / (lengths.mean() or 1.0))
        denominator = norm[postings.indices]
        denominator += postings.data
        postings.data *= np.repeat(idf.astype(np.float32), df)
        postings.data /= denominator
        return cls(vocabulary, idf, postings)

    def scores(self, term_ids: Sequence[int]) -> np.ndarray:
        """Each article's BM25 score for these terms (a repeated term counts again)."""
        postings = self.postings
        out = np.zeros(postings.shape[0], dtype=np.float32)
        for term in term_ids:
            start, end = postings.indptr[term], postings.indptr[term + 1]
            out[postings.indices[start:end]] += postings.data[start:end]
        return out


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


@dataclass(slots=True)
class Index:
    kb: KnowledgeBase
    settings: Settings = DEFAULT_SETTINGS
    _articles: list[Article] = field(default_factory=list)
    _bm25: _Bm25 | None = None
    _idf_scale: float = 1.0  # idf of a term found in one article: puts BM25 in the same units at any size
    _speller: Speller | None = None
    _vectors: np.ndarray | None = None
    _languages: frozenset[str] = frozenset()
    _probe_scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    _thresholds: tuple[float, float] = (0.0, 0.0)  # raw scores at FOUND and at SURE
    _faq_choices: list[str] = field(default_factory=list)
    _faq_entries: list[FaqEntry] = field(default_factory=list)

    @classmethod
    def build(cls, kb: KnowledgeBase, settings: Settings = DEFAULT_SETTINGS) -> Index:
        """Tokenise, index, embed and calibrate; CPU-bound, so the bot calls it in a worker thread."""
        index = cls(kb=kb, settings=settings)
        index._articles = sorted(kb.articles.values(), key=lambda a: a.id)
        index._faq_entries = [entry for entry in kb.faq for _ in entry.questions]
        index._faq_choices = [utils.default_process(q) for entry in kb.faq for q in entry.questions]
        if not index._articles:
            return index
        # A question is read in one of the knowledge base's main languages; one stray
        # article detected as, say, Nigerian Pidgin must not make English questions ambiguous.
        languages = Counter(a.language for a in index._articles)
        index._languages = frozenset(
            language for language, n in languages.items() if n >= _MIN_LANGUAGE_SHARE * len(index._articles)
        ) or frozenset({languages.most_common(1)[0][0]})
        counts = _count_words(index._articles, settings.title_repeats)
        index._bm25 = _Bm25.build(counts, [a.language for a in index._articles], settings)
        counts.weighted = None  # memory: only the embeddings need counts from here on
        n_docs = len(index._articles)
        index._idf_scale = math.log(1 + (n_docs - 1 + 0.5) / (1 + 0.5))
        frequencies = np.asarray(counts.total.sum(axis=0), dtype=np.int64).ravel()
        index._speller = Speller(counts.words, frequencies, settings.typo_min_length)
        if settings.embeddings:
            index._vectors = embedder().embed_counts(counts.total, counts.words)
        del counts
        index._calibrate()
        return index

    def __len__(self) -> int:
        return len(self._articles)

    # --- ranking ---

    def parse(self, query: str) -> tuple[str, str, tuple[str, ...]]:
        """(language, corrected text, stemmed terms): the question as the index sees it."""
        language, corrected, terms, _ = self._parse(query)
        return language, corrected, terms

    def _parse(self, query: str) -> tuple[str, str, tuple[str, ...], tuple[float, ...]]:
        language = text.detect_language(query, self._languages or None)
        stop = text.stopwords(language)
        raw = text.words(query)
        corrected = [self._speller.correct(w, language) for w in raw] if self._speller else raw
        content = [w for w in corrected if w not in stop]
        terms = text.stem_words(content, language)
        weights = tuple(information(w, language) for w in content)
        return language, " ".join(corrected), tuple(terms), weights

    def rank(self, query: str, k: int = 10) -> Ranking:
        """The best `k` candidates for `query`, fused and with their raw evidence."""
        if not self._articles or self._bm25 is None or not query.strip():
            return Ranking(query, "en", (), (), 0.0)
        language, corrected, terms, weights = self._parse(query)
        kind = text.question_kind(query, language)
        vocabulary = self._bm25.vocabulary
        ids = [vocabulary[t] for t in terms if t in vocabulary]
        if not ids:
            return Ranking(query, language, terms, (), 0.0, weights, kind)
        scores = self._bm25.scores(ids)
        depth = min(max(k, self.settings.rerank_depth), len(scores))
        top = np.argpartition(-scores, depth - 1)[:depth] if depth < len(scores) else np.arange(len(scores))
        top = np.sort(top[scores[top] > 0])
        if not len(top):
            return Ranking(query, language, terms, (), 0.0, weights, kind)
        bm25 = scores[top].astype(np.float64)
        if self._vectors is not None:
            cosine = self._vectors[top].astype(np.float64) @ embedder().embed_one(corrected).astype(np.float64)
            w = self.settings.bm25_weight
            fused = w * bm25 / bm25.max() + (1 - w) * cosine
        else:
            cosine = np.zeros(len(top))
            fused = bm25 / bm25.max()
        # Articles are held in id order, so a stable sort gives ties to the lower id.
        order = np.argsort(-fused, kind="stable")[:k]
        candidates = tuple(
            Candidate(self._articles[top[i]], float(fused[i]), float(bm25[i]), float(cosine[i])) for i in order
        )
        first = candidates[0]
        raw = first.bm25 / self._idf_scale + self.settings.cosine_in_confidence * first.cosine
        return Ranking(query, language, terms, candidates, raw, weights, kind)

    def search(self, query: str, k: int = 10) -> list[Hit]:
        """The best `k` articles for `query`, best first; [] for an empty query or knowledge base."""
        return [Hit(c.article, c.score) for c in self.rank(query, k).candidates]

    # --- confidence ---

    def _calibrate(self) -> None:
        """Score the off-topic probes against this very index (see the module docstring)."""
        probes = _probe_lines()
        rng = random.Random(0)
        # Words drawn as often as they occur, so that common words are the usual incidental overlap.
        pool = sorted((w, n) for w, n in self._speller.known.items() if w.isalpha() and len(w) > 3)
        words, weights = [w for w, _ in pool], [n for _, n in pool]
        questions: list[str] = []
        for language in sorted(self._languages):
            for line in probes.get(language, probes["en"]):
                if "{}" not in line:
                    questions.append(line)
                elif words:
                    fills = rng.choices(words, weights, k=_PROBE_SLOTS)
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


@cache
def _frequencies(language: str) -> dict[str, float]:
    """wordfreq's own table (word -> frequency): a dict lookup rather than its per-call tokenizer, which
    cost a third of a millisecond per question."""
    return wordfreq.get_frequency_dict(language)


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
