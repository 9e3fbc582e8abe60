"""Extractive summaries: real sentences of the article, in its order, the central ones, never boilerplate."""

from __future__ import annotations

import pytest

from bot.summarise import MAX_SUMMARY_CHARS, is_boilerplate, select, summarise, textrank
from bot.text import split_sentences

ARTICLE = """\
The city council of Millbrook approved a new budget for youth centres on Tuesday.

Click here to subscribe to our newsletter.

The budget gives the youth centres twice as much money as last year, the council said.
Council member R. Hale said the youth centres had waited for a bigger budget for years.

The weather on Tuesday was sunny and warm, with a light wind from the south.

Two new youth centres will open in the autumn, paid for by the new budget.
Parents welcomed the council's decision on the budget for the centres.
"""


def test_summary_is_two_or_three_verbatim_sentences_in_article_order() -> None:
    summary = summarise(ARTICLE, "en")
    sentences = split_sentences(ARTICLE, "en")
    chosen = split_sentences(summary, "en")
    assert 2 <= len(chosen) <= 3
    assert all(s in sentences for s in chosen)
    positions = [sentences.index(s) for s in chosen]
    assert positions == sorted(positions)


def test_summary_prefers_central_sentences_and_skips_boilerplate() -> None:
    summary = summarise(ARTICLE, "en")
    assert "budget" in summary
    assert "weather" not in summary  # off the article's subject
    assert "Click here" not in summary


def test_initials_do_not_break_a_sentence() -> None:
    body = (
        "As noted by D. Kaletayev, the plan for the U.S. partners was agreed with Mr. Smith in May. "
        "The plan was agreed after long talks. The partners will meet again about the plan in June."
    )
    chosen = split_sentences(summarise(body, "en"), "en")
    assert "As noted by D. Kaletayev, the plan for the U.S. partners was agreed with Mr. Smith in May." in chosen


def test_short_article_is_its_own_summary() -> None:
    body = "The library opened a repair café on Saturday. Volunteers fixed forty lamps."
    assert summarise(body, "en") == body


def test_long_sentences_make_a_two_sentence_summary() -> None:
    filler = " ".join(["the budget for the youth centres grew"] * 12)
    body = " ".join(f"Sentence {i} says that {filler}." for i in range(5))
    summary = summarise(body, "en")
    assert len(split_sentences(summary, "en")) == 2
    assert len(summary) > MAX_SUMMARY_CHARS / 2


def test_repeated_sentence_is_used_once() -> None:
    repeated = "The council approved the budget for the youth centres."
    body = f"{repeated} {repeated} The youth centres will use the budget for new rooms. Parents like the budget."
    assert summarise(body, "en").count(repeated) == 1


def test_russian_article() -> None:
    body = (
        "Городской совет утвердил новый бюджет для молодёжных центров. "
        "Бюджет молодёжных центров вырос вдвое по сравнению с прошлым годом. "
        "Погода во вторник была солнечной. "
        "Два новых молодёжных центра откроются осенью на средства нового бюджета."
    )
    chosen = split_sentences(summarise(body, "ru"), "ru")
    assert len(chosen) == 3
    assert "Погода во вторник была солнечной." not in chosen


def test_boilerplate_only_falls_back_to_the_first_sentence() -> None:
    assert summarise("Share on Facebook\n\nREAD MORE NEWS HERE TODAY", "en") == "Share on Facebook"


@pytest.mark.parametrize(
    ("sentence", "boilerplate"),
    [
        ("Click here to read the full report.", True),
        ("SUBSCRIBE TO OUR CHANNEL FOR MORE NEWS.", True),
        ("More at https://example.org/news today.", True),
        ("Photo: the council building", True),
        ("Share on Facebook", True),
        ("Thank you.", True),
        ("2019 2020 2021 2022 2023 2024 2025 2026", True),
        ("The council approved the budget on Tuesday.", False),
        ("Council member R. Hale voted for the budget.", False),
    ],
)
def test_is_boilerplate(sentence: str, boilerplate: bool) -> None:
    assert is_boilerplate(sentence) is boilerplate


def test_textrank_ranks_the_hub_sentence_first() -> None:
    hub = frozenset({"budget", "youth", "centre", "council", "park"})
    spokes = [frozenset({"budget", "weather"}), frozenset({"youth", "music"}), frozenset({"council", "vote"}),
              frozenset({"park", "tree"})]
    rank = textrank([*spokes[:2], hub, *spokes[2:]])
    assert rank.argmax() == 2
    assert rank.sum() == pytest.approx(1.0)


def test_select_returns_indices_in_article_order() -> None:
    sentences = split_sentences(ARTICLE, "en")
    indices = select(sentences, "en", k=3)
    assert indices == sorted(indices)
    assert len(indices) == 3
