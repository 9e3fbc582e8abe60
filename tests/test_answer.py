"""Answers as a user sees them: the JSON of `ask --json`, the Telegram card, the plain text."""

from __future__ import annotations

import datetime as dt
import io
import json
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot import i18n, knowledge
from bot.answer import Answer, answer_question
from bot.cli import main
from bot.format import MAX_MESSAGE
from bot.knowledge import Article, FaqEntry
from bot.render import article_card, article_list, render_html, render_text
from bot.search import Hit, Index

FIXTURES = Path(__file__).parent / "fixtures" / "search" / "knowledge"
TELEGRAM_TAGS = {"b", "i", "a", "blockquote"}
EN = i18n.translator("en")
NOT_SURE = EN("answer.not_sure")
DONT_KNOW = EN("answer.dont_know")


@pytest.fixture(scope="module")
def index() -> Index:
    return Index.build(knowledge.load(FIXTURES))


class TelegramHTML(HTMLParser):
    """Collects what Telegram would reject: unknown or unbalanced tags."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.errors: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in TELEGRAM_TAGS:
            self.errors.append(f"tag {tag}")
        if tag == "a" and [name for name, _ in attrs] != ["href"]:
            self.errors.append(f"attributes {attrs}")
        self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open.pop() != tag:
            self.errors.append(f"unbalanced {tag}")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def check_html(markup: str) -> str:
    """Assert Telegram would accept `markup`; return its visible text."""
    parser = TelegramHTML()
    parser.feed(markup)
    parser.close()
    assert not parser.errors and not parser.open, (parser.errors, parser.open)
    assert len(markup.encode("utf-16-le")) // 2 <= MAX_MESSAGE
    return "".join(parser.text)


def test_json_of_a_found_answer_has_exactly_the_contract_keys(index: Index) -> None:
    data = answer_question(index, "which village groups won grants for drinking water?").to_json()
    assert list(data) == [
        "question", "found", "sure", "confidence", "article", "sentences", "summary", "alternatives", "faq",
    ]
    assert data["found"] is True
    assert data["article"] == {
        "id": "en-water-grants",
        "title": "Village groups win grants for clean drinking water",
        "published": "2020-07-01",
        "source": "Civic Herald",
        "url": "https://example.org/news/water-grants",
    }
    assert 0.0 <= data["confidence"] <= 1.0
    assert all(set(a) == {"id", "title", "score"} for a in data["alternatives"])
    assert "en-water-grants" not in [a["id"] for a in data["alternatives"]]
    json.dumps(data)


def test_json_when_not_found_names_no_unrelated_article(index: Index) -> None:
    data = answer_question(index, "what's the weather in Almaty tomorrow?").to_json()
    assert data["found"] is False and data["sure"] is False
    assert data["article"] is None and data["sentences"] == [] and data["summary"] is None
    assert data["alternatives"] == []


def test_sure_card_shows_the_sentence_first_then_title_byline_and_one_link(index: Index) -> None:
    answer = answer_question(index, "which village groups won grants for drinking water?")
    assert answer.sure
    markup = render_html(answer)
    text = check_html(markup)
    assert text.startswith(answer.sentences[0]) and answer.sentences[0].startswith("Twelve village associations")
    assert "\n\n<b>Village groups win grants for clean drinking water</b>\n" in markup
    assert "July 1, 2020 · Civic Herald · Read at the source" in text
    assert markup.count("<a ") == 1 and '<a href="https://example.org/news/water-grants">' in markup


def test_unsure_tier_offers_three_titles() -> None:
    articles = [
        Article(f"a{n}", f"Title number {n}", None, None, None, "en", "", f"Body {n}.") for n in range(4)
    ]
    answer = Answer(
        "q", True, False, 0.6, articles[0], ("Body 0.",), None,
        tuple(Hit(a, 0.5) for a in articles[1:]),
    )
    text = render_text(answer)
    assert text.startswith(NOT_SURE)
    assert "1. Title number 0" in text and "3. Title number 2" in text and "Title number 3" not in text
    check_html(render_html(answer))


def test_no_match_is_an_honest_i_dont_know_without_unrelated_titles(index: Index) -> None:
    answer = answer_question(index, "what's the weather in Almaty tomorrow?")
    text = render_text(answer)
    assert text.startswith(DONT_KNOW)
    assert "A. Nurlanova" not in text
    assert "/latest" in text
    check_html(render_html(answer))


def test_faq_answer_shows_its_text_and_links(index: Index) -> None:
    markup = render_html(answer_question(index, "how do I subscribe to news?"))
    assert "Send /subscribe" in check_html(markup)
    assert '<a href="https://example.org/help/subscribe">' in markup
    assert answer_question(index, "how do I subscribe to news?").to_json()["faq"]["id"] == "subscribe"


def test_text_rendering_has_the_same_content_without_markup(index: Index) -> None:
    answer = answer_question(index, "which village groups won grants for drinking water?")
    text = render_text(answer)
    assert "<" not in text
    assert "Village groups win grants for clean drinking water" in text
    assert f"{EN('article.source_link')}: https://example.org/news/water-grants" in text


def test_hits_list_fits_one_message_however_many_hits() -> None:
    article = Article("x", "A <title> & more " * 20, dt.date(2021, 1, 2), None, "https://example.org/x", "en", "", "b")
    markup = article_list("Search results", [article] * 200, EN)
    text = check_html(markup)
    assert text.startswith("Search results")
    assert "January 2, 2021" in text


def test_unsafe_links_are_not_rendered_as_links() -> None:
    article = Article("x", "Title", None, None, 'javascript:alert("x")', "en", "", "Body.")
    markup = article_card(article, EN)
    assert "href" not in markup
    check_html(markup)


hostile = st.text(st.characters(blacklist_categories=("Cs",)), max_size=6000)


@settings(max_examples=60, deadline=None)
@given(title=hostile, body=hostile, summary=hostile, source=st.none() | hostile, url=st.none() | hostile,
       sentences=st.lists(hostile, max_size=5), sure=st.booleans())
def test_any_article_renders_as_valid_telegram_html_within_the_limit(
    title: str, body: str, summary: str, source: str | None, url: str | None, sentences: list[str], sure: bool
) -> None:
    article = Article("id", title, dt.date(2020, 5, 17), source, url, "en", summary, body)
    alternatives = tuple(Hit(replace(article, id=f"alt{n}", title=title + str(n)), 0.1) for n in range(3))
    faq = FaqEntry("f", ("q",), body or "answer", tuple(x for x in (url, "https://example.org/a") if x))
    for answer in (
        Answer("q", True, sure, 0.9, article, tuple(sentences), summary, alternatives,
               guess_sentences=tuple(sentences[:3])),
        Answer("what is it about", True, True, 0.9, article, tuple(sentences), summary, ()),
        Answer("q", False, False, 0.1, None, (), None, alternatives),
        Answer("q", True, True, 0.9, None, (), None, alternatives, faq),
    ):
        check_html(render_html(answer))
        assert len(render_text(answer)) <= MAX_MESSAGE
    check_html(article_card(article, EN))
    check_html(article_list(title, [article] * 30, EN))


def test_cli_ask_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    words = ["how", "many", "roadmap", "measures", "were", "completed?"]
    code = main(["ask", "--knowledge", str(FIXTURES), "--json", *words])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["question"] == "how many roadmap measures were completed?"
    assert data["sentences"] == [
        "Altogether, of the 40 measures of the Roadmap, 22 have been completed, and 18 are still being carried out."
    ]


def test_cli_ask_reads_one_question_per_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    questions = "how many roadmap measures were completed?\n\nwho won the football match?\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(questions))
    assert main(["ask", "--knowledge", str(FIXTURES), "--json", "-"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["found"] for line in lines] == [True, False]


def test_cli_ask_text_output_is_the_reply(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ask", "--knowledge", str(FIXTURES), "what's the weather in Almaty tomorrow?"]) == 0
    assert capsys.readouterr().out.startswith(DONT_KNOW)


def test_cli_ask_reports_a_broken_knowledge_base(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "articles").mkdir()
    (tmp_path / "articles" / "bad.yaml").write_text("id: [unclosed\n", encoding="utf-8")
    assert main(["ask", "--knowledge", str(tmp_path), "anything"]) == 1
    assert "bad.yaml:" in capsys.readouterr().err


def test_cli_eval_prints_figures_beside_plain_bm25(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    questions = tmp_path / "questions.jsonl"
    questions.write_text(
        json.dumps({"question": "how many roadmap measures were completed?", "doc_id": "en-volunteer-roadmap"}) + "\n"
        + json.dumps({"question": "which village groups won grants for water?", "doc_id": "en-water-grants"}) + "\n",
        encoding="utf-8",
    )
    offtopic = tmp_path / "offtopic.jsonl"
    offtopic.write_text(json.dumps({"question": "who won the football match?"}) + "\n", encoding="utf-8")
    code = main(["eval", "--knowledge", str(FIXTURES), "--questions", str(questions), "--offtopic", str(offtopic)])
    assert code == 0
    rows = [line.split("|") for line in capsys.readouterr().out.splitlines()[2:]]
    ours, bm25 = ([cell.strip() for cell in row] for row in rows)
    assert ours[2] == "ours" and bm25[2] == "plain BM25"
    assert ours[4] == "1.000"  # top-1
    assert ours[10] == "1.000"  # off-topic refused


def test_cli_eval_rejects_a_bad_question_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    questions = tmp_path / "questions.jsonl"
    questions.write_text('{"question": "ok", "doc_id": "x"}\nnot json\n', encoding="utf-8")
    assert main(["eval", "--knowledge", str(FIXTURES), "--questions", str(questions)]) == 2
    assert "questions.jsonl:2:" in capsys.readouterr().err
