"""Small talk: which kind of chat message a text is, if it is not a question for the articles.

English, Russian and Kazakh. Cheap and safe on any input: the text is cut to a
few words, each matched against a small table with rapidfuzz (so "helo" and
"спасибки" still count), no regular expressions. Only classification lives
here; the replies are in the message catalogs.
"""

from __future__ import annotations

from typing import Literal

from rapidfuzz import fuzz, process

from bot.text import words

Kind = Literal["greeting", "thanks", "who", "help"]

__all__ = ["Kind", "kind"]

# Whole messages (after lower-casing and dropping punctuation) that are small talk.
_PHRASES: dict[str, Kind] = {
    **dict.fromkeys(
        ["hi", "hello", "hey", "hi there", "hello there", "good morning", "good afternoon", "good evening",
         "привет", "здравствуйте", "здравствуй", "добрый день", "доброе утро", "добрый вечер", "салют", "хай",
         "сәлем", "сәлеметсіз бе", "сәлеметсіз", "қайырлы таң", "қайырлы күн", "қайырлы кеш", "салам",
         "ассалаумағалейкум", "start"],
        "greeting",
    ),
    **dict.fromkeys(
        ["thanks", "thank you", "thank you very much", "thanks a lot", "many thanks", "thx", "cheers",
         "спасибо", "спасибо большое", "большое спасибо", "благодарю", "спс",
         "рахмет", "көп рахмет", "рақмет", "үлкен рахмет"],
        "thanks",
    ),
    **dict.fromkeys(
        ["who are you", "what are you", "who r u", "are you a bot", "what is your name", "whats your name",
         "кто ты", "кто вы", "ты кто", "вы кто", "ты бот", "как тебя зовут",
         "сен кімсің", "сіз кімсіз", "кімсің", "атың кім", "сен ботсың ба"],
        "who",
    ),
    **dict.fromkeys(
        ["help", "help me", "what can you do", "how does this work", "how do i use this", "commands",
         "помощь", "помоги", "помогите", "что ты умеешь", "что вы умеете", "как пользоваться",
         "көмек", "көмектес", "не істей аласың", "қалай қолданамын"],
        "help",
    ),
}
# Friendly words that may be added around a greeting or thanks ("hi bot", "спасибо, бот!").
_FILLER = frozenset({"bot", "бот", "there", "again", "so", "much", "очень", "тебе", "вам", "сізге", "саған", "please",
                     "пожалуйста", "өтінемін"})
_MAX_WORDS = 6  # small talk is short; anything longer is a question for the articles
_SIMILARITY = 88.0  # rapidfuzz ratio: one typo in a short phrase


def kind(text: str) -> Kind | None:
    """`"greeting"`, `"thanks"`, `"who"` or `"help"` for small talk; None for anything else (a question)."""
    tokens = words(text[:200])
    if not tokens or len(tokens) > _MAX_WORDS:
        return None
    phrase = " ".join(t for t in tokens if t not in _FILLER) or " ".join(tokens)
    found = _PHRASES.get(phrase)
    if found is not None:
        return found
    best = process.extractOne(phrase, _PHRASES.keys(), scorer=fuzz.ratio, score_cutoff=_SIMILARITY)
    return _PHRASES[best[0]] if best else None
