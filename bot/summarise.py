"""Extractive summaries: the article's own most central sentences, in article order.

TextRank (Mihalcea & Tarau, 2004) over stemmed terms: a sentence is central when
it shares words with many other central sentences. On BBC News it beats Lead-3
by a wide margin at a millisecond or two per article (``benchmarks/summaries.py``),
and it needs no model or downloaded data, so it works the same offline.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from bot.text import split_sentences, terms

SUMMARY_SENTENCES = 3
# Three long sentences make a wall of text in a chat; past this length two are enough.
MAX_SUMMARY_CHARS = 700
# Ranking is quadratic in sentences; a news summary lives near the top anyway.
MAX_CANDIDATES = 150
MIN_WORDS = 4
# The sentence splitter is not linear on long runs without a sentence end; a summary lives near the top anyway.
MAX_INPUT_CHARS = 10_000

_LETTER = re.compile(r"[^\W\d_]")
_LINK = re.compile(r"https?://|www\.")
_DOT_WORD = re.compile(r"\.\w")
_JUNK_START = re.compile(
    r"^(click here|read more|read also|see also|subscribe|follow us|share this|share on|photo:|image:|image copyright"
    r"|copyright|all rights reserved|advertisement|tags:|подробнее|читайте также|фото:)",
    re.IGNORECASE,
)
_END = re.compile(r"[.!?…\"'»”)]$")


def is_boilerplate(sentence: str) -> bool:
    """Sentences a reader should never get as a summary: menus, captions, shouting, links, stubs."""
    tokens = sentence.split()
    letters = _LETTER.findall(sentence)
    if len(tokens) < MIN_WORDS or len(letters) < len(sentence) / 2:
        return True
    if not any(ch.islower() for ch in letters):  # ALL CAPS banner
        return True
    if _LINK.search(sentence) or any(_is_address(t) for t in tokens) or _JUNK_START.match(sentence):
        return True
    return len(tokens) < 8 and not _END.search(sentence)  # a heading or caption, not a sentence


def _is_address(token: str) -> bool:
    """Something@somewhere.tld, in two linear scans: the one-regex form backtracks catastrophically on `a@a@a@…`."""
    at = token.find("@", 1)
    return at > 0 and _DOT_WORD.search(token, at + 2) is not None


def textrank(token_sets: Sequence[frozenset[str]], damping: float = 0.85, iterations: int = 40) -> np.ndarray:
    """Centrality of each sentence; similarity is shared terms over the log of both lengths, as in the paper."""
    n = len(token_sets)
    vocab: dict[str, int] = {}
    rows, cols = [], []
    for i, tokens in enumerate(token_sets):
        for token in tokens:
            rows.append(i)
            cols.append(vocab.setdefault(token, len(vocab)))
    incidence = np.zeros((n, max(len(vocab), 1)))
    incidence[rows, cols] = 1.0
    overlap = incidence @ incidence.T
    log_len = np.log(np.array([len(t) for t in token_sets], dtype=float) + 1.0)
    similarity = overlap / (log_len[:, None] + log_len[None, :] + 1e-9)
    np.fill_diagonal(similarity, 0.0)
    out = similarity.sum(axis=1, keepdims=True)
    transition = np.divide(similarity, out, out=np.zeros_like(similarity), where=out > 0)
    rank = np.full(n, 1.0 / n)
    for _ in range(iterations):
        rank = (1 - damping) / n + damping * (transition.T @ rank)
    return rank


def ranked(sentences: Sequence[str], language: str) -> list[int]:
    """Indices of the summary-worthy sentences, most central first; boilerplate and repeats left out."""
    candidates: list[int] = []
    token_sets: list[frozenset[str]] = []
    seen: set[str] = set()
    for index, sentence in enumerate(sentences[:MAX_CANDIDATES]):
        key = " ".join(sentence.lower().split())
        if key in seen or is_boilerplate(sentence):
            continue
        seen.add(key)
        tokens = frozenset(terms(sentence, language))
        if tokens:
            candidates.append(index)
            token_sets.append(tokens)
    if len(candidates) <= 1:
        return candidates
    rank = textrank(token_sets)
    return [candidates[i] for i in np.argsort(-rank, kind="stable")]


def select(sentences: Sequence[str], language: str, k: int = SUMMARY_SENTENCES) -> list[int]:
    """The k best sentences in article order, fewer when k of them would be too long to read in a chat."""
    best = ranked(sentences, language)[:k]
    while len(best) > 2 and sum(len(sentences[i]) + 1 for i in best) > MAX_SUMMARY_CHARS:
        best.pop()
    return sorted(best)


def _head(body: str) -> str:
    """The body up to MAX_INPUT_CHARS, cut after a whole paragraph or sentence so that no half sentence is chosen."""
    if len(body) <= MAX_INPUT_CHARS:
        return body
    head = body[:MAX_INPUT_CHARS]
    cut = max(head.rfind("\n\n"), *(head.rfind(end) for end in (". ", "! ", "? ")))
    return head[: cut + 1] if cut > 0 else head


def summarise(body: str, language: str, k: int = SUMMARY_SENTENCES) -> str:
    """Verbatim sentences of `body`; its first sentence when none qualifies (a caption-only item)."""
    sentences = split_sentences(_head(body), language)
    chosen = select(sentences, language, k)
    if not chosen:
        return sentences[0] if sentences else ""
    return " ".join(sentences[i] for i in chosen)
