"""The index: finding the article, the answering sentence, and refusing what it does not know."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest

from bot import knowledge
from bot.answer import answer_question
from bot.knowledge import Article, FaqEntry, KnowledgeBase
from bot.search import FOUND, Index

FIXTURES = Path(__file__).parent / "fixtures" / "search" / "knowledge"
SHIPPED = Path(__file__).resolve().parent.parent / "knowledge"
ROADMAP_SENTENCE = (
    "Altogether, of the 40 measures of the Roadmap, 22 have been completed, and 18 are still being carried out."
)

# Everyday words, so that a large synthetic knowledge base shares words with any question.
FILLER_TEXT = (
    "the city council said on monday that new plans for roads schools and hospitals would be discussed next week "
    "officials reported higher prices for bread and fuel while farmers asked for support after a dry summer "
    "police opened an inquiry into the fire at a market and a court heard the case of a former mayor "
    "students teachers and parents met to talk about exams buses and heating in winter "
    "a company announced jobs at a factory and a bank lowered its rate for small business loans "
    "the weather service warned of storms tomorrow and snow in the mountains over the weekend "
    "football fans celebrated a win and a theatre opened its season with a new play about family life"
)
FILLER = FILLER_TEXT.split()


@pytest.fixture(scope="module")
def fixture_kb() -> KnowledgeBase:
    return knowledge.load(FIXTURES)


@pytest.fixture(scope="module")
def index(fixture_kb: KnowledgeBase) -> Index:
    return Index.build(fixture_kb)


@pytest.fixture(scope="module")
def large_index(fixture_kb: KnowledgeBase) -> Index:
    """The fixture articles hidden among 3,000 synthetic news-like articles."""
    rng = random.Random(7)
    articles = dict(fixture_kb.articles)
    for number in range(3000):
        body = " ".join(rng.choice(FILLER) for _ in range(rng.randint(30, 90))).capitalize() + "."
        title = " ".join(rng.choice(FILLER) for _ in range(6)).capitalize()
        articles[f"filler-{number:04d}"] = Article(f"filler-{number:04d}", title, None, None, None, "en", "", body)
    return Index.build(KnowledgeBase(articles, fixture_kb.faq))


def only(kb: KnowledgeBase, article_id: str) -> KnowledgeBase:
    return KnowledgeBase({article_id: kb.articles[article_id]})


def test_shipped_seed_question_is_answered_with_its_sentence() -> None:
    index = Index.build(knowledge.load(SHIPPED))
    answer = answer_question(index, "how many plan items were executed?")
    assert answer.found
    assert answer.sentences == (
        "In total, of the 53 items of the Plan, 18 were executed, and 35 are in the process of execution.",
    )


def test_shipped_seed_refuses_the_weather_though_it_shares_a_word() -> None:
    index = Index.build(knowledge.load(SHIPPED))
    assert "Almaty" in next(iter(index.kb.articles.values())).body
    answer = answer_question(index, "what's the weather in Almaty tomorrow?")
    assert not answer.found
    assert answer.article is None
    assert answer.alternatives == (), "an article that merely names Almaty is not offered as the closest"


@pytest.mark.parametrize("size", ["one article", "five articles"])
def test_question_answered_with_the_sentence_that_says_it(fixture_kb: KnowledgeBase, size: str) -> None:
    kb = only(fixture_kb, "en-volunteer-roadmap") if size == "one article" else fixture_kb
    answer = answer_question(Index.build(kb), "how many roadmap measures were completed?")
    assert answer.found and answer.sure
    assert answer.article is not None and answer.article.id == "en-volunteer-roadmap"
    assert answer.sentences == (ROADMAP_SENTENCE,)


def test_the_answering_sentence_is_not_simply_the_first(index: Index) -> None:
    answer = answer_question(index, "where were coordinators trained?")
    assert answer.article is not None and answer.article.id == "en-volunteer-roadmap"
    assert answer.sentences == ("Training courses for coordinators were held in Almaty and in four regional centres.",)


def test_misspelt_words_are_corrected_against_the_knowledge_base(index: Index) -> None:
    answer = answer_question(index, "how many roadmap mesures were compelted")
    assert answer.article is not None and answer.article.id == "en-volunteer-roadmap"
    assert answer.sentences == (ROADMAP_SENTENCE,)
    _, corrected, _ = index.parse("villige grunts for drinkng water")
    assert corrected == "village grants for drinking water"


def test_russian_question_is_stemmed_in_russian(index: Index) -> None:
    # "залов" / "библиотеках" in the article, "зал" / "библиотеки" in the question: only stemming joins them.
    hits = index.search("новый читальный зал для сельской библиотеки")
    assert hits[0].article.id == "ru-libraries"
    language, _, terms = index.parse("новые читальные залы")
    assert language == "ru"
    assert "зал" in terms


def test_kazakh_question_works_unstemmed(index: Index) -> None:
    answer = answer_question(index, "еріктілер жобасы қайда басталды?")
    assert answer.found
    assert answer.article is not None and answer.article.id == "kk-volunteers"
    assert index.parse("еріктілер жобасы")[0] == "kk"


@pytest.mark.parametrize(
    "question",
    [
        "what's the weather in Almaty tomorrow?",
        "who won the football match yesterday?",
        "how do I bake a chocolate cake?",
        "what is the capital of France?",
    ],
)
def test_off_topic_refused_on_tiny_and_large_knowledge_bases(
    fixture_kb: KnowledgeBase, large_index: Index, question: str
) -> None:
    tiny = Index.build(only(fixture_kb, "en-volunteer-roadmap"))
    for index in (tiny, large_index):
        answer = answer_question(index, question)
        assert not answer.found, (len(index), answer.confidence)


@pytest.mark.parametrize(
    ("question", "article_id"),
    [
        ("how many roadmap measures were completed?", "en-volunteer-roadmap"),
        ("which village groups won grants for drinking water?", "en-water-grants"),
        ("how many students came to the youth forum in Shymkent?", "en-youth-forum"),
    ],
)
def test_on_topic_answered_among_many_articles(large_index: Index, question: str, article_id: str) -> None:
    answer = answer_question(large_index, question)
    assert answer.found
    assert answer.article is not None and answer.article.id == article_id


def test_confidence_means_the_same_at_both_extremes(fixture_kb: KnowledgeBase, large_index: Index) -> None:
    tiny = Index.build(only(fixture_kb, "en-volunteer-roadmap"))
    for index in (tiny, large_index):
        good = answer_question(index, "how many roadmap measures were completed?").confidence
        bad = answer_question(index, "what's the weather in Almaty tomorrow?").confidence
        assert 0.0 <= bad < FOUND <= good <= 1.0


def test_faq_entry_wins_over_articles(index: Index) -> None:
    answer = answer_question(index, "how can I get new articles")
    assert answer.faq is not None and answer.faq.id == "subscribe"
    assert answer.found and answer.article is None
    assert index.match_faq("subscribe") is None, "one shared word is not a match"
    assert index.match_faq("how do i reach the editors").entry.id == "editors"  # type: ignore[union-attr]


def test_faq_only_knowledge_base() -> None:
    faq = (FaqEntry("help", ("What can this bot do?",), "It answers questions about the news."),)
    index = Index.build(KnowledgeBase({}, faq))
    assert answer_question(index, "what can the bot do?").faq == faq[0]
    assert not answer_question(index, "how many roadmap measures were completed?").found


def test_ties_are_broken_by_id_and_never_sure(fixture_kb: KnowledgeBase) -> None:
    original = fixture_kb.articles["en-water-grants"]
    twins = {
        "b-copy": dataclasses.replace(original, id="b-copy"),
        "a-copy": dataclasses.replace(original, id="a-copy"),
    }
    index = Index.build(KnowledgeBase(twins))
    hits = index.search("grants for clean drinking water in villages")
    assert [h.article.id for h in hits] == ["a-copy", "b-copy"]
    assert hits[0].score == hits[1].score
    answer = answer_question(index, "grants for clean drinking water in villages")
    assert answer.found and not answer.sure
    assert [a.article.id for a in answer.alternatives] == ["b-copy"]


@pytest.mark.parametrize("query", ["", "   ", "?!", "the of and"])
def test_empty_queries_find_nothing(index: Index, query: str) -> None:
    assert index.search(query) == []
    assert not answer_question(index, query).found


def test_empty_knowledge_base() -> None:
    index = Index.build(KnowledgeBase())
    assert len(index) == 0
    assert index.search("how many roadmap measures were completed?") == []
    answer = answer_question(index, "how many roadmap measures were completed?")
    assert not answer.found and answer.alternatives == () and answer.confidence == 0.0


def test_search_returns_at_most_k_best_first(index: Index) -> None:
    hits = index.search("grants volunteers students libraries", k=2)
    assert len(hits) == 2
    assert hits[0].score >= hits[1].score
