"""The in-memory search index: which articles answer a question, and how sure we are.

Ranking is BM25 (bm25s; k1=0.9, b=0.9, title indexed twice) over Snowball-stemmed
terms in each article's own language, after correcting misspelt query words
against the knowledge base's vocabulary with rapidfuzz. The BM25 top 50 are then
re-ranked with a static sentence embedding (WordLlama, shipped inside its wheel),
which finds the articles that say the same thing in other words.

Confidence is calibrated, not raw: raw BM25 grows with the size of the knowledge
base (idf), so the same question scores very differently against one article
and against 100,000. At build time the index asks itself a fixed set of
off-topic probe questions (some carrying the knowledge base's own words, as a
real off-topic question often shares one incidental word) and maps a raw score
to the share of probes it beats: 0.5 (the answering threshold) means "beats
88% of the off-topic probes", 0.75 "beats 99%", whatever the size of the
knowledge base. The raw score is BM25 in units of the idf of a term found in one
article, plus a share of the embedding cosine, so that it also behaves alike at
both ends before calibration.
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

import bm25s
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
FOUND = 0.5  # calibrated confidence at which the bot answers (sure or unsure tier)
SURE = 0.75  # ... and at which it answers with one article only
_PROBE_QUANTILE_FOUND = 0.88  # the share of off-topic probes that FOUND refuses
_PROBE_QUANTILE_SURE = 0.99
_PROBE_SLOTS = 3  # knowledge-base words tried in each templated probe
_MIN_LANGUAGE_SHARE = 0.05  # a question is read in one of the languages of at least this share of articles
_COMMON_ZIPF = 3.0  # wordfreq: at least once per million words
_EMBED_BATCH = 16384


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

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One row per text, computed through each distinct whitespace-separated chunk once.

        No token spans a space, so a text's tokens are its chunks' tokens (a line
        break counts as a space); a news collection repeats its chunks so much that
        tokenizing the distinct ones is several times faster than the texts.
        """
        chunk_ids: dict[str, int] = {}
        cols = array("q")  # one machine integer per chunk occurrence: millions at 100,000 articles
        per_text = np.zeros(len(texts), dtype=np.int64)
        for row, value in enumerate(texts):
            chunks = value.split()
            per_text[row] = len(chunks)
            cols.extend(chunk_ids.setdefault(chunk, len(chunk_ids)) for chunk in chunks)
        out = np.zeros((len(texts), self._vectors.shape[1]), dtype=np.float32)
        if not chunk_ids:
            return out
        n_tokens = self._vectors.shape[0]
        token_ids, token_lengths = array("q"), array("q")
        distinct = list(chunk_ids)
        del chunk_ids
        for start in range(0, len(distinct), _EMBED_BATCH):  # tokenizer results are heavy: keep only the ids
            batch = distinct[start : start + _EMBED_BATCH]
            for encoding in self._tokenizer.encode_batch(batch, add_special_tokens=False):
                token_ids.extend(encoding.ids)
                token_lengths.append(len(encoding.ids))
        del distinct
        lengths = np.frombuffer(token_lengths, dtype=np.int64)
        tokens = sparse.csr_matrix(
            (np.ones(len(token_ids), dtype=np.float32),
             (np.repeat(np.arange(len(lengths)), lengths),
              np.clip(np.frombuffer(token_ids, dtype=np.int64), 0, n_tokens - 1))),
            shape=(len(lengths), n_tokens),
        )
        rows = np.repeat(np.arange(len(texts)), per_text)
        counts = sparse.csr_matrix(
            (np.ones(len(cols), dtype=np.float32), (rows, np.frombuffer(cols, dtype=np.int64))),
            shape=(len(texts), len(lengths)),
        )
        for start in range(0, len(texts), _EMBED_BATCH):
            out[start : start + _EMBED_BATCH] = (counts[start : start + _EMBED_BATCH] @ tokens) @ self._vectors
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out

    def embed_one(self, query: str) -> np.ndarray:
        """The same vector as `embed` gives (line breaks count as spaces), for one short text."""
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
    Levenshtein distance then checks each candidate.
    """

    def __init__(self, frequencies: Counter[str], min_length: int) -> None:
        self.frequencies = frequencies
        self.min_length = min_length
        self._words = [utils.default_process(w) for w in sorted(frequencies, key=lambda w: (-frequencies[w], w))]
        deletes: dict[str, list[int]] = {}
        for position, word in enumerate(self._words):
            if len(word) >= min_length - 1:
                for variant in _deletions(word):
                    deletes.setdefault(variant, []).append(position)
        self._deletes = deletes

    def correct(self, word: str, language: str) -> str:
        if word in self.frequencies or len(word) < self.min_length or not word.isalpha():
            return word
        if language in _wordfreq_languages() and wordfreq.zipf_frequency(word, language, "small") >= _COMMON_ZIPF:
            return word
        query = utils.default_process(word)
        max_edits = 1 if len(query) <= 5 else 2
        positions = {p for variant in _deletions(query) for p in self._deletes.get(variant, ())}
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
    _bm25: bm25s.BM25 | None = None
    _idf: dict[str, float] = field(default_factory=dict)
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
        surface: Counter[str] = Counter()
        vocabulary: dict[str, int] = {}
        corpus: list[list[int]] = []  # term ids (shared int objects), far lighter than term strings
        for article in index._articles:
            title_words = text.words(article.title)
            body_words = text.words(article.body)
            topic_words = [w for topic in article.topics for w in text.words(topic)]
            surface.update(title_words)
            surface.update(body_words)
            surface.update(topic_words)
            stop = text.stopwords(article.language)
            tokens = [w for w in title_words if w not in stop] * settings.title_repeats
            tokens += [w for w in body_words + topic_words if w not in stop]
            stems = text.stem_words(tokens, article.language)
            corpus.append([vocabulary.setdefault(t, len(vocabulary)) for t in stems])
        bm25 = bm25s.BM25(k1=settings.k1, b=settings.b)
        bm25.index((corpus, vocabulary), show_progress=False)
        index._bm25 = bm25
        n_docs = len(corpus)
        indptr = bm25.scores["indptr"]
        index._idf = {
            term: math.log(1 + (n_docs - df + 0.5) / (df + 0.5))
            for term, column in bm25.vocab_dict.items()
            if column + 1 < len(indptr) and (df := int(indptr[column + 1] - indptr[column])) > 0
        }
        index._idf_scale = math.log(1 + (n_docs - 1 + 0.5) / (1 + 0.5))
        index._speller = Speller(surface, settings.typo_min_length)
        if settings.embeddings:
            index._vectors = embedder().embed([f"{a.title}\n{a.body}" for a in index._articles])
        index._calibrate()
        return index

    def __len__(self) -> int:
        return len(self._articles)

    # --- ranking ---

    def parse(self, query: str) -> tuple[str, str, tuple[str, ...]]:
        """(language, corrected text, stemmed terms): the question as the index sees it."""
        language = text.detect_language(query, self._languages or None)
        stop = text.stopwords(language)
        raw = text.words(query)
        corrected = [self._speller.correct(w, language) for w in raw] if self._speller else raw
        terms = text.stem_words([w for w in corrected if w not in stop], language)
        return language, " ".join(corrected), tuple(terms)

    def rank(self, query: str, k: int = 10) -> Ranking:
        """The best `k` candidates for `query`, fused and with their raw evidence."""
        if not self._articles or self._bm25 is None or not query.strip():
            return Ranking(query, "en", (), (), 0.0)
        language, corrected, terms = self.parse(query)
        ids = self._bm25.get_tokens_ids(list(terms))
        if not ids:
            return Ranking(query, language, terms, (), 0.0)
        scores = self._bm25.get_scores(ids)
        depth = min(max(k, self.settings.rerank_depth), len(scores))
        top = np.argpartition(-scores, depth - 1)[:depth] if depth < len(scores) else np.arange(len(scores))
        top = np.sort(top[scores[top] > 0])
        if not len(top):
            return Ranking(query, language, terms, (), 0.0)
        bm25 = scores[top].astype(np.float64)
        if self._vectors is not None:
            cosine = (self._vectors[top] @ embedder().embed_one(corrected)).astype(np.float64)
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
        return Ranking(query, language, terms, candidates, raw)

    def search(self, query: str, k: int = 10) -> list[Hit]:
        """The best `k` articles for `query`, best first; [] for an empty query or knowledge base."""
        return [Hit(c.article, c.score) for c in self.rank(query, k).candidates]

    # --- confidence ---

    def _calibrate(self) -> None:
        """Score the off-topic probes against this very index (see the module docstring)."""
        probes = _probe_lines()
        rng = random.Random(0)
        # Words drawn as often as they occur, so that common words are the usual incidental overlap.
        pool = sorted((w, n) for w, n in self._speller.frequencies.items() if w.isalpha() and len(w) > 3)
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

    def best_sentences(self, article: Article, terms: Sequence[str], limit: int = 2) -> tuple[str, ...]:
        """The sentence(s) of `article` that answer a question with these stemmed terms, in article order.

        Each sentence scores the idf of the question terms it contains (BM25's
        saturation, with idf from the whole knowledge base so that rare words
        count most); a second sentence joins only when it adds question terms the
        first lacks. Ties go to the earlier sentence, which is usually the lead.
        """
        sentences = sentences_of(article)
        if not sentences:
            return ()
        weights = {t: self._idf.get(t, 0.0) for t in set(terms)}
        sentence_terms = _sentence_terms(article.body, article.language)

        def gain(i: int, covered: set[str]) -> float:
            return sum(w for t, w in weights.items() if t in sentence_terms[i] and t not in covered)

        first = max(range(len(sentences)), key=lambda i: (gain(i, set()), -i))
        chosen = [first]
        covered = sentence_terms[first] & weights.keys()
        if limit > 1 and gain(first, set()) > 0:
            second = max(range(len(sentences)), key=lambda i: (gain(i, covered), -i))
            if second != first and gain(second, covered) >= 0.5 * gain(first, set()):
                chosen.append(second)
        return tuple(sentences[i] for i in sorted(chosen))


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
