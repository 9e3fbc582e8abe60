"""Language-aware text primitives shared by ingestion, summaries and search.

Everything here is a pure function over strings, so the summariser and the
ranker tokenise exactly alike and can be tested without any I/O.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Iterator
from functools import cache
from typing import TYPE_CHECKING, Literal

import sentencex
import Stemmer
from bm25s import stopwords as _bm25_stopwords

if TYPE_CHECKING:
    from py3langid.langid import LanguageIdentifier

# Snowball (PyStemmer) algorithm per ISO 639-1 code; languages not listed
# (Kazakh among them) are indexed unstemmed rather than stemmed wrongly.
STEMMERS = {
    "ar": "arabic", "ca": "catalan", "cs": "czech", "da": "danish", "de": "german",
    "el": "greek", "en": "english", "es": "spanish", "et": "estonian", "eu": "basque",
    "fi": "finnish", "fr": "french", "ga": "irish", "hu": "hungarian", "hy": "armenian",
    "id": "indonesian", "it": "italian", "lt": "lithuanian", "nl": "dutch", "no": "norwegian",
    "nb": "norwegian", "pl": "polish", "pt": "portuguese", "ro": "romanian", "ru": "russian",
    "sr": "serbian", "sv": "swedish", "tr": "turkish",
}

_STOPWORDS = {
    "en": _bm25_stopwords.STOPWORDS_EN, "ru": _bm25_stopwords.STOPWORDS_RUSSIAN,
    "de": _bm25_stopwords.STOPWORDS_GERMAN, "fr": _bm25_stopwords.STOPWORDS_FRENCH,
    "es": _bm25_stopwords.STOPWORDS_SPANISH, "it": _bm25_stopwords.STOPWORDS_ITALIAN,
    "pt": _bm25_stopwords.STOPWORDS_PORTUGUESE, "nl": _bm25_stopwords.STOPWORDS_DUTCH,
    "da": _bm25_stopwords.STOPWORDS_DANISH, "sv": _bm25_stopwords.STOPWORDS_SWEDISH,
    "no": _bm25_stopwords.STOPWORDS_NORWEGIAN, "tr": _bm25_stopwords.STOPWORDS_TURKISH,
}

_WORD = re.compile(r"\w+", re.UNICODE)
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
# Letters that Kazakh writes and Russian does not: a cheap, certain signal.
_KAZAKH = re.compile(r"[әғқңөұүһіӘҒҚҢӨҰҮҺІ]")
_CYRILLIC_LANGUAGES = frozenset({"ru", "kk", "uk", "bg", "mk", "sr", "be", "mn", "ky"})


_QUOTES = (("\u2019", "'"), ("\u2018", "'"), ("\u201c", '"'), ("\u201d", '"'))


def normalise(text: str) -> str:
    """NFC-normalise and fold typographic quotes so that tokens match however typed.

    `str.replace` rather than `str.translate`: translate looks every character up
    in a dict, which made this the slowest step of indexing 100,000 articles.
    """
    text = unicodedata.normalize("NFC", text)
    for quote, plain in _QUOTES:
        if quote in text:
            text = text.replace(quote, plain)
    return text


@cache
def _identifier() -> LanguageIdentifier:
    """Load py3langid's model once, on first use (it takes most of a second)."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE)


def detect_language(text: str, candidates: frozenset[str] | None = None) -> str:
    """Best-guess ISO 639-1 code; `candidates` narrows the choice for short queries.

    Script decides first (Kazakh letters, Cyrillic), because a statistical model
    is unreliable on a five-word question while the script never is.
    """
    if _KAZAKH.search(text):
        return "kk"
    sample = text[:2000]
    cyrillic = len(_CYRILLIC.findall(sample))
    if cyrillic and cyrillic / (sum(ch.isalpha() for ch in sample) or 1) > 0.5:
        return "ru" if candidates is None or "ru" in candidates or "kk" not in candidates else "kk"
    if candidates is not None:
        latin = candidates - _CYRILLIC_LANGUAGES
        if len(latin) <= 1:  # nothing for the model to decide (it costs half a millisecond)
            # Latin words in a question to a Cyrillic-only knowledge base ("Tesla", "ABC")
            # are indexed there as they are, which is what that language's stemmer does too.
            return next(iter(latin), "ru" if "ru" in candidates else min(candidates, default="en"))
    identifier = _identifier()
    ranked = identifier.rank(sample)
    for code, _score in ranked:
        if code in _CYRILLIC_LANGUAGES:
            continue
        if candidates is None or code in candidates:
            return code
    return "en"


@cache
def _stemmer(language: str) -> Stemmer.Stemmer | None:
    algorithm = STEMMERS.get(language)
    return Stemmer.Stemmer(algorithm) if algorithm else None


@cache
def stopwords(language: str) -> frozenset[str]:
    return frozenset(_STOPWORDS.get(language, ()))


def words(text: str) -> list[str]:
    """Lower-cased word tokens, punctuation dropped."""
    return _WORD.findall(normalise(text).lower())


def stem_words(tokens: list[str], language: str) -> list[str]:
    """Index terms of lower-cased words: numerals in every form as digits, other words stemmed.

    "eighth", "8th", "VIII" and "восьмого" all become "8", so a question about "the
    eighth forum" meets an article about the VIII Forum. Kazakh has no Snowball
    stemmer (PyStemmer has none): its words lose their common suffixes instead
    (`kazakh_stem`).
    """
    stemmer = _stemmer(language)
    if stemmer is not None:
        stems = stemmer.stemWords(tokens)
    elif language == "kk":
        stems = [kazakh_stem(token) for token in tokens]
    else:
        stems = tokens
    return [_numeral(token, stem) for token, stem in zip(tokens, stems, strict=True)]


def _listed(words_: str) -> list[str]:
    """Whitespace-separated words: long word tables read best as text."""
    return words_.split()


_NUMBER_WORDS = {
    word: str(value)
    for value, words_ in enumerate(
        (
            "zero", "one first once", "two second twice twofold doubled", "three third thrice threefold tripled",
            "four fourth fourfold quadrupled", "five fifth fivefold", "six sixth sixfold", "seven seventh",
            "eight eighth", "nine ninth", "ten tenth tenfold", "eleven eleventh", "twelve twelfth",
            "thirteen thirteenth", "fourteen fourteenth", "fifteen fifteenth", "sixteen sixteenth",
            "seventeen seventeenth", "eighteen eighteenth", "nineteen nineteenth", "twenty twentieth",
        )
    )
    for word in words_.split()
}
# Russian numerals after Snowball stemming ("восьмой", "восьмого", "восьми" -> "восьм"), and Kazakh ones.
_NUMBER_STEMS = {
    stem: str(value)
    for value, stems in enumerate(
        (
            "нол", "один одн перв бір бірінші", "два две двух дво вдво двукратн втор екі екінші",
            "три трех трем трет втро трикратн үш үшінші", "четыр четырех четверт вчетвер төрт төртінші",
            "пят бес бесінші", "шест алты алтыншы", "сем седьм жеті жетінші", "восем восьм сегіз сегізінші",
            "девя девят тоғыз тоғызыншы", "деся десят он оныншы",
        )
    )
    for stem in stems.split()
}
_ORDINAL = re.compile(r"(\d{1,4})(?:st|nd|rd|th|й|я|е|го|ый|ой|ая|ое|ші|шы|інші|ыншы)")
def _roman_numeral(value: int) -> str:
    digits = ""
    for size, numeral in ((40, "xl"), (10, "x"), (9, "ix"), (5, "v"), (4, "iv"), (1, "i")):
        digits += numeral * (value // size)
        value %= size
    return digits


# Roman numerals from 2 to 40 ("vii", "xiv"); "xi" is left out (a name far more often than eleven), as is "i".
_ROMAN = {_roman_numeral(value): str(value) for value in range(2, 41)} | {"xi": "xi"}


def _numeral(token: str, stem: str) -> str:
    if token[:1].isdigit():
        if token.isdigit():
            return token.lstrip("0") or "0"
        match = _ORDINAL.fullmatch(token)
        return match.group(1).lstrip("0") or "0" if match else stem
    return _NUMBER_WORDS.get(token) or _NUMBER_STEMS.get(stem) or _ROMAN.get(token) or stem


# Kazakh suffixes (plural, case, possessive and common verb endings), longest first. Stripping them is a
# light stemmer in the spirit of Snowball's for Turkish, which Kazakh grammar resembles; no Kazakh Snowball
# stemmer exists.
_KAZAKH_SUFFIXES = tuple(sorted(
    _listed("""лар лер дар дер тар тер ның нің дың дің тың тің ға ге қа ке на не ны ні ды ді ты ті да де та те нда нде
    дан ден тан тен нан нен мен бен пен ым ім ың ің сы сі ы і мыз міз ңыз ңіз сын сін ған ген қан кен
    ады еді ды ді ты ті уда уде атын етін ушы уші шы ші лық лік дық дік тық тік"""),
    key=len, reverse=True,
))
_KAZAKH_MIN_STEM = 4
_KAZAKH_PREFIX = 5


def kazakh_stem(word: str) -> str:
    """Strip up to three Kazakh suffixes (keeping four letters), then keep at most the first five letters.

    Suffix stripping alone cannot tell a stem's last letters from a suffix ("облыс-ы" vs "жоба-сы"); the
    five-letter cap (fixed-prefix truncation, which matches stemmers in retrieval on Turkish) makes most
    such pairs meet anyway: "жобасына" -> "жоба", "еріктілерге" and "ерікті" -> "ерік".
    """
    for _ in range(3):
        for suffix in _KAZAKH_SUFFIXES:
            if word.endswith(suffix) and len(word) - len(suffix) >= _KAZAKH_MIN_STEM:
                word = word[: -len(suffix)]
                break
        else:
            break
    return word[:_KAZAKH_PREFIX]


def terms(text: str, language: str) -> list[str]:
    """Index terms: words without stopwords, stemmed in their own language."""
    stop = stopwords(language)
    return stem_words([w for w in words(text) if w not in stop], language)


def split_sentences(text: str, language: str = "en") -> list[str]:
    """Sentences, stripped, robust to initials (`D. Kaletayev`), `U.S.`, `Mr.` and quotes.

    sentencex (Wikimedia) is hundreds of times faster than pysbd with the same
    handling of abbreviations; paragraphs are split first so a heading without
    a full stop never runs into the next sentence.
    """
    sentences: list[str] = []
    for paragraph in re.split(r"\n\s*\n|\n(?=\S)", text):
        for window in _windows(" ".join(paragraph.split())):
            sentences.extend(s.strip() for s in sentencex.segment(language, window) if s.strip())
    return sentences


SENTENCEX_WINDOW = 2000  # sentencex is quadratic on a run with no sentence end: never hand it more than this


def _windows(paragraph: str) -> Iterator[str]:
    """The paragraph in pieces of at most SENTENCEX_WINDOW characters, cut after a full stop where there is one."""
    start, end = 0, len(paragraph)
    while end - start > SENTENCEX_WINDOW:
        limit = start + SENTENCEX_WINDOW
        cut = max(paragraph.rfind(mark, start, limit) for mark in (". ", "! ", "? ", "… "))
        if cut <= start:
            cut = paragraph.rfind(" ", start, limit)
        cut = cut + 1 if cut > start else limit
        yield paragraph[start:cut]
        start = cut
    if start < end:
        yield paragraph[start:]


def telegram_length(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units (a lone surrogate from hostile input counts as one)."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


# --- what a question asks for ----------------------------------------------------

QuestionKind = Literal["when", "number", "who"]

# Opening words (or pairs) that say what a question wants, per language; matched on whole words.
_KIND_WORDS: dict[str, tuple[tuple[QuestionKind, frozenset[str]], ...]] = {
    "en": (("when", frozenset({"when", "what year", "which year", "what date", "what month", "what day"})),
           ("number", frozenset({"how many", "how much", "what percentage", "what percent", "what number"})),
           ("who", frozenset({"who", "whom", "whose"}))),
    "ru": (("when", frozenset({"когда", "каком году", "какого числа", "каком месяце", "какой день"})),
           ("number", frozenset({"сколько", "скольких", "какой процент", "какое количество"})),
           ("who", frozenset({"кто", "кого", "кому", "кем", "чей", "чья"}))),
    "kk": (("when", frozenset({"қашан", "қай жылы", "қай күні"})),
           ("number", frozenset({"қанша", "неше", "нешеу"})),
           ("who", frozenset({"кім", "кімді", "кімнің", "кімге"}))),
}

_TIME_WORDS = frozenset(
    _listed("""january february march april may june july august september october november december
    monday tuesday wednesday thursday friday saturday sunday spring summer autumn fall winter today tomorrow
    yesterday week month year weeks months years decade century annually
    январь января февраль февраля март марта апрель апреля мая июнь июня июль июля август августа сентябрь
    сентября октябрь октября ноябрь ноября декабрь декабря весной летом осенью зимой весна лето осень зима
    сегодня завтра вчера неделе месяце году годах веке году
    қаңтар ақпан наурыз сәуір мамыр маусым шілде тамыз қыркүйек қазан қараша желтоқсан көктемде жазда
    күзде қыста күзге бүгін ертең кеше жылы""")
)
_YEAR = re.compile(r"\b(?:1[5-9]|20)\d\d\b")
_DIGIT = re.compile(r"\d")


def question_kind(question: str, language: str) -> QuestionKind | None:
    """What the question asks for, when its wording says so: a time, a number or a person."""
    tokens = words(question)
    found = set(tokens) | {f"{a} {b}" for a, b in itertools.pairwise(tokens)}
    for kind, cues in _KIND_WORDS.get(language, _KIND_WORDS["en"]):
        if found & cues:
            return kind
    return None


def answers_kind(sentence: str, kind: QuestionKind | None, language: str,
                 sentence_terms: frozenset[str] | None = None) -> bool:
    """Whether `sentence` holds the kind of thing asked for (a time expression, a number, a name);
    `sentence_terms` (its `terms`, if already at hand) saves stemming it again."""
    if kind is None:
        return False
    if kind == "when":
        return bool(_YEAR.search(sentence)) or not _TIME_WORDS.isdisjoint(words(sentence))
    if kind == "number":
        if _DIGIT.search(sentence):
            return True
        found = sentence_terms if sentence_terms is not None else terms(sentence, language)
        return any(t.isdigit() for t in found)
    # A name: a capitalised word that does not open the sentence.
    tokens = _WORD.findall(normalise(sentence))
    return any(token[0].isupper() and not token.isupper() for token in tokens[1:])
