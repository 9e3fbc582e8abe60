"""Choosing the answer: the sentence that says it, numerals in every form, small talk, Russian and Kazakh."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot import evaluation, knowledge, smalltalk, text
from bot.answer import answer_question
from bot.cli import main
from bot.knowledge import Article, KnowledgeBase
from bot.search import Index

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def shipped() -> Index:
    return Index.build(knowledge.load(ROOT / "knowledge"))


@pytest.fixture(scope="module")
def russian() -> Index:
    return Index.build(knowledge.load(FIXTURES / "search" / "ru"))


@pytest.fixture(scope="module")
def kazakh() -> Index:
    return Index.build(knowledge.load(FIXTURES / "search" / "kk"))


def test_shipped_knowledge_base_answers_its_questions_and_refuses_the_rest(shipped: Index) -> None:
    cases = evaluation.read_cases(FIXTURES / "shipped_questions.jsonl")
    row = evaluation.score_cases("shipped", shipped, cases)
    assert (row.questions, row.offtopic) == (20, 20)
    assert row.answered_correct * 20 >= 18, "questions answered with the sentence that holds the answer"
    assert row.refused * 20 >= 18, "off-topic questions refused"


def test_the_when_question_gets_the_sentence_with_the_time(shipped: Index) -> None:
    answer = answer_question(shipped, "When will the eighth forum take place?")
    assert answer.found
    assert len(answer.sentences) >= 1 and "will be held this autumn" in answer.sentences[0]


def test_one_person_question_on_one_article_is_answered(shipped: Index) -> None:
    answer = answer_question(shipped, "who is Kozhakhmetov?")
    assert answer.found
    assert "Kozhakhmetov shared his experience" in answer.sentences[0]


def test_off_topic_question_offers_no_unrelated_article(shipped: Index) -> None:
    answer = answer_question(shipped, "what's the weather in Almaty tomorrow?")
    assert not answer.found and answer.alternatives == ()
    assert answer.to_json()["alternatives"] == []


def test_the_summary_never_repeats_an_answering_sentence(shipped: Index) -> None:
    answer = answer_question(shipped, "What did the Prime Minister instruct the akims of the regions to do?")
    assert answer.found and answer.sentences
    assert answer.summary is not None
    for sentence in answer.sentences:
        assert sentence not in answer.summary


@pytest.mark.parametrize(
    ("forms", "language"),
    [
        ("eighth 8th VIII eight 8", "en"),
        ("twofold twice two doubled 2", "en"),
        ("восьмой восьмого восьмом 8 8й", "ru"),
        ("вдвое два двух", "ru"),
        ("сегіз сегізінші", "kk"),
    ],
)
def test_numerals_in_every_form_meet(forms: str, language: str) -> None:
    assert len(set(text.stem_words(text.words(forms), language))) == 1


@pytest.mark.parametrize("word", ["civil", "mix", "xi", "i", "vivid"])
def test_words_made_of_roman_letters_stay_words(word: str) -> None:
    assert not text.stem_words([word], "en")[0].isdigit()


@pytest.mark.parametrize(
    ("question", "language", "kind"),
    [
        ("When is the next forum?", "en", "when"),
        ("In what year was it built?", "en", "when"),
        ("How many NGOs came?", "en", "number"),
        ("Who is Kozhakhmetov?", "en", "who"),
        ("What is the ASAR platform?", "en", None),
        ("Когда пройдёт фестиваль?", "ru", "when"),
        ("Сколько человек пришло?", "ru", "number"),
        ("Кто рассказал о конкурсе?", "ru", "who"),
        ("Фестиваль қашан өтеді?", "kk", "when"),
        ("Неше ұйым келді?", "kk", "number"),
    ],
)
def test_question_kind(question: str, language: str, kind: str | None) -> None:
    assert text.question_kind(question, language) == kind


@pytest.mark.parametrize(
    ("question", "article_id", "holds"),
    [
        ("Сколько некоммерческих организаций приехало на фестиваль волонтёров?", "ru-festival", "45"),
        ("Когда пройдёт следующий фестиваль?", "ru-festival", "весной 2024"),
        ("Когда объявят восьмой конкурс грантов?", "ru-grants", "в июне"),
        ("Во сколько раз выросли гранты?", "ru-grants", "в два раза"),
        ("Сколько человек участвовало в голосовании за парки?", "ru-parks", "двенадцати тысяч"),
    ],
)
def test_russian_questions_answered_from_russian_articles(
    russian: Index, question: str, article_id: str, holds: str
) -> None:
    answer = answer_question(russian, question)
    assert answer.found and answer.article is not None and answer.article.id == article_id
    assert holds in " ".join(answer.sentences)


@pytest.mark.parametrize(
    ("question", "article_id", "holds"),
    [
        ("Фестивальге неше ұйым келді?", "kk-festival", "қырық бес"),
        ("Келесі фестиваль қашан өтеді?", "kk-festival", "көктемде"),
        ("Кітапханаларға неше кітап келді?", "kk-library", "екі мың"),
        ("Неше ауылға су жеткізілді?", "kk-water", "он екі"),
    ],
)
def test_kazakh_questions_answered_from_kazakh_articles(
    kazakh: Index, question: str, article_id: str, holds: str
) -> None:
    answer = answer_question(kazakh, question)
    assert answer.found and answer.article is not None and answer.article.id == article_id
    assert holds in " ".join(answer.sentences)


@pytest.mark.parametrize(
    ("index_name", "question"),
    [
        ("russian", "Какая погода будет в Алматы завтра?"),
        ("russian", "Как сварить борщ?"),
        ("kazakh", "Ертең Алматыда ауа райы қандай болады?"),
        ("kazakh", "Борщты қалай пісіремін?"),
    ],
)
def test_off_topic_refused_in_russian_and_kazakh(request: pytest.FixtureRequest, index_name: str,
                                                  question: str) -> None:
    answer = answer_question(request.getfixturevalue(index_name), question)
    assert not answer.found and answer.alternatives == ()


@pytest.mark.parametrize(
    ("word", "stem"),
    [("жобасына", "жоба"), ("жобаға", "жоба"), ("еріктілерге", "ерік"), ("ерікті", "ерік"), ("басталды", "баста")],
)
def test_kazakh_light_stemmer(word: str, stem: str) -> None:
    assert text.kazakh_stem(word) == stem
    assert text.stem_words([word], "kk") == [stem]


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("hi", "greeting"), ("Hello!", "greeting"), ("привет", "greeting"), ("Сәлем!", "greeting"),
        ("helo", "greeting"), ("thanks, bot!", "thanks"), ("спасибо большое", "thanks"), ("рахмет", "thanks"),
        ("who are you?", "who"), ("кто ты?", "who"), ("сен кімсің?", "who"),
        ("help", "help"), ("помощь", "help"), ("көмек", "help"),
        ("what is the ASAR platform?", None), ("hi, when is the next forum?", None),
        ("weather in Almaty tomorrow", None), ("", None), ("hi " * 10_000, None),
    ],
)
def test_small_talk_kind(message: str, kind: str | None) -> None:
    assert smalltalk.kind(message) == kind


def test_sweep_says_when_the_data_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--knowledge", str(ROOT / "knowledge"), "--sweep", str(tmp_path)]) == 2
    assert "missing" in capsys.readouterr().err


def test_a_second_article_is_answered_at_once(shipped: Index) -> None:
    festival = Article(
        "en-festival", "Volunteer festival gathers NGOs in Karaganda", None, None, None, "en", "",
        "A regional volunteer festival took place in Karaganda on Saturday.\n\n"
        "Representatives of 45 non-governmental organisations (NGOs) came to the festival from every district. "
        "Participants presented their projects to residents.\n\nThe next festival will be held in Temirtau in spring.",
    )
    index = Index.build(KnowledgeBase({**shipped.kb.articles, festival.id: festival}))
    answer = answer_question(index, "how many NGOs came to the volunteer festival")
    assert answer.found and answer.sure
    assert answer.article is not None and answer.article.id == "en-festival"
    assert "45 non-governmental organisations" in answer.sentences[0]
    assert not answer_question(index, "what's the weather in Karaganda tomorrow?").found


def test_a_related_question_it_is_unsure_of_still_offers_the_article(shipped: Index) -> None:
    answer = answer_question(shipped, "When is the next forum?")
    if answer.found:
        assert answer.article is not None and "held this autumn" in " ".join(answer.sentences)
    else:
        assert [a.article.id for a in answer.alternatives] == list(shipped.kb.articles)
