"""The index kept up to date article by article answers exactly as one built whole from the same articles."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest

from bot import knowledge
from bot.knowledge import Article, KnowledgeBase, diff
from bot.search import Index
from bot.service import Service
from bot.store import Store
from tests.conftest import make_article

PLACES = ("Almaty", "Astana", "Shymkent", "Karaganda", "Aktobe", "Taraz", "Pavlodar")
SUBJECTS = (
    ("library", "The central library reopens after renovation", "Readers get a new reading hall and longer hours."),
    ("bridge", "The river bridge closes for repairs", "Buses take the northern detour for three weeks."),
    ("park", "A new park opens in the east district", "It has a playground, a pond and two football pitches."),
    ("water", "Water tariffs rise from July", "Households pay eight percent more; pensioners keep their discount."),
    ("school", "Volunteers tutor pupils after school", "Students from the university teach mathematics twice a week."),
    ("election", "Observers report on the local election", "Turnout was low and two precincts recounted ballots."),
)


def article(place: str, subject: tuple[str, str, str], edition: int = 0) -> Article:
    slug, title, detail = subject
    body = (f"{title} in {place}, the city administration announced on Monday. {detail} "
            f"Residents of {place} can ask questions at the civic centre until Friday.")
    if edition:
        body += f" Update {edition}: the council of {place} approved a second phase with new funding."
    return make_article(f"{place.lower()}-{slug}", f"{title} in {place}", body)


ALL = [article(place, subject) for place, subject in itertools.product(PLACES, SUBJECTS)]
RUSSIAN = make_article("almaty-ru", "Новый парк открылся в Алматы",
                       "В восточном районе Алматы открылся новый парк. В нём есть детская площадка и пруд.",
                       language="ru")
QUESTIONS = (
    "when does the library in Almaty reopen?", "bridge repairs Astana detour", "how much more do households pay",
    "who tutors pupils in Taraz?", "was there a recount in the Pavlodar election?", "new funding second phase",
    "playgrund in the east distrct", "weather tomorrow", "где открылся новый парк?", "library Karaganda hours",
    "Shymkent water tariff pensioners discount", "what did the council of Aktobe approve?",
)


def kb_of(articles: list[Article]) -> KnowledgeBase:
    return KnowledgeBase(articles={a.id: a for a in articles})


def answers(index: Index) -> list[tuple[object, ...]]:
    """What a reader would see for every question: the ranked articles and scores, confidence and sentences."""
    seen = []
    for question in QUESTIONS:
        ranking = index.rank(question, 5)
        judgement = index.judge(ranking)
        seen.append((ranking.terms, [(c.article, c.score, c.bm25, c.cosine) for c in ranking.candidates],
                     ranking.raw_confidence, judgement))
    return seen


def step(index: Index, articles: list[Article], limit: int = 1000) -> Index:
    return index.updated(kb_of(articles), diff(index.kb, kb_of(articles)), limit)


def assert_same(index: Index, articles: list[Article]) -> None:
    whole = Index.build(kb_of(articles))
    assert index.kb == whole.kb
    assert len(index) == len(whole)
    assert answers(index) == answers(whole)


@pytest.fixture(scope="module")
def start() -> Index:
    return Index.build(kb_of(ALL[:30]))


def test_added_updated_and_removed_articles_are_answered_as_by_a_whole_build_round_after_round(start: Index) -> None:
    articles = ALL[:30]
    rounds = [
        lambda a: a + ALL[30:32],                                             # two new articles
        lambda a: [article(PLACES[0], SUBJECTS[0], 1) if x.id == "almaty-library" else x for x in a],  # an edit
        lambda a: [x for x in a if x.id not in ("astana-bridge", "taraz-water")],  # two removed
        lambda a: [*a, RUSSIAN, ALL[32]],                                     # another language, and one more
        lambda a: [article(PLACES[0], SUBJECTS[0], 2) if x.id == "almaty-library" else x for x in a],  # edited again
        lambda a: [*a, ALL[3 * 6 + 3]],                                       # a removed article comes back
        lambda a: [x for x in a if x.id not in (ALL[30].id, RUSSIAN.id)],    # articles of the delta removed
    ]
    index = start
    for change in rounds:
        articles = change(articles)
        index = step(index, articles)
        assert index._delta is not None or index._removed is not None   # the incremental path, not a rebuild
        assert_same(index, articles)
    assert index.search("Update 2 second phase Almaty library", 1)[0].article.id == "almaty-library"


def test_crossing_the_delta_limit_rebuilds_whole_and_still_answers_the_same(start: Index) -> None:
    articles = ALL[:30] + ALL[30:33]
    index = step(start, articles, limit=4)
    assert index._delta is not None
    articles = articles + ALL[33:36]
    index = step(index, articles, limit=4)
    assert index._delta is None and index._removed is None and index._base is not None
    assert len(index._base.ids) == len(articles)
    assert_same(index, articles)


def test_removing_every_article_leaves_an_index_that_answers_nothing(start: Index) -> None:
    index = step(start, [])
    assert len(index) == 0 and index.search("library Almaty") == []
    index = step(index, ALL[:2])
    assert_same(index, ALL[:2])


def test_an_edit_is_found_by_its_new_words_and_no_longer_by_its_old_ones(start: Index) -> None:
    edited = dataclasses.replace(ALL[0], body="The library in Almaty now lends bicycles to its readers.")
    index = step(start, [edited, *ALL[1:30]])
    assert index.search("bicycles lends", 1)[0].article == edited
    assert all(hit.article.id != edited.id for hit in index.search("new reading hall and longer hours", 30))


async def test_a_reload_indexes_only_the_changed_articles_and_answers_as_a_fresh_start(
        tmp_path: Path, store: Store) -> None:
    directory = tmp_path / "knowledge"
    for a in ALL[:30]:
        knowledge.write_article(directory, a)
    service = Service(directory, store)
    knowledge.write_article(directory, ALL[30])
    knowledge.write_article(directory, article(PLACES[0], SUBJECTS[0], 1))
    knowledge.article_path(directory, "astana-bridge").unlink()
    result = await service.reload()
    assert (result.changes.added, result.changes.updated, result.changes.removed) == (
        (ALL[30].id,), ("almaty-library",), ("astana-bridge",))
    assert service.index._delta is not None and len(service.index._delta.ids) == 2
    fresh = Service(directory, store)
    for question in QUESTIONS:
        assert service.ask(question) == fresh.ask(question)
